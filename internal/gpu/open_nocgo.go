//go:build !cgo

package gpu

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// BuiltIn reports whether this binary can read GPUs.
const BuiltIn = false

// Open reports that GPU support is not built in: an error for ModeOn, a
// reason for the log otherwise.
func Open(mode Mode, _ time.Duration, _ *slog.Logger) (prometheus.Collector, func(), string, error) {
	switch mode {
	case ModeOn:
		return nil, nil, "", ErrNotBuiltIn
	case ModeOff:
		return nil, func() {}, "turned off (--gpu-metrics off)", nil
	}
	return nil, func() {}, ErrNotBuiltIn.Error(), nil
}
