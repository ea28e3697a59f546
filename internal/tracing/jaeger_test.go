package tracing

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/modelwatch/modelwatch/internal/testenv"
	"github.com/modelwatch/modelwatch/internal/version"
)

// TestJaeger exports spans over OTLP gRPC and OTLP HTTP, configured only by
// OTEL_* variables, to a real Jaeger and reads them back from its query
// API: the caller's trace continued, the parent links, the attributes and
// the resource. Then Jaeger is stopped: the export fails, which the counters
// show, and succeeds again once Jaeger is back.
func TestJaeger(t *testing.T) {
	j := testenv.StartJaeger(t)
	for _, tc := range []struct{ protocol, endpoint string }{
		{ProtocolGRPC, "http://" + j.OTLPGRPCEndpoint()}, // http:// : no TLS
		{ProtocolHTTPProtobuf, j.OTLPHTTPEndpoint()},
	} {
		t.Run(tc.protocol, func(t *testing.T) {
			t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", tc.protocol)
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", tc.endpoint)
			t.Setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "2000")
			t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test")
			reg := prometheus.NewPedanticRegistry()
			tp := setup(t, reg, discard)
			tr := tp.Tracer("github.com/modelwatch/modelwatch/internal/server")
			flush := func() error {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				return tp.ForceFlush(ctx)
			}

			// A request whose caller sent a traceparent.
			caller := Propagator().Extract(context.Background(), propagation.MapCarrier{
				"traceparent": "00-" + randomTraceID(t) + "-00f067aa0ba902b7-01",
			})
			callerTrace, callerSpan, _ := TraceIDs(caller)
			ctx, server := tr.Start(caller, "POST /predict", trace.WithSpanKind(trace.SpanKindServer),
				trace.WithAttributes(
					attribute.String("http.request.method", "POST"),
					attribute.String("http.route", "/predict"),
					attribute.String("model_name", "fraud_model"),
					attribute.Int("rows", 3),
				))
			_, infer := tr.Start(ctx, "infer")
			infer.End()
			server.SetAttributes(attribute.Int("http.response.status_code", 200))
			server.End()
			serverTrace, serverSpan, sampled := TraceIDs(ctx)
			if serverTrace != callerTrace || !sampled {
				t.Fatalf("the server span is in trace %s (sampled %v), not the caller's %s", serverTrace, sampled, callerTrace)
			}
			if err := flush(); err != nil {
				t.Fatalf("export: %v", err)
			}

			wctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			got, err := j.WaitTrace(wctx, callerTrace, 2)
			if err != nil {
				t.Fatalf("%v\nJaeger's log:\n%s", err, j.Log())
			}
			if got.TraceID != callerTrace || len(got.Spans) != 2 {
				t.Fatalf("trace %s with %d spans, want %s with 2", got.TraceID, len(got.Spans), callerTrace)
			}
			s, ok := got.Span("POST /predict")
			if !ok {
				t.Fatalf("no server span in %+v", got.Spans)
			}
			if s.SpanID != serverSpan || s.ParentSpanID() != callerSpan {
				t.Errorf("server span %s with parent %q, want %s with parent %s (the caller's)", s.SpanID, s.ParentSpanID(), serverSpan, callerSpan)
			}
			for k, want := range map[string]any{
				"http.request.method":       "POST",
				"http.route":                "/predict",
				"http.response.status_code": float64(200),
				"model_name":                "fraud_model",
				"rows":                      float64(3),
				"span.kind":                 "server",
			} {
				if v, ok := s.Tag(k); !ok || v != want {
					t.Errorf("server span tag %s = %v (%v), want %v", k, v, ok, want)
				}
			}
			child, ok := got.Span("infer")
			if !ok || child.ParentSpanID() != serverSpan {
				t.Errorf("infer span %+v, want a child of %s", child, serverSpan)
			}
			p := got.Processes[s.ProcessID]
			if p.ServiceName != "modelwatch" {
				t.Errorf("service %q, want modelwatch", p.ServiceName)
			}
			for k, want := range map[string]any{"service.version": version.Version, "deployment.environment.name": "test", "telemetry.sdk.language": "go"} {
				if v, ok := p.Tag(k); !ok || v != want {
					t.Errorf("resource %s = %v (%v), want %v", k, v, ok, want)
				}
			}
			if v := counterValue(t, reg, "modelwatch_trace_spans_exported_total", "success"); v != 2 {
				t.Errorf("spans exported %v, want 2", v)
			}

			// Jaeger goes away: the export fails and is counted.
			j.Stop()
			_, lost := tr.Start(context.Background(), "lost")
			lost.End()
			if err := flush(); err == nil {
				t.Error("an export to a stopped Jaeger succeeded")
			}
			if v := counterValue(t, reg, "modelwatch_trace_export_errors_total", ""); v != 1 {
				t.Errorf("export errors %v, want 1", v)
			}
			if v := counterValue(t, reg, "modelwatch_trace_spans_exported_total", "failure"); v != 1 {
				t.Errorf("spans lost %v, want 1", v)
			}

			// And comes back: exports work again without a restart of
			// ours, once gRPC's reconnection backoff lets them (HTTP at
			// once). Each failed try is one more counted failure.
			j.Start()
			var againTrace string
			for deadline := time.Now().Add(30 * time.Second); ; {
				ctx, again := tr.Start(context.Background(), "again")
				again.End()
				err := flush()
				if err == nil {
					againTrace, _, _ = TraceIDs(ctx)
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("exports still fail 30s after Jaeger's restart: %v", err)
				}
			}
			if _, err := j.WaitTrace(wctx, againTrace, 1); err != nil {
				t.Fatalf("%v\nJaeger's log:\n%s", err, j.Log())
			}
			if v := counterValue(t, reg, "modelwatch_trace_spans_exported_total", "success"); v != 3 {
				t.Errorf("spans exported %v, want 3", v)
			}
			errs := counterValue(t, reg, "modelwatch_trace_export_errors_total", "")
			if lost := counterValue(t, reg, "modelwatch_trace_spans_exported_total", "failure"); lost != errs {
				t.Errorf("%v spans lost in %v failed exports of one span each", lost, errs)
			}
			t.Logf("%v failed exports before Jaeger's return was seen", errs)
		})
	}
}

// randomTraceID returns a new trace id, so that each subtest's trace is
// its own in the Jaeger they share.
func randomTraceID(t *testing.T) string {
	t.Helper()
	var id trace.TraceID
	if _, err := rand.Read(id[:]); err != nil {
		t.Fatal(err)
	}
	return id.String()
}
