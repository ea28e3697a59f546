package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelwatch/modelwatch/internal/model/onnx/onnxtest"
)

func onnxLibrary(t *testing.T) string { return onnxtest.Library(t) }

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, to, string(data))
}

func writeFile(t *testing.T, to, data string) {
	t.Helper()
	os.MkdirAll(filepath.Dir(to), 0o755)
	tmp := to + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	// Replace atomically, as a deployment tool would, and move the
	// modification time so that a rewrite within one second shows.
	later := time.Now().Add(time.Duration(len(data)%1000+1) * time.Millisecond)
	os.Chtimes(tmp, later, later)
	if err := os.Rename(tmp, to); err != nil {
		t.Fatal(err)
	}
}

type expectedCase struct {
	Batch   int                        `json:"batch"`
	Inputs  map[string]json.RawMessage `json:"inputs"`
	Outputs map[string]json.RawMessage `json:"outputs"`
}

func readExpected(t *testing.T, name string) []expectedCase {
	b, err := os.ReadFile("../../internal/model/onnx/testdata/" + name + ".expected.json")
	if err != nil {
		t.Fatal(err)
	}
	var e []expectedCase
	json.Unmarshal(b, &e)
	return e
}

func flatten(raw json.RawMessage) []float64 {
	var v any
	json.Unmarshal(raw, &v)
	var out []float64
	var walk func(any)
	walk = func(x any) {
		switch x := x.(type) {
		case []any:
			for _, e := range x {
				walk(e)
			}
		case float64:
			out = append(out, x)
		}
	}
	walk(v)
	return out
}

func maxAbsDiff(a, b []float64) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	d := 0.0
	for i := range a {
		d = max(d, math.Abs(a[i]-b[i]))
	}
	return d
}

type v2Out struct {
	Outputs []struct {
		Name  string          `json:"name"`
		Shape []int64         `json:"shape"`
		Data  json.RawMessage `json:"data"`
	} `json:"outputs"`
}

func (o v2Out) output(name string) []float64 {
	for _, x := range o.Outputs {
		if x.Name == name {
			return flatten(x.Data)
		}
	}
	return nil
}

// TestRepositoryOverTCP serves ONNX and XGBoost models from a repository
// through the real binary and the real ONNX Runtime, through /predict and
// the Open Inference Protocol.
func TestRepositoryOverTCP(t *testing.T) {
	lib := onnxLibrary(t)
	dir := t.TempDir()
	onnxDir := "../../internal/model/onnx/testdata/"
	copyFile(t, onnxDir+"mlp_classifier.onnx", filepath.Join(dir, "mlp/1/model.onnx"))
	writeFile(t, filepath.Join(dir, "mlp/config.yaml"), "classes: [red, green, blue]\nfeatures: [a, b, c, d]\n")
	copyFile(t, onnxDir+"regressor.onnx", filepath.Join(dir, "reg/1/model.onnx"))
	copyFile(t, onnxDir+"two_inputs.onnx", filepath.Join(dir, "two/1/model.onnx"))
	copyFile(t, "../../internal/model/xgboost/testdata/binary.json", filepath.Join(dir, "xgb/1/model.json"))
	copyFile(t, "../../internal/model/xgboost/testdata/dart.json", filepath.Join(dir, "xgb/2/model.json"))
	writeFile(t, filepath.Join(dir, "xgb/config.yaml"), "version_policy: {all: true}\nclasses: [no, yes]\n")
	p := start(t, 1, "--model-repository", dir, "--onnxruntime-library", lib)

	resp, err := http.Post(p.url("/v2/repository/index"), "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	var index []struct{ Name, Version, State, Type string }
	json.NewDecoder(resp.Body).Decode(&index)
	resp.Body.Close()
	got := fmt.Sprint(index)
	if got != "[{fraud_model v1 READY xgboost} {mlp 1 READY onnx} {reg 1 READY onnx} {two 1 READY onnx} {xgb 1 READY xgboost} {xgb 2 READY xgboost}]" {
		t.Fatalf("index %s\n%s", got, p.logs)
	}

	// The MLP: /predict, v2 infer and PyTorch agree at batch sizes 1, 7 and 64.
	for _, c := range readExpected(t, "mlp_classifier") {
		code, r := post(t, p.url("/predict"), fmt.Sprintf(`{"model_name": "mlp", "inputs": %s}`, c.Inputs["features"]))
		if code != 200 {
			t.Fatalf("predict batch %d: %d %v", c.Batch, code, r)
		}
		var viaPredict []float64
		for _, pr := range r["predictions"].([]any) {
			probs := pr.(map[string]any)["probabilities"].(map[string]any)
			viaPredict = append(viaPredict, probs["red"].(float64), probs["green"].(float64), probs["blue"].(float64))
		}
		want := flatten(c.Outputs["probabilities"])
		if d := maxAbsDiff(viaPredict, want); d > 1e-5 {
			t.Errorf("batch %d: /predict differs from PyTorch by %g", c.Batch, d)
		}
		body := fmt.Sprintf(`{"inputs": [{"name": "features", "datatype": "FP32", "shape": [%d, 4], "data": %s}]}`, c.Batch, c.Inputs["features"])
		var o v2Out
		if code := postJSON(t, p.url("/v2/models/mlp/infer"), body, &o); code != 200 {
			t.Fatalf("v2 batch %d: %d", c.Batch, code)
		}
		if d := maxAbsDiff(o.output("probabilities"), want); d > 1e-5 {
			t.Errorf("batch %d: v2 differs from PyTorch by %g", c.Batch, d)
		}
		if d := maxAbsDiff(o.output("probabilities"), viaPredict); d > 1e-7 {
			t.Errorf("batch %d: v2 and /predict differ by %g", c.Batch, d)
		}
		if d := maxAbsDiff(o.output("label"), flatten(c.Outputs["label"])); d != 0 {
			t.Errorf("batch %d: labels differ", c.Batch)
		}
	}
	// Two inputs, one of them INT64, through v2 only.
	for _, c := range readExpected(t, "two_inputs") {
		body := fmt.Sprintf(`{"inputs": [{"name": "numeric", "datatype": "FP32", "shape": [%d, 3], "data": %s},
			{"name": "category", "datatype": "INT64", "shape": [%d], "data": %s}]}`, c.Batch, c.Inputs["numeric"], c.Batch, c.Inputs["category"])
		var o v2Out
		if code := postJSON(t, p.url("/v2/models/two/versions/1/infer"), body, &o); code != 200 {
			t.Fatalf("two inputs batch %d: %d", c.Batch, code)
		}
		if d := maxAbsDiff(o.output("score"), flatten(c.Outputs["score"])); d > 1e-5 {
			t.Errorf("two inputs batch %d: differs from PyTorch by %g", c.Batch, d)
		}
	}
	// A float64 regressor through /predict.
	c := readExpected(t, "regressor")[1]
	code, r := post(t, p.url("/predict"), fmt.Sprintf(`{"model_name": "reg", "inputs": %s}`, c.Inputs["features"]))
	var vals []float64
	for _, pr := range r["predictions"].([]any) {
		vals = append(vals, pr.(map[string]any)["value"].(float64))
	}
	if d := maxAbsDiff(vals, flatten(c.Outputs["prediction"])); code != 200 || d > 1e-5 {
		t.Errorf("regressor: %d, differs by %g", code, d)
	}

	// A number beyond the float32 input's range is the client's error, found
	// before the model runs: never a model error a client could fake.
	if code, r := post(t, p.url("/predict"), `{"model_name": "mlp", "inputs": [[1e39, 2, 3, 4]]}`); code != 422 || r["error_type"] != "invalid_input" {
		t.Errorf("1e39 to a float32 ONNX input: %d %v", code, r)
	}

	code, text, _ := get(t, http.DefaultClient, p.url("/metrics"))
	s := scrape(t, text)
	for k, v := range map[string]float64{
		`model_requests_total{model_name="mlp",model_version="1",status="error"}`:             0,
		`model_prediction_errors_total{error_type="invalid_input",model_name="mlp"}`:          1,
		`model_loaded_info{model_name="mlp",model_type="onnx",model_version="1"}`:             1,
		`model_loaded_info{model_name="xgb",model_type="xgboost",model_version="2"}`:          1,
		`model_requests_total{model_name="mlp",model_version="1",status="success"}`:           6,
		`model_predictions_total{model_name="mlp",model_version="1"}`:                         2 * (1 + 7 + 64),
		`model_requests_total{model_name="two",model_version="1",status="success"}`:           3,
		`http_requests_total{endpoint="/v2/models/{model}/infer",method="POST",status="200"}`: 3,
	} {
		if s[k] != v {
			t.Errorf("%s = %v, want %v", k, s[k], v)
		}
	}
	if code != 200 {
		t.Fatal(code)
	}
	promtoolCheck(t, text)

	// loadgen drives an ONNX model through the Open Inference Protocol with
	// the input name and datatype the model's metadata gives.
	out, err := exec.Command(binary, "loadgen", "--url", p.url(""), "--api", "v2", "--models", "mlp", "--requests", "40", "--batch", "3", "--json").Output()
	var res struct {
		OK       int            `json:"ok"`
		ByStatus map[string]int `json:"by_status"`
	}
	if err != nil || json.Unmarshal(out, &res) != nil || res.OK != 40 {
		t.Errorf("loadgen --api v2 --models mlp: %v %+v %s", err, res, out)
	}
}

func postJSON(t *testing.T, url, body string, out any) int {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	json.NewDecoder(resp.Body).Decode(out)
	return resp.StatusCode
}

// TestReloadUnderLoad replaces a model file and removes another version
// while clients send requests: no request to a version that stays is lost,
// and the metrics end up showing the change.
func TestReloadUnderLoad(t *testing.T) {
	dir := t.TempDir()
	xgbDir := "../../internal/model/xgboost/testdata/"
	copyFile(t, xgbDir+"binary.json", filepath.Join(dir, "xgb/1/model.json"))
	copyFile(t, xgbDir+"binary.json", filepath.Join(dir, "xgb/2/model.json"))
	writeFile(t, filepath.Join(dir, "xgb/config.yaml"), "version_policy: {all: true}\nclasses: [no, yes]\n")
	p := start(t, 1, "--model-repository", dir, "--repository-poll-interval", "50ms", "--embedded-model=false", "--default-model", "xgb")

	const row = `[12.5, 1, -0.3, 0.8, 0.1]`
	probability := func() float64 {
		code, r := post(t, p.url("/predict"), `{"inputs": [`+row+`]}`)
		if code != 200 {
			t.Fatalf("predict: %d %v", code, r)
		}
		return r["predictions"].([]any)[0].(map[string]any)["probabilities"].(map[string]any)["yes"].(float64)
	}
	before := probability()

	// Clients: requests to the default (latest) version, which stays, bounded
	// in count and time.
	var (
		stop     atomic.Bool
		sent     atomic.Int64
		failures sync.Map
		wg       sync.WaitGroup
	)
	deadline := time.Now().Add(60 * time.Second)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() && sent.Load() < 20000 && time.Now().Before(deadline) {
				resp, err := http.Post(p.url("/predict"), "application/json", strings.NewReader(`{"inputs": [`+row+`]}`))
				sent.Add(1)
				if err != nil {
					failures.Store(err.Error(), true)
					continue
				}
				if resp.StatusCode != 200 {
					failures.Store(resp.Status, true)
				}
				resp.Body.Close()
			}
		}()
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		end := time.Now().Add(20 * time.Second)
		for !ok() {
			if time.Now().After(end) {
				t.Fatalf("timed out waiting for %s\n%s", what, p.logs)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// Replace version 2's file with another model, and remove version 1.
	time.Sleep(200 * time.Millisecond)
	copyFile(t, xgbDir+"dart.json", filepath.Join(dir, "xgb/2/model.json.new"))
	os.Rename(filepath.Join(dir, "xgb/2/model.json.new"), filepath.Join(dir, "xgb/2/model.json"))
	os.RemoveAll(filepath.Join(dir, "xgb/1"))
	waitFor("the reload", func() bool { return strings.Contains(p.logs.String(), `"msg":"model reloaded"`) })
	waitFor("the unload", func() bool { return strings.Contains(p.logs.String(), `"msg":"model unloaded"`) })
	time.Sleep(200 * time.Millisecond)

	// A broken file: the serving version stays, the failure is counted.
	writeFile(t, filepath.Join(dir, "xgb/2/model.json"), `{"learner": {}}`)
	waitFor("the failed reload", func() bool { return strings.Contains(p.logs.String(), "model reload failed") })
	time.Sleep(200 * time.Millisecond)
	stop.Store(true)
	wg.Wait()

	failures.Range(func(k, _ any) bool {
		t.Errorf("a request failed during the reload: %v", k)
		return true
	})
	if sent.Load() < 50 {
		t.Errorf("only %d requests sent during the reload", sent.Load())
	}
	after := probability()
	if after == before {
		t.Errorf("the replaced file did not change the answer (%v)", after)
	}
	if code, r := post(t, p.url("/predict"), `{"model_version": "1", "inputs": [`+row+`]}`); code != 404 || r["error_type"] != "version_not_found" {
		t.Errorf("removed version: %d %v", code, r)
	}

	_, text, _ := get(t, http.DefaultClient, p.url("/metrics"))
	s := scrape(t, text)
	if _, ok := s[`model_loaded_info{model_name="xgb",model_type="xgboost",model_version="1"}`]; ok {
		t.Error("model_loaded_info still has the removed version")
	}
	for k := range s {
		if strings.Contains(k, `model_version="1"`) {
			t.Errorf("series of the removed version remain: %s", k)
		}
	}
	if s[`model_loaded_info{model_name="xgb",model_type="xgboost",model_version="2"}`] != 1 || s[`model_load_failures_total{model_name="xgb"}`] != 1 {
		t.Errorf("after the reloads: loaded %v, failures %v", s[`model_loaded_info{model_name="xgb",model_type="xgboost",model_version="2"}`], s[`model_load_failures_total{model_name="xgb"}`])
	}
	if got, want := s[`model_requests_total{model_name="xgb",model_version="2",status="success"}`], float64(sent.Load()+2); got != want {
		t.Errorf("model_requests_total for version 2 = %v, want %v (every request sent)", got, want)
	}
	resp, _ := http.Post(p.url("/v2/repository/index"), "application/json", nil)
	var index []struct{ Name, Version, State, Reason string }
	json.NewDecoder(resp.Body).Decode(&index)
	resp.Body.Close()
	if len(index) != 1 || index[0].Version != "2" || index[0].State != "READY" || !strings.HasPrefix(index[0].Reason, "reload failed, the previous file still serves") {
		t.Errorf("index %+v", index)
	}
}

// TestV2EndpointsOverTCP calls every Open Inference Protocol endpoint, and
// its error paths, on the real binary.
func TestV2EndpointsOverTCP(t *testing.T) {
	lib := onnxLibrary(t)
	dir := t.TempDir()
	copyFile(t, "../../internal/model/onnx/testdata/two_inputs.onnx", filepath.Join(dir, "two/1/model.onnx"))
	copyFile(t, "../../internal/model/xgboost/testdata/regression.json", filepath.Join(dir, "reg/7/model.json"))
	// The control plane is served on the admin listener.
	p := start(t, 2, "--model-repository", dir, "--onnxruntime-library", lib, "--admin-listen-address", "127.0.0.1:0")
	fraudInput := `{"inputs": [{"name": "input", "shape": [1, 6], "datatype": "FP32", "data": [950.0, 2, 8, 120.5, 11, 12]}]}`
	for _, tc := range []struct {
		method, path, body string
		status             int
		says               string
	}{
		{"GET", "/v2", "", 200, `"extensions":["model_repository"]`},
		{"GET", "/v2/health/live", "", 200, `{"live":true}`},
		{"GET", "/v2/health/ready", "", 200, `{"ready":true}`},
		{"GET", "/v2/models/two", "", 200, `"inputs":[{"name":"numeric","datatype":"FP32","shape":[-1,3]},{"name":"category","datatype":"INT64","shape":[-1]}]`},
		{"GET", "/v2/models/reg/versions/7", "", 200, `"outputs":[{"name":"prediction","datatype":"FP32","shape":[-1,1]}]`},
		{"GET", "/v2/models/two/ready", "", 200, `"ready":true`},
		{"GET", "/v2/models/reg/versions/7/ready", "", 200, `"ready":true`},
		{"POST", "/v2/models/fraud_model/infer", fraudInput, 200, `"data":["fraud"]`},
		{"POST", "/v2/models/fraud_model/versions/v1/infer", fraudInput, 200, `"name":"probabilities"`},
		{"POST", "/v2/models/two/infer", `{"id": "q1", "inputs": [{"name": "numeric", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}, {"name": "category", "shape": [1], "datatype": "INT64", "data": [4]}]}`, 200, `"id":"q1"`},
		{"POST", "/v2/repository/index", "", 200, `{"name":"two","version":"1","state":"READY","type":"onnx","source":"repository"}`},
		{"POST", "/v2/repository/models/reg/unload", "", 200, `{}`},
		{"GET", "/v2/models/reg", "", 404, `"error_type":"model_not_found"`},
		{"POST", "/v2/repository/models/reg/load", "", 200, `{}`},
		{"GET", "/v2/models/reg", "", 200, `"versions":["7"]`},
		// Error paths.
		{"POST", "/v2/models/fraud_model/infer", `{"inputs": [`, 400, `"error_type":"invalid_json"`},
		{"POST", "/v2/models/nope/infer", fraudInput, 404, `"error_type":"model_not_found"`},
		{"POST", "/v2/models/fraud_model/versions/v2/infer", fraudInput, 404, `"error_type":"version_not_found"`},
		{"POST", "/v2/models/fraud_model/infer", `{"inputs": [{"name": "input", "shape": [1, 5], "datatype": "FP32", "data": [1, 2, 3, 4, 5]}]}`, 422, `"error_type":"shape_mismatch"`},
		{"POST", "/v2/models/two/infer", `{"inputs": [{"name": "numeric", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}, {"name": "category", "shape": [1], "datatype": "INT64", "data": [4]}]}`, 422, `"error_type":"invalid_input"`},
		{"POST", "/v2/models/fraud_model/infer", `{"inputs": [{"name": "input", "shape": [1, 6], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}], "outputs": [{"name": "nope"}]}`, 400, `"error_type":"invalid_request"`},
		{"GET", "/v2/models/fraud_model/infer", "", 405, `"error_type":"method_not_allowed"`},
		{"POST", "/v2/repository/models/nope/load", "", 404, `"error_type":"model_not_found"`},
		{"GET", "/v2/models/two/versions/9/ready", "", 404, `"error_type":"version_not_found"`},
	} {
		url := p.url(tc.path)
		if strings.HasPrefix(tc.path, "/v2/repository/models/") {
			url = "http://" + p.addrs["admin"] + tc.path
		}
		req, _ := http.NewRequest(tc.method, url, strings.NewReader(tc.body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(string(b), tc.says) {
			t.Errorf("%s %s: %d %s\nwant %d with %s", tc.method, tc.path, resp.StatusCode, b, tc.status, tc.says)
		}
	}
	_, text, _ := get(t, http.DefaultClient, p.url("/metrics"))
	if strings.Contains(text, `"nope"`) || strings.Contains(text, `model_version="v2"`) {
		t.Error("/metrics carries a model name or version a client made up")
	}
}

// TestDynamicBatchingOverTCP sends concurrent requests to an ONNX model with
// dynamic batching: every answer is the model's own for its rows, and the
// metrics show requests merged into fewer batches.
func TestDynamicBatchingOverTCP(t *testing.T) {
	lib := onnxLibrary(t)
	dir := t.TempDir()
	copyFile(t, "../../internal/model/onnx/testdata/mlp_classifier.onnx", filepath.Join(dir, "mlp/1/model.onnx"))
	writeFile(t, filepath.Join(dir, "mlp/config.yaml"), "classes: [red, green, blue]\ndynamic_batching: {max_batch_size: 32, max_queue_delay: 5ms, queue_capacity: 512, workers: 1}\n")
	p := start(t, 1, "--model-repository", dir, "--onnxruntime-library", lib)

	c := readExpected(t, "mlp_classifier")[2] // 64 rows
	rows := flatten(c.Inputs["features"])
	want := flatten(c.Outputs["probabilities"])
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			row := rows[4*i : 4*i+4]
			var o v2Out
			body := fmt.Sprintf(`{"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 4], "data": [%v, %v, %v, %v]}]}`, row[0], row[1], row[2], row[3])
			if code := postJSON(t, p.url("/v2/models/mlp/infer"), body, &o); code != 200 {
				errs <- fmt.Sprintf("request %d: status %d", i, code)
				return
			}
			if d := maxAbsDiff(o.output("probabilities"), want[3*i:3*i+3]); d > 1e-5 {
				errs <- fmt.Sprintf("request %d: batched answer differs from PyTorch by %g", i, d)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	_, text, _ := get(t, http.DefaultClient, p.url("/metrics"))
	s := scrape(t, text)
	batches := s[`model_batch_size_count{model_name="mlp"}`]
	// The warm-up inference at load time is one more batch.
	if s[`model_stage_duration_seconds_count{model_name="mlp",model_version="1",stage="queue"}`] != 64 || batches < 2 || batches >= 64 {
		t.Errorf("64 requests: %v batches, %v queue observations", batches, s[`model_stage_duration_seconds_count{model_name="mlp",model_version="1",stage="queue"}`])
	}
	if s[`model_requests_total{model_name="mlp",model_version="1",status="success"}`] != 64 {
		t.Errorf("successes %v", s[`model_requests_total{model_name="mlp",model_version="1",status="success"}`])
	}
	t.Logf("64 concurrent requests ran in %v batches", batches)
}
