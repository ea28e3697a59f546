// Package gpu exports NVIDIA GPU readings as Prometheus metrics through
// NVML, read at scrape time by a prometheus.Collector over an injected
// nvml.Interface. The package needs cgo: built without it, Open reports
// ErrNotBuiltIn.
package gpu

import (
	"errors"
	"fmt"
)

// Mode says whether the server exports GPU metrics.
type Mode string

// The modes of --gpu-metrics.
const (
	// ModeAuto exports GPU metrics when NVML can be loaded and initialised,
	// and otherwise logs why not and goes on without them.
	ModeAuto Mode = "auto"
	// ModeOn refuses to start without NVML.
	ModeOn Mode = "on"
	// ModeOff never touches NVML.
	ModeOff Mode = "off"
)

// ParseMode reads a --gpu-metrics value.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeAuto, ModeOn, ModeOff:
		return m, nil
	}
	return "", fmt.Errorf("gpu-metrics %q is not one of auto, on, off", s)
}

var (
	// ErrNotBuiltIn means the binary was built without cgo, so without NVML.
	ErrNotBuiltIn = errors.New("GPU support is not built in (built with CGO_ENABLED=0)")
	// ErrUnavailable means NVML could not be loaded or initialised.
	ErrUnavailable = errors.New("NVML is not available")
)
