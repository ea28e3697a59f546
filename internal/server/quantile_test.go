package server

import (
	"math"
	"testing"
)

// TestQuantileMonotonic: bucket increases that go down from one bucket to
// the next are forced monotonic first, as Prometheus's histogram_quantile
// does, so that a higher quantile is never below a lower one.
func TestQuantileMonotonic(t *testing.T) {
	// The 0.2 bucket was reset between the two readings and lost 30.
	cur := map[string]float64{"h|0.1": 50, "h|0.2": 20, "h|0.4": 100, "h|+Inf": 100}
	same := func(k string) float64 { return cur[k] }
	p50, p60, p95 := quantile(0.5, cur, same, "h|"), quantile(0.6, cur, same, "h|"), quantile(0.95, cur, same, "h|")
	// Monotonic buckets 50, 50, 100, 100: the median is the first bucket's
	// bound, p60 and p95 interpolate in (0.2, 0.4].
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-12 }
	if p50 != 0.1 || !near(p60, 0.24) || !near(p95, 0.38) {
		t.Errorf("quantiles 0.5, 0.6, 0.95 = %v, %v, %v", p50, p60, p95)
	}
	if !(p50 <= p60 && p60 <= p95) {
		t.Errorf("quantiles not monotonic: %v %v %v", p50, p60, p95)
	}
}
