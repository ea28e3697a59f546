package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// FallibleCollector is a collector that can fail, or give up, part of the
// way: CollectErr sends what it could read and says why it could not read
// the rest (nil when it read everything).
type FallibleCollector interface {
	Describe(ch chan<- *prometheus.Desc)
	CollectErr(ch chan<- prometheus.Metric) error
}

// selfReporting wraps a collector, as node_exporter's
// node_scrape_collector_success and _duration_seconds do, so that a
// collector that fails says so instead of its series just vanishing.
type selfReporting struct {
	name              string
	c                 FallibleCollector
	log               func(name string, err error)
	success, duration *prometheus.Desc
}

// SelfReporting returns c as a prometheus.Collector that also exports
// modelwatch_collector_success and modelwatch_collector_duration_seconds
// with collector=name, and passes each failure to log (which may be nil).
func SelfReporting(name string, c FallibleCollector, log func(name string, err error)) prometheus.Collector {
	// collector is a constant label: each wrapped collector describes
	// series of its own, which a registry takes beside the others'.
	labels := prometheus.Labels{"collector": name}
	return &selfReporting{name: name, c: c, log: log,
		success: prometheus.NewDesc("modelwatch_collector_success",
			"1 when the collector's last collection read everything, 0 when it failed or gave up (an NVML call that hung).", nil, labels),
		duration: prometheus.NewDesc("modelwatch_collector_duration_seconds",
			"Time the collector's last collection took.", nil, labels),
	}
}

// Infallible adapts a collector that cannot fail.
func Infallible(c prometheus.Collector) FallibleCollector { return infallible{c} }

type infallible struct{ prometheus.Collector }

func (i infallible) CollectErr(ch chan<- prometheus.Metric) error {
	i.Collect(ch)
	return nil
}

// Describe implements prometheus.Collector.
func (s *selfReporting) Describe(ch chan<- *prometheus.Desc) {
	ch <- s.success
	ch <- s.duration
	s.c.Describe(ch)
}

// Collect implements prometheus.Collector.
func (s *selfReporting) Collect(ch chan<- prometheus.Metric) {
	start := time.Now()
	err := s.c.CollectErr(ch)
	success := 1.0
	if err != nil {
		success = 0
		if s.log != nil {
			s.log(s.name, err)
		}
	}
	ch <- prometheus.MustNewConstMetric(s.success, prometheus.GaugeValue, success)
	ch <- prometheus.MustNewConstMetric(s.duration, prometheus.GaugeValue, time.Since(start).Seconds())
}
