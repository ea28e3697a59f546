package xgboost

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/modelwatch/modelwatch/internal/model"
	"github.com/modelwatch/modelwatch/internal/model/xgboost/ubjson"
)

// Bounds on what a model file may ask Parse to build. Real models stay far
// below them; they stop a small hostile file from making the server allocate
// memory out of proportion to its size (a count in a header that asks for
// millions of names, say). Everything else Parse builds is proportional to
// the values the file lists.
const (
	// MaxTrees bounds the trees of a model.
	MaxTrees = 1_000_000
	// MaxNodes bounds the nodes of all trees together.
	MaxNodes = 10_000_000
	// MaxFeatures bounds num_feature: a model without feature_names gets
	// one name per feature ("f0", "f1", ...), whatever the trees use.
	MaxFeatures = 100_000
	// MaxClasses bounds num_class.
	MaxClasses = model.MaxClasses
)

// Parse reads an XGBoost model saved as JSON or UBJSON, recognising the
// format by its content. meta supplies the name and version and, optionally,
// feature and class names; Parse checks them against the file and fills in
// the rest. Errors wrap model.ErrInvalidModel and name what the file holds
// that this package does not support.
func Parse(data []byte, meta model.Metadata) (*Model, error) {
	m, err := parse(data, meta)
	if err != nil {
		return nil, fmt.Errorf("%w: xgboost: %v", model.ErrInvalidModel, err)
	}
	return m, nil
}

type jsonFile struct {
	Learner struct {
		Attributes      map[string]string `json:"attributes"`
		FeatureNames    []string          `json:"feature_names"`
		FeatureTypes    []string          `json:"feature_types"`
		GradientBooster json.RawMessage   `json:"gradient_booster"`
		Param           struct {
			BaseScore  string `json:"base_score"`
			NumClass   string `json:"num_class"`
			NumFeature string `json:"num_feature"`
			NumTarget  string `json:"num_target"`
		} `json:"learner_model_param"`
		Objective struct {
			Name     string `json:"name"`
			Quantile struct {
				Alpha string `json:"quantile_alpha"`
			} `json:"quantile_loss_param"`
		} `json:"objective"`
	} `json:"learner"`
}

// jsonBooster is learner.gradient_booster in each of its layouts: gbtree
// and gblinear keep their model in "model"; dart before XGBoost 3.3 wraps a
// gbtree in "gbtree" with "weight_drop" beside it; XGBoost 3.3 writes dart as
// a "gbtree" with "weight_drop" beside "model", and 3.4 inside it.
type jsonBooster struct {
	Name   string          `json:"name"`
	Model  json.RawMessage `json:"model"`
	GBTree *struct {
		Model json.RawMessage `json:"model"`
	} `json:"gbtree"`
	WeightDrop []number `json:"weight_drop"`
}

type jsonTrees struct {
	Param struct {
		NumParallelTree string `json:"num_parallel_tree"`
	} `json:"gbtree_model_param"`
	IterationIndptr []int             `json:"iteration_indptr"`
	TreeInfo        []int             `json:"tree_info"`
	Trees           []json.RawMessage `json:"trees"`
	WeightDrop      []number          `json:"weight_drop"`
	Cats            *jsonCats         `json:"cats"`
}

type jsonTree struct {
	LeftChildren       []int32  `json:"left_children"`
	RightChildren      []int32  `json:"right_children"`
	SplitIndices       []int32  `json:"split_indices"`
	SplitConditions    []number `json:"split_conditions"`
	DefaultLeft        []flag   `json:"default_left"`
	SplitType          []int    `json:"split_type"`
	Categories         []int64  `json:"categories"`
	CategoriesNodes    []int64  `json:"categories_nodes"`
	CategoriesSegments []int64  `json:"categories_segments"`
	CategoriesSizes    []int64  `json:"categories_sizes"`
	Param              struct {
		SizeLeafVector string `json:"size_leaf_vector"`
	} `json:"tree_param"`
}

type jsonLinear struct {
	Weights []number `json:"weights"`
}

// jsonCats is the category container of XGBoost 3.1+ (CatContainer::Save):
// one entry of enc per column, strings in Arrow's layout (offsets into the
// bytes of values) or numbers, and feature_segments[i] the first category of
// column i in the concatenation of all columns' categories.
type jsonCats struct {
	Enc []struct {
		Offsets []int64         `json:"offsets"`
		Values  json.RawMessage `json:"values"`
	} `json:"enc"`
	FeatureSegments []int64 `json:"feature_segments"`
}

// number reads a float, written as a number or, for the non-finite values
// that XGBoost writes as bare NaN and Infinity tokens, as the strings that
// quoteNonFinite makes of those tokens.
type number float32

func (n *number) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case `"NaN"`:
		*n = number(math.NaN())
		return nil
	case `"Infinity"`:
		*n = number(math.Inf(1))
		return nil
	case `"-Infinity"`:
		*n = number(math.Inf(-1))
		return nil
	}
	v, err := strconv.ParseFloat(string(b), 32)
	if err != nil {
		return fmt.Errorf("%s is not a float32", b)
	}
	*n = number(v)
	return nil
}

// flag reads XGBoost's booleans, written as 0/1 by some versions and as
// true/false by others.
type flag bool

func (f *flag) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case "1", "true":
		*f = true
	case "0", "false":
		*f = false
	default:
		return fmt.Errorf("default_left: %s is not a boolean", b)
	}
	return nil
}

func parse(data []byte, meta model.Metadata) (*Model, error) {
	if ubjson.Is(data) {
		var err error
		if data, err = ubjson.ToJSON(data); err != nil {
			return nil, fmt.Errorf("not an XGBoost UBJSON model: %v", err)
		}
	}
	var f jsonFile
	if err := json.Unmarshal(quoteNonFinite(data), &f); err != nil {
		return nil, fmt.Errorf("not an XGBoost model: %v", err)
	}
	l := &f.Learner
	if l.GradientBooster == nil {
		return nil, errors.New("not an XGBoost model: no learner.gradient_booster")
	}
	objName := l.Objective.Name
	obj, ok := objectives[objName]
	if !ok {
		return nil, fmt.Errorf("objective %q is not supported (supported: %s)", objName, strings.Join(slices.Sorted(maps.Keys(objectives)), ", "))
	}
	if objName == "reg:quantileerror" {
		if n := strings.Count(l.Objective.Quantile.Alpha, ",") + 1; n > 1 {
			return nil, fmt.Errorf("reg:quantileerror with %d quantiles (quantile_alpha %s) is not supported: train one model per quantile", n, l.Objective.Quantile.Alpha)
		}
	}
	numFeature, err := intParam("num_feature", l.Param.NumFeature, MaxFeatures)
	if err != nil {
		return nil, err
	}
	if numFeature == 0 {
		return nil, errors.New("num_feature is 0: the model takes no features")
	}
	numClass, err := intParam("num_class", l.Param.NumClass, MaxClasses)
	if err != nil {
		return nil, err
	}
	if t := l.Param.NumTarget; t != "" && t != "0" && t != "1" {
		return nil, fmt.Errorf("multi-target models (num_target %s) are not supported", t)
	}
	m := &Model{link: obj.link, groups: 1}
	switch {
	case obj.kind == multiclass:
		if numClass < 2 {
			return nil, fmt.Errorf("objective %s with num_class %d", objName, numClass)
		}
		m.groups = numClass
	case numClass > 1:
		return nil, fmt.Errorf("num_class %d with objective %s, which predicts one value", numClass, objName)
	}
	if m.baseMargin, err = baseMargin(l.Param.BaseScore, m.groups, obj.intercept); err != nil {
		return nil, err
	}
	if len(l.FeatureTypes) > 0 && len(l.FeatureTypes) != numFeature {
		return nil, fmt.Errorf("feature_types lists %d features, num_feature is %d", len(l.FeatureTypes), numFeature)
	}

	var b jsonBooster
	if err := json.Unmarshal(l.GradientBooster, &b); err != nil {
		return nil, fmt.Errorf("gradient_booster: %v", err)
	}
	catFeatures := make(map[int]bool)
	for i, t := range l.FeatureTypes {
		if t == "c" {
			catFeatures[i] = true
		}
	}
	var cats *jsonCats
	switch b.Name {
	case "gblinear":
		if m.linear, err = parseLinear(b.Model, numFeature, m.groups); err != nil {
			return nil, err
		}
	case "gbtree", "dart":
		if cats, err = m.parseTrees(&b, l.Attributes, numFeature, catFeatures); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("booster %q is not supported (supported: gbtree, dart, gblinear)", b.Name)
	}

	meta.Type = Type
	meta.AcceptsMissing = true
	if err := fillNames(&meta, l.FeatureNames, numFeature, obj.kind, m.groups); err != nil {
		return nil, err
	}
	if meta.Categorical, err = categorical(catFeatures, cats, numFeature); err != nil {
		return nil, err
	}
	meta.InputTensors = []model.TensorSpec{{Name: InputName, DataType: model.FP32, Shape: []int64{-1, int64(numFeature)}}}
	if meta.IsClassifier() {
		meta.PredictionOutput = ProbabilitiesName
		meta.OutputTensors = []model.TensorSpec{
			{Name: ProbabilitiesName, DataType: model.FP32, Shape: []int64{-1, int64(meta.Outputs)}},
			{Name: LabelName, DataType: model.BYTES, Shape: []int64{-1}},
		}
	} else {
		meta.PredictionOutput = PredictionName
		meta.OutputTensors = []model.TensorSpec{{Name: PredictionName, DataType: model.FP32, Shape: []int64{-1, 1}}}
	}
	m.meta = meta
	return m, nil
}

// parseTrees reads a gbtree or dart booster into m.trees, keeping only the
// trees up to the best iteration when attributes name one. It adds the
// features of categorical splits to catFeatures and returns the category
// container, if the file has one.
func (m *Model) parseTrees(b *jsonBooster, attributes map[string]string, numFeature int, catFeatures map[int]bool) (*jsonCats, error) {
	raw, weights := b.Model, b.WeightDrop
	if b.Name == "dart" && b.GBTree != nil {
		raw = b.GBTree.Model
	}
	if raw == nil {
		return nil, fmt.Errorf("booster %s has no model", b.Name)
	}
	var jt jsonTrees
	if err := json.Unmarshal(raw, &jt); err != nil {
		return nil, fmt.Errorf("booster %s: %v", b.Name, err)
	}
	if jt.WeightDrop != nil {
		if weights != nil {
			return nil, errors.New("dart weight_drop appears both beside and inside the model")
		}
		weights = jt.WeightDrop
	}
	n := len(jt.Trees)
	switch {
	case n > MaxTrees:
		return nil, fmt.Errorf("%d trees, more than the %d supported", n, MaxTrees)
	case len(jt.TreeInfo) != n:
		return nil, fmt.Errorf("tree_info lists %d trees, the model has %d", len(jt.TreeInfo), n)
	case b.Name == "dart" && weights == nil:
		return nil, errors.New("dart booster without weight_drop")
	case weights != nil && len(weights) != n:
		return nil, fmt.Errorf("dart weight_drop lists %d weights for %d trees", len(weights), n)
	}
	end, err := bestIterationEnd(attributes, &jt, m.groups)
	if err != nil {
		return nil, err
	}
	m.trees = make([]tree, end)
	nodeBudget := MaxNodes
	for i := range end {
		t, err := convertTree(jt.Trees[i], numFeature, &nodeBudget, catFeatures)
		if err != nil {
			return nil, fmt.Errorf("tree %d: %v", i, err)
		}
		g := jt.TreeInfo[i]
		if g < 0 || g >= m.groups {
			return nil, fmt.Errorf("tree %d adds to output group %d of %d", i, g, m.groups)
		}
		t.group, t.weight = int32(g), 1
		m.categorical = m.categorical || t.cats != nil
		if weights != nil {
			t.weight = float32(weights[i])
		}
		m.trees[i] = t
	}
	if !m.categorical {
		m.forest = compileForest(m.trees, numFeature)
	}
	return jt.Cats, nil
}

// bestIterationEnd returns how many of the trees the scikit-learn wrapper's
// predict uses: those of iterations 0 to the learner attribute
// best_iteration, or all of them when there is no such attribute. An
// iteration's trees are delimited by iteration_indptr (XGBoost 2.0+) or are
// num_parallel_tree trees per output group.
func bestIterationEnd(attributes map[string]string, jt *jsonTrees, groups int) (int, error) {
	n := len(jt.Trees)
	s, ok := attributes["best_iteration"]
	if !ok {
		return n, nil
	}
	best, err := strconv.Atoi(s)
	if err != nil || best < 0 {
		return 0, fmt.Errorf("learner attribute best_iteration %q is not an iteration", s)
	}
	if p := jt.IterationIndptr; len(p) > 0 {
		if p[0] != 0 || p[len(p)-1] != n || !slices.IsSorted(p) {
			return 0, fmt.Errorf("iteration_indptr does not delimit the %d trees", n)
		}
		if best >= len(p)-1 {
			return n, nil
		}
		return p[best+1], nil
	}
	parallel := 1
	if jt.Param.NumParallelTree != "" {
		if parallel, err = intParam("num_parallel_tree", jt.Param.NumParallelTree, MaxTrees); err != nil {
			return 0, err
		}
		parallel = max(parallel, 1)
	}
	perIteration := parallel * groups
	if best >= n/perIteration {
		return n, nil
	}
	return (best + 1) * perIteration, nil
}

func convertTree(raw json.RawMessage, numFeature int, nodeBudget *int, catFeatures map[int]bool) (tree, error) {
	var jt jsonTree
	if err := json.Unmarshal(raw, &jt); err != nil {
		return tree{}, err
	}
	if s := jt.Param.SizeLeafVector; s != "" && s != "0" && s != "1" {
		return tree{}, fmt.Errorf("vector leaves (size_leaf_vector %s, multi_strategy multi_output_tree) are not supported", s)
	}
	n := len(jt.LeftChildren)
	if n == 0 {
		return tree{}, errors.New("no nodes")
	}
	if *nodeBudget -= n; *nodeBudget < 0 {
		return tree{}, fmt.Errorf("the model has more than the %d nodes supported", MaxNodes)
	}
	if len(jt.RightChildren) != n || len(jt.SplitIndices) != n || len(jt.SplitConditions) != n || len(jt.DefaultLeft) != n ||
		(jt.SplitType != nil && len(jt.SplitType) != n) {
		return tree{}, errors.New("node arrays differ in length")
	}
	t := tree{nodes: make([]node, n)}
	if slices.Contains(jt.SplitType, 1) {
		t.cats = &categories{of: make([]int32, n)}
	}
	for i := range t.nodes {
		l, r := jt.LeftChildren[i], jt.RightChildren[i]
		if l == -1 {
			t.nodes[i] = node{feature: -1, threshold: float32(jt.SplitConditions[i])}
			continue
		}
		// Children always come after their parent in XGBoost's layout; checking it
		// here rules out cycles, so evaluation always ends at a leaf.
		if l <= int32(i) || r <= int32(i) || l >= int32(n) || r >= int32(n) {
			return tree{}, fmt.Errorf("node %d: children %d and %d out of order", i, l, r)
		}
		f := jt.SplitIndices[i]
		if f < 0 || int(f) >= numFeature {
			return tree{}, fmt.Errorf("node %d: split on feature %d of %d", i, f, numFeature)
		}
		nd := node{feature: f, threshold: float32(jt.SplitConditions[i]), left: l, right: r, missing: r}
		if jt.DefaultLeft[i] {
			nd.missing = l
		}
		if jt.SplitType != nil {
			switch jt.SplitType[i] {
			case 0:
			case 1:
				t.cats.of[i] = -1 // a categorical split; its set is given below
				catFeatures[int(f)] = true
			default:
				return tree{}, fmt.Errorf("node %d: split_type %d is not supported", i, jt.SplitType[i])
			}
		}
		if nd.threshold != nd.threshold && (t.cats == nil || t.cats.of[i] != -1) {
			// XGBoost writes NaN for a categorical split's condition only.
			return tree{}, fmt.Errorf("node %d: numerical split on NaN", i)
		}
		t.nodes[i] = nd
	}
	if err := t.readCategories(&jt); err != nil {
		return tree{}, err
	}
	return t, nil
}

// readCategories gives each categorical split of t its category set: the
// categories listed for the node in categories_nodes, or none.
func (t *tree) readCategories(jt *jsonTree) error {
	k := len(jt.CategoriesNodes)
	if len(jt.CategoriesSegments) != k || len(jt.CategoriesSizes) != k {
		return errors.New("categories_nodes, categories_segments and categories_sizes differ in length")
	}
	// XGBoost writes the nodes' category sets back to back, so the sets
	// together hold at most the categories the file lists.
	prev, next := int64(-1), int64(0)
	for j, nid := range jt.CategoriesNodes {
		if nid <= prev || nid >= int64(len(t.nodes)) {
			return fmt.Errorf("categories_nodes[%d] = %d is out of order or range", j, nid)
		}
		prev = nid
		if t.cats == nil || t.cats.of[nid] != -1 {
			return fmt.Errorf("node %d lists categories but is not a categorical split", nid)
		}
		beg, size := jt.CategoriesSegments[j], jt.CategoriesSizes[j]
		if beg < 0 || size < 0 || beg > int64(len(jt.Categories)) || size > int64(len(jt.Categories))-beg {
			return fmt.Errorf("node %d: categories segment [%d, %d+%d) outside the %d categories", nid, beg, beg, size, len(jt.Categories))
		}
		if beg != next {
			return fmt.Errorf("node %d: categories segment [%d, %d+%d) does not follow the previous node's, which ends at %d", nid, beg, beg, size, next)
		}
		next = beg + size
		set := make([]int32, size)
		for i, c := range jt.Categories[beg : beg+size] {
			if c < 0 || c >= maxCategory {
				return fmt.Errorf("node %d: category %d is out of range", nid, c)
			}
			set[i] = int32(c)
		}
		slices.Sort(set)
		t.cats.sets = append(t.cats.sets, set)
		t.cats.of[nid] = int32(len(t.cats.sets))
	}
	if t.cats == nil {
		return nil
	}
	empty := int32(0)
	for i, set := range t.cats.of {
		if set != -1 {
			continue
		}
		if empty == 0 {
			t.cats.sets = append(t.cats.sets, nil)
			empty = int32(len(t.cats.sets))
		}
		t.cats.of[i] = empty
	}
	return nil
}

func parseLinear(raw json.RawMessage, numFeature, groups int) (*linear, error) {
	if raw == nil {
		return nil, errors.New("booster gblinear has no model")
	}
	var jl jsonLinear
	if err := json.Unmarshal(raw, &jl); err != nil {
		return nil, fmt.Errorf("booster gblinear: %v", err)
	}
	if want := (numFeature + 1) * groups; len(jl.Weights) != want {
		return nil, fmt.Errorf("gblinear has %d weights, want (%d features + 1) x %d groups = %d", len(jl.Weights), numFeature, groups, want)
	}
	w := make([]float32, len(jl.Weights))
	for i, v := range jl.Weights {
		w[i] = float32(v)
	}
	return &linear{weights: w[:numFeature*groups], bias: w[numFeature*groups:]}, nil
}

// categorical lists the categorical features in column order, with their
// category names where the file's category container has them.
func categorical(features map[int]bool, cats *jsonCats, numFeature int) ([]model.CategoricalFeature, error) {
	if len(features) == 0 {
		return nil, nil
	}
	out := make([]model.CategoricalFeature, 0, len(features))
	for _, f := range slices.Sorted(maps.Keys(features)) {
		out = append(out, model.CategoricalFeature{Index: f})
	}
	if cats == nil || len(cats.Enc) == 0 {
		return out, nil
	}
	names, err := cats.names()
	if err != nil {
		return nil, err
	}
	switch len(names) {
	case numFeature: // one entry per column, empty for numerical ones
		for i := range out {
			out[i].Categories = names[out[i].Index]
		}
	case len(out): // one entry per categorical column
		for i := range out {
			out[i].Categories = names[i]
		}
	default:
		return nil, fmt.Errorf("cats lists %d columns for %d features, %d of them categorical", len(names), numFeature, len(out))
	}
	return out, nil
}

// names returns the category names of each column of the container, in code
// order.
func (c *jsonCats) names() ([][]string, error) {
	seg := c.FeatureSegments
	if len(seg) != len(c.Enc)+1 || seg[0] != 0 || !slices.IsSorted(seg) {
		return nil, fmt.Errorf("cats: feature_segments does not delimit %d columns", len(c.Enc))
	}
	out := make([][]string, len(c.Enc))
	for i, col := range c.Enc {
		want := seg[i+1] - seg[i]
		var names []string
		if col.Offsets != nil { // strings: Arrow's offsets into the bytes (int8) of values
			var values []int8
			if err := json.Unmarshal(col.Values, &values); err != nil {
				return nil, fmt.Errorf("cats: column %d: %v", i, err)
			}
			bytes := make([]byte, len(values))
			for j, v := range values {
				bytes[j] = byte(v)
			}
			off := col.Offsets
			if int64(len(off)) != want+1 && !(want == 0 && len(off) == 0) {
				return nil, fmt.Errorf("cats: column %d has %d offsets for %d categories", i, len(off), want)
			}
			for j := 1; j < len(off); j++ {
				if off[j-1] < 0 || off[j] < off[j-1] || off[j] > int64(len(bytes)) {
					return nil, fmt.Errorf("cats: column %d: offsets out of order or range", i)
				}
				names = append(names, string(bytes[off[j-1]:off[j]]))
			}
		} else {
			var values []json.Number
			if err := json.Unmarshal(col.Values, &values); err != nil {
				return nil, fmt.Errorf("cats: column %d: %v", i, err)
			}
			if int64(len(values)) != want {
				return nil, fmt.Errorf("cats: column %d has %d categories, feature_segments says %d", i, len(values), want)
			}
			for _, v := range values {
				names = append(names, v.String())
			}
		}
		out[i] = names
	}
	return out, nil
}

func fillNames(meta *model.Metadata, fileFeatures []string, numFeature int, k kind, groups int) error {
	switch {
	case len(meta.Features) > 0:
		if len(meta.Features) != numFeature {
			return fmt.Errorf("configuration names %d features, the model has %d", len(meta.Features), numFeature)
		}
	case len(fileFeatures) > 0:
		if len(fileFeatures) != numFeature {
			return fmt.Errorf("feature_names lists %d features, num_feature is %d", len(fileFeatures), numFeature)
		}
		meta.Features = fileFeatures
	default:
		meta.Features = make([]string, numFeature)
		for i := range meta.Features {
			meta.Features[i] = "f" + strconv.Itoa(i)
		}
	}
	switch k {
	case regressor:
		if len(meta.Classes) > 0 {
			return errors.New("configuration names classes for a regression model")
		}
		meta.Outputs = 1
		return nil
	case binary:
		groups = 2
	}
	if len(meta.Classes) == 0 {
		meta.Classes = make([]string, groups)
		for i := range meta.Classes {
			meta.Classes[i] = strconv.Itoa(i)
		}
	}
	if len(meta.Classes) != groups {
		return fmt.Errorf("configuration names %d classes, the model has %d", len(meta.Classes), groups)
	}
	meta.Outputs = groups
	return nil
}

func intParam(name, s string, limit int) (int, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s %q is not a count", name, s)
	}
	if n > limit {
		return 0, fmt.Errorf("%s %d is more than the %d supported", name, n, limit)
	}
	return n, nil
}

// baseMargin reads base_score, which XGBoost writes as "5E-1" before 3.1 and
// as a vector "[5E-1]" or, one value per output group, "[a,b,c]" since, and
// turns each value into a margin as the objective does. One value serves
// every group.
func baseMargin(s string, groups int, in intercept) ([]float32, error) {
	if s == "" {
		s = "0.5"
	}
	fields := strings.Split(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"), ",")
	if len(fields) != 1 && len(fields) != groups {
		return nil, fmt.Errorf("base_score %s has %d values for %d output groups", s, len(fields), groups)
	}
	out := make([]float32, groups)
	for g := range out {
		field := strings.TrimSpace(fields[min(g, len(fields)-1)])
		v, err := strconv.ParseFloat(field, 32)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("base_score %q is not a number", s)
		}
		if out[g], err = in.margin(float32(v)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// quoteNonFinite returns data with the bare NaN, Infinity and -Infinity
// tokens that XGBoost writes for non-finite floats (and that encoding/json
// refuses) turned into the strings "NaN", "Infinity" and "-Infinity", which
// number reads back. Tokens inside strings are left alone. It returns data
// itself when there is nothing to change.
func quoteNonFinite(data []byte) []byte {
	var out []byte
	last := 0 // data[:last] is already in out
	inString := false
	for i := 0; i < len(data); i++ {
		c := data[i]
		if inString {
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
			}
			continue
		}
		var token string
		switch c {
		case '"':
			inString = true
			continue
		case 'N':
			token = "NaN"
		case 'I':
			token = "Infinity"
		case '-':
			token = "-Infinity"
		default:
			continue
		}
		if !bytes.HasPrefix(data[i:], []byte(token)) {
			continue
		}
		if out == nil {
			out = make([]byte, 0, len(data)+len(data)/4)
		}
		out = append(out, data[last:i]...)
		out = append(out, '"')
		out = append(out, token...)
		out = append(out, '"')
		i += len(token) - 1
		last = i + 1
	}
	if out == nil {
		return data
	}
	return append(out, data[last:]...)
}
