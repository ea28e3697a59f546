package lightgbm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/modelwatch/modelwatch/internal/model"
)

// Bounds on what a model file may declare, beyond the bound of its own size
// (every array is read from the file's tokens, so none outgrows the file).
const (
	maxClasses  = model.MaxClasses
	maxFeatures = 1_000_000
)

// Parse reads a LightGBM text model (model.txt). meta supplies the name and
// version and, optionally, feature and class names; Parse checks them against
// the file and fills in the rest. Errors wrap model.ErrInvalidModel.
func Parse(data []byte, meta model.Metadata) (*Model, error) {
	m, err := parse(data, meta)
	if err != nil {
		return nil, fmt.Errorf("%w: lightgbm: %v", model.ErrInvalidModel, err)
	}
	return m, nil
}

// lines splits a file into lines without their "\r\n" or "\n".
type lines struct {
	data []byte
	n    int // number of the line last read, from 1
}

func (l *lines) next() (string, bool) {
	if len(l.data) == 0 {
		return "", false
	}
	line := l.data
	if i := bytes.IndexByte(l.data, '\n'); i >= 0 {
		line, l.data = l.data[:i], l.data[i+1:]
	} else {
		l.data = nil
	}
	l.n++
	return string(bytes.TrimSuffix(line, []byte("\r"))), true
}

// header holds the key=value lines before the first tree.
type header map[string]string

func parse(data []byte, meta model.Metadata) (*Model, error) {
	ls := &lines{data: data}
	first, _ := ls.next()
	if strings.TrimSpace(first) != "tree" {
		return nil, errors.New(`not a LightGBM text model: the first line is not "tree"`)
	}
	h := header{}
	var line string
	var ok bool
	for {
		if line, ok = ls.next(); !ok {
			return nil, errors.New("the file ends before its first tree")
		}
		if strings.HasPrefix(line, "Tree=") || line == "end of trees" {
			break
		}
		if line == "" {
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		h[k] = v
	}

	switch v := h["version"]; v {
	case "v2", "v3", "v4":
	case "":
		return nil, errors.New("no version line: files written before LightGBM 2.0 are not supported")
	default:
		return nil, fmt.Errorf("format version %q is not supported (supported: v2, v3, v4)", v)
	}
	numClass, err := h.count("num_class", 1, maxClasses)
	if err != nil {
		return nil, err
	}
	perIter := numClass
	if _, ok := h["num_tree_per_iteration"]; ok {
		if perIter, err = h.count("num_tree_per_iteration", 1, maxClasses); err != nil {
			return nil, err
		}
	}
	maxIdx, err := h.count("max_feature_idx", 0, maxFeatures-1)
	if err != nil {
		return nil, err
	}
	numFeatures := maxIdx + 1
	obj, err := parseObjective(h["objective"])
	if err != nil {
		return nil, err
	}
	if want := obj.treesPerIteration(); want != 0 && perIter != want {
		return nil, fmt.Errorf("objective %s with num_tree_per_iteration %d, want %d", obj.name, perIter, want)
	}
	if obj.isClassifier() && obj.classes > 2 && numClass != obj.classes {
		return nil, fmt.Errorf("num_class %d differs from the objective's num_class:%d", numClass, obj.classes)
	}
	names := strings.Fields(h["feature_names"])
	if len(names) != numFeatures {
		return nil, fmt.Errorf("feature_names lists %d features, max_feature_idx %d calls for %d", len(names), maxIdx, numFeatures)
	}
	infos := strings.Fields(h["feature_infos"])
	if len(infos) != numFeatures {
		return nil, fmt.Errorf("feature_infos lists %d features, max_feature_idx %d calls for %d", len(infos), maxIdx, numFeatures)
	}

	m := &Model{perIter: perIter, objective: obj}
	_, m.average = h["average_output"]
	for strings.HasPrefix(line, "Tree=") {
		t, err := parseTree(ls, numFeatures)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", line, err)
		}
		m.trees = append(m.trees, t)
		// A tree ends at a blank line; more may separate trees. The trees end
		// at "end of trees" or at any line that does not start a tree.
		for line, ok = "", true; ok && line == ""; {
			line, ok = ls.next()
		}
	}
	if sizes, ok := h["tree_sizes"]; ok && len(strings.Fields(sizes)) != len(m.trees) {
		return nil, fmt.Errorf("tree_sizes lists %d trees, the file holds %d", len(strings.Fields(sizes)), len(m.trees))
	}
	if len(m.trees)%perIter != 0 {
		return nil, fmt.Errorf("%d trees are not a whole number of iterations of %d trees", len(m.trees), perIter)
	}
	m.iters = len(m.trees) / perIter
	if m.average && m.iters == 0 {
		return nil, errors.New("average_output with no trees")
	}

	cats, err := categoricalFeatures(infos, m.trees, lastLine(data))
	if err != nil {
		return nil, err
	}
	meta.Type = Type
	meta.AcceptsMissing = true
	meta.Categorical = cats
	meta.UnknownCategoryIsMissing = true
	if err := fillNames(&meta, names, obj, perIter); err != nil {
		return nil, err
	}
	meta.InputTensors = []model.TensorSpec{{Name: InputName, DataType: model.FP64, Shape: []int64{-1, int64(numFeatures)}}}
	if meta.IsClassifier() {
		meta.PredictionOutput = ProbabilitiesName
		meta.OutputTensors = []model.TensorSpec{
			{Name: ProbabilitiesName, DataType: model.FP64, Shape: []int64{-1, int64(meta.Outputs)}},
			{Name: LabelName, DataType: model.BYTES, Shape: []int64{-1}},
		}
	} else {
		meta.PredictionOutput = PredictionName
		meta.OutputTensors = []model.TensorSpec{{Name: PredictionName, DataType: model.FP64, Shape: []int64{-1, int64(meta.Outputs)}}}
	}
	m.meta = meta
	return m, nil
}

// count reads a whole-number header value in [lo, hi].
func (h header) count(key string, lo, hi int) (int, error) { return intValue(h, key, lo, hi) }

func fillNames(meta *model.Metadata, fileFeatures []string, obj objective, outputs int) error {
	switch {
	case len(meta.Features) > 0:
		if len(meta.Features) != len(fileFeatures) {
			return fmt.Errorf("configuration names %d features, the model has %d", len(meta.Features), len(fileFeatures))
		}
	default:
		meta.Features = fileFeatures
	}
	if !obj.isClassifier() {
		if len(meta.Classes) > 0 {
			return fmt.Errorf("configuration names classes for a model with objective %s", obj.name)
		}
		meta.Outputs = outputs
		return nil
	}
	if len(meta.Classes) == 0 {
		meta.Classes = make([]string, obj.classes)
		for i := range meta.Classes {
			meta.Classes[i] = strconv.Itoa(i)
		}
	}
	if len(meta.Classes) != obj.classes {
		return fmt.Errorf("configuration names %d classes, the model has %d", len(meta.Classes), obj.classes)
	}
	meta.Outputs = obj.classes
	return nil
}

// lastLine returns the last line of data that is not blank.
func lastLine(data []byte) string {
	data = bytes.TrimRight(data, " \t\r\n")
	if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
		data = data[i+1:]
	}
	return string(bytes.TrimSpace(data))
}

// categoricalFeatures lists the categorical features: those whose
// feature_infos entry lists categories (numerical ones read "[min:max]",
// unused ones "none") and those a categorical split uses. It names their
// categories from the "pandas_categorical:" trailer the Python package
// writes, which holds one list per categorical column of the training
// DataFrame, in column order.
func categoricalFeatures(infos []string, trees []tree, last string) ([]model.CategoricalFeature, error) {
	isCat := make([]bool, len(infos))
	for i, s := range infos {
		isCat[i] = s != "none" && !strings.HasPrefix(s, "[")
	}
	for ti := range trees {
		for _, n := range trees[ti].nodes {
			if n.categorical {
				isCat[n.feature] = true
			}
		}
	}
	var cats []model.CategoricalFeature
	for i, c := range isCat {
		if c {
			cats = append(cats, model.CategoricalFeature{Index: i})
		}
	}
	names, err := pandasCategorical(last)
	if err != nil {
		return nil, err
	}
	// Only a one-to-one match says which list names which feature: a
	// DataFrame category column left out of categorical_feature, or a
	// categorical feature given as integer codes, breaks it, and then the
	// features take codes only.
	if len(names) == len(cats) {
		for i := range cats {
			cats[i].Categories = names[i]
		}
	}
	return cats, nil
}

// pandasCategorical reads the category names of a "pandas_categorical:"
// line: null, or a JSON list of lists. A category that is not a string is
// named by its JSON text (1, 2.5, true), as the list holds it.
func pandasCategorical(line string) ([][]string, error) {
	const key = "pandas_categorical:"
	if !strings.HasPrefix(line, key) {
		return nil, nil
	}
	var lists []json.RawMessage
	if err := json.Unmarshal([]byte(line[len(key):]), &lists); err != nil {
		return nil, fmt.Errorf("pandas_categorical: %v", err)
	}
	out := make([][]string, len(lists))
	for i, l := range lists {
		var items []json.RawMessage
		if err := json.Unmarshal(l, &items); err != nil {
			return nil, fmt.Errorf("pandas_categorical list %d: %v", i, err)
		}
		names := make([]string, len(items))
		for j, it := range items {
			var s string
			if json.Unmarshal(it, &s) == nil {
				names[j] = s
			} else {
				names[j] = string(bytes.TrimSpace(it))
			}
		}
		out[i] = names
	}
	return out, nil
}

// parseTree reads the key=value lines of one tree, up to a blank line or the
// end of the file, and checks that they make a tree every row can walk from
// its root to a leaf.
func parseTree(ls *lines, numFeatures int) (tree, error) {
	kv := map[string]string{}
	for {
		line, ok := ls.next()
		if !ok || line == "" {
			break
		}
		k, v, found := strings.Cut(line, "=")
		if !found {
			return tree{}, fmt.Errorf("line %d is not key=value", ls.n)
		}
		kv[k] = v
	}
	leaves, err := intValue(kv, "num_leaves", 1, math.MaxInt32)
	if err != nil {
		return tree{}, err
	}
	numCat, err := intValue(kv, "num_cat", 0, leaves-1)
	if err != nil {
		return tree{}, err
	}
	var t tree
	if t.leaves, err = floats(kv, "leaf_value", leaves, true); err != nil {
		return tree{}, err
	}
	if kv["is_linear"] != "" && kv["is_linear"] != "0" {
		if kv["is_linear"] != "1" {
			return tree{}, fmt.Errorf("is_linear=%s is not 0 or 1", kv["is_linear"])
		}
		if t.linear, err = linearLeaves(kv, leaves, numFeatures); err != nil {
			return tree{}, err
		}
	}
	if leaves == 1 {
		return t, nil
	}
	n := leaves - 1
	left, err := ints(kv, "left_child", n)
	if err != nil {
		return tree{}, err
	}
	right, err := ints(kv, "right_child", n)
	if err != nil {
		return tree{}, err
	}
	feature, err := ints(kv, "split_feature", n)
	if err != nil {
		return tree{}, err
	}
	threshold, err := floats(kv, "threshold", n, false)
	if err != nil {
		return tree{}, err
	}
	decision := make([]int, n)
	if _, ok := kv["decision_type"]; ok {
		if decision, err = ints(kv, "decision_type", n); err != nil {
			return tree{}, err
		}
	}
	var bounds, bits []int
	if numCat > 0 {
		if bounds, err = ints(kv, "cat_boundaries", numCat+1); err != nil {
			return tree{}, err
		}
		if bounds[0] != 0 || !slices.IsSorted(bounds) || bounds[numCat] > math.MaxInt32 {
			return tree{}, errors.New("cat_boundaries do not rise from 0 to a 32-bit count")
		}
		if bits, err = ints(kv, "cat_threshold", bounds[numCat]); err != nil {
			return tree{}, err
		}
	}
	t.bits = make([]uint32, len(bits))
	for i, w := range bits {
		if w < 0 || w > math.MaxUint32 {
			return tree{}, fmt.Errorf("cat_threshold word %d is not a 32-bit bitset", w)
		}
		t.bits[i] = uint32(w)
	}
	t.nodes = make([]node, n)
	for i := range t.nodes {
		d := decision[i]
		if d < 0 || d > 15 {
			return tree{}, fmt.Errorf("node %d: decision_type %d is not supported", i, d)
		}
		f := feature[i]
		if f < 0 || f >= numFeatures {
			return tree{}, fmt.Errorf("node %d splits on feature %d of %d", i, f, numFeatures)
		}
		nd := node{
			threshold:   threshold[i],
			left:        int32(left[i]),
			right:       int32(right[i]),
			feature:     int32(f),
			categorical: d&categoricalMask != 0,
			defaultLeft: d&defaultLeftMask != 0,
			missing:     uint8(d>>2) & 3,
		}
		if nd.missing == 3 {
			return tree{}, fmt.Errorf("node %d: missing type 3 in decision_type %d is not supported", i, d)
		}
		if nd.categorical {
			c := nd.threshold
			if c != math.Trunc(c) || c < 0 || c >= float64(numCat) {
				return tree{}, fmt.Errorf("node %d: categorical threshold %g is not a category set of %d", i, c, numCat)
			}
			nd.catStart, nd.catLen = int32(bounds[int(c)]), int32(bounds[int(c)+1]-bounds[int(c)])
		} else if math.IsNaN(nd.threshold) {
			return tree{}, fmt.Errorf("node %d: threshold is NaN", i)
		}
		t.nodes[i] = nd
	}
	if err := checkShape(left, right, leaves); err != nil {
		return tree{}, err
	}
	return t, nil
}

// checkShape checks that the children form one tree rooted at node 0 that
// reaches every node and every leaf exactly once, so a walk always ends.
func checkShape(left, right []int, leaves int) error {
	n := len(left)
	seenNode := make([]bool, n)
	seenLeaf := make([]bool, leaves)
	seenNode[0] = true
	visit := func(c int) error {
		switch {
		case c >= n || c < -leaves:
			return fmt.Errorf("child %d is out of range", c)
		case c == 0:
			return errors.New("a node points back at the root")
		case c > 0:
			if seenNode[c] {
				return fmt.Errorf("node %d has two parents", c)
			}
			seenNode[c] = true
		default:
			if seenLeaf[^c] {
				return fmt.Errorf("leaf %d has two parents", ^c)
			}
			seenLeaf[^c] = true
		}
		return nil
	}
	for i := range n {
		if err := visit(left[i]); err != nil {
			return fmt.Errorf("node %d: %v", i, err)
		}
		if err := visit(right[i]); err != nil {
			return fmt.Errorf("node %d: %v", i, err)
		}
	}
	// n nodes and n+1 leaves with one parent each but the root: n-1+n+1
	// edges of a graph with 2n+1 vertices, so it is a tree when every vertex
	// is reached; with each seen once there is no cycle through the root, and
	// a cycle elsewhere would leave a node unreached from it.
	reached := 0
	stack := []int{0}
	for len(stack) > 0 {
		i := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		reached++
		if reached > n {
			return errors.New("the nodes form a cycle")
		}
		for _, c := range [2]int{left[i], right[i]} {
			if c > 0 {
				stack = append(stack, c)
			}
		}
	}
	if reached != n {
		return fmt.Errorf("%d of %d nodes are unreachable from the root", n-reached, n)
	}
	return nil
}

// linearLeaves reads the leaf models of a linear tree.
func linearLeaves(kv map[string]string, leaves, numFeatures int) ([]leafModel, error) {
	consts, err := floats(kv, "leaf_const", leaves, true)
	if err != nil {
		return nil, err
	}
	counts, err := ints(kv, "num_features", leaves)
	if err != nil {
		return nil, err
	}
	total := 0
	for _, c := range counts {
		if c < 0 || c > numFeatures {
			return nil, fmt.Errorf("num_features %d is not a feature count", c)
		}
		total += c
	}
	feats, err := intsN(kv, "leaf_features", total)
	if err != nil {
		return nil, err
	}
	coeffs, err := floatsN(kv, "leaf_coeff", total, true)
	if err != nil {
		return nil, err
	}
	out := make([]leafModel, leaves)
	off := 0
	for i, c := range counts {
		lm := leafModel{constant: consts[i], features: make([]int32, c), coeffs: coeffs[off : off+c]}
		for j, f := range feats[off : off+c] {
			if f < 0 || f >= numFeatures {
				return nil, fmt.Errorf("leaf %d's linear model uses feature %d of %d", i, f, numFeatures)
			}
			lm.features[j] = int32(f)
		}
		out[i] = lm
		off += c
	}
	return out, nil
}

// intValue reads the whole number of a required line in [lo, hi].
func intValue(kv map[string]string, key string, lo, hi int) (int, error) {
	v, ok := kv[key]
	if !ok {
		return 0, fmt.Errorf("no %s line", key)
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%s=%s is not a whole number from %d to %d", key, v, lo, hi)
	}
	return n, nil
}

// ints reads the n whole numbers of a required line.
func ints(kv map[string]string, key string, n int) ([]int, error) {
	if _, ok := kv[key]; !ok {
		return nil, fmt.Errorf("no %s line", key)
	}
	return intsN(kv, key, n)
}

// intsN reads the n whole numbers of a line; an absent line is empty.
func intsN(kv map[string]string, key string, n int) ([]int, error) {
	f := strings.Fields(kv[key])
	if len(f) != n {
		return nil, fmt.Errorf("%s holds %d values, want %d", key, len(f), n)
	}
	out := make([]int, n)
	for i, s := range f {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not a whole number", key, s)
		}
		out[i] = int(v)
	}
	return out, nil
}

// floats reads the n numbers of a required line; finite demands finite
// values.
func floats(kv map[string]string, key string, n int, finite bool) ([]float64, error) {
	if _, ok := kv[key]; !ok {
		return nil, fmt.Errorf("no %s line", key)
	}
	return floatsN(kv, key, n, finite)
}

func floatsN(kv map[string]string, key string, n int, finite bool) ([]float64, error) {
	f := strings.Fields(kv[key])
	if len(f) != n {
		return nil, fmt.Errorf("%s holds %d values, want %d", key, len(f), n)
	}
	out := make([]float64, n)
	for i, s := range f {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return nil, fmt.Errorf("%s: %q is not a number", key, s)
		}
		if finite && (math.IsNaN(v) || math.IsInf(v, 0)) {
			return nil, fmt.Errorf("%s: %q is not a finite number", key, s)
		}
		out[i] = v
	}
	return out, nil
}
