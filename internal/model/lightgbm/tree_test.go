package lightgbm

import (
	"errors"
	"math"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/modelwatch/modelwatch/internal/model"
)

// catModel is a small model in the layout LightGBM 4.x writes: the root
// splits the categorical feature "color" on the category set {0, 2, 40}
// (cat_threshold words 5 = bits 0 and 2, and 256 = bit 8 of the second word,
// category 32+8), left to leaf 0 (10); otherwise "size" <= 5.5 goes to leaf
// 1 (20) and the rest to leaf 2 (30).
const catModel = `tree
version=v4
num_class=1
num_tree_per_iteration=1
label_index=0
max_feature_idx=1
objective=regression
feature_names=color size
feature_infos=0:1:2:40 [0:10]
tree_sizes=300

Tree=0
num_leaves=3
num_cat=1
split_feature=0 1
split_gain=1 1
threshold=0 5.5
decision_type=1 2
left_child=-1 -2
right_child=1 -3
leaf_value=10 20 30
leaf_weight=1 1 1
leaf_count=1 1 1
internal_value=0 0
internal_weight=0 0
internal_count=3 2
cat_boundaries=0 2
cat_threshold=5 256
is_linear=0
shrinkage=1


end of trees

feature_importances:
color=1
size=1

parameters:
[boosting: gbdt]
end of parameters

pandas_categorical:[["red", "green", "blue"]]
`

// TestCategoricalDecision follows Tree::CategoricalDecision: NaN and negative
// categories go right; a value is truncated to an integer (so -0.5 is
// category 0 and 2.7 is category 2); a category past the bitset goes right.
func TestCategoricalDecision(t *testing.T) {
	m := parseString(t, catModel)
	nan := math.NaN()
	tests := []struct {
		color, size float64
		want        float64
	}{
		{0, 3, 10}, {2, 3, 10}, {40, 3, 10},
		{1, 3, 20}, {1, 8, 30}, {3, 3, 20}, {41, 3, 20}, {64, 3, 20}, {1e10, 3, 20},
		{nan, 3, 20}, {-1, 3, 20}, {-3, 8, 30},
		{-0.5, 3, 10}, {2.7, 3, 10}, {39.9, 3, 20},
	}
	var rows [][]float64
	for _, tt := range tests {
		rows = append(rows, []float64{tt.color, tt.size})
	}
	got := predictRows(t, m, rows)
	for i, tt := range tests {
		if got[i][0] != tt.want {
			t.Errorf("color %g size %g: %g, want %g", tt.color, tt.size, got[i][0], tt.want)
		}
	}
}

func TestPandasCategorical(t *testing.T) {
	tests := []struct {
		trailer string
		want    []string
	}{
		{`pandas_categorical:[["red", "green", "blue"]]`, []string{"red", "green", "blue"}},
		{`pandas_categorical:[[1, 2.5, true]]`, []string{"1", "2.5", "true"}},
		// Two lists for one categorical feature: which is whose is unknown.
		{`pandas_categorical:[["a"], ["b"]]`, nil},
		{`pandas_categorical:null`, nil},
		{`pandas_categorical:[]`, nil},
		{``, nil},
	}
	for _, tt := range tests {
		t.Run(tt.trailer, func(t *testing.T) {
			src := strings.Replace(catModel, `pandas_categorical:[["red", "green", "blue"]]`, tt.trailer, 1)
			md := parseString(t, src).Metadata()
			want := []model.CategoricalFeature{{Index: 0, Categories: tt.want}}
			if !reflect.DeepEqual(md.Categorical, want) {
				t.Errorf("categorical %+v, want %+v", md.Categorical, want)
			}
		})
	}
}

// TestZeroAsMissing derives a zero_as_missing model from LightGBM 4.x's
// regression_missing case by turning its splits' missing type from NaN
// (decision_type 8 and 10) into Zero (4 and 6), keeping default directions.
// Under missing type Zero a NaN counts as 0 and 0 is missing, so NaN, 0 and
// values within kZeroThreshold of 0 all take the default direction that NaN
// took: the predictions are LightGBM's for the original file.
func TestZeroAsMissing(t *testing.T) {
	b, err := os.ReadFile("testdata/boosters/regression_missing/model.txt")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "decision_type="); ok {
			r := strings.NewReplacer("10", "6", "8", "4")
			line = "decision_type=" + r.Replace(v)
		}
		out = append(out, line)
	}
	m := parseString(t, strings.Join(out, "\n"))
	c := readBoosterCase(t, "testdata/boosters/regression_missing")
	for _, zero := range []float64{math.NaN(), 0, math.Copysign(0, -1), 1e-36, -1e-35} {
		var rows [][]float64
		for _, r := range c.rows {
			row := append([]float64(nil), r...)
			for j, v := range row {
				if math.IsNaN(v) {
					row[j] = zero
				}
			}
			rows = append(rows, row)
		}
		assertRows(t, "prediction", predictRows(t, m, rows), c.raw, exact)
	}
}

// TestMissingTypeNone: a split with missing type None treats NaN as 0
// (regression's splits are decision_type 2), so a row with NaN predicts
// what the row with 0 there does.
func TestMissingTypeNone(t *testing.T) {
	m := load(t, "testdata/boosters/regression/model.txt")
	c := readBoosterCase(t, "testdata/boosters/regression")
	for j := range c.rows[0] {
		withNaN := append([]float64(nil), c.rows[0]...)
		withZero := append([]float64(nil), c.rows[0]...)
		withNaN[j], withZero[j] = math.NaN(), 0
		got := predictRows(t, m, [][]float64{withNaN, withZero})
		if got[0][0] != got[1][0] {
			t.Errorf("feature %d: NaN predicts %g, 0 predicts %g", j, got[0][0], got[1][0])
		}
	}
}

// TestLinearLeafNaN: a linear leaf whose features include a NaN answers its
// leaf_value (Tree::Predict). With every feature NaN, the linear model must
// predict what the same trees without leaf models (is_linear=0) predict.
func TestLinearLeafNaN(t *testing.T) {
	b, err := os.ReadFile("testdata/boosters/linear_tree/model.txt")
	if err != nil {
		t.Fatal(err)
	}
	linear := parseString(t, string(b))
	constant := parseString(t, strings.ReplaceAll(string(b), "is_linear=1\n", "is_linear=0\n"))
	nan := math.NaN()
	rows := [][]float64{{nan, nan, nan, nan, nan}}
	a, c := predictRows(t, linear, rows), predictRows(t, constant, rows)
	if a[0][0] != c[0][0] {
		t.Errorf("linear model on NaN %g, constant leaves %g", a[0][0], c[0][0])
	}
	full := predictRows(t, linear, [][]float64{{0.5, 0.5, 0.5, 0.5, 0.5}})
	if full[0][0] == predictRows(t, constant, [][]float64{{0.5, 0.5, 0.5, 0.5, 0.5}})[0][0] {
		t.Error("the leaf models change nothing on a full row")
	}
}

// TestRefused checks the error, naming what is wrong, of each file this
// package refuses, derived from catModel by one change.
func TestRefused(t *testing.T) {
	tests := []struct {
		name, old, new, want string
	}{
		{"not a model", "tree\nversion", "{\"learner\"\nversion", `not a LightGBM text model: the first line is not "tree"`},
		{"no version", "version=v4\n", "", "no version line: files written before LightGBM 2.0 are not supported"},
		{"future version", "version=v4", "version=v5", `format version "v5" is not supported (supported: v2, v3, v4)`},
		{"objective", "objective=regression", "objective=custom_loss", `objective "custom_loss" is not supported (supported: binary, multiclass`},
		{"objective parameter", "objective=regression", "objective=regression alpha:0.5", `objective regression: parameter "alpha" is not supported`},
		{"no sigmoid", "objective=regression", "objective=binary", "objective binary has no sigmoid parameter"},
		{"bad sigmoid", "objective=regression", "objective=binary sigmoid:-1", "objective binary: sigmoid -1 is not positive"},
		{"multiclass of 1", "objective=regression", "objective=multiclass num_class:1", "objective multiclass: num_class 1 is not a whole number from 2 to 10000"},
		{"trees per iteration", "objective=regression", "objective=multiclass num_class:3", "objective multiclass with num_tree_per_iteration 1, want 3"},
		{"num_class", "num_class=1", "num_class=0", "num_class=0 is not a whole number from 1 to 10000"},
		{"feature names", "feature_names=color size", "feature_names=color", "feature_names lists 1 features, max_feature_idx 1 calls for 2"},
		{"feature infos", "feature_infos=0:1:2:40 [0:10]", "feature_infos=[0:10]", "feature_infos lists 1 features, max_feature_idx 1 calls for 2"},
		{"tree_sizes", "tree_sizes=300", "tree_sizes=300 300", "tree_sizes lists 2 trees, the file holds 1"},
		{"no trees", "Tree=0", "end of trees\nTree=0", "tree_sizes lists 1 trees, the file holds 0"},
		{"num_leaves", "num_leaves=3", "num_leaves=-3", "Tree=0: num_leaves=-3 is not a whole number from 1 to 2147483647"},
		{"no num_cat", "num_cat=1\n", "", "Tree=0: no num_cat line"},
		{"leaf count", "leaf_value=10 20 30", "leaf_value=10 20", "Tree=0: leaf_value holds 2 values, want 3"},
		{"leaf NaN", "leaf_value=10 20 30", "leaf_value=10 nan 30", `Tree=0: leaf_value: "nan" is not a finite number`},
		{"threshold NaN", "threshold=0 5.5", "threshold=0 NaN", "Tree=0: node 1: threshold is NaN"},
		{"feature range", "split_feature=0 1", "split_feature=0 2", "Tree=0: node 1 splits on feature 2 of 2"},
		{"missing type 3", "decision_type=1 2", "decision_type=1 14", "Tree=0: node 1: missing type 3 in decision_type 14 is not supported"},
		{"decision type", "decision_type=1 2", "decision_type=1 64", "Tree=0: node 1: decision_type 64 is not supported"},
		{"cycle", "left_child=-1 -2", "left_child=-1 1", "Tree=0: node 1: node 1 has two parents"},
		{"root child", "left_child=-1 -2", "left_child=-1 0", "Tree=0: node 1: a node points back at the root"},
		{"shared leaf", "right_child=1 -3", "right_child=1 -1", "Tree=0: node 1: leaf 0 has two parents"},
		{"child range", "right_child=1 -3", "right_child=1 -4", "Tree=0: node 1: child -4 is out of range"},
		{"category set", "threshold=0 5.5", "threshold=1 5.5", "Tree=0: node 0: categorical threshold 1 is not a category set of 1"},
		{"cat_boundaries", "cat_boundaries=0 2", "cat_boundaries=1 2", "Tree=0: cat_boundaries do not rise from 0 to a 32-bit count"},
		{"cat_threshold", "cat_threshold=5 256", "cat_threshold=5", "Tree=0: cat_threshold holds 1 values, want 2"},
		{"bitset word", "cat_threshold=5 256", "cat_threshold=5 4294967296", "Tree=0: cat_threshold word 4294967296 is not a 32-bit bitset"},
		{"is_linear", "is_linear=0", "is_linear=2", "Tree=0: is_linear=2 is not 0 or 1"},
		{"linear leaves", "is_linear=0", "is_linear=1\nleaf_const=1 2 3\nnum_features=1 0 0\nleaf_features=7\nleaf_coeff=0.5", "Tree=0: leaf 0's linear model uses feature 7 of 2"},
		{"linear counts", "is_linear=0", "is_linear=1\nleaf_const=1 2 3\nnum_features=2 0 0\nleaf_features=0\nleaf_coeff=0.5", "Tree=0: leaf_features holds 1 values, want 2"},
		{"pandas_categorical", `[["red", "green", "blue"]]`, `{"red": 1}`, "pandas_categorical: json: cannot unmarshal object"},
		{"average of nothing", "tree_sizes=300\n\nTree=0", "average_output\n\nend of trees\nTree=0", "average_output with no trees"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := strings.Replace(catModel, tt.old, tt.new, 1)
			if src == catModel {
				t.Fatalf("%q is not in the model", tt.old)
			}
			_, err := Parse([]byte(src), model.Metadata{})
			if !errors.Is(err, model.ErrInvalidModel) || !strings.Contains(err.Error(), "lightgbm: "+tt.want) {
				t.Errorf("error %v, want one wrapping ErrInvalidModel with %q", err, tt.want)
			}
		})
	}
}
