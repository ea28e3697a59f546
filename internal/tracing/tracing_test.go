package tracing

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// discard is a logger for tests that do not look at the log.
var discard = slog.New(slog.DiscardHandler)

func TestSetupOffIsNoop(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	cfg, err := ConfigFromEnv(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	tp, shutdown, err := Setup(context.Background(), cfg, reg, discard)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tp.(noop.TracerProvider); !ok {
		t.Errorf("provider %T, want noop.TracerProvider", tp)
	}
	ctx, span := tp.Tracer("test").Start(context.Background(), "x")
	if span.IsRecording() || span.SpanContext().IsValid() {
		t.Error("the no-op provider's span records or has ids")
	}
	span.End()
	if id, sid, sampled := TraceIDs(ctx); id != "" || sid != "" || sampled {
		t.Errorf("TraceIDs of a no-op span = %q, %q, %v", id, sid, sampled)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 0 {
		t.Errorf("with tracing off %d metrics registered (%v), want none", n, err)
	}
	if err := shutdown(context.Background()); err != nil {
		t.Error(err)
	}
}

// unreachable points the exporters at a port nothing listens on, with a
// short timeout, for tests that export nothing or expect it to fail.
func unreachable(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	t.Setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "500")
}

func setup(t *testing.T, reg prometheus.Registerer, logger *slog.Logger) *sdktrace.TracerProvider {
	t.Helper()
	cfg, err := ConfigFromEnv(getenv)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Enabled() {
		t.Fatalf("tracing off with %+v", cfg)
	}
	tp, shutdown, err := Setup(context.Background(), cfg, reg, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		shutdown(ctx)
	})
	sdk, ok := tp.(*sdktrace.TracerProvider)
	if !ok {
		t.Fatalf("provider %T, want the SDK's", tp)
	}
	return sdk
}

// TestSamplerFromEnv checks that the SDK reads OTEL_TRACES_SAMPLER and
// OTEL_TRACES_SAMPLER_ARG itself, which Setup relies on, and that without
// them a root span is sampled.
func TestSamplerFromEnv(t *testing.T) {
	sampledParent := trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled, Remote: true,
	}))
	unsampledParent := trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, Remote: true,
	}))
	for _, tc := range []struct {
		name, sampler, arg                 string
		root, underSampled, underUnsampled bool
	}{
		{name: "default parentbased_always_on", root: true, underSampled: true},
		{name: "parent-based ratio 0", sampler: "parentbased_traceidratio", arg: "0", underSampled: true},
		{name: "parent-based ratio 1", sampler: "parentbased_traceidratio", arg: "1", root: true, underSampled: true},
		{name: "always_off", sampler: "always_off"},
		{name: "always_on ignores the parent", sampler: "always_on", root: true, underSampled: true, underUnsampled: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			unreachable(t)
			t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
			t.Setenv("OTEL_TRACES_SAMPLER", tc.sampler)
			t.Setenv("OTEL_TRACES_SAMPLER_ARG", tc.arg)
			tr := setup(t, prometheus.NewRegistry(), discard).Tracer("test")
			for _, c := range []struct {
				ctx  context.Context
				want bool
				what string
			}{{context.Background(), tc.root, "root"}, {sampledParent, tc.underSampled, "under a sampled parent"}, {unsampledParent, tc.underUnsampled, "under an unsampled parent"}} {
				_, span := tr.Start(c.ctx, "x")
				if got := span.SpanContext().IsSampled(); got != c.want {
					t.Errorf("%s: sampled %v, want %v", c.what, got, c.want)
				}
				span.End()
			}
		})
	}
}

// TestExportErrorsCounted checks the counters and the rate-limited log when
// nothing listens at the endpoint.
func TestExportErrorsCounted(t *testing.T) {
	for _, proto := range []string{ProtocolGRPC, ProtocolHTTPProtobuf} {
		t.Run(proto, func(t *testing.T) {
			unreachable(t)
			t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", proto)
			reg := prometheus.NewPedanticRegistry()
			var log syncBuffer
			// The batch processor's own schedule exports, as in a server:
			// its failures reach the error handler (ForceFlush's would
			// return to the caller instead).
			t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "20")
			tp := setup(t, reg, slog.New(slog.NewTextHandler(&log, nil)))
			for i := range 2 {
				_, span := tp.Tracer("test").Start(context.Background(), "x")
				span.End()
				waitCounter(t, reg, "modelwatch_trace_export_errors_total", float64(i+1))
			}
			want := `
# HELP modelwatch_trace_export_errors_total Failed OTLP trace exports: batches the exporter could not deliver after its own retries.
# TYPE modelwatch_trace_export_errors_total counter
modelwatch_trace_export_errors_total 2
# HELP modelwatch_trace_spans_exported_total Spans handed to the OTLP trace exporter, by result: success (the collector accepted the batch) or failure (the batch was lost).
# TYPE modelwatch_trace_spans_exported_total counter
modelwatch_trace_spans_exported_total{result="failure"} 2
modelwatch_trace_spans_exported_total{result="success"} 0
`
			if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
				t.Error(err)
			}
			if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
				t.Errorf("lint: %v %v", problems, err)
			}
			// The SDK reports each failure to the error handler, which
			// logs the first and holds back the second.
			if n := strings.Count(log.String(), "opentelemetry error"); n != 1 {
				t.Errorf("%d error lines, want 1:\n%s", n, log.String())
			}
			if !strings.Contains(log.String(), "component=tracing") {
				t.Errorf("log lines lack component=tracing:\n%s", log.String())
			}
		})
	}
}

// waitCounter waits up to 10 s for the counter name in reg to reach want.
func waitCounter(t *testing.T, reg prometheus.Gatherer, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := counterValue(t, reg, name, "")
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v after 10s, want %v", name, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// counterValue returns the value of counter name (with label result, when
// not "") in reg.
func counterValue(t *testing.T, reg prometheus.Gatherer, name, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if result == "" || (len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == result) {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no %s{result=%q}", name, result)
	return 0
}

// syncBuffer is a log the SDK's goroutines write while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestSetupRegisterTwice(t *testing.T) {
	unreachable(t)
	reg := prometheus.NewRegistry()
	setup(t, reg, discard)
	cfg, _ := ConfigFromEnv(getenv)
	if _, _, err := Setup(context.Background(), cfg, reg, discard); err == nil {
		t.Error("a second Setup on one registry succeeded")
	}
}

func TestSetupBadResource(t *testing.T) {
	unreachable(t)
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "no-equals-sign")
	cfg, _ := ConfigFromEnv(getenv)
	reg := prometheus.NewRegistry()
	if _, _, err := Setup(context.Background(), cfg, reg, discard); err == nil {
		t.Fatal("Setup accepted an OTEL_RESOURCE_ATTRIBUTES that does not parse")
	}
	if n, _ := testutil.GatherAndCount(reg); n != 0 {
		t.Errorf("a failed Setup left %d metrics registered", n)
	}
}

func TestErrorHandlerRateLimit(t *testing.T) {
	var log bytes.Buffer
	h := newErrorHandler(slog.New(slog.NewTextHandler(&log, nil)), 10*time.Second)
	now := time.Unix(1000, 0)
	h.now = func() time.Time { return now }
	h.Handle(errors.New("first"))
	now = now.Add(time.Second)
	h.Handle(errors.New("second"))
	h.Handle(errors.New("third"))
	now = now.Add(10 * time.Second)
	h.Handle(errors.New("fourth"))
	out := log.String()
	for _, want := range []string{"err=first suppressed=0", "err=fourth suppressed=2"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "second") || strings.Contains(out, "third") {
		t.Errorf("errors within the interval were logged:\n%s", out)
	}
}

func TestTraceIDsAndExemplar(t *testing.T) {
	// A caller's traceparent, read by the W3C propagator.
	carrier := propagation.MapCarrier{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
	ctx := Propagator().Extract(context.Background(), carrier)
	traceID, spanID, sampled := TraceIDs(ctx)
	if traceID != "0af7651916cd43dd8448eb211c80319c" || spanID != "b7ad6b7169203331" || !sampled {
		t.Errorf("TraceIDs = %q, %q, %v", traceID, spanID, sampled)
	}
	if got := ExemplarLabels(ctx); got["trace_id"] != traceID || got["span_id"] != spanID || len(got) != 2 {
		t.Errorf("ExemplarLabels = %v", got)
	}
	unsampled := Propagator().Extract(context.Background(), propagation.MapCarrier{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"})
	if got := ExemplarLabels(unsampled); got != nil {
		t.Errorf("ExemplarLabels of an unsampled span = %v, want nil", got)
	}
	if got := ExemplarLabels(context.Background()); got != nil {
		t.Errorf("ExemplarLabels without a span = %v, want nil", got)
	}
	// And written back for the answer.
	out := propagation.MapCarrier{}
	Propagator().Inject(ctx, out)
	if out["traceparent"] != carrier["traceparent"] {
		t.Errorf("injected traceparent %q, want %q", out["traceparent"], carrier["traceparent"])
	}
}

func TestLogHandler(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(NewLogHandler(slog.NewTextHandler(&buf, nil))).With("component", "server")
	ctx := Propagator().Extract(context.Background(), propagation.MapCarrier{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
	logger.InfoContext(ctx, "with span")
	logger.InfoContext(context.Background(), "without")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("log:\n%s", buf.String())
	}
	if !strings.Contains(lines[0], "component=server trace_id=0af7651916cd43dd8448eb211c80319c span_id=b7ad6b7169203331") {
		t.Errorf("line with a span: %s", lines[0])
	}
	if strings.Contains(lines[1], "trace_id") {
		t.Errorf("line without a span: %s", lines[1])
	}
}

// TestBadSamplerLogged checks what docs/TRACING.md says of an invalid
// OTEL_TRACES_SAMPLER: the SDK reports it to the handler Setup installs,
// which logs it, and samples by its default.
func TestBadSamplerLogged(t *testing.T) {
	unreachable(t)
	t.Setenv("OTEL_TRACES_SAMPLER", "sometimes")
	var log syncBuffer
	tp := setup(t, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(&log, nil)))
	if !strings.Contains(log.String(), "unsupported sampler") || !strings.Contains(log.String(), "sometimes") {
		t.Errorf("log lacks the bad sampler:\n%s", log.String())
	}
	_, span := tp.Tracer("test").Start(context.Background(), "x")
	if !span.SpanContext().IsSampled() {
		t.Error("a root span is not sampled under the default sampler")
	}
	span.End()
}
