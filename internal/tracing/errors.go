package tracing

import (
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
)

// errorHandler logs the OpenTelemetry SDK's errors (failed exports, a bad
// sampler variable) at most once per interval, with the number of errors
// it did not log since the last line, so that a collector that is down
// fills no disk.
type errorHandler struct {
	logger   *slog.Logger
	interval time.Duration
	now      func() time.Time

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

var _ otel.ErrorHandler = (*errorHandler)(nil)

func newErrorHandler(logger *slog.Logger, interval time.Duration) *errorHandler {
	return &errorHandler{logger: logger, interval: interval, now: time.Now}
}

// Handle logs err, unless another error was logged less than the interval
// ago, in which case it only counts it.
func (h *errorHandler) Handle(err error) {
	h.mu.Lock()
	now := h.now()
	if !h.last.IsZero() && now.Sub(h.last) < h.interval {
		h.suppressed++
		h.mu.Unlock()
		return
	}
	suppressed := h.suppressed
	h.last, h.suppressed = now, 0
	h.mu.Unlock()
	h.logger.Warn("opentelemetry error", "err", err, "suppressed", suppressed)
}
