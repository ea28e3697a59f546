package drift

import "github.com/prometheus/client_golang/prometheus"

// onlyRows collects just model_drift_window_rows, for testutil.ToFloat64.
func onlyRows(m *Monitor) prometheus.Collector { return rowsOnly{m} }

type rowsOnly struct{ m *Monitor }

func (r rowsOnly) Describe(ch chan<- *prometheus.Desc) { ch <- descRows }

func (r rowsOnly) Collect(ch chan<- prometheus.Metric) {
	all := make(chan prometheus.Metric, 100)
	go func() { r.m.Collect(all); close(all) }()
	for m := range all {
		if m.Desc() == descRows {
			ch <- m
		}
	}
}
