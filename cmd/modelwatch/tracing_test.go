package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/modelwatch/modelwatch/internal/testenv"
)

// TestTracingJaeger runs the real binary with tracing on (OTLP over HTTP,
// set by OTEL_* variables only) against a real Jaeger: requests sent with a
// known traceparent appear in Jaeger's query API with their spans, parent
// links and attributes; the exemplar scraped from /metrics names the same
// trace; a request its caller did not sample leaves no span and no trace_id
// exemplar; the model load at start is a span; and Jaeger stopped mid-run
// costs no request and shows in modelwatch_trace_export_errors_total.
func TestTracingJaeger(t *testing.T) {
	j := testenv.StartJaeger(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", j.OTLPHTTPEndpoint())
	t.Setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1000")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
	t.Setenv("OTEL_SERVICE_NAME", "modelwatch-e2e")
	p := start(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// A sampled /predict, and a sampled v2 infer, each from a caller's trace.
	const callerSpan = "00f067aa0ba902b7"
	predictTrace, v2Trace, unsampledTrace := randomHex(t, 16), randomHex(t, 16), randomHex(t, 16)
	resp := send(t, p.url("/predict"), `{"inputs": [`+fraudRow+`]}`,
		"traceparent", "00-"+predictTrace+"-"+callerSpan+"-01", "X-Request-ID", "e2e-sampled", "User-Agent", "e2e/1")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("traceparent"), "00-"+predictTrace+"-") {
		t.Fatalf("/predict: %d, traceparent %q", resp.StatusCode, resp.Header.Get("traceparent"))
	}
	serverSpan := strings.Split(resp.Header.Get("traceparent"), "-")[2]
	resp = send(t, p.url("/v2/models/fraud_model/infer"), `{"inputs": [{"name": "input", "shape": [2, 6], "datatype": "FP64", "data": [25.0, 1, 0, 1.5, 2, 900, 950.0, 2, 8, 120.5, 11, 12]}]}`,
		"traceparent", "00-"+v2Trace+"-"+callerSpan+"-01")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("traceparent"), "00-"+v2Trace+"-") {
		t.Fatalf("v2 infer: %d, traceparent %q", resp.StatusCode, resp.Header.Get("traceparent"))
	}

	// The exemplar of the sampled /predict names its trace and span.
	exemplars := scrapeExemplars(t, p.url("/metrics"))
	if ex := exemplars["e2e-sampled"]; ex["trace_id"] != predictTrace || ex["span_id"] != serverSpan {
		t.Errorf("exemplar of e2e-sampled %v, want trace_id %s span_id %s; all: %v", ex, predictTrace, serverSpan, exemplars)
	}

	tr, err := j.WaitTrace(ctx, predictTrace, 4)
	if err != nil {
		t.Fatalf("Jaeger: %v\n%s", err, p.logs)
	}
	srv, ok := tr.Span("POST /predict")
	if !ok || srv.SpanID != serverSpan || srv.ParentSpanID() != callerSpan {
		t.Fatalf("POST /predict span %+v, want %s under the caller's %s", srv, serverSpan, callerSpan)
	}
	for key, want := range map[string]any{
		"span.kind": "server", "http.request.method": "POST", "http.route": "/predict", "url.path": "/predict",
		"http.response.status_code": float64(200), "user_agent.original": "e2e/1", "modelwatch.request_id": "e2e-sampled",
		"modelwatch.model.name": "fraud_model", "modelwatch.model.version": "v1", "modelwatch.rows": float64(1),
	} {
		if got, _ := srv.Tag(key); got != want {
			t.Errorf("POST /predict %s = %v (%T), want %v", key, got, got, want)
		}
	}
	if name := tr.Processes[srv.ProcessID].ServiceName; name != "modelwatch-e2e" {
		t.Errorf("service.name %q", name)
	}
	for _, stage := range []string{"preprocess", "infer", "postprocess"} {
		s, ok := tr.Span(stage)
		if !ok || s.ParentSpanID() != serverSpan || s.StartTime < srv.StartTime || s.StartTime+s.Duration > srv.StartTime+srv.Duration {
			t.Errorf("%s span %+v: want a child of %s within it", stage, s, serverSpan)
		}
	}
	tr, err = j.WaitTrace(ctx, v2Trace, 4)
	if err != nil {
		t.Fatalf("Jaeger: %v", err)
	}
	if s, ok := tr.Span("POST /v2/models/{model}/infer"); !ok || s.ParentSpanID() != callerSpan {
		t.Errorf("v2 span %+v (%v)", s, ok)
	} else if rows, _ := s.Tag("modelwatch.rows"); rows != float64(2) {
		t.Errorf("v2 rows %v", rows)
	}

	// The load of the embedded model at start: a span of its own.
	if loads := jaegerOperation(t, j, "modelwatch-e2e", "load model"); !strings.Contains(loads, `"modelwatch.model.name","type":"string","value":"fraud_model"`) ||
		!strings.Contains(loads, `"value":"loaded"`) {
		t.Errorf("no load model span for fraud_model: %.2000s", loads)
	}

	// A request its caller did not sample: no span, no trace in its
	// exemplar, no traceparent back. It comes after the last exemplar's
	// interval, so that it has one.
	time.Sleep(150 * time.Millisecond)
	resp = send(t, p.url("/predict"), `{"inputs": [`+safeRow+`]}`,
		"traceparent", "00-"+unsampledTrace+"-"+callerSpan+"-00", "X-Request-ID", "e2e-unsampled")
	if resp.StatusCode != 200 || resp.Header.Get("traceparent") != "" {
		t.Errorf("unsampled: %d, traceparent %q", resp.StatusCode, resp.Header.Get("traceparent"))
	}
	exemplars = scrapeExemplars(t, p.url("/metrics"))
	if ex, ok := exemplars["e2e-unsampled"]; !ok || len(ex) != 1 {
		t.Errorf("exemplar of e2e-unsampled %v (%v), want request_id alone", ex, ok)
	}
	// Spans go out every 100ms: by the time a later sampled request's
	// trace is in Jaeger, an unsampled one would be too.
	later := randomHex(t, 16)
	send(t, p.url("/predict"), `{"inputs": [`+safeRow+`]}`, "traceparent", "00-"+later+"-"+callerSpan+"-01")
	if _, err := j.WaitTrace(ctx, later, 4); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Trace(ctx, unsampledTrace); !errors.Is(err, testenv.ErrTraceNotFound) {
		t.Errorf("the unsampled trace: %v, want not found", err)
	}

	// Jaeger goes away: every request is still answered, and the failed
	// exports are counted.
	j.Stop()
	for i := range 20 {
		if resp := send(t, p.url("/predict"), `{"inputs": [`+safeRow+`]}`); resp.StatusCode != 200 {
			t.Fatalf("request %d with Jaeger down: %d", i, resp.StatusCode)
		}
	}
	testenv.WaitFor(t, "a failed export counted", 15*time.Second, func() (bool, string) {
		_, text, _ := get(t, http.DefaultClient, p.url("/metrics"))
		m := scrape(t, text)
		return m["modelwatch_trace_export_errors_total{}"] > 0 && m[`modelwatch_trace_spans_exported_total{result="failure"}`] > 0,
			grep(text, "modelwatch_trace_")
	})
	// Back, it takes the spans of new requests again.
	j.Start()
	again := randomHex(t, 16)
	send(t, p.url("/predict"), `{"inputs": [`+safeRow+`]}`, "traceparent", "00-"+again+"-"+callerSpan+"-01")
	if _, err := j.WaitTrace(ctx, again, 4); err != nil {
		t.Errorf("after Jaeger's restart: %v", err)
	}
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// send posts a JSON body with the header pairs and returns the answer, its
// body read and closed.
func send(t *testing.T, url, body string, header ...string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

var (
	exemplarRE = regexp.MustCompile(`^model_prediction_duration_seconds_bucket\{[^}]*\} \S+ # \{([^}]*)\}`)
	labelRE    = regexp.MustCompile(`(\w+)="([^"]*)"`)
)

// scrapeExemplars reads /metrics in the OpenMetrics format and returns the
// labels of the exemplars of model_prediction_duration_seconds by request
// id.
func scrapeExemplars(t *testing.T, url string) map[string]map[string]string {
	t.Helper()
	code, text, h := get(t, http.DefaultClient, url, "Accept", "application/openmetrics-text;version=1.0.0")
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "application/openmetrics-text") {
		t.Fatalf("/metrics: %d %s", code, h.Get("Content-Type"))
	}
	out := map[string]map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		m := exemplarRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		labels := map[string]string{}
		runes := 0
		for _, l := range labelRE.FindAllStringSubmatch(m[1], -1) {
			labels[l[1]] = l[2]
			runes += len([]rune(l[1])) + len([]rune(l[2]))
		}
		if runes > 128 {
			t.Errorf("exemplar over OpenMetrics' 128 characters: %s", line)
		}
		out[labels["request_id"]] = labels
	}
	return out
}

// jaegerOperation returns the JSON of the service's recent traces that have
// a span named operation.
func jaegerOperation(t *testing.T, j *testenv.Jaeger, service, operation string) string {
	t.Helper()
	u := fmt.Sprintf("%s/api/traces?service=%s&operation=%s&limit=20&lookback=1h", j.QueryURL(), url.QueryEscape(service), url.QueryEscape(operation))
	var body string
	testenv.WaitFor(t, "Jaeger's traces of "+operation, 10*time.Second, func() (bool, string) {
		resp, err := http.Get(u)
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var r struct {
			Data []json.RawMessage `json:"data"`
		}
		json.Unmarshal(b, &r)
		body = string(b)
		return len(r.Data) > 0, body
	})
	return body
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
