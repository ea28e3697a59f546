package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/modelwatch/modelwatch/internal/feedback"
	"github.com/modelwatch/modelwatch/internal/model"
	"github.com/modelwatch/modelwatch/internal/model/modeltest"
	"github.com/modelwatch/modelwatch/internal/repository"
)

// fakeRepository records the repository extension's calls.
type fakeRepository struct {
	index    []repository.Status
	loaded   []string
	unloaded []string
	ready    bool
}

func (f *fakeRepository) Index() []repository.Status { return f.index }
func (f *fakeRepository) Ready() bool                { return f.ready }
func (f *fakeRepository) Load(_ context.Context, name string) error {
	switch name {
	case "fraud_model":
		f.loaded = append(f.loaded, name)
		return nil
	case "broken":
		return errors.New("model broken: no version loaded: [1: invalid model]")
	}
	return repository.ErrNotFound
}
func (f *fakeRepository) Unload(name string) error {
	if name != "fraud_model" {
		return repository.ErrNotFound
	}
	f.unloaded = append(f.unloaded, name)
	return nil
}

// scorer is a tensor model: "numeric" FP32 [-1, 2] and "category" INT64 [-1]
// give "scores" FP32 [-1, 2] (probabilities of classes lo and hi: the sum of
// the numbers plus the category, squashed) and "count" INT64 [-1].
func scorer() *modeltest.TensorModel {
	return &modeltest.TensorModel{
		Model: modeltest.Model{Meta: model.Metadata{
			Name: "scorer", Version: "3", Type: "onnx", Classes: []string{"lo", "hi"}, Outputs: 2, PredictionOutput: "scores",
			InputTensors: []model.TensorSpec{
				{Name: "numeric", DataType: model.FP32, Shape: []int64{-1, 2}},
				{Name: "category", DataType: model.INT64, Shape: []int64{-1}},
			},
			OutputTensors: []model.TensorSpec{
				{Name: "scores", DataType: model.FP32, Shape: []int64{-1, 2}},
				{Name: "count", DataType: model.INT64, Shape: []int64{-1}},
			},
		}},
		InferFunc: func(_ context.Context, ins []model.Tensor, outs []string) ([]model.Tensor, error) {
			var num []float32
			var cat []int64
			for _, t := range ins {
				switch d := t.Data.(type) {
				case []float32:
					num = d
				case []int64:
					cat = d
				}
			}
			n := len(cat)
			scores := make([]float32, 2*n)
			for i := range n {
				p := float32(1 / (1 + math.Exp(-float64(num[2*i]+num[2*i+1]+float32(cat[i])))))
				scores[2*i], scores[2*i+1] = 1-p, p
			}
			return []model.Tensor{
				{Name: "scores", DataType: model.FP32, Shape: []int64{int64(n), 2}, Data: scores},
				{Name: "count", DataType: model.INT64, Shape: []int64{int64(n)}, Data: cat},
			}, nil
		},
	}
}

func newV2Harness(t *testing.T) (*harness, *fakeRepository) {
	repo := &fakeRepository{ready: true, index: []repository.Status{
		{Name: "fraud_model", Version: "v1", State: repository.Ready, Type: "xgboost", Source: "embedded"},
		{Name: "broken", Version: "1", State: repository.Unavailable, Reason: "invalid model", Type: "onnx", Source: "repository"},
	}}
	h := newHarness(t, func(o *Options) { o.Repository = repo })
	sc := scorer()
	h.srv.models.Add(sc)
	h.met.ModelLoaded(sc.Meta, 0)
	return h, repo
}

func TestV2ServerAndMetadata(t *testing.T) {
	h, repo := newV2Harness(t)
	for _, tc := range []struct {
		path   string
		status int
		body   string
	}{
		{"/v2", 200, `{"extensions":["model_repository"],"name":"modelwatch","version":"dev"}`},
		{"/v2/health/live", 200, `{"live":true}`},
		{"/v2/health/ready", 200, `{"ready":true}`},
		{"/v2/models/fraud_model", 200, `{"inputs":[{"name":"input","datatype":"FP32","shape":[-1,6]}],"name":"fraud_model","outputs":[{"name":"probabilities","datatype":"FP32","shape":[-1,2]},{"name":"label","datatype":"BYTES","shape":[-1]}],"parameters":{"classes":["safe","fraud"],"features":["amount","hour_of_day","merchant_category","distance_from_home_km","transactions_last_24h","card_age_days"],"version":"v1"},"platform":"xgboost_json","versions":["v1"]}`},
		{"/v2/models/scorer/versions/3", 200, `{"inputs":[{"name":"numeric","datatype":"FP32","shape":[-1,2]},{"name":"category","datatype":"INT64","shape":[-1]}],"name":"scorer","outputs":[{"name":"scores","datatype":"FP32","shape":[-1,2]},{"name":"count","datatype":"INT64","shape":[-1]}],"parameters":{"classes":["lo","hi"],"version":"3"},"platform":"onnxruntime_onnx","versions":["3"]}`},
		{"/v2/models/fraud_model/ready", 200, `{"name":"fraud_model","ready":true,"version":"v1"}`},
		{"/v2/models/fraud_model/versions/v1/ready", 200, `{"name":"fraud_model","ready":true,"version":"v1"}`},
		{"/v2/models/nope", 404, `{"error":"no model of that name is loaded","error_type":"model_not_found","request_id":"req-8"}`},
		{"/v2/models/fraud_model/versions/v9/ready", 404, `{"error":"the model has no version of that name loaded","error_type":"version_not_found","request_id":"req-9"}`},
	} {
		rec := h.do("GET", tc.path, "", "")
		if rec.Code != tc.status || strings.TrimSpace(rec.Body.String()) != tc.body {
			t.Errorf("GET %s: %d %s\nwant %d %s", tc.path, rec.Code, rec.Body, tc.status, tc.body)
		}
	}
	repo.ready = false
	if rec := h.do("GET", "/v2/health/ready", "", ""); rec.Code != 503 {
		t.Errorf("/v2/health/ready with a repository not ready: %d", rec.Code)
	}
	if rec := h.do("GET", "/ready", "", ""); rec.Code != 503 {
		t.Errorf("/ready with a repository not ready: %d", rec.Code)
	}
	// Metadata and readiness of unknown models are not prediction errors.
	for k := range h.snapshot() {
		if strings.HasPrefix(k, "model_prediction_errors_total") {
			t.Errorf("%s counted", k)
		}
	}
	if got := h.snapshot()[`http_requests_total{endpoint="/v2/models/{model}",method="GET",status="404"}`]; got != 1 {
		t.Errorf("404 on /v2/models/{model} counted %v times", got)
	}
}

type v2Response struct {
	ModelName    string `json:"model_name"`
	ModelVersion string `json:"model_version"`
	ID           string `json:"id"`
	Outputs      []struct {
		Name     string          `json:"name"`
		Datatype string          `json:"datatype"`
		Shape    []int64         `json:"shape"`
		Data     json.RawMessage `json:"data"`
	} `json:"outputs"`
}

func TestV2InferMatchesPredict(t *testing.T) {
	h, _ := newV2Harness(t)
	p := decodeResponse(t, h.predict(`{"inputs": [`+fraudRow+`,`+safeRow+`,[null, 3, 2, 30, 6, 40]]}`))

	// Nested and flat data give the same answer.
	for _, data := range []string{
		`[` + fraudRow + `,` + safeRow + `,[0, 3, 2, 30, 6, 40]]`,
		`[950.0, 2, 8, 120.5, 11, 12, 25.0, 14, 0, 1.5, 2, 900, 0, 3, 2, 30, 6, 40]`,
	} {
		rec := h.do("POST", "/v2/models/fraud_model/infer", "application/json",
			`{"id": "call-7", "inputs": [{"name": "input", "shape": [3, 6], "datatype": "FP32", "data": `+data+`}]}`)
		if rec.Code != 200 {
			t.Fatalf("infer: %d %s", rec.Code, rec.Body)
		}
		var r v2Response
		json.Unmarshal(rec.Body.Bytes(), &r)
		if r.ModelName != "fraud_model" || r.ModelVersion != "v1" || r.ID != "call-7" || len(r.Outputs) != 2 {
			t.Fatalf("response %s", rec.Body)
		}
		var probs []float32
		var labels []string
		json.Unmarshal(r.Outputs[0].Data, &probs)
		json.Unmarshal(r.Outputs[1].Data, &labels)
		if r.Outputs[0].Name != "probabilities" || fmt.Sprint(r.Outputs[0].Shape) != "[3 2]" || r.Outputs[1].Name != "label" || fmt.Sprint(labels) != "[fraud safe "+labels[2]+"]" {
			t.Errorf("outputs %s", rec.Body)
		}
		// The first two rows are /predict's rows: the same probabilities.
		for i := 0; i < 2; i++ {
			for j, c := range []string{"safe", "fraud"} {
				if probs[2*i+j] != float32(p.Predictions[i].Probabilities[c]) {
					t.Errorf("row %d %s: v2 %v, /predict %v", i, c, probs[2*i+j], p.Predictions[i].Probabilities[c])
				}
			}
		}
	}
	// Output selection.
	rec := h.do("POST", "/v2/models/fraud_model/versions/v1/infer", "application/json",
		`{"inputs": [{"name": "input", "shape": [1, 6], "datatype": "FP64", "data": [`+safeRow+`]}], "outputs": [{"name": "label"}]}`)
	if strings.TrimSpace(rec.Body.String()) != `{"model_name":"fraud_model","model_version":"v1","outputs":[{"name":"label","datatype":"BYTES","shape":[1],"data":["safe"]}]}` {
		t.Errorf("label only: %d %s", rec.Code, rec.Body)
	}
	s := h.snapshot()
	for k, v := range map[string]float64{
		`model_requests_total{model_name="fraud_model",model_version="v1",status="success"}`:                     4,
		`model_predictions_total{model_name="fraud_model",model_version="v1"}`:                                   10,
		`http_requests_total{endpoint="/v2/models/{model}/infer",method="POST",status="200"}`:                    2,
		`http_requests_total{endpoint="/v2/models/{model}/versions/{version}/infer",method="POST",status="200"}`: 1,
	} {
		if s[k] != v {
			t.Errorf("%s = %v, want %v", k, s[k], v)
		}
	}
}

func TestV2TensorModel(t *testing.T) {
	h, _ := newV2Harness(t)
	rec := h.do("POST", "/v2/models/scorer/infer", "application/json", `{"inputs": [
		{"name": "category", "shape": [3], "datatype": "INT64", "data": [0, 1, -2]},
		{"name": "numeric", "shape": [3, 2], "datatype": "FP32", "data": [[1, 1], [0.5, -0.5], [0, 0]]}]}`)
	if rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	want := `{"model_name":"scorer","model_version":"3","outputs":[{"name":"scores","datatype":"FP32","shape":[3,2],"data":[0.11920291,0.8807971,0.2689414,0.7310586,0.8807971,0.11920292]},{"name":"count","datatype":"INT64","shape":[3],"data":[0,1,-2]}]}`
	if got := strings.TrimSpace(rec.Body.String()); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	s := h.snapshot()
	for k, v := range map[string]float64{
		`model_predicted_class_total{class="hi",model_name="scorer",model_version="3"}`: 2,
		`model_predicted_class_total{class="lo",model_name="scorer",model_version="3"}`: 1,
		`model_predictions_total{model_name="scorer",model_version="3"}`:                3,
		`model_batch_size_sum{model_name="scorer"}`:                                     3,
		`model_prediction_confidence_count{model_name="scorer",model_version="3"}`:      3,
	} {
		if s[k] != v {
			t.Errorf("%s = %v, want %v", k, s[k], v)
		}
	}
	// /predict cannot call a model of tensors.
	rec = h.predict(`{"model_name": "scorer", "inputs": [[1, 2]]}`)
	if rec.Code != 422 || !strings.Contains(rec.Body.String(), "takes tensors, not rows: call POST /v2/models/scorer/versions/3/infer") {
		t.Errorf("/predict on a tensor model: %d %s", rec.Code, rec.Body)
	}
}

func TestV2BadInput(t *testing.T) {
	h, _ := newV2Harness(t)
	in := func(name, dt, shape, data string) string {
		return fmt.Sprintf(`{"inputs": [{"name": %q, "datatype": %q, "shape": %s, "data": %s}]}`, name, dt, shape, data)
	}
	const fraud, scorerPath = "/v2/models/fraud_model/infer", "/v2/models/scorer/infer"
	two := func(catType, cat string) string {
		return `{"inputs": [{"name": "numeric", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}, {"name": "category", "datatype": "` + catType + `", "shape": [1], "data": ` + cat + `}]}`
	}
	for _, tc := range []struct {
		name, path, body string
		status           int
		errorType        errorType
		model            string
		says             string
	}{
		{"malformed JSON", fraud, `{"inputs": [`, 400, errInvalidJSON, "", "ends before the JSON does"},
		{"NaN literal", fraud, in("input", "FP32", "[1, 6]", "[1, NaN, 3, 4, 5, 6]"), 400, errInvalidJSON, "", "NaN and Infinity are not JSON numbers"},
		{"unknown field", fraud, `{"input": []}`, 400, errInvalidRequest, "", `unknown field "input"`},
		{"no inputs", fraud, `{"inputs": []}`, 422, errEmptyBatch, "fraud_model", `"inputs" has no tensors`},
		{"unknown input", fraud, in("x", "FP32", "[1, 6]", "[1, 2, 3, 4, 5, 6]"), 400, errInvalidRequest, "fraud_model", `the model has no input "x"; it has input`},
		{"unknown datatype", fraud, in("input", "FP16", "[1, 6]", "[1, 2, 3, 4, 5, 6]"), 400, errInvalidRequest, "fraud_model", `datatype "FP16" is not one of`},
		{"no shape", fraud, `{"inputs": [{"name": "input", "datatype": "FP32", "data": [1]}]}`, 400, errInvalidRequest, "fraud_model", "has no shape"},
		{"wrong rank", fraud, in("input", "FP32", "[6]", "[1, 2, 3, 4, 5, 6]"), 422, errShapeMismatch, "fraud_model", "input input has shape [6]; the model takes [-1, 6]"},
		{"wrong feature count", fraud, in("input", "FP32", "[1, 5]", "[1, 2, 3, 4, 5]"), 422, errShapeMismatch, "fraud_model", "has shape [1 5]; the model takes [-1, 6]"},
		{"fewer values than the shape", fraud, in("input", "FP32", "[2, 6]", "[1, 2, 3, 4, 5, 6]"), 422, errShapeMismatch, "fraud_model", "has 6 values; shape [2 6] needs 12"},
		{"more values than the shape", fraud, in("input", "FP32", "[1, 6]", "[1, 2, 3, 4, 5, 6, 7]"), 422, errShapeMismatch, "fraud_model", "more values than the shape"},
		{"string value", fraud, in("input", "FP32", "[1, 6]", `[1, "2", 3, 4, 5, 6]`), 400, errInvalidRequest, "fraud_model", "value 1 must be a number, not a string"},
		{"FP64 data beyond an FP32 input", fraud, in("input", "FP64", "[1, 6]", "[1, 1e39, 3, 4, 5, 6]"), 422, errInvalidInput, "fraud_model", "input input: value 1 (hour_of_day) is too large for the model's 32-bit float input"},
		{"overflowing FP32", fraud, in("input", "FP32", "[1, 6]", "[1, 1e39, 3, 4, 5, 6]"), 422, errInvalidInput, "fraud_model", "value 1 (1e39) is not a finite 32-bit number"},
		{"negative dimension", fraud, in("input", "FP32", "[-1, 6]", "[1, 2, 3, 4, 5, 6]"), 422, errShapeMismatch, "fraud_model", "has shape [-1 6]"},
		{"huge shape", fraud, in("input", "FP32", "[100000000, 6]", "[1]"), 413, errBatchTooLarge, "fraud_model", "the batch has 100000000 rows, over the limit of 16"},
		{"batch over the limit", fraud, in("input", "FP32", "[17, 6]", "["+strings.Repeat("0,", 17*6-1)+"0]"), 413, errBatchTooLarge, "fraud_model", "the batch has 17 rows, over the limit of 16"},
		{"empty batch", fraud, in("input", "FP32", "[0, 6]", "[]"), 422, errEmptyBatch, "fraud_model", "the batch has no rows"},
		{"unknown output", fraud, `{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 6], "data": [1, 2, 3, 4, 5, 6]}], "outputs": [{"name": "logits"}]}`, 400, errInvalidRequest, "fraud_model", `the model has no output "logits"; it has probabilities, label`},
		{"strict datatype", scorerPath, two("INT32", "[1]"), 422, errInvalidInput, "scorer", "input category is INT32; the model takes INT64"},
		{"fraction for INT64", scorerPath, two("INT64", "[1.5]"), 422, errInvalidInput, "scorer", "value 0 (1.5) is not a 64-bit integer"},
		{"missing input", scorerPath, `{"inputs": [{"name": "numeric", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}`, 400, errInvalidRequest, "scorer", "the model takes 2 inputs (numeric, category), the request has 1"},
		{"batch sizes disagree", scorerPath, `{"inputs": [{"name": "numeric", "datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3, 4]}, {"name": "category", "datatype": "INT64", "shape": [1], "data": [1]}]}`, 422, errShapeMismatch, "scorer", "inputs disagree on the batch size"},
		{"unknown model", "/v2/models/no_such_model/infer", in("input", "FP32", "[1, 6]", "[1, 2, 3, 4, 5, 6]"), 404, errModelNotFound, "", "no model of that name"},
		{"unknown version", "/v2/models/fraud_model/versions/v999/infer", in("input", "FP32", "[1, 6]", "[1, 2, 3, 4, 5, 6]"), 404, errVersionNotFound, "fraud_model", "no version of that name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := h.snapshot()
			rec := h.do("POST", tc.path, "application/json", tc.body)
			var e errorResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
				t.Fatalf("%d %s", rec.Code, rec.Body)
			}
			if rec.Code != tc.status || e.ErrorType != string(tc.errorType) || !strings.Contains(e.Error, tc.says) {
				t.Errorf("%d %+v\nwant %d %s saying %q", rec.Code, e, tc.status, tc.errorType, tc.says)
			}
			got := delta(before, h.snapshot())
			for k := range got {
				if strings.HasPrefix(k, "http_request_duration_seconds_sum") {
					delete(got, k)
				}
			}
			endpoint := "/v2/models/{model}/infer"
			if strings.Contains(tc.path, "/versions/") {
				endpoint = "/v2/models/{model}/versions/{version}/infer"
			}
			want := map[string]float64{
				fmt.Sprintf(`http_requests_total{endpoint=%q,method="POST",status="%d"}`, endpoint, tc.status):    1,
				fmt.Sprintf(`http_request_duration_seconds_count{endpoint=%q,method="POST"}`, endpoint):           1,
				fmt.Sprintf(`model_prediction_errors_total{error_type=%q,model_name=%q}`, tc.errorType, tc.model): 1,
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("metric changes:\n got %v\nwant %v", got, want)
			}
		})
	}
	for k := range h.snapshot() {
		if strings.Contains(k, "no_such_model") || strings.Contains(k, "v999") {
			t.Errorf("series %s carries a client's value", k)
		}
	}
	if rec := h.do("GET", "/v2/models/fraud_model/infer", "", ""); rec.Code != 405 {
		t.Errorf("GET infer: %d", rec.Code)
	}
	if rec := h.do("POST", fraud, "application/json", "{}", "Inference-Header-Content-Length", "10"); rec.Code != 415 {
		t.Errorf("binary extension: %d", rec.Code)
	}
}

func TestV2Repository(t *testing.T) {
	h, repo := newV2Harness(t)
	admin := h.srv.AdminRoutes()
	rec := h.do("POST", "/v2/repository/index", "application/json", "")
	want := `[{"name":"fraud_model","version":"v1","state":"READY","type":"xgboost","source":"embedded"},{"name":"broken","version":"1","state":"UNAVAILABLE","reason":"invalid model","type":"onnx","source":"repository"}]`
	if strings.TrimSpace(rec.Body.String()) != want {
		t.Errorf("index: %s", rec.Body)
	}
	rec = h.do("POST", "/v2/repository/index", "application/json", `{"ready": true}`)
	if strings.Count(rec.Body.String(), `"name"`) != 1 {
		t.Errorf("ready index: %s", rec.Body)
	}
	for _, tc := range []struct {
		path   string
		status int
		says   string
	}{
		{"/v2/repository/models/fraud_model/load", 200, "{}"},
		{"/v2/repository/models/broken/load", 400, "no version loaded"},
		{"/v2/repository/models/nope/load", 404, "no model of that name in the repository"},
		{"/v2/repository/models/fraud_model/unload", 200, "{}"},
		{"/v2/repository/models/nope/unload", 404, "no model of that name is loaded"},
	} {
		// The API listener does not serve the control plane without a
		// credential: it answers 403 and calls nothing.
		if rec := h.do("POST", tc.path, "application/json", ""); rec.Code != 403 || !strings.Contains(rec.Body.String(), `"error_type":"forbidden"`) {
			t.Errorf("POST %s on the API listener: %d %s", tc.path, rec.Code, rec.Body)
		}
		req := httptest.NewRequest("POST", tc.path, nil)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		admin.ServeHTTP(rec, req)
		if rec.Code != tc.status || !strings.Contains(rec.Body.String(), tc.says) {
			t.Errorf("POST %s: %d %s", tc.path, rec.Code, rec.Body)
		}
	}
	if fmt.Sprint(repo.loaded, repo.unloaded) != "[fraud_model] [fraud_model]" {
		t.Errorf("calls: %v %v", repo.loaded, repo.unloaded)
	}
	if rec := h.do("POST", "/v2/repository/index", "application/json", `{"bogus": 1}`); rec.Code != 400 {
		t.Errorf("index with an unknown field: %d", rec.Code)
	}
	if rec := h.do("GET", "/v2/repository/index", "", ""); rec.Code != 405 {
		t.Errorf("GET index: %d", rec.Code)
	}
}

func TestV2DecodeData(t *testing.T) {
	for _, tc := range []struct {
		raw   string
		dt    model.DataType
		limit int
		want  string
		err   string
		// valueErr: a JSON number the datatype cannot hold (invalid_input).
		valueErr bool
	}{
		{`[[1, 2], [3, 4]]`, model.FP32, 4, "[1 2 3 4]", "", false},
		{`[1, 2, 3]`, model.INT32, 3, "[1 2 3]", "", false},
		{`[true, false]`, model.BOOL, 2, "[true false]", "", false},
		{`[1, 2]`, model.BOOL, 2, "", "must be true or false, not a number", false},
		{`[9223372036854775807]`, model.INT64, 1, "[9223372036854775807]", "", false},
		{`[2147483648]`, model.INT32, 1, "", "not a 32-bit integer", true},
		{`[1.5]`, model.INT64, 1, "", "value 0 (1.5) is not a 64-bit integer", true},
		{`[1e39]`, model.FP32, 1, "", "value 0 (1e39) is not a finite 32-bit number", true},
		{`[1, 1e400]`, model.FP64, 2, "", "value 1 (1e400) is not a finite 64-bit number", true},
		{`[3.4e38]`, model.FP32, 1, "[3.4e+38]", "", false},
		{`[1, 2, 3]`, model.FP64, 2, "", "more values than the shape", false},
		{`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]`, model.FP64, 1, "", "nested too deeply", false},
		{`{"a": 1}`, model.FP64, 1, "", "must be a number, not an object", false},
	} {
		got, _, err := decodeData([]byte(tc.raw), tc.dt, tc.limit)
		var ve *valueError
		if isValue := errors.As(err, &ve); isValue != tc.valueErr {
			t.Errorf("%s: %v is a value error: %v, want %v", tc.raw, err, isValue, tc.valueErr)
		}
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %v, want %q", tc.raw, err, tc.err)
			}
			continue
		}
		if err != nil || fmt.Sprint(got) != tc.want {
			t.Errorf("%s: %v %v, want %s", tc.raw, got, err, tc.want)
		}
	}
}

// FuzzDecodeV2 feeds arbitrary bodies to the Open Inference Protocol
// decoder path: it must answer every body without panicking.
func FuzzDecodeV2(f *testing.F) {
	for _, seed := range []string{
		`{"inputs": [{"name": "input", "shape": [1, 6], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}]}`,
		`{"inputs": [{"name": "numeric", "shape": [1, 2], "datatype": "FP32", "data": [[1, 2]]}, {"name": "category", "shape": [1], "datatype": "INT64", "data": [3]}]}`,
		`{"id": "x", "inputs": [{"name": "input", "shape": [2, 6], "datatype": "BOOL", "data": [true]}], "outputs": [{"name": "label"}]}`,
		`{"inputs": [{"name": "input", "shape": [9999999999, 6], "datatype": "FP32", "data": []}]}`,
		`{"inputs": [{"name": "input", "shape": [1, 6], "datatype": "BYTES", "data": ["1.5", "b", "0", "zz", "-2e3", "c"]}]}`,
		`{"inputs": [{"name": "input", "shape": [2, 6], "datatype": "BYTES", "data": [["1", "\u0061", "2", "a", "3", "b"], ["x", 1, null, "", "01", "NaN"]]}]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req v2InferRequest
		if err := json.Unmarshal(body, &req); err != nil {
			return
		}
		meta := fuzzCategoricalMeta(6)
		idx := newCategoryIndex(&meta)
		for _, in := range req.Inputs {
			for _, spec := range []model.TensorSpec{{Name: "input", DataType: model.FP32, Shape: []int64{-1, 6}}, {Name: "category", DataType: model.INT64, Shape: []int64{-1}}} {
				for _, strict := range []bool{true, false} {
					tn, aerr := decodeTensor(in.Name, in.Datatype, in.Shape, in.Data, spec, strict, 1<<20)
					if aerr != nil {
						if errorStatus[aerr.typ] < 400 {
							t.Fatalf("error %+v", aerr)
						}
						continue
					}
					if tn.DataLen() != tn.Len() {
						t.Fatalf("tensor of shape %v holds %d values", tn.Shape, tn.DataLen())
					}
					strs, ok := tn.Data.([]string)
					if !ok {
						continue
					}
					if strict {
						t.Fatal("a tensor model was given BYTES")
					}
					// A model of rows turns each element into a number, or says why not.
					for i, s := range strs {
						x, why := idx.element(&meta, i%6, s)
						if why == "" && math.IsNaN(x) && (i%6 == 0 || i%2 == 1) {
							t.Fatalf("element %q of a numeric column became NaN", s)
						}
					}
				}
			}
		}
	})
}

// TestV2TensorBounds: a shape is checked before any data is decoded, by its
// rows and by its elements (for inputs whose other dimensions are free).
func TestV2TensorBounds(t *testing.T) {
	spec := model.TensorSpec{Name: "x", DataType: model.FP32, Shape: []int64{-1, -1}}
	for _, tc := range []struct {
		shape []int64
		says  string
	}{
		{[]int64{17, 1}, "the batch has 17 rows, over the limit of 16"},
		{[]int64{2, 10_000_000}, "input x has more than 16777216 elements"},
	} {
		_, aerr := decodeTensor("x", "FP32", tc.shape, json.RawMessage(`[1]`), spec, true, 16)
		if aerr == nil || aerr.typ != errBatchTooLarge || !strings.Contains(aerr.msg, tc.says) {
			t.Errorf("shape %v: %v, want batch_too_large saying %q", tc.shape, aerr, tc.says)
		}
	}
}

// TestDecodedListsAreBounded: lists in v2 and feedback bodies are refused
// once over their bound, before their elements are built (a few megabytes
// of "{}," would otherwise become gigabytes of structs).
func TestDecodedListsAreBounded(t *testing.T) {
	h := newHarness(t, func(o *Options) {
		o.MaxBodyBytes = 8 << 20
		o.Feedback = feedback.New(feedback.Options{}, o.Metrics.FeedbackTotal, o.Metrics.LabelledRows)
	})
	empties := func(n int) string { return "[" + strings.TrimSuffix(strings.Repeat("{},", n), ",") + "]" }
	for _, tc := range []struct {
		path, body string
		status     int
		says       string
	}{
		{"/v2/models/fraud_model/infer", `{"inputs": ` + empties(65) + `}`, 413, "more than 64 tensors"},
		{"/v2/models/fraud_model/infer", `{"inputs": ` + empties(200_000) + `}`, 413, "more than 64 tensors"},
		{"/v2/models/fraud_model/infer", `{"inputs": [{"name": "input", "datatype": "FP32", "data": [1], "shape": [` + strings.TrimSuffix(strings.Repeat("1,", 33), ",") + `]}]}`, 413, "more than 32 dimensions in a shape"},
		{"/v2/models/fraud_model/infer", `{"inputs": [], "outputs": ` + empties(65) + `}`, 413, "more than 64 outputs"},
		{"/v2/models/fraud_model/infer", `{"inputs": 5}`, 400, `"inputs" must be a list`},
		{"/feedback", empties(1001), 413, "more than 1000 feedback items"},
		{"/feedback", `[{"request_id": "a", "labels": [` + strings.TrimSuffix(strings.Repeat(`"x",`, 1<<16+1), ",") + `]}]`, 413, "more than 65536 labels"},
		{"/feedback", `[{"request_id": "a", "labels": [` + strings.TrimSuffix(strings.Repeat(`"x",`, 40_000), ",") + `]}, {"request_id": "b", "labels": [` + strings.TrimSuffix(strings.Repeat(`"x",`, 40_000), ",") + `]}]`, 413, "more than 65536 labels in all"},
		{"/feedback", `{"request_id": "a", "labels": "x"}`, 400, `"labels" must be a list`},
	} {
		rec := h.do("POST", tc.path, "application/json", tc.body)
		var e errorResponse
		json.Unmarshal(rec.Body.Bytes(), &e)
		if rec.Code != tc.status || !strings.Contains(e.Error, tc.says) {
			t.Errorf("%s %.60s: %d %s, want %d saying %q", tc.path, tc.body, rec.Code, rec.Body, tc.status, tc.says)
		}
	}
}
