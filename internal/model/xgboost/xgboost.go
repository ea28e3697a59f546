// Package xgboost evaluates XGBoost tree ensembles in pure Go from the JSON
// model format that XGBoost 1.0 and later write (Booster.save_model("*.json")).
//
// No maintained Go library reads these files: dmitryikh/leaves predates the
// JSON format and fails on files written by XGBoost >= 1.0. This package
// implements the documented schema for what a tabular server needs: the
// gbtree and dart boosters, numerical splits with default directions for
// missing values (NaN), base_score, and the binary:logistic, reg:logistic,
// multi:softprob, multi:softmax, reg:squarederror and reg:linear objectives.
// It follows XGBoost's arithmetic (float32 features, thresholds and sums) so
// its predictions match XGBoost's own; the tests compare them on files that
// XGBoost wrote.
package xgboost

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/modelwatch/modelwatch/internal/model"
)

// Type is the runtime name reported in model metadata.
const Type = "xgboost"

// File is the file name of an XGBoost model in a model version directory.
const File = "model.json"

// Tensor names of an XGBoost model in the Open Inference Protocol: one input
// of shape [rows, features]; a classifier's class probabilities and
// predicted class names, or a regressor's predictions.
const (
	InputName         = "input"
	ProbabilitiesName = "probabilities"
	LabelName         = "label"
	PredictionName    = "prediction"
)

// Runtime describes this package to a model loader.
var Runtime = model.Runtime{Type: Type, File: File, Load: func(data []byte, meta model.Metadata) (model.Model, error) {
	return Parse(data, meta)
}}

type objective int

const (
	objLogistic objective = iota // binary:logistic, reg:logistic: one sigmoid output
	objSoftmax                   // multi:softprob, multi:softmax: one probability per class
	objIdentity                  // reg:squarederror, reg:linear: the margin itself
)

var objectives = map[string]objective{
	"binary:logistic":  objLogistic,
	"reg:logistic":     objLogistic,
	"multi:softprob":   objSoftmax,
	"multi:softmax":    objSoftmax,
	"reg:squarederror": objIdentity,
	"reg:linear":       objIdentity,
}

// node is one tree node. A leaf has feature -1 and its value in threshold.
type node struct {
	threshold   float32
	feature     int32
	left, right int32
	missing     int32 // the child that a missing value goes to
}

type tree struct {
	nodes  []node
	group  int     // output group (class) the tree adds to
	weight float32 // dart's weight_drop, 1 for gbtree
}

// Model is a parsed XGBoost model. It is immutable and safe for concurrent use.
type Model struct {
	meta       model.Metadata
	trees      []tree
	groups     int
	baseMargin float32
	objective  objective
}

var _ model.Model = (*Model)(nil)

// Parse reads an XGBoost JSON model. meta supplies the name and version and,
// optionally, feature and class names; Parse checks them against the file and
// fills in the rest. Errors wrap model.ErrInvalidModel.
func Parse(data []byte, meta model.Metadata) (*Model, error) {
	m, err := parse(data, meta)
	if err != nil {
		return nil, fmt.Errorf("%w: xgboost: %v", model.ErrInvalidModel, err)
	}
	return m, nil
}

type jsonFile struct {
	Learner struct {
		FeatureNames    []string        `json:"feature_names"`
		GradientBooster json.RawMessage `json:"gradient_booster"`
		Param           struct {
			BaseScore  string `json:"base_score"`
			NumClass   string `json:"num_class"`
			NumFeature string `json:"num_feature"`
			NumTarget  string `json:"num_target"`
		} `json:"learner_model_param"`
		Objective struct {
			Name string `json:"name"`
		} `json:"objective"`
	} `json:"learner"`
	Version []int `json:"version"`
}

type jsonBooster struct {
	Name   string     `json:"name"`
	Model  *jsonTrees `json:"model"` // gbtree
	GBTree *struct {
		Model *jsonTrees `json:"model"`
	} `json:"gbtree"` // dart
	WeightDrop []float32 `json:"weight_drop"` // dart
}

type jsonTrees struct {
	TreeInfo []int      `json:"tree_info"`
	Trees    []jsonTree `json:"trees"`
}

type jsonTree struct {
	LeftChildren    []int32   `json:"left_children"`
	RightChildren   []int32   `json:"right_children"`
	SplitIndices    []int32   `json:"split_indices"`
	SplitConditions []float32 `json:"split_conditions"`
	DefaultLeft     []flag    `json:"default_left"`
	SplitType       []int     `json:"split_type"`
	Param           struct {
		NumNodes       string `json:"num_nodes"`
		SizeLeafVector string `json:"size_leaf_vector"`
	} `json:"tree_param"`
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
	var f jsonFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("not an XGBoost JSON model: %v", err)
	}
	l := &f.Learner
	if l.GradientBooster == nil {
		return nil, errors.New("not an XGBoost JSON model: no learner.gradient_booster")
	}
	obj, ok := objectives[l.Objective.Name]
	if !ok {
		return nil, fmt.Errorf("objective %q is not supported (supported: binary:logistic, reg:logistic, multi:softprob, multi:softmax, reg:squarederror, reg:linear)", l.Objective.Name)
	}
	numFeature, err := intParam("num_feature", l.Param.NumFeature)
	if err != nil {
		return nil, err
	}
	numClass, err := intParam("num_class", l.Param.NumClass)
	if err != nil {
		return nil, err
	}
	if l.Param.NumTarget != "" && l.Param.NumTarget != "1" {
		return nil, fmt.Errorf("multi-target models (num_target %s) are not supported", l.Param.NumTarget)
	}
	baseScore, err := parseBaseScore(l.Param.BaseScore)
	if err != nil {
		return nil, err
	}

	var b jsonBooster
	if err := json.Unmarshal(l.GradientBooster, &b); err != nil {
		return nil, fmt.Errorf("gradient_booster: %v", err)
	}
	var trees *jsonTrees
	switch b.Name {
	case "gbtree":
		trees = b.Model
	case "dart":
		if b.GBTree != nil {
			trees = b.GBTree.Model
		}
	default:
		return nil, fmt.Errorf("booster %q is not supported (supported: gbtree, dart)", b.Name)
	}
	if trees == nil {
		return nil, fmt.Errorf("booster %s has no trees", b.Name)
	}
	if len(trees.TreeInfo) != len(trees.Trees) {
		return nil, fmt.Errorf("tree_info lists %d trees, the model has %d", len(trees.TreeInfo), len(trees.Trees))
	}
	if b.Name == "dart" && len(b.WeightDrop) != len(trees.Trees) {
		return nil, fmt.Errorf("dart weight_drop lists %d weights for %d trees", len(b.WeightDrop), len(trees.Trees))
	}

	m := &Model{objective: obj, groups: 1}
	switch obj {
	case objSoftmax:
		if numClass < 2 {
			return nil, fmt.Errorf("objective %s with num_class %d", l.Objective.Name, numClass)
		}
		m.groups = numClass
		m.baseMargin = baseScore
	case objLogistic:
		if baseScore <= 0 || baseScore >= 1 {
			return nil, fmt.Errorf("base_score %g is not a probability", baseScore)
		}
		m.baseMargin = float32(-math.Log(1/float64(baseScore) - 1))
	case objIdentity:
		m.baseMargin = baseScore
	}

	m.trees = make([]tree, len(trees.Trees))
	for i, jt := range trees.Trees {
		t, err := convertTree(jt, numFeature)
		if err != nil {
			return nil, fmt.Errorf("tree %d: %v", i, err)
		}
		g := trees.TreeInfo[i]
		if g < 0 || g >= m.groups {
			return nil, fmt.Errorf("tree %d adds to output group %d of %d", i, g, m.groups)
		}
		m.trees[i] = tree{nodes: t, group: g, weight: 1}
		if b.Name == "dart" {
			m.trees[i].weight = b.WeightDrop[i]
		}
	}

	meta.Type = Type
	meta.AcceptsMissing = true
	if err := fillNames(&meta, l.FeatureNames, numFeature, obj, m.groups); err != nil {
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

func fillNames(meta *model.Metadata, fileFeatures []string, numFeature int, obj objective, groups int) error {
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
	switch obj {
	case objIdentity:
		if len(meta.Classes) > 0 {
			return errors.New("configuration names classes for a regression model")
		}
		meta.Outputs = 1
		return nil
	case objLogistic:
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

func convertTree(jt jsonTree, numFeature int) ([]node, error) {
	n := len(jt.LeftChildren)
	if n == 0 {
		return nil, errors.New("no nodes")
	}
	if jt.Param.SizeLeafVector != "" && jt.Param.SizeLeafVector != "0" && jt.Param.SizeLeafVector != "1" {
		return nil, fmt.Errorf("vector leaves (size_leaf_vector %s) are not supported", jt.Param.SizeLeafVector)
	}
	if len(jt.RightChildren) != n || len(jt.SplitIndices) != n || len(jt.SplitConditions) != n || len(jt.DefaultLeft) != n {
		return nil, errors.New("node arrays differ in length")
	}
	nodes := make([]node, n)
	for i := range nodes {
		l, r := jt.LeftChildren[i], jt.RightChildren[i]
		if l == -1 {
			nodes[i] = node{feature: -1, threshold: jt.SplitConditions[i]}
			continue
		}
		if i < len(jt.SplitType) && jt.SplitType[i] != 0 {
			return nil, fmt.Errorf("node %d: categorical splits are not supported", i)
		}
		// Children always come after their parent in XGBoost's layout; checking it
		// here rules out cycles, so evaluation always ends at a leaf.
		if l <= int32(i) || r <= int32(i) || l >= int32(n) || r >= int32(n) {
			return nil, fmt.Errorf("node %d: children %d and %d out of order", i, l, r)
		}
		f := jt.SplitIndices[i]
		if f < 0 || int(f) >= numFeature {
			return nil, fmt.Errorf("node %d: split on feature %d of %d", i, f, numFeature)
		}
		nd := node{feature: f, threshold: jt.SplitConditions[i], left: l, right: r, missing: r}
		if jt.DefaultLeft[i] {
			nd.missing = l
		}
		nodes[i] = nd
	}
	return nodes, nil
}

func intParam(name, s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("learner_model_param.%s %q is not a count", name, s)
	}
	return n, nil
}

// parseBaseScore reads base_score, which XGBoost 1.x writes as "5E-1" and
// 3.x as a vector "[5E-1]".
func parseBaseScore(s string) (float32, error) {
	if s == "" {
		return 0.5, nil
	}
	t := strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	if strings.Contains(t, ",") {
		return 0, fmt.Errorf("base_score %s: one value per output is not supported", s)
	}
	v, err := strconv.ParseFloat(t, 32)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("base_score %q is not a number", s)
	}
	return float32(v), nil
}

// Metadata implements model.Model.
func (m *Model) Metadata() model.Metadata { return m.meta }

// Close implements model.Model; a parsed model holds nothing to release.
func (m *Model) Close() error { return nil }

// Predict implements model.Model. A NaN value is missing and takes each
// split's default branch.
func (m *Model) Predict(ctx context.Context, in model.Batch) (model.Result, error) {
	if in.Cols != len(m.meta.Features) || len(in.Values) != in.Rows*in.Cols {
		return model.Result{}, fmt.Errorf("batch of %dx%d values for a model with %d features", in.Rows, in.Cols, len(m.meta.Features))
	}
	out := model.Result{Rows: in.Rows, Cols: m.meta.Outputs, Values: make([]float64, in.Rows*m.meta.Outputs)}
	row := make([]float32, in.Cols)
	margin := make([]float32, m.groups)
	for i := 0; i < in.Rows; i++ {
		if i&63 == 63 {
			if err := ctx.Err(); err != nil {
				return model.Result{}, err
			}
		}
		for j, v := range in.Row(i) {
			row[j] = float32(v)
		}
		m.margins(row, margin)
		m.transform(margin, out.Row(i))
	}
	return out, nil
}

// margins sums the trees' leaf values per output group, in float32 and in
// tree order as XGBoost does.
func (m *Model) margins(row []float32, margin []float32) {
	for g := range margin {
		margin[g] = m.baseMargin
	}
	for ti := range m.trees {
		t := &m.trees[ti]
		nodes := t.nodes
		i := int32(0)
		for {
			nd := &nodes[i]
			if nd.feature < 0 {
				break
			}
			v := row[nd.feature]
			switch {
			case v != v: // NaN: missing
				i = nd.missing
			case v < nd.threshold:
				i = nd.left
			default:
				i = nd.right
			}
		}
		margin[t.group] += t.weight * nodes[i].threshold
	}
}

func (m *Model) transform(margin []float32, out []float64) {
	switch m.objective {
	case objLogistic:
		p := float64(float32(1 / (1 + math.Exp(-float64(margin[0])))))
		out[0], out[1] = 1-p, p
	case objSoftmax:
		mx := margin[0]
		for _, v := range margin[1:] {
			mx = max(mx, v)
		}
		var sum float64
		for g, v := range margin {
			e := math.Exp(float64(v - mx))
			out[g] = e
			sum += e
		}
		for g := range out {
			out[g] = float64(float32(out[g] / sum))
		}
	case objIdentity:
		out[0] = float64(margin[0])
	}
}
