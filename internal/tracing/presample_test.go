package tracing

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// TestPresampler: the presampler decides as the SDK's trace id ratio
// sampler does, for every trace id it draws, and a trace started with the
// drawn id (through IDGenerator) is sampled exactly when it said so.
func TestPresampler(t *testing.T) {
	cfg := Config{Sampler: "parentbased_traceidratio", SamplerArg: "0.25"}
	p := cfg.Presampler()
	if p == nil {
		t.Fatal("no presampler for parentbased_traceidratio 0.25")
	}
	for _, c := range []Config{{Sampler: "parentbased_always_on"}, {Sampler: "traceidratio", SamplerArg: "1"}, {Sampler: "traceidratio", SamplerArg: "x"}, {}} {
		if c.Presampler() != nil {
			t.Errorf("%+v: a presampler, want none (the SDK decides alone)", c)
		}
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.25))), sdktrace.WithIDGenerator(IDGenerator{}))
	defer tp.Shutdown(context.Background())
	tracer := tp.Tracer("test")
	sampled := 0
	const n = 20000
	for range n {
		tid, yes := p.Draw()
		_, span := tracer.Start(WithTraceID(context.Background(), tid), "x")
		sc := span.SpanContext()
		span.End()
		if sc.TraceID() != tid {
			t.Fatalf("the span's trace id %s, drawn %s", sc.TraceID(), tid)
		}
		if sc.IsSampled() != yes {
			t.Fatalf("trace %s: presampled %v, the SDK sampled %v", tid, yes, sc.IsSampled())
		}
		if yes {
			sampled++
		}
	}
	if sampled < n*22/100 || sampled > n*28/100 {
		t.Errorf("%d of %d sampled at 0.25", sampled, n)
	}
	// Without a drawn id, ids are random and valid.
	tid, sid := IDGenerator{}.NewIDs(context.Background())
	if !tid.IsValid() || !sid.IsValid() || tid == (trace.TraceID{}) {
		t.Errorf("NewIDs = %s %s", tid, sid)
	}
}
