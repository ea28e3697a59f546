package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/modelwatch/modelwatch/internal/metrics"
	"github.com/modelwatch/modelwatch/internal/model"
	"github.com/modelwatch/modelwatch/internal/model/modeltest"
	"github.com/modelwatch/modelwatch/internal/model/xgboost"
	"github.com/modelwatch/modelwatch/models"
)

// A row the embedded fraud_model classifies as fraud, and one it classifies as safe.
const (
	fraudRow = `[950.0, 2, 8, 120.5, 11, 12]`
	safeRow  = `[25.0, 14, 0, 1.5, 2, 900]`
)

// harness is a Server with the embedded fraud_model and fake models, a clock
// that advances 50µs at every reading, and request ids req-1, req-2, ...
type harness struct {
	t   *testing.T
	reg *prometheus.Registry
	met *metrics.Metrics
	srv *Server

	mu    sync.Mutex
	clock time.Time
	ids   int
}

func newHarness(t *testing.T, mutate func(*Options)) *harness {
	t.Helper()
	h := &harness{t: t, reg: prometheus.NewRegistry(), clock: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	h.met = metrics.New(h.reg)
	registry := model.NewRegistry(models.Default)
	loaded, cfg, err := model.LoadDir(models.FS, models.Default, []model.Runtime{xgboost.Runtime})
	if err != nil || len(loaded) != 1 || loaded[0].Err != nil {
		t.Fatalf("load embedded model: %v %+v", err, loaded)
	}
	registry.Add(loaded[0].Model)
	registry.SetDefaultVersion(models.Default, cfg.DefaultVersion)
	h.met.ModelLoaded(loaded[0].Model.Metadata(), 2*time.Millisecond)

	twoClass := func(name string, accepts bool, f func(context.Context, model.Batch) (model.Result, error)) *modeltest.Model {
		return &modeltest.Model{Meta: model.Metadata{Name: name, Version: "1", Type: "fake", Features: []string{"x", "y"},
			Classes: []string{"no", "yes"}, Outputs: 2, AcceptsMissing: accepts}, PredictFunc: f}
	}
	fakes := []*modeltest.Model{
		// faulty panics on a negative first value.
		twoClass("faulty", true, func(_ context.Context, in model.Batch) (model.Result, error) {
			if in.Values[0] < 0 {
				panic("negative input")
			}
			return model.Result{Rows: in.Rows, Cols: 2, Values: make([]float64, 2*in.Rows)}, nil
		}),
		// slow waits for the request's deadline.
		twoClass("slow", true, func(ctx context.Context, in model.Batch) (model.Result, error) {
			<-ctx.Done()
			return model.Result{}, ctx.Err()
		}),
		// strict takes no missing values.
		twoClass("strict", false, nil),
	}
	for _, f := range fakes {
		registry.Add(f)
		h.met.ModelLoaded(f.Meta, time.Millisecond)
	}

	opts := Options{
		Models:         registry,
		Metrics:        h.met,
		MetricsHandler: promhttp.HandlerFor(h.reg, promhttp.HandlerOpts{EnableOpenMetrics: true}),
		MaxBodyBytes:   4096,
		MaxBatchRows:   16,
		RequestTimeout: time.Second,
		Now:            h.now,
		NewRequestID: func() string {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.ids++
			return fmt.Sprintf("req-%d", h.ids)
		},
	}
	if mutate != nil {
		mutate(&opts)
	}
	h.srv = New(opts)
	h.srv.SetReady(true)
	return h
}

func (h *harness) now() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.clock = h.clock.Add(50 * time.Microsecond)
	return h.clock
}

func (h *harness) do(method, path, contentType, body string, header ...string) *httptest.ResponseRecorder {
	h.t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.srv.ServeHTTP(rec, req)
	return rec
}

func (h *harness) predict(body string) *httptest.ResponseRecorder {
	h.t.Helper()
	return h.do(http.MethodPost, "/predict", "application/json", body)
}

// snapshot flattens every series into "name{labels}" -> value; histograms
// contribute their _count and _sum.
func (h *harness) snapshot() map[string]float64 {
	h.t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, lp := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
			}
			key := "{" + strings.Join(ls, ",") + "}"
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[mf.GetName()+key] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[mf.GetName()+key] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[mf.GetName()+"_count"+key] = float64(m.GetHistogram().GetSampleCount())
				out[mf.GetName()+"_sum"+key] = m.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}

// delta returns the series that changed or appeared between two snapshots.
func delta(before, after map[string]float64) map[string]float64 {
	d := map[string]float64{}
	for k, v := range after {
		if v != before[k] {
			d[k] = v - before[k]
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			d[k+" (deleted)"] = 0
		}
	}
	return d
}

type errorResponse struct {
	Error     string `json:"error"`
	ErrorType string `json:"error_type"`
	RequestID string `json:"request_id"`
}

func TestBadInput(t *testing.T) {
	h := newHarness(t, nil)
	row6 := func(n int) string {
		rows := make([]string, n)
		for i := range rows {
			rows[i] = safeRow
		}
		return `{"inputs": [` + strings.Join(rows, ",") + `]}`
	}
	for _, tc := range []struct {
		name        string
		method      string
		contentType string
		body        string
		status      int
		errorType   errorType
		model       string // model_name label the error is counted under
		says        string // in the error message
	}{
		{"malformed JSON", "POST", "application/json", `{"inputs": [[1, 2,`, 400, errInvalidJSON, "", "ends before the JSON does"},
		{"not JSON", "POST", "application/json", `inputs=1,2,3`, 400, errInvalidJSON, "", "invalid JSON at byte 1"},
		{"empty body", "POST", "application/json", ``, 400, errInvalidJSON, "", "the body is empty"},
		{"trailing data", "POST", "application/json", `{"inputs": [` + safeRow + `]} {}`, 400, errInvalidJSON, "", "data after the request object"},
		{"wrong content type", "POST", "text/plain", row6(1), 415, errMediaType, "", "Content-Type must be application/json"},
		{"form content type", "POST", "application/x-www-form-urlencoded", row6(1), 415, errMediaType, "", "Content-Type must be application/json"},
		{"top-level list", "POST", "application/json", `[[1, 2]]`, 400, errInvalidRequest, "", "must be a JSON object"},
		{"missing inputs", "POST", "application/json", `{"model_name": "fraud_model"}`, 400, errInvalidRequest, "", `no "inputs"`},
		{"null inputs", "POST", "application/json", `{"inputs": null}`, 400, errInvalidRequest, "", `no "inputs"`},
		{"inputs not a list", "POST", "application/json", `{"inputs": "1,2,3"}`, 400, errInvalidRequest, "", "inputs must be a list of rows, not a string"},
		{"row not a list", "POST", "application/json", `{"inputs": [` + safeRow + `, 7]}`, 400, errInvalidRequest, "", "inputs[1] must be a list of numbers, not a number"},
		{"unknown field", "POST", "application/json", `{"input": [` + safeRow + `]}`, 400, errInvalidRequest, "", `unknown field "input"`},
		{"model name not a string", "POST", "application/json", `{"model_name": 5, "inputs": [` + safeRow + `]}`, 400, errInvalidRequest, "", `"model_name" must be a string`},
		{"numeric string in row", "POST", "application/json", `{"inputs": [[25.0, "14", 0, 1.5, 2, 900]]}`, 422, errInvalidInput, "fraud_model", "inputs[0][1] (hour_of_day) is a string, but hour_of_day is a numeric feature: send a number"},
		{"string NaN", "POST", "application/json", `{"inputs": [[25.0, 14, "NaN", 1.5, 2, 900]]}`, 422, errInvalidInput, "fraud_model", "inputs[0][2] (merchant_category) is a string, but merchant_category is a numeric feature: send a number"},
		{"object in row", "POST", "application/json", `{"inputs": [[25.0, {}, 0, 1.5, 2, 900]]}`, 400, errInvalidRequest, "", "inputs[0][1] must be a number, a string or null, not an object"},
		{"boolean in row", "POST", "application/json", `{"inputs": [[true, 14, 0, 1.5, 2, 900]]}`, 400, errInvalidRequest, "", "not a boolean"},
		{"nested list in row", "POST", "application/json", `{"inputs": [[[25.0], 14, 0, 1.5, 2, 900]]}`, 400, errInvalidRequest, "", "not a list"},
		{"NaN literal", "POST", "application/json", `{"inputs": [[25.0, NaN, 0, 1.5, 2, 900]]}`, 400, errInvalidJSON, "", "NaN and Infinity are not JSON numbers; send null for a missing value"},
		{"Infinity literal", "POST", "application/json", `{"inputs": [[25.0, 14, 0, Infinity, 2, 900]]}`, 400, errInvalidJSON, "", "NaN and Infinity are not JSON numbers"},
		{"-Infinity literal", "POST", "application/json", `{"inputs": [[25.0, 14, 0, -Infinity, 2, 900]]}`, 400, errInvalidJSON, "", "NaN and Infinity are not JSON numbers"},
		{"number overflowing to Inf", "POST", "application/json", `{"inputs": [[25.0, 14, 0, 1e999, 2, 900]]}`, 422, errInvalidInput, "fraud_model", "inputs[0][3] (distance_from_home_km) is too large"},
		{"number beyond float32", "POST", "application/json", `{"inputs": [[25.0, 14, 0, 1e39, 2, 900]]}`, 422, errInvalidInput, "fraud_model", "inputs[0][3] (distance_from_home_km) is too large for the model's 32-bit float input"},
		{"one row wider than any model", "POST", "application/json", `{"inputs": [` + strings.Repeat("1, ", 96) + `1]}`, 413, errBatchTooLarge, "", "inputs hold more than 96 values, the most that 16 rows (--max-batch-rows) of the widest loaded model (6 features) take"},
		{"inputs given twice, the last empty", "POST", "application/json", `{"inputs": [` + safeRow + `], "inputs": []}`, 422, errEmptyBatch, "fraud_model", `"inputs" has no rows`},
		{"inputs given twice, the last null", "POST", "application/json", `{"inputs": [` + safeRow + `], "inputs": null}`, 400, errInvalidRequest, "", `no "inputs"`},
		{"empty inputs", "POST", "application/json", `{"inputs": []}`, 422, errEmptyBatch, "fraud_model", `"inputs" has no rows`},
		{"ragged rows", "POST", "application/json", `{"inputs": [` + safeRow + `, [1, 2, 3]]}`, 422, errShapeMismatch, "fraud_model", "row 1 has 3 values, row 0 has 6"},
		{"wrong feature count", "POST", "application/json", `{"inputs": [[1, 2, 3]]}`, 422, errShapeMismatch, "fraud_model", "rows have 3 values; model fraud_model v1 takes 6 features: amount, hour_of_day"},
		{"empty row", "POST", "application/json", `{"inputs": [[]]}`, 422, errShapeMismatch, "fraud_model", "rows have 0 values"},
		{"missing value for a strict model", "POST", "application/json", `{"model_name": "strict", "inputs": [[1, null]]}`, 422, errInvalidInput, "strict", "inputs[0][1] (y) is null, and model strict takes no missing values"},
		{"unknown model", "POST", "application/json", `{"model_name": "no_such_model", "inputs": [` + safeRow + `]}`, 404, errModelNotFound, "", "no model of that name"},
		{"unknown version", "POST", "application/json", `{"model_version": "v999", "inputs": [` + safeRow + `]}`, 404, errVersionNotFound, "fraud_model", "no version of that name"},
		{"unknown version of a named model", "POST", "application/json", `{"model_name": "strict", "model_version": "v999", "inputs": [[1, 2]]}`, 404, errVersionNotFound, "strict", "no version of that name"},
		{"body over the limit", "POST", "application/json", `{"inputs": [` + strings.Repeat(safeRow+",", 200) + safeRow + `]}`, 413, errBodyTooLarge, "", "over the limit of 4096 bytes"},
		{"batch over the row limit", "POST", "application/json", row6(17), 413, errBatchTooLarge, "fraud_model", "the batch has 17 rows, over the limit of 16"},
		{"wrong method", "GET", "", "", 405, errMethodNotAllowed, "", "method GET is not allowed here; allowed: POST"},
		{"unknown method", "BREW", "", "", 405, errMethodNotAllowed, "", "method OTHER is not allowed here"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := h.snapshot()
			rec := h.do(tc.method, "/predict", tc.contentType, tc.body)
			if rec.Code != tc.status {
				t.Errorf("status %d, want %d; body %s", rec.Code, tc.status, rec.Body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			var e errorResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
				t.Fatalf("error body is not JSON: %v: %s", err, rec.Body)
			}
			if e.ErrorType != string(tc.errorType) || !strings.Contains(e.Error, tc.says) {
				t.Errorf("error %+v, want type %s saying %q", e, tc.errorType, tc.says)
			}
			if e.RequestID == "" || e.RequestID != rec.Header().Get("X-Request-ID") {
				t.Errorf("request_id %q, X-Request-ID header %q", e.RequestID, rec.Header().Get("X-Request-ID"))
			}
			if tc.status == 405 && rec.Header().Get("Allow") != "POST" {
				t.Errorf("Allow %q, want POST", rec.Header().Get("Allow"))
			}
			method := tc.method
			if method == "BREW" {
				method = "OTHER"
			}
			got := delta(before, h.snapshot())
			dur := fmt.Sprintf(`{endpoint="/predict",method=%q}`, method)
			if got["http_request_duration_seconds_sum"+dur] <= 0 {
				t.Errorf("http_request_duration_seconds_sum%s did not grow", dur)
			}
			delete(got, "http_request_duration_seconds_sum"+dur)
			want := map[string]float64{
				fmt.Sprintf(`http_requests_total{endpoint="/predict",method=%q,status="%d"}`, method, tc.status):  1,
				"http_request_duration_seconds_count" + dur:                                                       1,
				fmt.Sprintf(`model_prediction_errors_total{error_type=%q,model_name=%q}`, tc.errorType, tc.model): 1,
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("metric changes:\n got %v\nwant %v", got, want)
			}
		})
	}
	// No series carries a value the client made up.
	for k := range h.snapshot() {
		for _, bogus := range []string{"no_such_model", "v999", "BREW", "input"} {
			if strings.Contains(k, `"`+bogus+`"`) {
				t.Errorf("series %s carries the client's value %q", k, bogus)
			}
		}
	}
}

type predictResponse struct {
	ModelName    string  `json:"model_name"`
	ModelVersion string  `json:"model_version"`
	RequestID    string  `json:"request_id"`
	Prediction   any     `json:"prediction"`
	Confidence   float64 `json:"confidence"`
	Predictions  []struct {
		Class         string             `json:"class"`
		Confidence    float64            `json:"confidence"`
		Probabilities map[string]float64 `json:"probabilities"`
	} `json:"predictions"`
	LatencyMS float64 `json:"latency_ms"`
}

func decodeResponse(t *testing.T, rec *httptest.ResponseRecorder) predictResponse {
	t.Helper()
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var r predictResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
		t.Fatalf("response is not JSON: %v: %s", err, rec.Body)
	}
	return r
}

func TestPredict(t *testing.T) {
	h := newHarness(t, nil)
	m, err := h.srv.models.Resolve("fraud_model", "v1")
	if err != nil {
		t.Fatal(err)
	}

	// One row: the tutorials' shape, with prediction and confidence at the top.
	rec := h.predict(`{"inputs": [` + fraudRow + `]}`)
	r := decodeResponse(t, rec)
	want, err := m.Predict(context.Background(), model.Batch{Rows: 1, Cols: 6, Values: []float64{950, 2, 8, 120.5, 11, 12}})
	if err != nil {
		t.Fatal(err)
	}
	if r.ModelName != "fraud_model" || r.ModelVersion != "v1" || r.RequestID != "req-1" || rec.Header().Get("X-Request-ID") != "req-1" {
		t.Errorf("identity %+v, header %q", r, rec.Header().Get("X-Request-ID"))
	}
	if r.Prediction != "fraud" || r.Confidence != want.Values[1] || len(r.Predictions) != 1 {
		t.Fatalf("single-row answer %+v, want fraud with confidence %v", r, want.Values[1])
	}
	p := r.Predictions[0]
	if p.Class != "fraud" || p.Confidence != want.Values[1] || p.Probabilities["safe"] != want.Values[0] || p.Probabilities["fraud"] != want.Values[1] {
		t.Errorf("prediction %+v, want probabilities %v", p, want.Values)
	}
	// The clock advances 50µs per reading; the request reads it 6 times up to the answer.
	if r.LatencyMS != 0.25 {
		t.Errorf("latency_ms %v, want 0.25", r.LatencyMS)
	}

	// A batch, with a missing value, explicit name and version, and the
	// client's own request id.
	body := `{"model_name": "fraud_model", "model_version": "v1", "inputs": [` + safeRow + `,` + fraudRow + `,[null, 3, 2, 30, 6, 40]]}`
	rec = h.do(http.MethodPost, "/predict", "application/json; charset=utf-8", body, "X-Request-ID", "client-trace-42")
	r = decodeResponse(t, rec)
	if r.RequestID != "client-trace-42" || rec.Header().Get("X-Request-ID") != "client-trace-42" {
		t.Errorf("request id %q, header %q: want the client's", r.RequestID, rec.Header().Get("X-Request-ID"))
	}
	if r.Prediction != nil || len(r.Predictions) != 3 || r.Predictions[0].Class != "safe" || r.Predictions[1].Class != "fraud" {
		t.Fatalf("batch answer %s", rec.Body)
	}
	want, _ = m.Predict(context.Background(), model.Batch{Rows: 1, Cols: 6, Values: []float64{math.NaN(), 3, 2, 30, 6, 40}})
	if got := r.Predictions[2].Probabilities["fraud"]; got != want.Values[1] {
		t.Errorf("missing value: p(fraud) %v, want %v", got, want.Values[1])
	}
	// The row with a missing value is the third fraud of the six rows sent in all.
	if r.Predictions[2].Class != "fraud" {
		t.Errorf("missing-value row classified %s", r.Predictions[2].Class)
	}

	// An invalid X-Request-ID is replaced.
	rec = h.do(http.MethodPost, "/predict", "application/json", `{"inputs": [`+safeRow+`]}`, "X-Request-ID", "bad id\twith spaces")
	if r := decodeResponse(t, rec); r.RequestID != "req-2" {
		t.Errorf("request id %q, want a generated one", r.RequestID)
	}

	// A flat list is one row.
	if r := decodeResponse(t, h.predict(`{"inputs": `+safeRow+`}`)); r.Prediction != "safe" {
		t.Errorf("flat row: %+v", r)
	}

	s := h.snapshot()
	for k, v := range map[string]float64{
		`model_requests_total{model_name="fraud_model",model_version="v1",status="success"}`:     4,
		`model_requests_total{model_name="fraud_model",model_version="v1",status="error"}`:       0,
		`model_predictions_total{model_name="fraud_model",model_version="v1"}`:                   6,
		`model_predicted_class_total{class="fraud",model_name="fraud_model",model_version="v1"}`: 3,
		`model_predicted_class_total{class="safe",model_name="fraud_model",model_version="v1"}`:  3,
		`model_prediction_confidence_count{model_name="fraud_model",model_version="v1"}`:         6,
		`model_batch_size_count{model_name="fraud_model"}`:                                       4,
		`model_batch_size_sum{model_name="fraud_model"}`:                                         6,
		`model_input_size_bytes_count{model_name="fraud_model"}`:                                 4,
		`active_requests{model_name="fraud_model"}`:                                              0,
		`http_requests_total{endpoint="/predict",method="POST",status="200"}`:                    4,
		`model_loaded_info{model_name="fraud_model",model_type="xgboost",model_version="v1"}`:    1,
		`model_load_time_seconds{model_name="fraud_model",model_version="v1"}`:                   0.002,
		`model_load_failures_total{model_name="fraud_model"}`:                                    0,
	} {
		if got, ok := s[k]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, v)
		}
	}
}

func TestPanickingModel(t *testing.T) {
	h := newHarness(t, nil)
	before := h.snapshot()
	rec := h.predict(`{"model_name": "faulty", "inputs": [[-1, 0]]}`)
	if rec.Code != 500 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var e errorResponse
	json.Unmarshal(rec.Body.Bytes(), &e)
	if e.ErrorType != "internal" || e.Error != "the model failed unexpectedly" {
		t.Errorf("error %+v", e)
	}
	// The server goes on serving, the same model included.
	if rec := h.predict(`{"model_name": "faulty", "inputs": [[1, 0]]}`); rec.Code != 200 {
		t.Fatalf("after the panic: %d %s", rec.Code, rec.Body)
	}
	got := delta(before, h.snapshot())
	for k, v := range map[string]float64{
		`model_requests_total{model_name="faulty",model_version="1",status="error"}`:   1,
		`model_requests_total{model_name="faulty",model_version="1",status="success"}`: 1,
		`model_prediction_errors_total{error_type="internal",model_name="faulty"}`:     1,
		`http_requests_total{endpoint="/predict",method="POST",status="500"}`:          1,
		`http_requests_total{endpoint="/predict",method="POST",status="200"}`:          1,
	} {
		if got[k] != v {
			t.Errorf("%s moved by %v, want %v", k, got[k], v)
		}
	}
	if a := h.snapshot()[`active_requests{model_name="faulty"}`]; a != 0 {
		t.Errorf("active_requests %v after the panic, want 0", a)
	}
}

func TestTimeout(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.RequestTimeout = 20 * time.Millisecond })
	rec := h.predict(`{"model_name": "slow", "inputs": [[1, 0]]}`)
	var e errorResponse
	json.Unmarshal(rec.Body.Bytes(), &e)
	if rec.Code != http.StatusGatewayTimeout || e.ErrorType != "timeout" {
		t.Fatalf("status %d, %+v", rec.Code, e)
	}
	s := h.snapshot()
	if s[`model_prediction_errors_total{error_type="timeout",model_name="slow"}`] != 1 ||
		s[`model_requests_total{model_name="slow",model_version="1",status="error"}`] != 1 {
		t.Errorf("timeout not counted: %v", delta(map[string]float64{}, s))
	}
}

func TestHandlerPanic(t *testing.T) {
	h := newHarness(t, func(o *Options) {
		o.MetricsHandler = http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") })
	})
	rec := h.do(http.MethodGet, "/metrics", "", "")
	if rec.Code != 500 {
		t.Fatalf("status %d", rec.Code)
	}
	if got := h.snapshot()[`http_requests_total{endpoint="/metrics",method="GET",status="500"}`]; got != 1 {
		t.Errorf("panic in a handler counted %v times, want 1", got)
	}
}

func TestHealthReadyInfo(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.SetReady(false)
	if rec := h.do("GET", "/ready", "", ""); rec.Code != 503 {
		t.Errorf("/ready before ready: %d", rec.Code)
	}
	h.srv.SetReady(true)
	rec := h.do("GET", "/ready", "", "")
	var ready struct {
		Ready  bool         `json:"ready"`
		Models []modelState `json:"models"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &ready); err != nil || rec.Code != 200 || !ready.Ready || len(ready.Models) != 4 {
		t.Errorf("/ready: %d %s", rec.Code, rec.Body)
	}
	rec = h.do("GET", "/health", "", "")
	if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `{"models_loaded":4,"status":"healthy"}` {
		t.Errorf("/health: %d %s", rec.Code, rec.Body)
	}
	rec = h.do("GET", "/", "", "")
	var info struct {
		Service      string      `json:"service"`
		DefaultModel string      `json:"default_model"`
		Models       []modelInfo `json:"models"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &info); err != nil || info.Service != "modelwatch" || info.DefaultModel != "fraud_model" || len(info.Models) != 4 {
		t.Errorf("/: %d %s", rec.Code, rec.Body)
	}
	if rec := h.do("GET", "/nope", "", ""); rec.Code != 404 {
		t.Errorf("/nope: %d", rec.Code)
	}
	if rec := h.do("POST", "/health", "", ""); rec.Code != 405 || rec.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /health: %d, Allow %q", rec.Code, rec.Header().Get("Allow"))
	}
	s := h.snapshot()
	for k, v := range map[string]float64{
		`http_requests_total{endpoint="/ready",method="GET",status="503"}`:   1,
		`http_requests_total{endpoint="/ready",method="GET",status="200"}`:   1,
		`http_requests_total{endpoint="/health",method="GET",status="200"}`:  1,
		`http_requests_total{endpoint="other",method="GET",status="404"}`:    1,
		`http_requests_total{endpoint="/health",method="POST",status="405"}`: 1,
	} {
		if s[k] != v {
			t.Errorf("%s = %v, want %v", k, s[k], v)
		}
	}
	// Errors outside the inference routes are not prediction errors.
	for k := range s {
		if strings.HasPrefix(k, "model_prediction_errors_total") {
			t.Errorf("%s counted for a non-inference route", k)
		}
	}
}

// TestStartingAnswers503: before the server is ready a loaded model
// answers, and one not (yet) loaded gets 503 with Retry-After, so that a
// balancer that sent the request early retries it elsewhere; once ready,
// an unknown model is 404.
func TestStartingAnswers503(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.SetReady(false)
	if rec := h.predict(`{"inputs": [` + fraudRow + `]}`); rec.Code != 200 {
		t.Errorf("a loaded model while starting: %d %s", rec.Code, rec.Body)
	}
	rec := h.predict(`{"model_name": "loading", "inputs": [` + fraudRow + `]}`)
	var e errorResponse
	json.Unmarshal(rec.Body.Bytes(), &e)
	if rec.Code != 503 || e.ErrorType != "unavailable" || rec.Header().Get("Retry-After") != "1" {
		t.Errorf("a model not loaded while starting: %d %s, Retry-After %q", rec.Code, rec.Body, rec.Header().Get("Retry-After"))
	}
	h.srv.SetReady(true)
	if rec := h.predict(`{"model_name": "loading", "inputs": [` + fraudRow + `]}`); rec.Code != 404 {
		t.Errorf("an unknown model once ready: %d %s", rec.Code, rec.Body)
	}
	s := h.snapshot()
	if got := s[`model_prediction_errors_total{error_type="unavailable",model_name=""}`]; got != 1 {
		t.Errorf("unavailable counted %v times, want 1", got)
	}
}

// TestExemplarsAndNativeHistograms checks that latency observations carry the
// request id as an exemplar, that the histograms are also native, and that
// /metrics negotiates OpenMetrics.
func TestExemplarsAndNativeHistograms(t *testing.T) {
	h := newHarness(t, nil)
	rec := h.predict(`{"inputs": [` + safeRow + `]}`)
	id := rec.Header().Get("X-Request-ID")
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, mf := range mfs {
		name := mf.GetName()
		if mf.GetType() != dto.MetricType_HISTOGRAM {
			continue
		}
		for _, m := range mf.GetMetric() {
			hist := m.GetHistogram()
			if hist.GetSampleCount() == 0 {
				continue
			}
			if hist.Schema == nil || hist.GetZeroThreshold() <= 0 || len(hist.GetPositiveSpan()) == 0 {
				t.Errorf("%s is not a native histogram: schema %v spans %v", name, hist.Schema, hist.GetPositiveSpan())
			}
			var ids []string
			for _, b := range hist.GetBucket() {
				if ex := b.GetExemplar(); ex != nil {
					for _, l := range ex.GetLabel() {
						ids = append(ids, l.GetName()+"="+l.GetValue())
					}
				}
			}
			if len(ids) > 0 {
				found[name] = true
				if fmt.Sprint(ids) != fmt.Sprintf("[request_id=%s]", id) {
					t.Errorf("%s exemplars %v, want request_id=%s", name, ids, id)
				}
			}
		}
	}
	for _, name := range []string{"http_request_duration_seconds", "model_prediction_duration_seconds"} {
		if !found[name] {
			t.Errorf("%s has no exemplar", name)
		}
	}

	om := h.do("GET", "/metrics", "", "", "Accept", "application/openmetrics-text;version=1.0.0")
	if ct := om.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text") {
		t.Fatalf("Content-Type %q, want OpenMetrics", ct)
	}
	body := om.Body.String()
	if !strings.Contains(body, `# {request_id="`+id+`"}`) || !strings.HasSuffix(body, "# EOF\n") {
		t.Errorf("OpenMetrics exposition lacks the exemplar or # EOF:\n%s", grep(body, "model_prediction_duration_seconds_bucket"))
	}
	plain := h.do("GET", "/metrics", "", "")
	if ct := plain.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("default Content-Type %q", ct)
	}
}

func grep(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestErrorTable checks that every error type has a status and that the
// label values are the documented closed set.
func TestErrorTable(t *testing.T) {
	var got []string
	for _, typ := range errorTypes() {
		if errorStatus[typ] < 400 {
			t.Errorf("%s maps to %d", typ, errorStatus[typ])
		}
		got = append(got, string(typ))
	}
	sort.Strings(got)
	want := "batch_too_large body_too_large canceled empty_batch forbidden internal invalid_input invalid_json invalid_request load_failed method_not_allowed model_error model_not_found not_found overloaded shape_mismatch timeout unauthorized unavailable unknown_request unsupported_media_type version_not_found"
	if strings.Join(got, " ") != want {
		t.Errorf("error types\n got %s\nwant %s", strings.Join(got, " "), want)
	}
	for err, typ := range map[error]errorType{
		model.ErrModelNotFound:                        errModelNotFound,
		fmt.Errorf("x: %w", model.ErrVersionNotFound): errVersionNotFound,
		context.DeadlineExceeded:                      errTimeout,
		context.Canceled:                              errCanceled,
		&model.PanicError{Value: 1}:                   errInternal,
		errors.New("boom"):                            errModelFailed,
	} {
		if got := fromModelError(err).typ; got != typ {
			t.Errorf("fromModelError(%v) = %s, want %s", err, got, typ)
		}
	}
	// A model's own error is worded for the client and kept whole for the
	// log: its chain still answers errors.Is.
	cause := fmt.Errorf("reading tensor: %w", io.ErrUnexpectedEOF)
	aerr := fromModelError(cause)
	if aerr.msg != "the model failed: reading tensor: unexpected EOF" || !errors.Is(aerr, io.ErrUnexpectedEOF) {
		t.Errorf("fromModelError(%v) = %q, cause kept %v", cause, aerr.msg, errors.Is(aerr, io.ErrUnexpectedEOF))
	}
	var pe *model.PanicError
	if !errors.As(fromModelError(&model.PanicError{Value: 2}), &pe) || pe.Value != 2 {
		t.Error("a panic's apiError does not keep the *PanicError")
	}
}

func TestSeparateMetrics(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.SeparateMetrics = true })
	if rec := h.do("GET", "/metrics", "", ""); rec.Code != 404 {
		t.Errorf("/metrics on the API: %d, want 404", rec.Code)
	}
	rec := httptest.NewRecorder()
	h.srv.MetricsRoutes().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	if rec.Code != 200 || !strings.Contains(string(body), "http_requests_total") {
		t.Errorf("metrics listener: %d", rec.Code)
	}
}

// TestRepeatedInputsKey: a body that gives "inputs" twice is read as
// encoding/json reads a repeated key, the last one counting, on the fast
// path too; nothing of the first may leak into the batch (with a batcher,
// into other requests' rows).
func TestRepeatedInputsKey(t *testing.T) {
	h := newHarness(t, nil)
	want := h.do("POST", "/predict", "application/json", `{"inputs": `+safeRow+`}`)
	for _, body := range []string{
		`{"inputs": ` + fraudRow + `, "inputs": ` + safeRow + `}`,
		`{"inputs": [` + fraudRow + `, ` + fraudRow + `], "inputs": ` + safeRow + `}`,
		`{"inputs": [` + fraudRow + `, [1]], "inputs": [` + safeRow + `]}`,
		`{"inputs": [[1, 2, 3], [1]], "inputs": [` + safeRow + `]}`,
		`{"inputs": [` + fraudRow + `], "model_name": "fraud_model", "inputs": [` + safeRow + `]}`,
	} {
		rec := h.do("POST", "/predict", "application/json", body)
		var got, exp map[string]any
		json.Unmarshal(rec.Body.Bytes(), &got)
		json.Unmarshal(want.Body.Bytes(), &exp)
		if rec.Code != 200 || fmt.Sprint(got["predictions"]) != fmt.Sprint(exp["predictions"]) {
			t.Errorf("%s: %d %s\nwant the answer for the last inputs alone: %s", body, rec.Code, rec.Body, want.Body)
		}
	}
}

// TestUncleanPathsAndStaticFiles: paths ServeMux would redirect, CONNECT,
// and missing status page files get the JSON 404 of an unknown path,
// counted under endpoint="other" (or "/static/"), never a plain-text answer.
func TestUncleanPathsAndStaticFiles(t *testing.T) {
	h := newHarness(t, nil)
	for _, tc := range []struct{ method, path, endpoint string }{
		{"POST", "/v2/models//infer", "other"},
		{"POST", "/predict/../predict", "other"},
		{"GET", "/./health", "other"},
		{"GET", "//metrics", "other"},
		{"GET", "//", "other"},
		{"GET", "/static", "other"},
		{"CONNECT", "/predict", "other"},
		{"GET", "/static/missing.js", "/static/"},
		{"GET", "/static/", "/static/"},
	} {
		before := h.snapshot()
		rec := h.do(tc.method, tc.path, "application/json", "")
		var e errorResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || rec.Code != 404 || e.ErrorType != "not_found" || rec.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: %d %q %s", tc.method, tc.path, rec.Code, rec.Header().Get("Content-Type"), rec.Body)
		}
		method := tc.method
		if method == "CONNECT" {
			method = "OTHER"
		}
		key := fmt.Sprintf(`http_requests_total{endpoint=%q,method=%q,status="404"}`, tc.endpoint, method)
		if d := h.snapshot()[key] - before[key]; d != 1 {
			t.Errorf("%s %s: %s went up by %v", tc.method, tc.path, key, d)
		}
	}
	rec := h.do("GET", "/static/app.js", "", "")
	if rec.Code != 200 || !strings.Contains(rec.Header().Get("Content-Type"), "javascript") {
		t.Errorf("/static/app.js: %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
}

// TestRequestIDs: generated ids are 24 base32 characters, valid as an
// X-Request-ID, and differ from each other in no predictable way (no
// common prefix, as a counter would give).
func TestRequestIDs(t *testing.T) {
	gen := requestIDs()
	seen := map[string]bool{}
	firsts := map[byte]bool{}
	for range 10_000 {
		id := gen()
		if len(id) != 24 || !validRequestID(id) || strings.Trim(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") != "" || seen[id] {
			t.Fatalf("id %q (seen before: %v)", id, seen[id])
		}
		seen[id] = true
		firsts[id[0]] = true
	}
	if len(firsts) != 32 {
		t.Errorf("10,000 ids start with %d of the 32 characters", len(firsts))
	}
}
