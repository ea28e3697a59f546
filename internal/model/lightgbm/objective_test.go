package lightgbm

import (
	"math"
	"os"
	"strings"
	"testing"
)

// TestObjectives derives a model for each objective from a LightGBM 4.x file
// by changing its objective line, and expects the objective's link function
// (as src/objective/*.hpp ConvertOutput defines it, worked out here with
// math) applied to LightGBM's own raw scores for the original file.
func TestObjectives(t *testing.T) {
	type linkFunc func(raw []float64) []float64
	one := func(f func(float64) float64) linkFunc {
		return func(r []float64) []float64 { return []float64{f(r[0])} }
	}
	identity := one(func(x float64) float64 { return x })
	sigmoid := func(s float64) func(float64) float64 {
		return func(x float64) float64 { return 1 / (1 + math.Exp(-s*x)) }
	}
	binary := func(s float64) linkFunc {
		return func(r []float64) []float64 { p := sigmoid(s)(r[0]); return []float64{1 - p, p} }
	}
	tests := []struct {
		fixture, from, to string
		link              linkFunc
		tol               int
	}{
		{"regression", "regression", "regression_l1", identity, exact},
		{"regression", "regression", "huber", identity, exact},
		{"regression", "regression", "fair", identity, exact},
		{"regression", "regression", "quantile", identity, exact},
		{"regression", "regression", "mape", identity, exact},
		{"regression", "regression", "lambdarank", identity, exact},
		{"regression", "regression", "rank_xendcg", identity, exact},
		{"regression", "regression", "regression sqrt", one(func(x float64) float64 { return math.Copysign(x*x, x) }), exact},
		{"regression", "regression", "huber sqrt", one(func(x float64) float64 { return math.Copysign(x*x, x) }), exact},
		{"regression", "regression", "poisson", one(math.Exp), ulps},
		{"regression", "regression", "tweedie", one(math.Exp), ulps},
		{"small_tree", "regression", "cross_entropy", one(sigmoid(1)), probUlps},
		{"small_tree", "regression", "xentropy", one(sigmoid(1)), probUlps},
		{"small_tree", "regression", "xentlambda", one(func(x float64) float64 { return math.Log(1 + math.Exp(x)) }), ulps},
		// LightGBM writes log(1+exp(x)), not log1p.
		{"small_tree", "regression", "cross_entropy_lambda", one(func(x float64) float64 { return math.Log(1 + math.Exp(x)) }), ulps},
		{"binary_classification", "binary sigmoid:1", "binary sigmoid:0.5", binary(0.5), probUlps},
		{"binary_classification", "binary sigmoid:1", "cross_entropy", one(sigmoid(1)), probUlps},
		{"multiclass", "multiclass num_class:3", "multiclassova num_class:3 sigmoid:2", func(r []float64) []float64 {
			out := make([]float64, len(r))
			for k, x := range r {
				out[k] = sigmoid(2)(x)
			}
			return out
		}, probUlps},
		{"multiclass", "multiclass num_class:3", "", func(r []float64) []float64 { return r }, exact},
	}
	for _, tt := range tests {
		t.Run(tt.fixture+"/"+tt.to, func(t *testing.T) {
			dir := "testdata/boosters/" + tt.fixture
			b, err := os.ReadFile(dir + "/model.txt")
			if err != nil {
				t.Fatal(err)
			}
			line := "objective=" + tt.to + "\n"
			if tt.to == "" { // a custom objective: no objective line
				line = ""
			}
			src := strings.Replace(string(b), "objective="+tt.from+"\n", line, 1)
			if src == string(b) {
				t.Fatal("objective line not found")
			}
			m := parseString(t, src)
			c := readBoosterCase(t, dir)
			var want [][]float64
			for _, r := range c.raw {
				want = append(want, tt.link(r))
			}
			assertRows(t, "prediction", predictRows(t, m, c.rows), want, tt.tol)
			md := m.Metadata()
			if md.Outputs != len(want[0]) || md.IsClassifier() != (strings.HasPrefix(tt.to, "binary") || strings.HasPrefix(tt.to, "multiclass")) {
				t.Errorf("outputs %d, classes %q", md.Outputs, md.Classes)
			}
		})
	}
}

// TestCrossEntropyLambdaLargeScore checks log(1+exp(x)) past exp's range:
// LightGBM's double arithmetic gives +Inf there, and so does this package.
func TestCrossEntropyLambdaLargeScore(t *testing.T) {
	out := make([]float64, 1)
	objective{link: linkLog1pExp}.convert([]float64{800}, out)
	if !math.IsInf(out[0], 1) {
		t.Errorf("log(1+exp(800)) = %g", out[0])
	}
}
