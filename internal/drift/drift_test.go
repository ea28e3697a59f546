package drift

import (
	"bytes"
	"encoding/json"
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

func TestPSIByHand(t *testing.T) {
	for _, tc := range []struct {
		expected, counts []float64
		want             float64
	}{
		// sum (a-e) ln(a/e): (-.15)ln(.4) + (-.05)ln(.8) + (.05)ln(1.2) + (.15)ln(1.6)
		{[]float64{.25, .25, .25, .25}, []float64{10, 20, 30, 40}, 0.22821740957339182},
		// 0.5/0.3/0.2 against 0.7/0.2/0.1 and an empty bin on both sides (epsilon)
		{[]float64{.7, .2, .1, 0}, []float64{50, 30, 20, 0}, 0.1771556761910535},
		// everything in one of two even bins: the empty bin counts as 1e-4
		{[]float64{.5, .5}, []float64{7, 0}, 4.60431846666895},
		{[]float64{.2, .3, .5}, []float64{2, 3, 5}, 0},
	} {
		if got := PSI(tc.expected, tc.counts); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("PSI(%v, %v) = %v, want %v", tc.expected, tc.counts, got, tc.want)
		}
	}
}

func TestBins(t *testing.T) {
	vals := make([]float64, 100)
	for i := range vals {
		vals[i] = float64(i + 1)
	}
	f := Feature{Name: "x", Edges: quantileEdges(vals, 4)}
	if got := f.Edges; len(got) != 3 || got[0] != 26 || got[1] != 51 || got[2] != 76 {
		t.Fatalf("edges %v", got)
	}
	for x, want := range map[float64]int{-5: 0, 25.9: 0, 26: 1, 50.99: 1, 51: 2, 100: 3, 1e9: 3} {
		if got := f.Bin(x); got != want {
			t.Errorf("Bin(%v) = %d, want %d", x, got, want)
		}
	}
	if f.Bin(math.NaN()) != 4 || f.Bins() != 5 {
		t.Errorf("missing bin %d of %d", f.Bin(math.NaN()), f.Bins())
	}
	// A discrete feature: as many bins as values, at most.
	disc := make([]float64, 1000)
	for i := range disc {
		disc[i] = float64(i % 3)
	}
	if got := quantileEdges(disc, 10); len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Errorf("discrete edges %v", got)
	}
}

// fixture profiles two features of known distributions for a two-class model.
func fixture(t *testing.T) (*Profile, model.Metadata) {
	r := rand.New(rand.NewPCG(1, 2))
	const n = 20000
	vals := make([]float64, 0, 2*n)
	preds := make([]float64, 0, 2*n)
	for i := 0; i < n; i++ {
		a, b := r.NormFloat64(), r.ExpFloat64()
		if i%50 == 0 {
			b = math.NaN()
		}
		vals = append(vals, a, b)
		p := 1 / (1 + math.Exp(-a))
		preds = append(preds, 1-p, p)
	}
	p, err := Build("m", "1", []string{"a", "b"}, vals, []string{"no", "yes"}, preds, 10)
	if err != nil {
		t.Fatal(err)
	}
	return p, model.Metadata{Name: "m", Version: "1", Features: []string{"a", "b"}, Classes: []string{"no", "yes"}, Outputs: 2}
}

func TestBuildAndParse(t *testing.T) {
	p, _ := fixture(t)
	if p.Rows != 20000 || len(p.Features[0].Edges) != 9 || math.Abs(p.Features[1].Proportions[len(p.Features[1].Proportions)-1]-0.02) > 1e-12 {
		t.Errorf("profile: rows %d, edges %v, missing %v", p.Rows, p.Features[0].Edges, p.Features[1].Proportions)
	}
	if math.Abs(p.Prediction.Proportions[1]-0.5) > 0.02 || p.Confidence == nil {
		t.Errorf("prediction %v", p.Prediction)
	}
	b, _ := json.Marshal(p)
	back, err := ParseProfile(bytes.NewReader(b))
	if err != nil || back.Features[0].Name != "a" {
		t.Fatalf("round trip: %v", err)
	}
	for _, bad := range []string{
		`{"features": []}`,
		strings.Replace(string(b), `"rows"`, `"rowz"`, 1),
		strings.Replace(string(b), `"proportions":[`, `"proportions":[7,`, 1),
	} {
		if _, err := ParseProfile(strings.NewReader(bad)); err == nil {
			t.Errorf("accepted %.60s", bad)
		}
	}
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func batchFrom(r *rand.Rand, n int, shiftA float64) (model.Batch, []int) {
	b := model.Batch{Rows: n, Cols: 2}
	classes := make([]int, n)
	for i := 0; i < n; i++ {
		a, e := r.NormFloat64()+shiftA, r.ExpFloat64()
		if i%50 == 0 {
			e = math.NaN() // as often missing as in the training data
		}
		b.Values = append(b.Values, a, e)
		if a > 0 {
			classes[i] = 1
		}
	}
	return b, classes
}

func TestMonitor(t *testing.T) {
	p, meta := fixture(t)
	c := &clock{t: time.Unix(1_000_000, 0)}
	m := NewMonitor(Options{Window: time.Minute, Slots: 6, MinSamples: 500, Now: c.now})
	if err := m.Add(meta, p); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 4))

	// Below MinSamples: the window's rows, no PSI.
	b, cl := batchFrom(r, 400, 0)
	m.Observe("m", "1", b, cl, model.Result{})
	if n := testutil.CollectAndCount(m, "model_feature_drift_psi"); n != 0 {
		t.Errorf("%d PSI series for 400 rows", n)
	}
	if v := testutil.ToFloat64(onlyRows(m)); v != 400 {
		t.Errorf("window rows %v", v)
	}

	// Unshifted traffic: small PSI everywhere.
	for range 10 {
		b, cl := batchFrom(r, 200, 0)
		m.Observe("m", "1", b, cl, model.Result{})
	}
	psi := values(t, m)
	if psi["a"] > 0.02 || psi["b"] > 0.05 || psi[""] > 0.02 {
		t.Errorf("unshifted PSI %v", psi)
	}

	// After the window passes, the old rows age out; then shifted traffic.
	c.t = c.t.Add(2 * time.Minute)
	if v := testutil.ToFloat64(onlyRows(m)); v != 0 {
		t.Errorf("rows after the window passed: %v", v)
	}
	for range 10 {
		b, cl := batchFrom(r, 200, 1.5)
		m.Observe("m", "1", b, cl, model.Result{})
	}
	psi = values(t, m)
	if psi["a"] < 0.2 || psi["b"] > 0.1 || psi[""] < 0.2 {
		t.Errorf("a shifted by 1.5 sd: PSI %v", psi)
	}

	// The cap on features.
	capped := NewMonitor(Options{MaxFeatures: 1, MinSamples: 1, Now: c.now})
	capped.Add(meta, p)
	capped.Observe("m", "1", b, cl, model.Result{})
	if n := testutil.CollectAndCount(capped, "model_feature_drift_psi"); n != 1 {
		t.Errorf("%d features exported with a cap of 1", n)
	}
	m.Remove("m", "1")
	if n := testutil.CollectAndCount(m); n != 0 {
		t.Errorf("%d series after Remove", n)
	}
}

func TestAddChecksTheProfile(t *testing.T) {
	p, meta := fixture(t)
	m := NewMonitor(Options{})
	bad := meta
	bad.Features = []string{"b", "a"}
	if err := m.Add(bad, p); err == nil {
		t.Error("features in another order accepted")
	}
	bad = meta
	bad.Classes = []string{"x", "y"}
	if err := m.Add(bad, p); err == nil {
		t.Error("other classes accepted")
	}
}

// values returns the PSI of each feature, and of the prediction under "".
func values(t *testing.T, m *Monitor) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	ch := make(chan prometheus.Metric, 100)
	go func() { m.Collect(ch); close(ch) }()
	for metric := range ch {
		var d dto.Metric
		metric.Write(&d)
		switch metric.Desc() {
		case descFeature:
			out[d.GetLabel()[0].GetValue()] = d.GetGauge().GetValue() // labels sort: feature first
		case descPrediction:
			out[""] = d.GetGauge().GetValue()
		}
	}
	return out
}

func BenchmarkObserve(b *testing.B) {
	p, meta := fixture(&testing.T{})
	m := NewMonitor(Options{})
	m.Add(meta, p)
	r := rand.New(rand.NewPCG(5, 6))
	for _, rows := range []int{1, 64} {
		batch, cl := batchFrom(r, rows, 0)
		b.Run(map[int]string{1: "rows=1", 64: "rows=64"}[rows], func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				m.Observe("m", "1", batch, cl, model.Result{})
			}
		})
	}
}
