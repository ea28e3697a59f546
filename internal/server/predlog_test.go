package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelwatch/modelwatch/internal/feedback"
	"github.com/modelwatch/modelwatch/internal/model"
	"github.com/modelwatch/modelwatch/internal/model/modeltest"
	"github.com/modelwatch/modelwatch/internal/predlog"
	"github.com/modelwatch/modelwatch/internal/predlog/predlogtest"
)

// newLoggedHarness is a server logging its predictions to store, with ids
// "<prefix>-N"; two of them on one store are two replicas.
func newLoggedHarness(t *testing.T, store predlog.Store, prefix string, mutate func(*predlog.Options)) (*harness, *predlog.Log) {
	t.Helper()
	opts := predlog.DefaultOptions()
	opts.PruneInterval = -1
	opts.MaxDelay = 10 * time.Millisecond
	if mutate != nil {
		mutate(&opts)
	}
	var l *predlog.Log
	var fb *feedback.Store
	h := newHarness(t, func(o *Options) {
		fb = feedback.New(feedback.Options{MinLabels: 1}, o.Metrics.FeedbackTotal, o.Metrics.LabelledRows)
		o.Feedback = fb
		var err error
		if l, err = predlog.New(store, opts, prometheus.NewRegistry()); err != nil {
			t.Fatal(err)
		}
		o.PredictionLog = l
		ids := 0
		o.NewRequestID = func() string { ids++; return fmt.Sprintf("%s-%d", prefix, ids) }
	})
	h.reg.MustRegister(fb)
	t.Cleanup(func() { l.Close(context.Background()) })
	return h, l
}

func openSQLiteStore(t *testing.T) predlog.Store {
	t.Helper()
	s, err := predlog.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), predlog.SQLiteFileName), predlog.SQLiteOptions{Retention: 100 * 365 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func feedbackResults(t *testing.T, h *harness, body string) []feedback.Outcome {
	t.Helper()
	rec := h.do("POST", "/feedback", "application/json", body)
	var out struct {
		Results []feedback.Outcome `json:"results"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || rec.Code != 200 {
		t.Fatalf("POST /feedback %s: %d %s", body, rec.Code, rec.Body)
	}
	return out.Results
}

// TestPredictionLogJoin: a prediction made on one replica is labelled
// through another, once; what each replica counts adds up to the labels.
func TestPredictionLogJoin(t *testing.T) {
	ctx := context.Background()
	store := openSQLiteStore(t)
	a, logA := newLoggedHarness(t, store, "a", nil)
	b, _ := newLoggedHarness(t, store, "b", nil)

	one := decodeResponse(t, a.predict(`{"inputs": [`+fraudRow+`]}`))
	batch := decodeResponse(t, a.predict(`{"inputs": [`+safeRow+`,`+fraudRow+`]}`))
	if err := logA.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	// The log holds each row: input, class, probabilities.
	ps, err := store.Lookup(ctx, batch.RequestID)
	if err != nil || len(ps) != 2 || ps[0].Class != "safe" || ps[1].Class != "fraud" || ps[0].Model != "fraud_model" || ps[0].Version != "v1" {
		t.Fatalf("Lookup(%s) = %+v, %v", batch.RequestID, ps, err)
	}

	// Refused labels change nothing.
	for _, tc := range []struct {
		body   string
		status int
		says   string
	}{
		{fmt.Sprintf(`{"request_id": %q, "label": "maybe"}`, one.RequestID), 422, `"maybe" is not a class of model fraud_model`},
		{fmt.Sprintf(`{"request_id": %q, "labels": ["safe"]}`, batch.RequestID), 422, "the prediction has 2 rows, the feedback 1 labels"},
		{fmt.Sprintf(`[{"request_id": %q, "label": "fraud"}, {"request_id": %q, "label": "safe"}]`, one.RequestID, one.RequestID), 422, "labelled twice"},
		{`{"request_id": "never", "label": "safe"}`, 404, "never logged"},
	} {
		rec := b.do("POST", "/feedback", "application/json", tc.body)
		var e errorResponse
		json.Unmarshal(rec.Body.Bytes(), &e)
		if rec.Code != tc.status || !strings.Contains(e.Error, tc.says) {
			t.Errorf("%s: %d %s, want %d saying %q", tc.body, rec.Code, rec.Body, tc.status, tc.says)
		}
	}

	got := feedbackResults(t, b, fmt.Sprintf(`[{"request_id": %q, "label": "fraud"}, {"request_id": %q, "labels": ["safe", "safe"]}]`, one.RequestID, batch.RequestID))
	want := fmt.Sprintf("[{%s correct 1 0 fraud_model v1} {%s incorrect 1 1 fraud_model v1}]", one.RequestID, batch.RequestID)
	if fmt.Sprint(got) != want {
		t.Fatalf("results %v, want %s", got, want)
	}
	// Labelled once: again through either replica is unknown.
	for _, h := range []*harness{a, b} {
		if rec := h.do("POST", "/feedback", "application/json", fmt.Sprintf(`{"request_id": %q, "label": "fraud"}`, one.RequestID)); rec.Code != 404 {
			t.Errorf("a second label: %d %s, want 404", rec.Code, rec.Body)
		}
	}
	ps, _ = store.Lookup(ctx, batch.RequestID)
	if !ps[0].Labelled() || ps[0].Label != "safe" || ps[1].Label != "safe" {
		t.Errorf("labels in the log: %+v", ps)
	}
	sb, sa := b.snapshot(), a.snapshot()
	for k, v := range map[string]float64{
		`model_feedback_total{model_name="fraud_model",model_version="v1",result="correct"}`:                                2,
		`model_feedback_total{model_name="fraud_model",model_version="v1",result="incorrect"}`:                              1,
		`model_feedback_total{model_name="",model_version="",result="unknown_request"}`:                                     2,
		`model_labelled_rows_total{model_name="fraud_model",model_version="v1",predicted_class="fraud",true_class="fraud"}`: 1,
		`model_labelled_rows_total{model_name="fraud_model",model_version="v1",predicted_class="fraud",true_class="safe"}`:  1,
		`model_labelled_rows_total{model_name="fraud_model",model_version="v1",predicted_class="safe",true_class="safe"}`:   1,
		`model_accuracy_ratio{model_name="fraud_model",model_version="v1"}`:                                                 2.0 / 3,
	} {
		if sb[k] != v {
			t.Errorf("replica b: %s = %v, want %v", k, sb[k], v)
		}
	}
	if n := sa[`model_feedback_total{model_name="fraud_model",model_version="v1",result="correct"}`]; n != 0 {
		t.Errorf("replica a counted %v correct rows; it labelled none", n)
	}
	if n := sa[`model_feedback_total{model_name="",model_version="",result="unknown_request"}`]; n != 1 {
		t.Errorf("replica a counted %v unknown labels, want 1", n)
	}
}

// TestPredictionLogLabelBeforeWrite: a label that reaches the replica that
// made the prediction while the prediction still waits in its queue is
// joined after the queue is written.
func TestPredictionLogLabelBeforeWrite(t *testing.T) {
	store := openSQLiteStore(t)
	a, _ := newLoggedHarness(t, store, "a", func(o *predlog.Options) { o.MaxDelay = 300 * time.Millisecond })
	one := decodeResponse(t, a.predict(`{"inputs": [`+fraudRow+`]}`))
	got := feedbackResults(t, a, fmt.Sprintf(`[{"request_id": %q, "label": "safe"}]`, one.RequestID))
	if fmt.Sprint(got) != fmt.Sprintf("[{%s incorrect 0 1 fraud_model v1}]", one.RequestID) {
		t.Fatalf("results %v", got)
	}
}

// TestPredictionLogSampleAndStoreDown: requests outside the sample are not
// logged (their labels are unknown); a store that cannot be read answers
// 503 and changes nothing.
func TestPredictionLogSampleAndStoreDown(t *testing.T) {
	store := openSQLiteStore(t)
	a, logA := newLoggedHarness(t, store, "a", func(o *predlog.Options) { o.Sample = 0 })
	one := decodeResponse(t, a.predict(`{"inputs": [`+fraudRow+`]}`))
	logA.Sync(context.Background())
	if _, err := store.Lookup(context.Background(), one.RequestID); !errors.Is(err, predlog.ErrNotFound) {
		t.Fatalf("a sampled-out request was logged: %v", err)
	}

	down := &predlogtest.Store{
		LookupFunc: func(context.Context, string) ([]predlog.Prediction, error) {
			return nil, errors.New("connection refused")
		},
	}
	b, _ := newLoggedHarness(t, down, "b", nil)
	rec := b.do("POST", "/feedback", "application/json", `{"request_id": "b-1", "label": "safe"}`)
	var e errorResponse
	json.Unmarshal(rec.Body.Bytes(), &e)
	if rec.Code != 503 || e.ErrorType != "unavailable" || strings.Contains(e.Error, "connection refused") {
		t.Fatalf("store down: %d %s, want 503 unavailable without the store's error", rec.Code, rec.Body)
	}
	if n := b.snapshot()[`model_feedback_total{model_name="",model_version="",result="unknown_request"}`]; n != 0 {
		t.Errorf("a label the store could not look up was counted unknown (%v)", n)
	}
}

// BenchmarkPredictLog is the prediction log's cost on the request path:
// POST /predict with model-quality monitoring (drift and feedback, as
// BenchmarkPredict/quality) with the log off, and on with every request
// logged: the records built, queued, and written to the journal (one
// write(2) per request), the store discarding them, so that the writer's
// own work (the store's, on another core or machine) is left out.
func BenchmarkPredictLog(b *testing.B) {
	for _, logged := range []bool{false, true} {
		name := "off"
		if logged {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			t := &testing.T{}
			h := newHarness(t, func(o *Options) {
				o.Now = time.Now
				o.MaxBodyBytes = 1 << 20
				o.MaxBatchRows = 1024
				o.Feedback = feedback.New(feedback.Options{}, o.Metrics.FeedbackTotal, o.Metrics.LabelledRows)
				if logged {
					opts := predlog.DefaultOptions()
					opts.PruneInterval = -1
					opts.JournalDir = b.TempDir()
					l, err := predlog.New(&predlogtest.Store{}, opts, prometheus.NewRegistry())
					if err != nil {
						b.Fatal(err)
					}
					b.Cleanup(func() { l.Close(context.Background()) })
					o.PredictionLog = l
				}
			})
			for _, rows := range []int{1, 64} {
				body := `{"inputs": [` + strings.TrimSuffix(strings.Repeat(safeRow+",", rows), ",") + `]}`
				b.Run(fmt.Sprintf("rows=%d", rows), func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						postPredict(b, h, body)
					}
				})
			}
		})
	}
}

// TestPredictionLogRegressorAndUnloaded: a regressor's label (a number) is
// written to the log and answered "recorded"; a label for a version no
// longer loaded is scored and written, and counted nowhere, since that
// version's series are gone.
func TestPredictionLogRegressorAndUnloaded(t *testing.T) {
	ctx := context.Background()
	store := openSQLiteStore(t)
	var registry *model.Registry
	a, logA := newLoggedHarness(t, store, "a", nil)
	registry = a.srv.models
	registry.Add(&modeltest.Model{Meta: model.Metadata{Name: "price", Version: "1", Type: "fake", Features: []string{"x", "y"}, Outputs: 1},
		PredictFunc: func(_ context.Context, in model.Batch) (model.Result, error) {
			return model.Result{Rows: in.Rows, Cols: 1, Values: []float64{1234.5}}, nil
		}})
	price := decodeResponse(t, a.predict(`{"model_name": "price", "inputs": [[1, 2]]}`))
	strict := decodeResponse(t, a.predict(`{"model_name": "strict", "inputs": [[1, 2]]}`))
	if err := logA.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ body, says string }{
		{fmt.Sprintf(`{"request_id": %q, "label": "expensive"}`, price.RequestID), `is not a number; model price is a regressor`},
	} {
		rec := a.do("POST", "/feedback", "application/json", tc.body)
		if rec.Code != 422 || !strings.Contains(rec.Body.String(), tc.says) {
			t.Errorf("%s: %d %s", tc.body, rec.Code, rec.Body)
		}
	}
	registry.Remove("strict", "1", nil)
	got := feedbackResults(t, a, fmt.Sprintf(`[{"request_id": %q, "label": "1200"}, {"request_id": %q, "label": "yes"}]`, price.RequestID, strict.RequestID))
	want := fmt.Sprintf("[{%s recorded 0 0 price 1} {%s incorrect 0 1 strict 1}]", price.RequestID, strict.RequestID)
	if fmt.Sprint(got) != want {
		t.Errorf("results %v, want %s", got, want)
	}
	for id, label := range map[string]string{price.RequestID: "1200", strict.RequestID: "yes"} {
		ps, err := store.Lookup(ctx, id)
		if err != nil || ps[0].Label != label {
			t.Errorf("log for %s: %+v, %v; want labelled %s", id, ps, err, label)
		}
	}
	for k, v := range a.snapshot() {
		if strings.HasPrefix(k, "model_feedback_total") && strings.Contains(k, `model_name="strict"`) && v != 0 {
			t.Errorf("%s = %v: a version no longer loaded was counted", k, v)
		}
	}
}
