package metrics

import (
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

type failing struct {
	g   prometheus.Gauge
	err error
}

func (f *failing) Describe(ch chan<- *prometheus.Desc) { f.g.Describe(ch) }
func (f *failing) CollectErr(ch chan<- prometheus.Metric) error {
	f.g.Collect(ch)
	return f.err
}

// TestSelfReporting: the wrapped collector's series pass through, success
// says whether it failed, failures reach the log, and the duration is
// exported.
func TestSelfReporting(t *testing.T) {
	f := &failing{g: prometheus.NewGauge(prometheus.GaugeOpts{Name: "inner", Help: "h"})}
	f.g.Set(3)
	var logged []string
	c := SelfReporting("gpu", f, func(name string, err error) { logged = append(logged, name+": "+err.Error()) })
	want := func(success int) string {
		return strings.NewReplacer("S", string(rune('0'+success))).Replace(`
# HELP inner h
# TYPE inner gauge
inner 3
# HELP modelwatch_collector_success 1 when the collector's last collection read everything, 0 when it failed or gave up (an NVML call that hung).
# TYPE modelwatch_collector_success gauge
modelwatch_collector_success{collector="gpu"} S
`)
	}
	if err := testutil.CollectAndCompare(c, strings.NewReader(want(1)), "inner", "modelwatch_collector_success"); err != nil {
		t.Fatal(err)
	}
	f.err = errors.New("NVML did not answer within 2s")
	if err := testutil.CollectAndCompare(c, strings.NewReader(want(0)), "inner", "modelwatch_collector_success"); err != nil {
		t.Fatal(err)
	}
	if len(logged) != 1 || logged[0] != "gpu: NVML did not answer within 2s" {
		t.Errorf("logged %q", logged)
	}
	if n := testutil.CollectAndCount(c, "modelwatch_collector_duration_seconds"); n != 1 {
		t.Errorf("%d duration series, want 1", n)
	}
	if problems, err := testutil.CollectAndLint(SelfReporting("drift", Infallible(f.g), nil)); err != nil || len(problems) != 0 {
		t.Errorf("lint: %v %v", err, problems)
	}
	// Several wrapped collectors in one registry.
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	if err := reg.Register(SelfReporting("drift", Infallible(prometheus.NewGauge(prometheus.GaugeOpts{Name: "other", Help: "h"})), nil)); err != nil {
		t.Fatalf("a second self-reporting collector: %v", err)
	}
}
