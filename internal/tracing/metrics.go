package tracing

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// metrics are the exporter's outcomes, registered only when tracing is on.
type metrics struct {
	spans  *prometheus.CounterVec // by result: success, failure
	errors prometheus.Counter

	sent, lost prometheus.Counter // spans{result="success"}, {result="failure"}
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		spans: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modelwatch_trace_spans_exported_total",
			Help: "Spans handed to the OTLP trace exporter, by result: success (the collector accepted the batch) or failure (the batch was lost).",
		}, []string{"result"}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "modelwatch_trace_export_errors_total",
			Help: "Failed OTLP trace exports: batches the exporter could not deliver after its own retries.",
		}),
	}
	// Both results exist from the start, so that rate() and ratios do.
	m.sent = m.spans.WithLabelValues("success")
	m.lost = m.spans.WithLabelValues("failure")
	for _, c := range []prometheus.Collector{m.spans, m.errors} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// countingExporter is a SpanExporter that counts what the exporter it wraps
// sends and fails to send.
type countingExporter struct {
	sdktrace.SpanExporter
	m *metrics
}

var _ sdktrace.SpanExporter = (*countingExporter)(nil)

// ExportSpans exports through the wrapped exporter and counts the outcome;
// it returns the wrapped exporter's error.
func (e *countingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	err := e.SpanExporter.ExportSpans(ctx, spans)
	if err != nil {
		e.m.errors.Inc()
		e.m.lost.Add(float64(len(spans)))
		return err
	}
	e.m.sent.Add(float64(len(spans)))
	return nil
}
