package metrics

import (
	"fmt"
	"math"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/modelwatch/modelwatch/internal/model"
)

var fraud = model.Metadata{Name: "fraud_model", Version: "v1", Type: "xgboost", Features: []string{"a"}, Classes: []string{"safe", "fraud"}, Outputs: 2}

func TestLint(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := New(reg)
	m.ModelLoaded(fraud, time.Second)
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

func TestModelLoadedCreatesSeriesAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	m.ModelLoaded(fraud, 1500*time.Millisecond)
	want := `
# HELP model_loaded_info 1 for each model version that is loaded and serving, 0 for one that is known but not loaded.
# TYPE model_loaded_info gauge
model_loaded_info{model_name="fraud_model",model_type="xgboost",model_version="v1"} 1
# HELP model_load_time_seconds Time the last load of the model version took.
# TYPE model_load_time_seconds gauge
model_load_time_seconds{model_name="fraud_model",model_version="v1"} 1.5
# HELP model_predicted_class_total Rows predicted as each class (the class of highest probability).
# TYPE model_predicted_class_total counter
model_predicted_class_total{class="fraud",model_name="fraud_model",model_version="v1"} 0
model_predicted_class_total{class="safe",model_name="fraud_model",model_version="v1"} 0
# HELP model_requests_total Inference requests that reached a model, by outcome (success or error).
# TYPE model_requests_total counter
model_requests_total{model_name="fraud_model",model_version="v1",status="error"} 0
model_requests_total{model_name="fraud_model",model_version="v1",status="success"} 0
# HELP active_requests Inference requests in progress.
# TYPE active_requests gauge
active_requests{model_name="fraud_model"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"model_loaded_info", "model_load_time_seconds", "model_predicted_class_total", "model_requests_total", "active_requests"); err != nil {
		t.Error(err)
	}
}

func TestModelUnloadedDeletesSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	v2 := fraud
	v2.Version = "v2"
	m.ModelLoaded(fraud, time.Second)
	m.ModelLoaded(v2, time.Second)
	m.Series(fraud).Success.Inc()
	m.PredictionErrors.WithLabelValues("fraud_model", "invalid_json").Inc()

	m.ModelUnloaded(fraud, false)
	if got := testutil.CollectAndCount(m.ModelRequests); got != 2 {
		t.Errorf("after unloading v1 of two: %d model_requests_total series, want v2's 2", got)
	}
	if got := testutil.CollectAndCount(m.PredictionErrors); got != 1 {
		t.Errorf("per-model series deleted while v2 is still loaded")
	}
	if s := m.Series(fraud); s == nil {
		t.Fatal("Series after unload returned nil")
	}
	m.ModelUnloaded(fraud, false)

	m.ModelUnloaded(v2, true)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, mm := range mf.GetMetric() {
			for _, l := range mm.GetLabel() {
				if l.GetName() == "model_name" {
					t.Errorf("%s still has a series for %s after the last version was unloaded", mf.GetName(), l.GetValue())
				}
			}
		}
	}
}

func TestBuildInfo(t *testing.T) {
	reg := prometheus.NewRegistry()
	New(reg)
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "modelwatch_build_info" {
			continue
		}
		var names []string
		for _, l := range mf.GetMetric()[0].GetLabel() {
			names = append(names, l.GetName())
		}
		if strings.Join(names, ",") != "goversion,revision,version" || mf.GetMetric()[0].GetGauge().GetValue() != 1 {
			t.Errorf("modelwatch_build_info %v", mf.GetMetric()[0])
		}
		return
	}
	t.Error("no modelwatch_build_info")
}

// BenchmarkRequestInstrumentation is every metric operation the server makes
// for one successful one-row /predict request, with the series already
// resolved as the server keeps them.
func BenchmarkRequestInstrumentation(b *testing.B) {
	m := New(prometheus.NewRegistry())
	ser := m.ModelLoaded(fraud, time.Second)
	httpCount := m.HTTPRequests.WithLabelValues("POST", "/predict", "200")
	httpDur := NewSampledObserver(m.HTTPDuration.WithLabelValues("POST", "/predict"))
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		ser.Active.Inc()
		ser.Confidence.Observe(0.93)
		ser.Classes[1].Add(1)
		ser.Success.Inc()
		ser.Predictions.Add(1)
		ser.BatchSize.Observe(1)
		ser.Stages[StagePreprocess].Observe(0.00002)
		ser.Stages[StageInfer].Observe(0.00001)
		ser.Stages[StagePostprocess].Observe(0.000005)
		ser.PredictionDuration.ObserveAt(0.00004, "req-1", now)
		ser.Active.Dec()
		ser.InputSize.Observe(45)
		ser.OutputSize.Observe(250)
		httpCount.Inc()
		httpDur.ObserveAt(0.00005, "req-1", now)
	}
}

// BenchmarkScrape is one scrape of /metrics with 100 models of 3 versions
// loaded, every version having served requests, in each exposition format.
func BenchmarkScrape(b *testing.B) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	for i := range 100 {
		for v := 1; v <= 3; v++ {
			meta := fraud
			meta.Name, meta.Version = fmt.Sprintf("model_%03d", i), fmt.Sprintf("v%d", v)
			ser := m.ModelLoaded(meta, time.Second)
			for _, d := range []float64{0.0003, 0.002, 0.04} {
				ser.PredictionDuration.ObserveAt(d, "req", time.Now())
				for _, st := range ser.Stages {
					st.Observe(d / 3)
				}
				ser.Confidence.Observe(0.9)
				ser.BatchSize.Observe(4)
				ser.InputSize.Observe(300)
				ser.OutputSize.Observe(600)
			}
			m.PredictionErrors.WithLabelValues(meta.Name, "shape_mismatch").Inc()
		}
	}
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true})
	for _, format := range []struct{ name, accept string }{
		{"text", "text/plain"},
		{"openmetrics", "application/openmetrics-text;version=1.0.0"},
		{"protobuf", "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"},
	} {
		b.Run(format.name, func(b *testing.B) {
			req := httptest.NewRequest("GET", "/metrics", nil)
			req.Header.Set("Accept", format.accept)
			var size int
			for b.Loop() {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				size = rec.Body.Len()
			}
			b.ReportMetric(float64(size)/1024, "KiB")
		})
	}
}

// TestNativeHistogramsStayBounded: a client controls the sizes and latencies
// a histogram observes; values spread over 18 decades must not grow a native
// histogram past 160 buckets. Within the hour before a reset is allowed,
// client_golang halves the resolution instead; the classic buckets stay.
func TestNativeHistogramsStayBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	m.ModelLoaded(fraud, time.Second)
	obs := m.InputSize.WithLabelValues("fraud_model")
	for i := range 100_000 {
		obs.Observe(math.Pow(10, -9+18*float64(i%1000)/1000) * (1 + float64(i)/1e6))
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() != "model_input_size_bytes" {
			continue
		}
		h := mf.GetMetric()[0].GetHistogram()
		found = true
		buckets := 0
		for _, s := range append(h.GetPositiveSpan(), h.GetNegativeSpan()...) {
			buckets += int(s.GetLength())
		}
		if buckets == 0 || buckets > 160 {
			t.Errorf("native histogram with %d buckets, want 1 to 160", buckets)
		}
		if h.GetSchema() >= 3 {
			t.Errorf("schema %d: the resolution was not reduced", h.GetSchema())
		}
		if h.GetSampleCount() != 100_000 || len(h.GetBucket()) != len(SizeBuckets) {
			t.Errorf("%d observations, %d classic buckets", h.GetSampleCount(), len(h.GetBucket()))
		}
	}
	if !found {
		t.Fatal("no model_input_size_bytes")
	}
}
