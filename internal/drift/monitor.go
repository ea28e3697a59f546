package drift

import (
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelwatch/modelwatch/internal/model"
	"github.com/modelwatch/modelwatch/internal/window"
)

// Options configures a Monitor. Zero values take the defaults noted.
type Options struct {
	// Window is how far back the live distribution reaches (default 5m).
	Window time.Duration
	// Slots is the number of sub-windows; data ages out a sub-window at a
	// time (default 10).
	Slots int
	// MinSamples is the fewest rows in the window for which PSI is exported;
	// a smaller window gives no value rather than a noisy one (default 100).
	MinSamples int
	// MaxFeatures caps the features exported per model version, in the
	// model's feature order (default 50).
	MaxFeatures int
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Monitor tracks every model version that has a profile. It is a
// prometheus.Collector exporting, per tracked version, the in-process drift
// of its window (model_feature_drift_psi, model_prediction_drift_psi and
// model_drift_window_rows, for the status page), and what a fleet's drift is
// computed from in Prometheus: cumulative counts of live rows per profile bin
// (model_feature_bin_total, model_prediction_bin_total) and the profile's
// reference proportions of the same bins (model_feature_bin_reference_ratio,
// model_prediction_bin_reference_ratio). Counters summed over replicas
// before dividing give the fleet's proportions; see docs/METRICS.md.
type Monitor struct {
	opts     Options
	mu       sync.RWMutex
	trackers map[key]*tracker
}

type key struct{ name, version string }

// tracker counts one model version's live rows in a ring of sub-windows,
// and cumulatively per bin since the version was added.
type tracker struct {
	profile *Profile
	classes bool
	created time.Time
	// featureBins[j][b] and predBins[b] are the bin label values.
	featureBins [][]string
	predBins    []string
	mu          sync.Mutex
	window      *window.Ring[slot]
	// featureTotal[j][b] counts the rows whose feature j fell in bin b, for
	// the exported features (the first MaxFeatures); predTotal[b] the
	// predictions in bin (or class) b. Both only grow.
	featureTotal [][]uint64
	predTotal    []uint64
}

// slot is one sub-window of live counts.
type slot struct {
	features [][]float64 // counts per feature per bin
	pred     []float64
	rows     float64
}

var (
	descFeature = prometheus.NewDesc("model_feature_drift_psi",
		"Population stability index of a feature's live values in the drift window against the training profile; over 0.2 means the input has shifted.",
		[]string{"model_name", "model_version", "feature"}, nil)
	descPrediction = prometheus.NewDesc("model_prediction_drift_psi",
		"Population stability index of the live predictions (classes, or value bins) in the drift window against those on the training data.",
		[]string{"model_name", "model_version"}, nil)
	descRows = prometheus.NewDesc("model_drift_window_rows",
		"Rows in the drift window; PSI is exported once there are enough of them.",
		[]string{"model_name", "model_version"}, nil)
	descFeatureBin = prometheus.NewDesc("model_feature_bin_total",
		"Live rows counted per profile bin of a feature since the version was loaded; bin is the bin's index (bin i holds edges[i-1] <= x < edges[i]) or \"missing\".",
		[]string{"model_name", "model_version", "feature", "bin"}, nil)
	descPredictionBin = prometheus.NewDesc("model_prediction_bin_total",
		"Live predictions counted per class (classifiers) or per profile value bin (regressors) since the version was loaded.",
		[]string{"model_name", "model_version", "bin"}, nil)
	descFeatureRef = prometheus.NewDesc("model_feature_bin_reference_ratio",
		"Share of the training rows in each profile bin of a feature: the reference model_feature_bin_total is compared with.",
		[]string{"model_name", "model_version", "feature", "bin"}, nil)
	descPredictionRef = prometheus.NewDesc("model_prediction_bin_reference_ratio",
		"Share of the model's predictions on its training data in each class or value bin: the reference model_prediction_bin_total is compared with.",
		[]string{"model_name", "model_version", "bin"}, nil)
)

// MissingBin is the bin label value of a feature's missing values (NaN),
// its last bin.
const MissingBin = "missing"

// FeatureBinLabel returns the bin label value of bin b of a feature with
// bins bins (Feature.Bins): the index as a decimal, or MissingBin for the
// last bin.
func FeatureBinLabel(b, bins int) string {
	if b == bins-1 {
		return MissingBin
	}
	return strconv.Itoa(b)
}

var _ prometheus.Collector = (*Monitor)(nil)

// NewMonitor returns a Monitor tracking no model yet.
func NewMonitor(opts Options) *Monitor {
	if opts.Window <= 0 {
		opts.Window = 5 * time.Minute
	}
	if opts.Slots <= 0 {
		opts.Slots = 10
	}
	if opts.MinSamples <= 0 {
		opts.MinSamples = 100
	}
	if opts.MaxFeatures <= 0 {
		opts.MaxFeatures = 50
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Monitor{opts: opts, trackers: map[key]*tracker{}}
}

// Add starts tracking a model version against its profile, replacing what
// was tracked for it. The profile's features must be the model's, in order,
// and its classes the model's classes.
func (m *Monitor) Add(meta model.Metadata, p *Profile) error {
	if err := p.Validate(); err != nil {
		return err
	}
	if len(p.Features) != len(meta.Features) {
		return fmt.Errorf("profile has %d features, model %s %s takes %d", len(p.Features), meta.Name, meta.Version, len(meta.Features))
	}
	for i, f := range p.Features {
		if f.Name != meta.Features[i] {
			return fmt.Errorf("profile feature %d is %s, the model's is %s", i, f.Name, meta.Features[i])
		}
	}
	if meta.IsClassifier() != (len(p.Prediction.Classes) > 0) || (meta.IsClassifier() && !slices.Equal(meta.Classes, p.Prediction.Classes)) {
		return fmt.Errorf("profile classes %v, model classes %v", p.Prediction.Classes, meta.Classes)
	}
	t := &tracker{profile: p, classes: meta.IsClassifier(), created: m.opts.Now(), window: window.New[slot](m.opts.Window, m.opts.Slots)}
	exported := min(len(p.Features), m.opts.MaxFeatures)
	t.featureTotal = make([][]uint64, exported)
	t.featureBins = make([][]string, exported)
	for j := range exported {
		n := p.Features[j].Bins()
		t.featureTotal[j] = make([]uint64, n)
		t.featureBins[j] = make([]string, n)
		for b := range n {
			t.featureBins[j][b] = FeatureBinLabel(b, n)
		}
	}
	t.predTotal = make([]uint64, len(p.Prediction.Proportions))
	if t.classes {
		t.predBins = slices.Clone(p.Prediction.Classes)
	} else {
		t.predBins = make([]string, len(p.Prediction.Proportions))
		for b := range t.predBins {
			t.predBins[b] = strconv.Itoa(b)
		}
	}
	m.mu.Lock()
	m.trackers[key{meta.Name, meta.Version}] = t
	m.mu.Unlock()
	return nil
}

// Remove stops tracking a model version; its series leave /metrics.
func (m *Monitor) Remove(name, version string) {
	m.mu.Lock()
	delete(m.trackers, key{name, version})
	m.mu.Unlock()
}

// Tracks reports whether a model version is tracked.
func (m *Monitor) Tracks(name, version string) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	_, ok := m.trackers[key{name, version}]
	return ok
}

// Observe counts a batch the model answered: its rows, and for each row the
// predicted class (classifiers) or the first output value (regressors), as
// result holds them, both in the window and in the cumulative bin counters.
// It does nothing for an untracked version.
func (m *Monitor) Observe(name, version string, in model.Batch, classes []int, result model.Result) {
	m.mu.RLock()
	t := m.trackers[key{name, version}]
	m.mu.RUnlock()
	if t == nil || in.Cols != len(t.profile.Features) {
		return
	}
	now := m.opts.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.window.At(now, func(s *slot) { s.reset(t.profile) })
	for j := range t.profile.Features {
		f := &t.profile.Features[j]
		counts := s.features[j]
		if j < len(t.featureTotal) {
			total := t.featureTotal[j]
			for i := 0; i < in.Rows; i++ {
				b := f.Bin(in.Values[i*in.Cols+j])
				counts[b]++
				total[b]++
			}
			continue
		}
		for i := 0; i < in.Rows; i++ {
			counts[f.Bin(in.Values[i*in.Cols+j])]++
		}
	}
	if t.classes {
		for _, c := range classes {
			if c >= 0 && c < len(s.pred) {
				s.pred[c]++
				t.predTotal[c]++
			}
		}
	} else if result.Cols > 0 {
		for i := 0; i < result.Rows; i++ {
			b := t.profile.Prediction.Bin(result.Values[i*result.Cols])
			s.pred[b]++
			t.predTotal[b]++
		}
	}
	s.rows += float64(in.Rows)
}

// reset empties a sub-window for reuse, keeping its arrays.
func (s *slot) reset(p *Profile) {
	s.rows = 0
	if s.features == nil {
		s.features = make([][]float64, len(p.Features))
		for j := range p.Features {
			s.features[j] = make([]float64, p.Features[j].Bins())
		}
		s.pred = make([]float64, len(p.Prediction.Proportions))
		return
	}
	for _, c := range s.features {
		clear(c)
	}
	clear(s.pred)
}

// Describe implements prometheus.Collector.
func (m *Monitor) Describe(ch chan<- *prometheus.Desc) {
	ch <- descFeature
	ch <- descPrediction
	ch <- descRows
	ch <- descFeatureBin
	ch <- descPredictionBin
	ch <- descFeatureRef
	ch <- descPredictionRef
}

// Collect implements prometheus.Collector: it sums the sub-windows still in
// the window and computes PSI for versions with enough rows, and exports
// every bin's cumulative count and reference proportion of every tracked
// version (at 0 before its first row, so that all of a version's bin series
// start together).
func (m *Monitor) Collect(ch chan<- prometheus.Metric) {
	now := m.opts.Now()
	m.mu.RLock()
	keys := make([]key, 0, len(m.trackers))
	ts := make([]*tracker, 0, len(m.trackers))
	for k, t := range m.trackers {
		keys = append(keys, k)
		ts = append(ts, t)
	}
	m.mu.RUnlock()
	for i, t := range ts {
		k := keys[i]
		t.collectBins(ch, k)
		features, pred, rows := t.sum(now)
		ch <- prometheus.MustNewConstMetric(descRows, prometheus.GaugeValue, rows, k.name, k.version)
		if rows < float64(m.opts.MinSamples) {
			continue
		}
		for j, f := range t.profile.Features {
			if j >= m.opts.MaxFeatures {
				break
			}
			ch <- prometheus.MustNewConstMetric(descFeature, prometheus.GaugeValue, PSI(f.Proportions, features[j]), k.name, k.version, f.Name)
		}
		ch <- prometheus.MustNewConstMetric(descPrediction, prometheus.GaugeValue, PSI(t.profile.Prediction.Proportions, pred), k.name, k.version)
	}
}

// sum adds up the sub-windows of the window that ends at now.
func (t *tracker) sum(now time.Time) ([][]float64, []float64, float64) {
	features := make([][]float64, len(t.profile.Features))
	for j, f := range t.profile.Features {
		features[j] = make([]float64, f.Bins())
	}
	pred := make([]float64, len(t.profile.Prediction.Proportions))
	rows := 0.0
	t.mu.Lock()
	defer t.mu.Unlock()
	t.window.Each(now, func(s *slot) {
		for j, c := range s.features {
			for b, n := range c {
				features[j][b] += n
			}
		}
		for b, n := range s.pred {
			pred[b] += n
		}
		rows += s.rows
	})
	return features, pred, rows
}

// collectBins exports the cumulative bin counters and the reference
// proportions of one tracked version.
func (t *tracker) collectBins(ch chan<- prometheus.Metric, k key) {
	features := make([][]uint64, len(t.featureTotal))
	t.mu.Lock()
	for j, c := range t.featureTotal {
		features[j] = slices.Clone(c)
	}
	pred := slices.Clone(t.predTotal)
	t.mu.Unlock()
	for j, counts := range features {
		f := &t.profile.Features[j]
		for b, n := range counts {
			bin := t.featureBins[j][b]
			ch <- prometheus.MustNewConstMetricWithCreatedTimestamp(descFeatureBin, prometheus.CounterValue, float64(n), t.created, k.name, k.version, f.Name, bin)
			ch <- prometheus.MustNewConstMetric(descFeatureRef, prometheus.GaugeValue, f.Proportions[b], k.name, k.version, f.Name, bin)
		}
	}
	for b, n := range pred {
		bin := t.predBins[b]
		ch <- prometheus.MustNewConstMetricWithCreatedTimestamp(descPredictionBin, prometheus.CounterValue, float64(n), t.created, k.name, k.version, bin)
		ch <- prometheus.MustNewConstMetric(descPredictionRef, prometheus.GaugeValue, t.profile.Prediction.Proportions[b], k.name, k.version, bin)
	}
}
