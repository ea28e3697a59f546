package main

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
)

const (
	xgbData  = "../../internal/model/xgboost/testdata/"
	lgbmData = "../../internal/model/lightgbm/testdata/"
	onnxData = "../../internal/model/onnx/testdata/"
)

// TestModelFormatsOverTCP drops the files the libraries write into a
// repository and checks, through the real binary, that /predict and the Open
// Inference Protocol answer what the library itself predicted: XGBoost 3.1.1
// JSON, XGBoost UBJSON (as model.ubj and under the name model.json),
// LightGBM text, a skl2onnx classifier with a ZipMap, and category names.
func TestModelFormatsOverTCP(t *testing.T) {
	lib := onnxLibrary(t)
	dir := t.TempDir()
	copyFile(t, xgbData+"boosters/gbtree_multiclass.model.json", dir+"/xgb_multi/1/model.json")
	copyFile(t, xgbData+"linear_multiclass.ubj", dir+"/xgb_ubj/1/model.ubj")
	copyFile(t, xgbData+"categorical.ubj", dir+"/xgb_ubj_named_json/1/model.json")
	copyFile(t, lgbmData+"boosters/multiclass/model.txt", dir+"/lgbm_multi/1/model.txt")
	copyFile(t, lgbmData+"boosters/regression/model.txt", dir+"/lgbm_reg/1/model.txt")
	copyFile(t, onnxData+"sklearn_logreg_multi_str.onnx", dir+"/sk_multi/1/model.onnx")
	writeFile(t, dir+"/xgb_cat/1/model.json", string(withCategoryNames(t, xgbData+"boosters/gbtree_categorical.model.json")))
	writeFile(t, dir+"/lgbm_cat/1/model.txt", lightgbmColours)
	p := start(t, 1, "--model-repository", dir, "--onnxruntime-library", lib, "--embedded-model=false", "--default-model", "xgb_multi",
		"--repository-poll-interval", "100ms")
	// A multi-target model is refused at load with the feature named.
	writeFile(t, dir+"/xgb_multitarget/1/model.json", strings.Replace(mustRead(t, xgbData+"boosters/gbtree_regression.model.json"), `"num_target":"1"`, `"num_target":"2"`, 1))
	p.waitLog(t, "multi-target models (num_target 2) are not supported")

	t.Run("xgboost 3.1.1 multiclass, per-class intercepts", func(t *testing.T) {
		rows, want := boostersCase(t, xgbData+"boosters/gbtree_multiclass")
		checkProbabilities(t, p, "xgb_multi", rows, want, 1e-6)
	})
	t.Run("xgboost UBJSON as model.ubj", func(t *testing.T) {
		rows, want := csvCase(t, xgbData+"linear_multiclass.csv")
		checkProbabilities(t, p, "xgb_ubj", rows, want, 1e-6)
	})
	t.Run("xgboost UBJSON bytes named model.json", func(t *testing.T) {
		rows, want := csvCase(t, xgbData+"categorical.csv")
		checkValues(t, p, "xgb_ubj_named_json", rows, want, 1e-6)
	})
	t.Run("lightgbm multiclass", func(t *testing.T) {
		rows, want := lightgbmCase(t, lgbmData+"boosters/multiclass")
		checkProbabilities(t, p, "lgbm_multi", rows, want, 1e-12)
	})
	t.Run("lightgbm regression on v2, FP64", func(t *testing.T) {
		rows, want := lightgbmCase(t, lgbmData+"boosters/regression")
		var flat []float64
		for _, r := range rows {
			flat = append(flat, r...)
		}
		body, _ := json.Marshal(map[string]any{"inputs": []map[string]any{{"name": "input", "datatype": "FP64", "shape": []int{len(rows), len(rows[0])}, "data": flat}}})
		var out struct {
			Outputs []struct {
				Name, Datatype string
				Data           []float64
			}
		}
		if code := postJSON(t, p.url("/v2/models/lgbm_reg/infer"), string(body), &out); code != 200 || len(out.Outputs) != 1 {
			t.Fatalf("infer: %d %+v", code, out)
		}
		if o := out.Outputs[0]; o.Name != "prediction" || o.Datatype != "FP64" || maxAbsDiff(o.Data, flattenRows(want)) > 1e-12 {
			t.Errorf("output %s %s %v, want FP64 %v", o.Name, o.Datatype, o.Data, flattenRows(want))
		}
	})
	t.Run("skl2onnx classifier with a ZipMap", func(t *testing.T) {
		var e struct {
			Classes []string `json:"classes"`
			Cases   []struct {
				Inputs  struct{ X [][]float64 }    `json:"inputs"`
				Outputs map[string]json.RawMessage `json:"outputs"`
			} `json:"cases"`
		}
		if err := json.Unmarshal([]byte(mustRead(t, onnxData+"sklearn_logreg_multi_str.expected.json")), &e); err != nil {
			t.Fatal(err)
		}
		c := e.Cases[len(e.Cases)-1]
		var probs [][]float64
		json.Unmarshal(c.Outputs["output_probability"], &probs)
		checkProbabilities(t, p, "sk_multi", c.Inputs.X, probs, 1e-5)
	})

	t.Run("xgboost category names", func(t *testing.T) {
		rows, want := boostersCase(t, xgbData+"boosters/gbtree_categorical")
		colours, sizes := []string{"red", "grün", "blue"}, []string{"10", "20", "30", "40", "50"}
		named := make([][]any, len(rows))
		for i, r := range rows {
			named[i] = []any{r[0], r[1], r[2], colours[int(r[3])], sizes[int(r[4])]}
		}
		body, _ := json.Marshal(map[string]any{"model_name": "xgb_cat", "inputs": named})
		var out predictAnswer
		if code := postJSON(t, p.url("/predict"), string(body), &out); code != 200 {
			t.Fatalf("predict by name: %d %+v", code, out)
		}
		if d := maxAbsDiff(out.values(), flattenRows(want)); d > 1e-6*16 {
			t.Errorf("by name: %v, XGBoost predicted %v", out.values(), flattenRows(want))
		}
		code, ans := post(t, p.url("/predict"), `{"model_name": "xgb_cat", "inputs": [[0.5, 0.1, 0.2, "purple", "10"]]}`)
		if code != 422 || !strings.Contains(fmt.Sprint(ans["error"]), `"purple" is not a category of f3`) {
			t.Errorf("unknown name: %d %v, want 422 naming it (XGBoost refuses unseen categories)", code, ans)
		}
		var meta struct {
			Parameters struct{ Categorical map[string][]string } `json:"parameters"`
		}
		testGetJSON(t, p.url("/v2/models/xgb_cat"), &meta)
		if got := fmt.Sprint(meta.Parameters.Categorical); got != "map[f3:[red grün blue] f4:[10 20 30 40 50]]" {
			t.Errorf("v2 metadata categorical = %s", got)
		}
	})
	t.Run("lightgbm category names, unknown is missing", func(t *testing.T) {
		var out predictAnswer
		body := `{"model_name": "lgbm_cat", "inputs": [["red", 3], ["green", 3], ["blue", 8], ["purple", 8], [null, 8], [1, 8]]}`
		if code := postJSON(t, p.url("/predict"), body, &out); code != 200 {
			t.Fatalf("predict: %d %+v", code, out)
		}
		// Categories 0 (red) and 2 (blue) go left to 10; others and missing
		// values go right, to the size split (5.5).
		if got := fmt.Sprint(out.values()); got != "[10 20 10 30 30 30]" {
			t.Errorf("predictions %s, want [10 20 10 30 30 30]", got)
		}
	})
	t.Run("refused at load, named", func(t *testing.T) {
		var idx []map[string]any
		if code := postJSON(t, p.url("/v2/repository/index"), `{}`, &idx); code != 200 {
			t.Fatalf("index: %d", code)
		}
		states := map[string]string{}
		for _, e := range idx {
			states[fmt.Sprint(e["name"])] = fmt.Sprint(e["state"], " ", e["reason"])
		}
		for _, name := range []string{"xgb_multi", "xgb_ubj", "xgb_ubj_named_json", "xgb_cat", "lgbm_multi", "lgbm_reg", "lgbm_cat", "sk_multi"} {
			if !strings.HasPrefix(states[name], "READY") {
				t.Errorf("%s: %s", name, states[name])
			}
		}
		if s := states["xgb_multitarget"]; !strings.Contains(s, "multi-target models (num_target 2) are not supported") {
			t.Errorf("xgb_multitarget: %q", s)
		}
		_, text, _ := get(t, http.DefaultClient, p.url("/metrics"))
		if got := scrape(t, text)[`model_load_failures_total{model_name="xgb_multitarget"}`]; got != 1 {
			t.Errorf("model_load_failures_total for the multi-target model = %v, want 1", got)
		}
	})
}

// lightgbmColours is a LightGBM text model, in the layout LightGBM writes, of
// one tree over color (categorical, named by pandas_categorical) and size.
const lightgbmColours = `tree
version=v4
num_class=1
num_tree_per_iteration=1
label_index=0
max_feature_idx=1
objective=regression
feature_names=color size
feature_infos=0:1:2 [1:10]
tree_sizes=400

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
cat_boundaries=0 1
cat_threshold=5
is_linear=0
shrinkage=1


end of trees

pandas_categorical:[["red", "green", "blue"]]
`

type predictAnswer struct {
	Predictions []struct {
		Class         string             `json:"class"`
		Probabilities map[string]float64 `json:"probabilities"`
		Value         *float64           `json:"value"`
	} `json:"predictions"`
	Classes []string
}

// values lists a regressor's predictions, or a classifier's probabilities
// row by row in class order ("0", "1", ... or the names the model gives).
func (a predictAnswer) values() []float64 {
	var out []float64
	for _, p := range a.Predictions {
		if p.Value != nil {
			out = append(out, *p.Value)
			continue
		}
		for _, c := range a.Classes {
			out = append(out, p.Probabilities[c])
		}
	}
	return out
}

func checkProbabilities(t *testing.T, p *process, name string, rows, want [][]float64, tol float64) {
	t.Helper()
	var meta struct {
		Parameters struct{ Classes []string } `json:"parameters"`
	}
	testGetJSON(t, p.url("/v2/models/"+name), &meta)
	body, _ := json.Marshal(map[string]any{"model_name": name, "inputs": nullNaN(rows)})
	var out predictAnswer
	if code := postJSON(t, p.url("/predict"), string(body), &out); code != 200 || len(out.Predictions) != len(rows) {
		t.Fatalf("predict %s: %d %+v", name, code, out)
	}
	out.Classes = meta.Parameters.Classes
	for i, pr := range out.Predictions {
		best := 0
		for c := range want[i] {
			if want[i][c] > want[i][best] {
				best = c
			}
		}
		if pr.Class != out.Classes[best] {
			t.Errorf("%s row %d: class %s, the library's most probable is %s", name, i, pr.Class, out.Classes[best])
		}
	}
	if d := maxAbsDiff(out.values(), flattenRows(want)); d > tol {
		t.Errorf("%s: probabilities differ from the library's by %g (tolerance %g):\n got %v\nwant %v", name, d, tol, out.values(), flattenRows(want))
	}
}

func checkValues(t *testing.T, p *process, name string, rows, want [][]float64, tol float64) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"model_name": name, "inputs": nullNaN(rows)})
	var out predictAnswer
	if code := postJSON(t, p.url("/predict"), string(body), &out); code != 200 {
		t.Fatalf("predict %s: %d %+v", name, code, out)
	}
	got, w := out.values(), flattenRows(want)
	for i := range w {
		if i >= len(got) || math.Abs(got[i]-w[i]) > tol*max(1, math.Abs(w[i])) {
			t.Fatalf("%s: %v, the library predicted %v", name, got, w)
		}
	}
}

// nullNaN writes a missing value (NaN) as JSON null.
func nullNaN(rows [][]float64) [][]any {
	out := make([][]any, len(rows))
	for i, r := range rows {
		out[i] = make([]any, len(r))
		for j, v := range r {
			if math.IsNaN(v) {
				out[i][j] = nil
			} else {
				out[i][j] = v
			}
		}
	}
	return out
}

func flattenRows(rows [][]float64) []float64 {
	var out []float64
	for _, r := range rows {
		out = append(out, r...)
	}
	return out
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func testGetJSON(t *testing.T, url string, v any) {
	t.Helper()
	code, body, _ := get(t, http.DefaultClient, url)
	if code != 200 {
		t.Fatalf("GET %s: %d %s", url, code, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// boostersCase reads a case of the boosters fixtures: the rows (null is a
// missing value) and what XGBoost predicted, one row of outputs per row.
func boostersCase(t *testing.T, prefix string) (rows, want [][]float64) {
	t.Helper()
	var in struct{ Features [][]*float64 }
	var exp struct {
		Predictions json.RawMessage `json:"predictions_transformed"`
	}
	json.Unmarshal([]byte(mustRead(t, prefix+".input.json")), &in)
	json.Unmarshal([]byte(mustRead(t, prefix+".expected.json")), &exp)
	return missingAsNaN(in.Features), outputRows(t, exp.Predictions)
}

// lightgbmCase reads a LightGBM case: input.json's rows and expected.json's
// default prediction (proba for a classifier, else raw).
func lightgbmCase(t *testing.T, dir string) (rows, want [][]float64) {
	t.Helper()
	var in struct{ Data [][]*float64 }
	var exp map[string]json.RawMessage
	json.Unmarshal([]byte(mustRead(t, dir+"/input.json")), &in)
	json.Unmarshal([]byte(mustRead(t, dir+"/expected.json")), &exp)
	raw, ok := exp["proba"]
	if !ok {
		raw = exp["raw"]
	}
	return missingAsNaN(in.Data), outputRows(t, raw)
}

// missingAsNaN turns rows with null for a missing value into rows with NaN.
func missingAsNaN(in [][]*float64) [][]float64 {
	rows := make([][]float64, len(in))
	for i, r := range in {
		rows[i] = make([]float64, len(r))
		for j, v := range r {
			rows[i][j] = math.NaN()
			if v != nil {
				rows[i][j] = *v
			}
		}
	}
	return rows
}

// outputRows reads a library's predictions: one list per row, or one
// number per row.
func outputRows(t *testing.T, raw json.RawMessage) [][]float64 {
	t.Helper()
	var rows [][]float64
	if json.Unmarshal(raw, &rows) == nil {
		return rows
	}
	var flat []float64
	if err := json.Unmarshal(raw, &flat); err != nil {
		t.Fatal(err)
	}
	for _, v := range flat {
		rows = append(rows, []float64{v})
	}
	return rows
}

// csvCase reads a fixture CSV written by the xgboost generator: feature
// columns f0.., then XGBoost's outputs out0...
func csvCase(t *testing.T, path string) (rows, want [][]float64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	nf := 0
	for _, h := range recs[0] {
		if strings.HasPrefix(h, "f") {
			nf++
		}
	}
	for _, r := range recs[1:] {
		var row, out []float64
		for j, s := range r {
			v := math.NaN()
			if s != "" {
				if v, err = strconv.ParseFloat(s, 64); err != nil {
					t.Fatal(err)
				}
			}
			if j < nf {
				row = append(row, v)
			} else {
				out = append(out, v)
			}
		}
		rows, want = append(rows, row), append(want, out)
	}
	return rows, want
}

// withCategoryNames adds the category container XGBoost 3.1+ saves with a
// model trained on a DataFrame (CatContainer::Save: a string column as
// offsets into int8 bytes, a numeric column as its type and values) to a
// file with two categorical features: f3 (red, grün, blue) and f4 (10, 20,
// 30, 40, 50).
func withCategoryNames(t *testing.T, path string) []byte {
	t.Helper()
	text := strings.ReplaceAll(mustRead(t, path), "NaN", `"NaN"`)
	var f map[string]any
	if err := json.Unmarshal([]byte(text), &f); err != nil {
		t.Fatal(err)
	}
	var values []int
	offsets := []int{0}
	for _, n := range []string{"red", "grün", "blue"} {
		for _, b := range []byte(n) {
			values = append(values, int(int8(b)))
		}
		offsets = append(offsets, len(values))
	}
	gb := f["learner"].(map[string]any)["gradient_booster"].(map[string]any)
	gb["model"].(map[string]any)["cats"] = map[string]any{
		"enc": []any{
			map[string]any{"offsets": offsets, "values": values},
			map[string]any{"type": 6, "values": []int{10, 20, 30, 40, 50}},
		},
		"feature_segments": []int{0, 3, 8}, "sorted_idx": []int{}, "is_ref": false, "sorted": false,
	}
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
