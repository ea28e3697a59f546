//go:build unix

package server

import (
	"context"
	"syscall"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/modelwatch/modelwatch/internal/tracing"
)

// discardExporter takes spans and sends them nowhere.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

// BenchmarkPredictTracing measures POST /predict of one row (as
// BenchmarkPredict/plain) with tracing off (the no-op provider serve uses
// then), and with the SDK's provider as serve builds it (batch span
// processor; an exporter that discards) sampling 1% of new traces, and
// every one. Besides the wall time it reports cpu-ns/op, the process's CPU
// time per request (the batch span processor's goroutine and the garbage
// collector included): on a shared machine it moves less than the wall time.
func BenchmarkPredictTracing(b *testing.B) {
	for _, bc := range []struct {
		name       string
		sampler    sdktrace.Sampler // nil: tracing off
		presampler *tracing.Presampler
	}{
		{"off", nil, nil},
		{"ratio=0.01", sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.01)), tracing.NewPresampler(0.01)},
		{"always", sdktrace.ParentBased(sdktrace.AlwaysSample()), nil},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var tp trace.TracerProvider = noop.NewTracerProvider()
			if bc.sampler != nil {
				sdk := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discardExporter{}), sdktrace.WithSampler(bc.sampler),
					sdktrace.WithIDGenerator(tracing.IDGenerator{})) // as tracing.Setup makes it
				defer sdk.Shutdown(context.Background())
				tp = sdk
			}
			h := newHarness(&testing.T{}, func(o *Options) {
				o.Now = time.Now
				o.MaxBodyBytes = 1 << 20
				o.TracerProvider = tp
				o.Presampler = bc.presampler
				o.Propagator = tracing.Propagator()
			})
			body := `{"inputs": [` + safeRow + `]}`
			b.ReportAllocs()
			c0 := processCPU()
			for b.Loop() {
				postPredict(b, h, body)
			}
			b.ReportMetric(float64(processCPU()-c0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// processCPU returns the CPU time the process has used, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
