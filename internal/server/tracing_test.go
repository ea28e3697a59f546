package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/modelwatch/modelwatch/internal/model"
	"github.com/modelwatch/modelwatch/internal/model/modeltest"
	"github.com/modelwatch/modelwatch/internal/tracing"
)

// A caller's trace: its trace id and the id of its span, our spans' parent.
const (
	callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	callerSpan  = "00f067aa0ba902b7"
)

// newTracedHarness is newHarness with tracing on: an SDK provider with the
// sampler, exporting synchronously to memory.
func newTracedHarness(t *testing.T, sampler sdktrace.Sampler, mutate func(*Options)) (*harness, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithSampler(sampler),
		sdktrace.WithIDGenerator(tracing.IDGenerator{})) // as tracing.Setup makes it
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	h := newHarness(t, func(o *Options) {
		o.TracerProvider = tp
		o.Propagator = tracing.Propagator()
		if mutate != nil {
			mutate(o)
		}
	})
	return h, exp
}

// clockAt returns the harness clock's n-th reading (each reading advances
// it by 50µs).
func clockAt(n int) time.Time {
	return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(n) * 50 * time.Microsecond)
}

// spansByName indexes the exported spans by name; a name twice fails.
func spansByName(t *testing.T, spans tracetest.SpanStubs) map[string]tracetest.SpanStub {
	t.Helper()
	out := map[string]tracetest.SpanStub{}
	for _, s := range spans {
		if _, dup := out[s.Name]; dup {
			t.Fatalf("two spans named %q", s.Name)
		}
		out[s.Name] = s
	}
	return out
}

func attrs(s tracetest.SpanStub) map[string]string {
	out := map[string]string{}
	for _, kv := range s.Attributes {
		out[string(kv.Key)] = kv.Value.Emit()
	}
	return out
}

// exemplarOf returns the labels of the exemplars of a histogram's series,
// "name=value" sorted, per exemplar.
func exemplarsOf(t *testing.T, h *harness, family string, match map[string]string) []string {
	t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mf := range mfs {
		if mf.GetName() != family {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := match[lp.GetName()]; ok && v != lp.GetValue() {
					continue series
				}
			}
			var exs []*dto.Exemplar
			for _, b := range m.GetHistogram().GetBucket() {
				if ex := b.GetExemplar(); ex != nil {
					exs = append(exs, ex)
				}
			}
			for _, ex := range exs {
				var ls []string
				for _, l := range ex.GetLabel() {
					ls = append(ls, l.GetName()+"="+l.GetValue())
				}
				sort.Strings(ls)
				out = append(out, strings.Join(ls, " "))
			}
		}
	}
	return out
}

// TestTracingPredict checks the spans of a POST /predict that brings a
// sampled traceparent: a server span that continues the caller's trace, with
// the HTTP and modelwatch attributes, stage spans timed exactly by the
// injected clock, the traceparent in the answer, and exemplars that name
// the trace.
func TestTracingPredict(t *testing.T) {
	h, exp := newTracedHarness(t, sdktrace.ParentBased(sdktrace.NeverSample()), nil)
	rec := h.do(http.MethodPost, "/predict", "application/json", `{"inputs": [`+safeRow+`]}`,
		"traceparent", "00-"+callerTrace+"-"+callerSpan+"-01", "User-Agent", "trace-test/1", "X-Request-ID", "req-abc")
	if rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	spans := spansByName(t, exp.GetSpans())
	if len(spans) != 4 {
		t.Fatalf("spans %v, want the request's and its 3 stages", names(exp.GetSpans()))
	}
	srv, ok := spans["POST /predict"]
	if !ok {
		t.Fatalf("no span POST /predict: %v", names(exp.GetSpans()))
	}
	if srv.SpanKind != trace.SpanKindServer || srv.SpanContext.TraceID().String() != callerTrace ||
		srv.Parent.SpanID().String() != callerSpan || !srv.Parent.IsRemote() {
		t.Errorf("server span: kind %v, trace %s, parent %s (remote %v); want server in the caller's trace under %s",
			srv.SpanKind, srv.SpanContext.TraceID(), srv.Parent.SpanID(), srv.Parent.IsRemote(), callerSpan)
	}
	want := map[string]string{
		"http.request.method": "POST", "url.path": "/predict", "http.route": "/predict", "url.scheme": "http",
		"http.response.status_code": "200", "server.address": "example.com", "user_agent.original": "trace-test/1",
		"modelwatch.request_id": "req-abc", "modelwatch.model.name": "fraud_model", "modelwatch.model.version": "v1",
		"modelwatch.rows": "1",
	}
	if got := attrs(srv); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("server span attributes\n got %v\nwant %v", got, want)
	}
	if srv.Status.Code != codes.Unset {
		t.Errorf("status %v, want unset", srv.Status)
	}
	// Clock readings: 1 the server's start, 2 the request's start, 3 t0,
	// 4 t1, 5 t2, 6 t3, 7 the answer's latency_ms, 8 the request's end.
	if !srv.StartTime.Equal(clockAt(2)) || !srv.EndTime.Equal(clockAt(8)) {
		t.Errorf("server span %v..%v, want %v..%v", srv.StartTime, srv.EndTime, clockAt(2), clockAt(8))
	}
	for i, stage := range []string{"preprocess", "infer", "postprocess"} {
		s := spans[stage]
		if s.Parent.SpanID() != srv.SpanContext.SpanID() || s.SpanContext.TraceID().String() != callerTrace {
			t.Errorf("%s: parent %s, want %s", stage, s.Parent.SpanID(), srv.SpanContext.SpanID())
		}
		if !s.StartTime.Equal(clockAt(3+i)) || !s.EndTime.Equal(clockAt(4+i)) {
			t.Errorf("%s %v..%v, want %v..%v", stage, s.StartTime, s.EndTime, clockAt(3+i), clockAt(4+i))
		}
		if s.SpanKind != trace.SpanKindInternal {
			t.Errorf("%s kind %v", stage, s.SpanKind)
		}
	}
	if got, want := rec.Header().Get("traceparent"), "00-"+callerTrace+"-"+srv.SpanContext.SpanID().String()+"-01"; got != want {
		t.Errorf("answer's traceparent %q, want %q", got, want)
	}
	ex := fmt.Sprintf("request_id=req-abc span_id=%s trace_id=%s", srv.SpanContext.SpanID(), callerTrace)
	for _, family := range []string{"model_prediction_duration_seconds", "http_request_duration_seconds"} {
		if got := exemplarsOf(t, h, family, map[string]string{"model_name": "fraud_model", "endpoint": "/predict"}); fmt.Sprint(got) != "["+ex+"]" {
			t.Errorf("%s exemplars %q, want [%s]", family, got, ex)
		}
	}
	om := h.do("GET", "/metrics", "", "", "Accept", "application/openmetrics-text;version=1.0.0").Body.String()
	// The exposition writes an exemplar's labels in no set order.
	line := grep(om, `model_prediction_duration_seconds_bucket{model_name="fraud_model"`)
	line = grep(line, "# {")
	for _, l := range []string{`request_id="req-abc"`, `trace_id="` + callerTrace + `"`, `span_id="` + srv.SpanContext.SpanID().String() + `"`} {
		if strings.Count(line, l) != 1 {
			t.Errorf("OpenMetrics exemplar lacks %s:\n%s", l, line)
		}
	}
}

func names(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}

// TestTracingNewTrace checks that a request without traceparent starts a
// trace of its own (root span) under the default parent-based sampler.
func TestTracingNewTrace(t *testing.T) {
	h, exp := newTracedHarness(t, sdktrace.ParentBased(sdktrace.AlwaysSample()), nil)
	rec := h.predict(`{"inputs": [` + safeRow + `]}`)
	srv, ok := spansByName(t, exp.GetSpans())["POST /predict"]
	if !ok || srv.Parent.IsValid() {
		t.Fatalf("want a root span POST /predict; spans %v", names(exp.GetSpans()))
	}
	if got, want := rec.Header().Get("traceparent"), fmt.Sprintf("00-%s-%s-01", srv.SpanContext.TraceID(), srv.SpanContext.SpanID()); got != want {
		t.Errorf("traceparent %q, want %q", got, want)
	}
}

// TestTracingV2 checks the span of the Open Inference Protocol's infer,
// named by its route template.
func TestTracingV2(t *testing.T) {
	h, exp := newTracedHarness(t, sdktrace.ParentBased(sdktrace.AlwaysSample()), nil)
	rec := h.do("POST", "/v2/models/fraud_model/versions/v1/infer", "application/json",
		`{"inputs": [{"name": "input", "shape": [2, 6], "datatype": "FP64", "data": [`+safeRow+`,`+fraudRow+`]}]}`)
	if rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	spans := spansByName(t, exp.GetSpans())
	srv, ok := spans["POST /v2/models/{model}/versions/{version}/infer"]
	if !ok {
		t.Fatalf("spans %v", names(exp.GetSpans()))
	}
	a := attrs(srv)
	if a["http.route"] != "/v2/models/{model}/versions/{version}/infer" || a["url.path"] != "/v2/models/fraud_model/versions/v1/infer" ||
		a["modelwatch.rows"] != "2" || a["modelwatch.model.version"] != "v1" || a["http.response.status_code"] != "200" {
		t.Errorf("attributes %v", a)
	}
	// Readings: 1 the server's start, 2 the request's, 3 t0, 4 t1, 5 t2,
	// 6 t3, 7 the request's end.
	if !srv.StartTime.Equal(clockAt(2)) || !srv.EndTime.Equal(clockAt(7)) {
		t.Errorf("server span %v..%v", srv.StartTime, srv.EndTime)
	}
	for i, stage := range []string{"preprocess", "infer", "postprocess"} {
		if s := spans[stage]; s.Parent.SpanID() != srv.SpanContext.SpanID() || !s.StartTime.Equal(clockAt(3+i)) || !s.EndTime.Equal(clockAt(4+i)) {
			t.Errorf("%s: parent %s %v..%v", stage, s.Parent.SpanID(), s.StartTime, s.EndTime)
		}
	}
}

// batchedModel is a model behind a batcher: the request waited queue for
// its batch.
type batchedModel struct {
	modeltest.Model
	queue time.Duration
}

func (m *batchedModel) Batched() bool { return true }

func (m *batchedModel) Predict(ctx context.Context, in model.Batch) (model.Result, error) {
	model.TimingFrom(ctx).Queue = m.queue
	return m.Model.Predict(ctx, in)
}

// TestTracingQueue checks the queue stage of a batched model: from t1, as
// long as the model says the request waited, and the infer stage after it.
func TestTracingQueue(t *testing.T) {
	h, exp := newTracedHarness(t, sdktrace.AlwaysSample(), func(o *Options) {
		o.Models.Add(&batchedModel{Model: modeltest.Model{Meta: model.Metadata{Name: "batched", Version: "1", Type: "fake",
			Features: []string{"x", "y"}, Outputs: 1}}, queue: 20 * time.Microsecond})
	})
	if rec := h.predict(`{"model_name": "batched", "inputs": [[1, 2]]}`); rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	spans := spansByName(t, exp.GetSpans())
	for _, tc := range []struct {
		stage    string
		from, to time.Time
	}{
		{"preprocess", clockAt(3), clockAt(4)},
		{"queue", clockAt(4), clockAt(4).Add(20 * time.Microsecond)},
		{"infer", clockAt(4).Add(20 * time.Microsecond), clockAt(5)},
		{"postprocess", clockAt(5), clockAt(6)},
	} {
		s, ok := spans[tc.stage]
		if !ok || !s.StartTime.Equal(tc.from) || !s.EndTime.Equal(tc.to) || s.Parent.SpanID() != spans["POST /predict"].SpanContext.SpanID() {
			t.Errorf("%s (%v): %v..%v, want %v..%v", tc.stage, ok, s.StartTime, s.EndTime, tc.from, tc.to)
		}
	}
}

// TestTracingErrors checks the span of failed requests: error.type and
// modelwatch.error_type, the model when known, and an error status for a
// 5xx only.
func TestTracingErrors(t *testing.T) {
	h, exp := newTracedHarness(t, sdktrace.AlwaysSample(), nil)
	for _, tc := range []struct {
		body, errorType, model string
		status                 int
		code                   codes.Code
	}{
		{`{"inputs": [` + safeRow + `]`, "invalid_json", "", 400, codes.Unset},
		{`{"model_name": "nope", "inputs": [` + safeRow + `]}`, "model_not_found", "", 404, codes.Unset},
		{`{"model_name": "strict", "inputs": [[1, 2, 3]]}`, "shape_mismatch", "strict", 422, codes.Unset},
		{`{"model_name": "faulty", "inputs": [[-1, 2]]}`, "internal", "faulty", 500, codes.Error}, // a panic
	} {
		exp.Reset()
		rec := h.predict(tc.body)
		if rec.Code != tc.status {
			t.Fatalf("%s: %d %s", tc.errorType, rec.Code, rec.Body)
		}
		srv := spansByName(t, exp.GetSpans())["POST /predict"]
		a := attrs(srv)
		if a["error.type"] != tc.errorType || a["modelwatch.error_type"] != tc.errorType || a["modelwatch.model.name"] != tc.model ||
			a["http.response.status_code"] != fmt.Sprint(tc.status) || srv.Status.Code != tc.code {
			t.Errorf("%s: attributes %v, status %v", tc.errorType, a, srv.Status)
		}
	}
	// A method the route lacks is counted, and traced, under the route.
	exp.Reset()
	h.do("GET", "/predict", "", "")
	if a := attrs(spansByName(t, exp.GetSpans())["GET /predict"]); a["error.type"] != "method_not_allowed" || a["http.response.status_code"] != "405" {
		t.Errorf("GET /predict: %v", a)
	}
}

// TestTracingFeedback checks that POST /feedback has a span, and that
// routes other than inference and feedback have none.
func TestTracingFeedback(t *testing.T) {
	h, exp := newTracedHarness(t, sdktrace.AlwaysSample(), nil)
	rec := h.do("POST", "/feedback", "application/json", `{"request_id": "nope", "label": "safe"}`)
	spans := spansByName(t, exp.GetSpans())
	if a := attrs(spans["POST /feedback"]); a["http.route"] != "/feedback" || a["http.response.status_code"] != fmt.Sprint(rec.Code) {
		t.Errorf("feedback span attributes %v (answer %d)", a, rec.Code)
	}
	exp.Reset()
	for _, path := range []string{"/health", "/ready", "/metrics", "/v2/models/fraud_model", "/nowhere"} {
		if rec := h.do("GET", path, "", ""); rec.Header().Get("traceparent") != "" {
			t.Errorf("GET %s answers a traceparent", path)
		}
	}
	if n := len(exp.GetSpans()); n != 0 {
		t.Errorf("%d spans for routes that have none: %v", n, names(exp.GetSpans()))
	}
}

// TestTracingNotSampled checks a request whose caller did not sample it,
// under a parent-based sampler: no span, no traceparent back, and exemplars
// of the request id alone.
func TestTracingNotSampled(t *testing.T) {
	h, exp := newTracedHarness(t, sdktrace.ParentBased(sdktrace.AlwaysSample()), nil)
	rec := h.do(http.MethodPost, "/predict", "application/json", `{"inputs": [`+safeRow+`]}`,
		"traceparent", "00-"+callerTrace+"-"+callerSpan+"-00", "X-Request-ID", "req-unsampled")
	if rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	if n := len(exp.GetSpans()); n != 0 {
		t.Errorf("%d spans of a request not sampled: %v", n, names(exp.GetSpans()))
	}
	if tp := rec.Header().Get("traceparent"); tp != "" {
		t.Errorf("traceparent %q of a span not recorded", tp)
	}
	if got := exemplarsOf(t, h, "model_prediction_duration_seconds", map[string]string{"model_name": "fraud_model"}); fmt.Sprint(got) != "[request_id=req-unsampled]" {
		t.Errorf("exemplars %q, want the request id alone", got)
	}
}

// TestTracingPresampled: with a trace id ratio sampler's presampler, a new
// trace it leaves out starts no span at all (nor traceparent back, nor
// trace_id exemplar), one it takes is traced with the trace id it drew, and
// a caller's sampled trace is continued whatever the ratio.
func TestTracingPresampled(t *testing.T) {
	for _, c := range []struct{ ratio float64 }{{0}, {0.999999}} {
		h, exp := newTracedHarness(t, sdktrace.ParentBased(sdktrace.TraceIDRatioBased(c.ratio)), func(o *Options) {
			o.Presampler = tracing.NewPresampler(c.ratio)
		})
		rec := h.do(http.MethodPost, "/predict", "application/json", `{"inputs": [`+safeRow+`]}`, "X-Request-ID", "req-new")
		if rec.Code != 200 {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
		spans := exp.GetSpans()
		if c.ratio == 0 {
			if len(spans) != 0 || rec.Header().Get("traceparent") != "" {
				t.Errorf("ratio 0: %d spans %v, traceparent %q; want none", len(spans), names(spans), rec.Header().Get("traceparent"))
			}
			if got := exemplarsOf(t, h, "model_prediction_duration_seconds", map[string]string{"model_name": "fraud_model"}); fmt.Sprint(got) != "[request_id=req-new]" {
				t.Errorf("ratio 0: exemplars %q, want the request id alone", got)
			}
		} else if len(spans) == 0 || !strings.Contains(rec.Header().Get("traceparent"), spans[0].SpanContext.TraceID().String()) {
			t.Errorf("ratio ~1: spans %v, traceparent %q", names(spans), rec.Header().Get("traceparent"))
		}
		exp.Reset()
		// A caller's sampled trace goes on, presampler or not.
		rec = h.do(http.MethodPost, "/predict", "application/json", `{"inputs": [`+safeRow+`]}`,
			"traceparent", "00-"+callerTrace+"-"+callerSpan+"-01")
		if rec.Code != 200 || len(exp.GetSpans()) == 0 || exp.GetSpans()[0].SpanContext.TraceID().String() != callerTrace {
			t.Errorf("ratio %v: a caller's sampled trace: %d %v", c.ratio, rec.Code, names(exp.GetSpans()))
		}
	}
}

// TestTracingOff checks that a no-op provider (and none) leaves the
// server's answers, headers and exemplars as they are without tracing.
func TestTracingOff(t *testing.T) {
	for name, tp := range map[string]trace.TracerProvider{"nil": nil, "noop": noop.NewTracerProvider()} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, func(o *Options) { o.TracerProvider = tp; o.Propagator = tracing.Propagator() })
			if h.srv.tracer != nil {
				t.Fatal("a tracer with tracing off")
			}
			rec := h.do(http.MethodPost, "/predict", "application/json", `{"inputs": [`+safeRow+`]}`,
				"traceparent", "00-"+callerTrace+"-"+callerSpan+"-01", "X-Request-ID", "req-off")
			if rec.Code != 200 || rec.Header().Get("traceparent") != "" {
				t.Errorf("%d, traceparent %q", rec.Code, rec.Header().Get("traceparent"))
			}
			if got := exemplarsOf(t, h, "model_prediction_duration_seconds", map[string]string{"model_name": "fraud_model"}); fmt.Sprint(got) != "[request_id=req-off]" {
				t.Errorf("exemplars %q", got)
			}
		})
	}
}

// TestExemplarLabelsFit checks that an exemplar keeps within OpenMetrics'
// 128 characters whatever the request id: span_id goes first when a long
// client X-Request-ID leaves no room.
func TestExemplarLabelsFit(t *testing.T) {
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: [16]byte{1}, SpanID: [8]byte{2}, TraceFlags: trace.FlagsSampled})
	for _, n := range []int{1, 24, maxRequestIDWithSpan, maxRequestIDWithSpan + 1, 64} {
		l := exemplarLabels(strings.Repeat("a", n), sc)
		runes := 0
		for k, v := range l {
			runes += len(k) + len(v)
		}
		_, hasSpan := l["span_id"]
		if runes > maxExemplarRunes || hasSpan != (n <= 55) || l["trace_id"] != sc.TraceID().String() {
			t.Errorf("request id of %d: %v, %d characters", n, l, runes)
		}
	}
	// Through the server: a 64-character X-Request-ID, the longest taken.
	h, _ := newTracedHarness(t, sdktrace.AlwaysSample(), nil)
	id := strings.Repeat("x", 64)
	if rec := h.do(http.MethodPost, "/predict", "application/json", `{"inputs": [`+safeRow+`]}`, "X-Request-ID", id); rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	got := exemplarsOf(t, h, "model_prediction_duration_seconds", map[string]string{"model_name": "fraud_model"})
	if len(got) != 1 || !strings.HasPrefix(got[0], "request_id="+id+" trace_id=") || strings.Contains(got[0], "span_id") {
		t.Errorf("exemplars %q", got)
	}
}

// TestTracingLogs checks that a request's log lines carry its trace and
// span ids through tracing.NewLogHandler, as serve sets it up.
func TestTracingLogs(t *testing.T) {
	var buf bytes.Buffer
	h, exp := newTracedHarness(t, sdktrace.ParentBased(sdktrace.AlwaysSample()), func(o *Options) {
		o.Logger = slog.New(tracing.NewLogHandler(slog.NewJSONHandler(&buf, nil)))
	})
	rec := h.do(http.MethodPost, "/predict", "application/json", `{"model_name": "faulty", "inputs": [[-1, 2]]}`,
		"traceparent", "00-"+callerTrace+"-"+callerSpan+"-01")
	if rec.Code != 500 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	srv := spansByName(t, exp.GetSpans())["POST /predict"]
	var lines int
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var e struct{ Msg, TraceID, SpanID string }
		var raw map[string]any
		json.Unmarshal([]byte(line), &raw)
		e.Msg, _ = raw["msg"].(string)
		e.TraceID, _ = raw["trace_id"].(string)
		e.SpanID, _ = raw["span_id"].(string)
		if e.Msg != "model panicked" && e.Msg != "request failed" {
			continue
		}
		lines++
		if e.TraceID != callerTrace || e.SpanID != srv.SpanContext.SpanID().String() {
			t.Errorf("%q: trace_id %q span_id %q, want %s %s", e.Msg, e.TraceID, e.SpanID, callerTrace, srv.SpanContext.SpanID())
		}
	}
	if lines != 2 {
		t.Errorf("%d request log lines, want 2:\n%s", lines, buf.String())
	}
}
