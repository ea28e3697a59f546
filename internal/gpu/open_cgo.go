//go:build cgo

package gpu

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelwatch/modelwatch/internal/metrics"
)

// BuiltIn reports whether this binary can read GPUs.
const BuiltIn = true

// Open loads and initialises NVML according to mode and returns a collector
// over every GPU, and a function that releases NVML. With ModeOff, or with
// ModeAuto when NVML is unavailable, it returns a nil collector and a reason
// for the log. With ModeOn an unavailable NVML is an error wrapping
// ErrUnavailable.
func Open(mode Mode, timeout time.Duration, log *slog.Logger) (prometheus.Collector, func(), string, error) {
	return open(nvml.New(), mode, timeout, log)
}

// open is Open over any NVML implementation, for tests.
func open(lib nvml.Interface, mode Mode, timeout time.Duration, log *slog.Logger) (prometheus.Collector, func(), string, error) {
	if mode == ModeOff {
		return nil, func() {}, "turned off (--gpu-metrics off)", nil
	}
	// Any NVML call after a failed Init can end the process (an unresolved
	// symbol, not an error), so nothing but Init is called unless it succeeds.
	if ret := lib.Init(); ret != nvml.SUCCESS {
		reason := fmt.Sprintf("NVML could not be initialised: %s", nvml.ErrorString(ret))
		if ret == nvml.ERROR_LIBRARY_NOT_FOUND {
			reason = "no NVML library (libnvidia-ml.so.1) on this machine"
		}
		if mode == ModeOn {
			return nil, nil, "", fmt.Errorf("%w: %s", ErrUnavailable, reason)
		}
		return nil, func() {}, reason, nil
	}
	shutdown := func() {
		if ret := lib.Shutdown(); ret != nvml.SUCCESS {
			log.Warn("NVML shutdown failed", "err", nvml.ErrorString(ret))
		}
	}
	c, err := NewCollector(lib, os.Getpid(), timeout, log)
	if err != nil {
		shutdown()
		if mode == ModeOn {
			return nil, nil, "", fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		return nil, func() {}, fmt.Sprintf("NVML failed: %v", err), nil
	}
	// The collector reports on itself: an NVML that hangs shows as
	// modelwatch_collector_success{collector="gpu"} 0, not as no GPU.
	reporting := metrics.SelfReporting("gpu", c, func(_ string, err error) { log.Warn("GPU metrics skipped", "err", err) })
	return reporting, func() { c.Close(); shutdown() }, fmt.Sprintf("%d GPUs, driver %s", c.Devices(), c.driver), nil
}
