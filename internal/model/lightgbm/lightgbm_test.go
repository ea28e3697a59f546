package lightgbm

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelwatch/modelwatch/internal/model"
)

// boosterCase is one case of testdata/boosters: a model.txt written by
// LightGBM 4.x with the rows and LightGBM's own predictions for them.
type boosterCase struct {
	rows [][]float64
	raw  [][]float64 // raw scores (predict(raw_score=True))
	out  [][]float64 // what predict gives by default, when the case has it
}

// readBoosterCase reads input.json (null is a missing value) and
// expected.json ("raw" and, for classifiers, "proba").
func readBoosterCase(t *testing.T, dir string) boosterCase {
	t.Helper()
	var in struct {
		Data [][]*float64 `json:"data"`
	}
	var exp struct {
		Raw   json.RawMessage `json:"raw"`
		Proba json.RawMessage `json:"proba"`
	}
	readJSON(t, filepath.Join(dir, "input.json"), &in)
	readJSON(t, filepath.Join(dir, "expected.json"), &exp)
	var c boosterCase
	for _, r := range in.Data {
		row := make([]float64, len(r))
		for j, v := range r {
			row[j] = math.NaN()
			if v != nil {
				row[j] = *v
			}
		}
		c.rows = append(c.rows, row)
	}
	c.raw = matrix(t, exp.Raw)
	if exp.Proba != nil {
		c.out = matrix(t, exp.Proba)
	}
	return c
}

// matrix reads a list of numbers (one per row) or a list of lists.
func matrix(t *testing.T, b json.RawMessage) [][]float64 {
	t.Helper()
	var m [][]float64
	if json.Unmarshal(b, &m) == nil {
		return m
	}
	m = nil
	var v []float64
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	for _, x := range v {
		m = append(m, []float64{x})
	}
	return m
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func load(t testing.TB, path string) *Model {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Parse(b, model.Metadata{Name: "m", Version: "1"})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func batch(rows [][]float64) model.Batch {
	b := model.Batch{Rows: len(rows), Cols: len(rows[0])}
	for _, r := range rows {
		b.Values = append(b.Values, r...)
	}
	return b
}

// rawOf returns the model's raw scores (after average_output's division,
// before the link function) for each row.
func rawOf(m *Model, rows [][]float64) [][]float64 {
	var out [][]float64
	for _, r := range rows {
		row := make([]float64, len(r))
		copyRow(row, r)
		raw := make([]float64, m.perIter)
		m.rawScores(row, raw)
		out = append(out, raw)
	}
	return out
}

// Tolerances of assertRows. Raw scores are sums in LightGBM's order and
// must match exactly. A link function's exp may differ from the C library's
// in the last bit: predictions must match to 4 units in the last place, and
// probabilities (1-p as well as p) to 4 units in the last place of 1.
const (
	exact = iota
	ulps
	probUlps
)

func near(got, want float64, tol int) bool {
	if got == want {
		return true
	}
	scale := math.Abs(want)
	switch tol {
	case exact:
		return false
	case probUlps:
		scale = 1
	}
	return math.Abs(got-want) <= 4*scale*0x1p-52
}

func assertRows(t *testing.T, what string, got, want [][]float64, tol int) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d rows, want %d", what, len(got), len(want))
	}
	for i := range want {
		if len(got[i]) != len(want[i]) {
			t.Fatalf("%s row %d: %d values, want %d", what, i, len(got[i]), len(want[i]))
		}
		for k := range want[i] {
			if !near(got[i][k], want[i][k], tol) {
				t.Errorf("%s row %d[%d] = %.17g, LightGBM predicts %.17g", what, i, k, got[i][k], want[i][k])
			}
		}
	}
}

func predictRows(t *testing.T, m *Model, rows [][]float64) [][]float64 {
	t.Helper()
	res, err := model.SafePredict(context.Background(), m, batch(rows))
	if err != nil {
		t.Fatal(err)
	}
	var out [][]float64
	for i := range res.Rows {
		out = append(out, append([]float64(nil), res.Row(i)...))
	}
	return out
}

// TestBoosters compares raw scores and predictions with LightGBM 4.x's own on
// every case of testdata/boosters (see testdata/README.md).
func TestBoosters(t *testing.T) {
	dirs, err := filepath.Glob("testdata/boosters/*")
	if err != nil || len(dirs) != 6 {
		t.Fatalf("want the 6 cases of testdata/boosters, found %d (%v)", len(dirs), err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			c := readBoosterCase(t, dir)
			m := load(t, filepath.Join(dir, "model.txt"))
			assertRows(t, "raw score", rawOf(m, c.rows), c.raw, exact)
			got := predictRows(t, m, c.rows)
			switch {
			case c.out == nil: // regression: the prediction is the raw score
				assertRows(t, "prediction", got, c.raw, exact)
			case len(c.out[0]) == 1: // binary: LightGBM gives P(class 1)
				var want [][]float64
				for _, p := range c.out {
					want = append(want, []float64{1 - p[0], p[0]})
				}
				assertRows(t, "probabilities", got, want, probUlps)
			default:
				assertRows(t, "probabilities", got, c.out, probUlps)
			}
		})
	}
}

func TestMetadata(t *testing.T) {
	tests := []struct {
		dir      string
		classes  []string
		outputs  int
		features int
		out      string
	}{
		{"binary_classification", []string{"0", "1"}, 2, 10, ProbabilitiesName},
		{"multiclass", []string{"0", "1", "2"}, 3, 10, ProbabilitiesName},
		{"regression", nil, 1, 10, PredictionName},
		{"linear_tree", nil, 1, 5, PredictionName},
	}
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			md := load(t, filepath.Join("testdata/boosters", tt.dir, "model.txt")).Metadata()
			if md.Type != Type || md.Name != "m" || md.Version != "1" || !md.AcceptsMissing {
				t.Errorf("metadata %+v", md)
			}
			if strings.Join(md.Classes, ",") != strings.Join(tt.classes, ",") || md.Outputs != tt.outputs {
				t.Errorf("classes %q outputs %d, want %q %d", md.Classes, md.Outputs, tt.classes, tt.outputs)
			}
			if len(md.Features) != tt.features || md.Features[0] != "Column_0" {
				t.Errorf("features %q", md.Features)
			}
			if md.PredictionOutput != tt.out || md.InputTensors[0].Name != InputName || md.InputTensors[0].Shape[1] != int64(tt.features) {
				t.Errorf("tensors %+v %+v, prediction output %q", md.InputTensors, md.OutputTensors, md.PredictionOutput)
			}
			if len(md.Categorical) != 0 {
				t.Errorf("categorical %+v in a numeric model", md.Categorical)
			}
		})
	}
}

func TestConfiguredNames(t *testing.T) {
	b, err := os.ReadFile("testdata/boosters/binary_classification/model.txt")
	if err != nil {
		t.Fatal(err)
	}
	features := []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}
	m, err := Parse(b, model.Metadata{Features: features, Classes: []string{"safe", "fraud"}})
	if err != nil {
		t.Fatal(err)
	}
	if md := m.Metadata(); strings.Join(md.Features, "") != "abcdefghij" || strings.Join(md.Classes, ",") != "safe,fraud" {
		t.Errorf("features %q classes %q", md.Features, md.Classes)
	}
	for _, tt := range []struct {
		meta model.Metadata
		want string
	}{
		{model.Metadata{Features: features[:3]}, "configuration names 3 features, the model has 10"},
		{model.Metadata{Classes: []string{"a", "b", "c"}}, "configuration names 3 classes, the model has 2"},
	} {
		if _, err := Parse(b, tt.meta); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse with %+v: %v, want %q", tt.meta, err, tt.want)
		}
	}
	r, err := os.ReadFile("testdata/boosters/regression/model.txt")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(r, model.Metadata{Classes: []string{"a", "b"}}); err == nil || !strings.Contains(err.Error(), "configuration names classes for a model with objective regression") {
		t.Errorf("regression with classes: %v", err)
	}
}

func TestPredictChecksBatchAndContext(t *testing.T) {
	m := load(t, "testdata/boosters/regression/model.txt")
	if _, err := m.Predict(context.Background(), model.Batch{Rows: 1, Cols: 3, Values: make([]float64, 3)}); err == nil {
		t.Error("a batch of 3 columns for 10 features predicted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.Predict(ctx, model.Batch{Rows: 128, Cols: 10, Values: make([]float64, 1280)}); !errors.Is(err, context.Canceled) {
		t.Errorf("Predict with a cancelled context: %v", err)
	}
}

func parseString(t testing.TB, s string) *Model {
	t.Helper()
	m, err := Parse([]byte(s), model.Metadata{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}
