package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/modelwatch/modelwatch/internal/tracing"
)

// setupTracing builds the TracerProvider the OTEL_* variables ask for
// (docs/TRACING.md): OpenTelemetry's no-op provider when they ask for
// none. With tracing on, the returned logger adds trace_id and span_id to
// the lines logged with a request's context. stop flushes the spans not yet
// exported and stops the exporter, within its context. An invalid variable
// is a usage error. With a trace id ratio sampler it also returns the
// Presampler that spares the requests it leaves out a span.
func setupTracing(ctx context.Context, getenv func(string) string, reg prometheus.Registerer, logger *slog.Logger) (tp trace.TracerProvider, _ *tracing.Presampler, _ *slog.Logger, stop func(context.Context) error, err error) {
	cfg, err := tracing.ConfigFromEnv(getenv)
	if err != nil {
		return nil, nil, nil, nil, &usageError{err}
	}
	tp, stop, err = tracing.Setup(ctx, cfg, reg, logger)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("tracing: %w", err)
	}
	var pre *tracing.Presampler
	if cfg.Enabled() {
		logger = slog.New(tracing.NewLogHandler(logger.Handler()))
		pre = cfg.Presampler()
	}
	return tp, pre, logger, stop, nil
}
