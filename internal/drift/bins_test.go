package drift

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/modelwatch/modelwatch/internal/model"
)

// binProfile is a classifier's profile with two features: a has edges 1 and
// 2 (bins 0, 1, 2 and missing), b has no edge (bin 0 and missing).
func binProfile(t *testing.T) (*Profile, model.Metadata) {
	t.Helper()
	p := &Profile{Model: "m", Version: "1", Rows: 8,
		Features: []Feature{
			{Name: "a", Edges: []float64{1, 2}, Proportions: []float64{0.25, 0.25, 0.375, 0.125}},
			{Name: "b", Edges: []float64{}, Proportions: []float64{1, 0}},
		},
		Prediction: Distribution{Classes: []string{"safe", "fraud"}, Proportions: []float64{0.75, 0.25}},
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	return p, model.Metadata{Name: "m", Version: "1", Features: []string{"a", "b"}, Classes: []string{"safe", "fraud"}, Outputs: 2}
}

const binHeader = `# HELP model_feature_bin_total Live rows counted per profile bin of a feature since the version was loaded; bin is the bin's index (bin i holds edges[i-1] <= x < edges[i]) or "missing".
# TYPE model_feature_bin_total counter
`
const refHeader = `# HELP model_feature_bin_reference_ratio Share of the training rows in each profile bin of a feature: the reference model_feature_bin_total is compared with.
# TYPE model_feature_bin_reference_ratio gauge
`
const predHeader = `# HELP model_prediction_bin_total Live predictions counted per class (classifiers) or per profile value bin (regressors) since the version was loaded.
# TYPE model_prediction_bin_total counter
`
const predRefHeader = `# HELP model_prediction_bin_reference_ratio Share of the model's predictions on its training data in each class or value bin: the reference model_prediction_bin_total is compared with.
# TYPE model_prediction_bin_reference_ratio gauge
`

var binNames = []string{"model_feature_bin_total", "model_feature_bin_reference_ratio", "model_prediction_bin_total", "model_prediction_bin_reference_ratio"}

func TestBinCounters(t *testing.T) {
	p, meta := binProfile(t)
	c := &clock{t: time.Unix(1_000_000, 0)}
	m := NewMonitor(Options{Now: c.now})
	if err := m.Add(meta, p); err != nil {
		t.Fatal(err)
	}

	// Every bin is exported from the start, at 0.
	zero := binHeader + `model_feature_bin_total{bin="0",feature="a",model_name="m",model_version="1"} 0
model_feature_bin_total{bin="1",feature="a",model_name="m",model_version="1"} 0
model_feature_bin_total{bin="2",feature="a",model_name="m",model_version="1"} 0
model_feature_bin_total{bin="missing",feature="a",model_name="m",model_version="1"} 0
model_feature_bin_total{bin="0",feature="b",model_name="m",model_version="1"} 0
model_feature_bin_total{bin="missing",feature="b",model_name="m",model_version="1"} 0
` + predHeader + `model_prediction_bin_total{bin="fraud",model_name="m",model_version="1"} 0
model_prediction_bin_total{bin="safe",model_name="m",model_version="1"} 0
`
	if err := testutil.CollectAndCompare(m, strings.NewReader(zero), "model_feature_bin_total", "model_prediction_bin_total"); err != nil {
		t.Error(err)
	}
	refs := refHeader + `model_feature_bin_reference_ratio{bin="0",feature="a",model_name="m",model_version="1"} 0.25
model_feature_bin_reference_ratio{bin="1",feature="a",model_name="m",model_version="1"} 0.25
model_feature_bin_reference_ratio{bin="2",feature="a",model_name="m",model_version="1"} 0.375
model_feature_bin_reference_ratio{bin="missing",feature="a",model_name="m",model_version="1"} 0.125
model_feature_bin_reference_ratio{bin="0",feature="b",model_name="m",model_version="1"} 1
model_feature_bin_reference_ratio{bin="missing",feature="b",model_name="m",model_version="1"} 0
` + predRefHeader + `model_prediction_bin_reference_ratio{bin="fraud",model_name="m",model_version="1"} 0.25
model_prediction_bin_reference_ratio{bin="safe",model_name="m",model_version="1"} 0.75
`
	if err := testutil.CollectAndCompare(m, strings.NewReader(refs), "model_feature_bin_reference_ratio", "model_prediction_bin_reference_ratio"); err != nil {
		t.Error(err)
	}

	// Values on the edges go to the bin above; NaN to missing; infinities to
	// the first and last numeric bins.
	a := []float64{-5, 0.999, 1, 1.5, 2, 2, 1e9, math.Inf(1), math.Inf(-1), math.NaN()}
	b := []float64{0, 7, math.NaN(), math.NaN(), -1, 3, 3, 3, 3, 3}
	in := model.Batch{Rows: len(a), Cols: 2}
	for i := range a {
		in.Values = append(in.Values, a[i], b[i])
	}
	classes := []int{0, 1, 1, 0, 0, 0, 0, 0, 0, 0}
	m.Observe("m", "1", in, classes, model.Result{})
	// An untracked version and a batch of the wrong width count nothing.
	m.Observe("m", "2", in, classes, model.Result{})
	m.Observe("m", "1", model.Batch{Rows: 1, Cols: 3, Values: []float64{1, 2, 3}}, []int{0}, model.Result{})
	// The window ages out, the counters do not.
	c.t = c.t.Add(time.Hour)
	m.Observe("m", "1", model.Batch{Rows: 1, Cols: 2, Values: []float64{1, math.NaN()}}, []int{1}, model.Result{})
	want := binHeader + `model_feature_bin_total{bin="0",feature="a",model_name="m",model_version="1"} 3
model_feature_bin_total{bin="1",feature="a",model_name="m",model_version="1"} 3
model_feature_bin_total{bin="2",feature="a",model_name="m",model_version="1"} 4
model_feature_bin_total{bin="missing",feature="a",model_name="m",model_version="1"} 1
model_feature_bin_total{bin="0",feature="b",model_name="m",model_version="1"} 8
model_feature_bin_total{bin="missing",feature="b",model_name="m",model_version="1"} 3
` + predHeader + `model_prediction_bin_total{bin="fraud",model_name="m",model_version="1"} 3
model_prediction_bin_total{bin="safe",model_name="m",model_version="1"} 8
`
	if err := testutil.CollectAndCompare(m, strings.NewReader(want), "model_feature_bin_total", "model_prediction_bin_total"); err != nil {
		t.Error(err)
	}
	if v := testutil.ToFloat64(onlyRows(m)); v != 1 {
		t.Errorf("window rows %v, want the last row only", v)
	}

	// MaxFeatures: the first features only, as for the PSI gauges.
	capped := NewMonitor(Options{MaxFeatures: 1, Now: c.now})
	capped.Add(meta, p)
	capped.Observe("m", "1", in, classes, model.Result{})
	for name, want := range map[string]int{"model_feature_bin_total": 4, "model_feature_bin_reference_ratio": 4, "model_prediction_bin_total": 2, "model_prediction_bin_reference_ratio": 2} {
		if n := testutil.CollectAndCount(capped, name); n != want {
			t.Errorf("%d series of %s with MaxFeatures 1, want %d", n, name, want)
		}
	}

	// Remove takes every series away.
	m.Remove("m", "1")
	if n := testutil.CollectAndCount(m, binNames...); n != 0 {
		t.Errorf("%d bin series after Remove", n)
	}
}

func TestBinCountersRegressor(t *testing.T) {
	p, err := ParseProfile(strings.NewReader(small)) // feature a: edges 1, 2; prediction: edge 0.5
	if err != nil {
		t.Fatal(err)
	}
	m := NewMonitor(Options{})
	meta := model.Metadata{Name: "m", Version: "1", Features: []string{"a"}, Outputs: 1}
	if err := m.Add(meta, p); err != nil {
		t.Fatal(err)
	}
	in := model.Batch{Rows: 4, Cols: 1, Values: []float64{0, 1, 2, math.NaN()}}
	m.Observe("m", "1", in, nil, model.Result{Rows: 4, Cols: 1, Values: []float64{0.1, 0.5, 0.9, 0.2}})
	want := binHeader + `model_feature_bin_total{bin="0",feature="a",model_name="m",model_version="1"} 1
model_feature_bin_total{bin="1",feature="a",model_name="m",model_version="1"} 1
model_feature_bin_total{bin="2",feature="a",model_name="m",model_version="1"} 1
model_feature_bin_total{bin="missing",feature="a",model_name="m",model_version="1"} 1
` + predHeader + `model_prediction_bin_total{bin="0",model_name="m",model_version="1"} 2
model_prediction_bin_total{bin="1",model_name="m",model_version="1"} 2
` + predRefHeader + `model_prediction_bin_reference_ratio{bin="0",model_name="m",model_version="1"} 0.5
model_prediction_bin_reference_ratio{bin="1",model_name="m",model_version="1"} 0.5
`
	if err := testutil.CollectAndCompare(m, strings.NewReader(want), "model_feature_bin_total", "model_prediction_bin_total", "model_prediction_bin_reference_ratio"); err != nil {
		t.Error(err)
	}
}

func TestBinCountersLint(t *testing.T) {
	p, meta := binProfile(t)
	m := NewMonitor(Options{})
	m.Add(meta, p)
	problems, err := testutil.CollectAndLint(m, binNames...)
	if err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", err, problems)
	}
}

// TestFleetPSI feeds two Monitors (two replicas) each half of a data set,
// and computes PSI from their summed bin counters and reference ratios as
// the recording rules model:feature_drift_psi:1h and
// model:prediction_drift_psi:1h do in PromQL: the same as PSI of the whole
// data set, and (while nothing ages out) as each replica's window would
// hold it if it had seen all the traffic.
func TestFleetPSI(t *testing.T) {
	p, meta := fixture(t)
	c := &clock{t: time.Unix(1_000_000, 0)}
	replicas := []*Monitor{NewMonitor(Options{Now: c.now}), NewMonitor(Options{Now: c.now})}
	whole := NewMonitor(Options{Now: c.now, MinSamples: 1})
	for _, m := range append(replicas, whole) {
		if err := m.Add(meta, p); err != nil {
			t.Fatal(err)
		}
	}
	r := rand.New(rand.NewPCG(7, 8))
	for i := range 40 {
		b, cl := batchFrom(r, 50+i, 0.4) // a mildly shifted a
		replicas[i%2].Observe("m", "1", b, cl, model.Result{})
		whole.Observe("m", "1", b, cl, model.Result{})
	}

	// What Prometheus holds: the counters and reference ratios of both.
	counts := map[string]map[string]float64{} // series (feature, or "" for predictions) -> bin -> summed count
	refs := map[string]map[string]float64{}
	for _, m := range replicas {
		for _, s := range collect(m) {
			into, isRef := counts, strings.HasSuffix(s.name, "_reference_ratio")
			if isRef {
				into = refs
				if prev, ok := refs[s.feature][s.bin]; ok && prev != s.value {
					t.Errorf("replicas disagree on the reference of %s bin %s", s.feature, s.bin)
				}
			} else if !strings.HasSuffix(s.name, "_bin_total") {
				continue
			}
			if into[s.feature] == nil {
				into[s.feature] = map[string]float64{}
			}
			if isRef {
				into[s.feature][s.bin] = s.value // max by (...) across replicas
			} else {
				into[s.feature][s.bin] += s.value // sum by (...) across replicas
			}
		}
	}
	// The PromQL of the recording rules, step by step.
	fleet := func(feature string) float64 {
		total := 0.0
		for _, n := range counts[feature] {
			total += n
		}
		psi := 0.0
		for bin, n := range counts[feature] {
			a := max(n/total, 1e-4)            // clamp_min(model:feature_bin:ratio_1h, 1e-4)
			e := max(refs[feature][bin], 1e-4) // clamp_min(max by (...) (model_feature_bin_reference_ratio), 1e-4)
			psi += (a - e) * math.Log(a/e)
		}
		return psi
	}

	inProcess := values(t, whole)
	for j, f := range p.Features {
		all := make([]float64, f.Bins())
		for b := range all {
			all[b] = counts[f.Name][FeatureBinLabel(b, f.Bins())]
		}
		want := PSI(f.Proportions, all)
		if got := fleet(f.Name); math.Abs(got-want) > 1e-12 || math.Abs(got-inProcess[f.Name]) > 1e-12 {
			t.Errorf("feature %d %s: fleet PSI %v, PSI of all rows %v, in-process %v", j, f.Name, got, want, inProcess[f.Name])
		}
	}
	predCounts := make([]float64, len(p.Prediction.Classes))
	for i, cl := range p.Prediction.Classes {
		predCounts[i] = counts[""][cl]
	}
	if got, want := fleet(""), PSI(p.Prediction.Proportions, predCounts); math.Abs(got-want) > 1e-12 || math.Abs(got-inProcess[""]) > 1e-12 {
		t.Errorf("prediction: fleet PSI %v, PSI of all rows %v, in-process %v", got, want, inProcess[""])
	}
	if inProcess["a"] < 0.05 {
		t.Errorf("a shifted by 0.4 sd has PSI %v: the test shows nothing", inProcess["a"])
	}
}

type sample struct {
	name, feature, bin string
	value              float64
}

// collect returns the bin series of a Monitor; feature is "" for the
// prediction's.
func collect(m *Monitor) []sample {
	ch := make(chan prometheus.Metric, 1000)
	go func() { m.Collect(ch); close(ch) }()
	var out []sample
	for metric := range ch {
		var d dto.Metric
		metric.Write(&d)
		s := sample{name: metric.Desc().String()}
		for _, l := range d.GetLabel() {
			switch l.GetName() {
			case "feature":
				s.feature = l.GetValue()
			case "bin":
				s.bin = l.GetValue()
			}
		}
		switch {
		case d.Counter != nil:
			s.value = d.GetCounter().GetValue()
		case d.Gauge != nil:
			s.value = d.GetGauge().GetValue()
		}
		for _, n := range binNames {
			if strings.Contains(s.name, `"`+n+`"`) {
				s.name = n
			}
		}
		out = append(out, s)
	}
	return out
}
