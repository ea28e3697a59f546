package tracing

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/modelwatch/modelwatch/internal/version"
)

// DefaultServiceName is the service.name of modelwatch's spans unless
// OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES says otherwise.
const DefaultServiceName = "modelwatch"

// errorLogInterval is the least time between two log lines of the SDK's
// errors.
const errorLogInterval = 10 * time.Second

// Setup returns the TracerProvider that cfg asks for, and the function that
// flushes and stops it (its context bounds the flush).
//
// With tracing off (cfg.Enabled is false) it returns OpenTelemetry's no-op
// provider, registers nothing and starts nothing: spans cost an interface
// call. With it on, it builds the SDK's provider with a batch span
// processor, and an OTLP exporter for cfg.Protocol that reads its own
// OTEL_EXPORTER_OTLP_* variables (endpoint, headers, timeout, TLS,
// compression); the sampler is the SDK's from OTEL_TRACES_SAMPLER and
// OTEL_TRACES_SAMPLER_ARG (parentbased_always_on when unset), the resource
// service.name "modelwatch" and service.version from internal/version,
// overridden by OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES. The
// exporter's outcomes are counted on reg (modelwatch_trace_* counters) and
// the SDK's errors are logged through logger at most once per 10 s: Setup
// installs that logger as OpenTelemetry's process-wide error handler (the
// SDK reports export failures nowhere else). It sets no global
// TracerProvider or propagator; see Propagator.
//
// Setup returns an error when the exporter cannot be built, the resource
// variables do not parse, or the counters cannot be registered; nothing is
// left running then. No connection is made before the first export: an
// unreachable collector is not an error here but a counted, logged failure
// of each export.
func Setup(ctx context.Context, cfg Config, reg prometheus.Registerer, logger *slog.Logger) (trace.TracerProvider, func(context.Context) error, error) {
	if !cfg.Enabled() {
		return noop.NewTracerProvider(), func(context.Context) error { return nil }, nil
	}
	logger = logger.With("component", "tracing")
	otel.SetErrorHandler(newErrorHandler(logger, errorLogInterval))

	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithAttributes(semconv.ServiceName(DefaultServiceName), semconv.ServiceVersion(version.Version)),
		resource.WithFromEnv(), // last: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
	)
	if err != nil {
		return nil, nil, fmt.Errorf("tracing resource: %w", err)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, nil, fmt.Errorf("tracing metrics: %w", err)
	}
	var exp sdktrace.SpanExporter
	switch cfg.Protocol {
	case ProtocolGRPC:
		exp, err = otlptracegrpc.New(ctx)
	case ProtocolHTTPProtobuf:
		exp, err = otlptracehttp.New(ctx)
	default:
		err = fmt.Errorf("unsupported OTLP protocol %q", cfg.Protocol)
	}
	if err != nil {
		unregister(reg, m)
		return nil, nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(&countingExporter{SpanExporter: exp, m: m}),
		sdktrace.WithResource(res),
		sdktrace.WithIDGenerator(IDGenerator{}), // the ids a Presampler drew
	)
	logger.Info("tracing on", "protocol", cfg.Protocol, "endpoint", cfg.Endpoint,
		"sampler", cfg.Sampler, "sampler_arg", cfg.SamplerArg)
	return tp, tp.Shutdown, nil
}

func unregister(reg prometheus.Registerer, m *metrics) {
	reg.Unregister(m.spans)
	reg.Unregister(m.errors)
}

// Propagator returns the W3C Trace Context and Baggage propagator: what
// reads a caller's traceparent, tracestate and baggage headers into a
// context and writes them into an answer or an outgoing request. Pass it to
// the HTTP and gRPC instrumentation (otelhttp.WithPropagators) rather than
// relying on a global.
func Propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

// TraceIDs returns the trace and span ids of the span in ctx, in the W3C
// hexadecimal form (32 and 16 digits), and whether it is sampled (recorded
// and exported). Without a valid span in ctx (tracing off, or no span
// started) both ids are "" and sampled is false.
func TraceIDs(ctx context.Context) (traceID, spanID string, sampled bool) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return "", "", false
	}
	return sc.TraceID().String(), sc.SpanID().String(), sc.IsSampled()
}

// ExemplarLabels returns the trace_id and span_id labels of an exemplar for
// the span in ctx, or nil when it has none or it is not sampled (an
// exemplar should link only to a trace the backend has). The two take 63 of
// the 128 characters an exemplar's labels may have in all.
func ExemplarLabels(ctx context.Context) prometheus.Labels {
	traceID, spanID, sampled := TraceIDs(ctx)
	if !sampled {
		return nil
	}
	return prometheus.Labels{"trace_id": traceID, "span_id": spanID}
}
