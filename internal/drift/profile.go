// Package drift watches a model's live inputs and predictions against the
// profile of its training data: per-feature bins with reference proportions,
// the class prior and the confidence distribution. Live counts go into a
// sliding window of sub-windows, and the population stability index (PSI)
// is computed at scrape time by a prometheus.Collector.
package drift

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"

	"github.com/modelwatch/modelwatch/internal/model"
)

// Profile is the training-data profile of one model version.
type Profile struct {
	Model    string    `json:"model"`
	Version  string    `json:"version"`
	Rows     int       `json:"rows"`
	Features []Feature `json:"features"`
	// Prediction is the distribution of the model's predictions on the
	// training data: of classes for a classifier, of value bins otherwise.
	Prediction Distribution `json:"prediction"`
	// Confidence is the distribution of a classifier's confidence.
	Confidence *Distribution `json:"confidence,omitempty"`
}

// Feature is one input feature's bins. Bin i holds Edges[i-1] <= x <
// Edges[i]; the first bin everything below Edges[0], the last everything
// from the last edge up; a final extra bin holds missing values (NaN).
type Feature struct {
	Name  string    `json:"name"`
	Edges []float64 `json:"edges"`
	// Proportions has len(Edges)+2 entries: the bins, then missing values.
	Proportions []float64 `json:"proportions"`
}

// Distribution is a reference distribution over classes or value bins.
type Distribution struct {
	Classes     []string  `json:"classes,omitempty"`
	Edges       []float64 `json:"edges,omitempty"`
	Proportions []float64 `json:"proportions"`
}

// Bins returns the number of bins, the missing-value bin included.
func (f *Feature) Bins() int { return len(f.Edges) + 2 }

// Bin returns the bin of x; NaN goes to the last bin.
func (f *Feature) Bin(x float64) int {
	if x != x {
		return len(f.Edges) + 1
	}
	return binOf(f.Edges, x)
}

// binOf returns the number of edges <= x.
func binOf(edges []float64, x float64) int {
	lo, hi := 0, len(edges)
	for lo < hi {
		mid := (lo + hi) / 2
		if edges[mid] <= x {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// Bin returns the value bin of x in a distribution over values.
func (d *Distribution) Bin(x float64) int { return binOf(d.Edges, x) }

// Build profiles training data: values holds rows x len(features) numbers
// (NaN for missing), predictions the model's output for each row (class
// probabilities for a classifier, with classes naming them; one value for a
// regressor). bins is the number of quantile bins per feature (at most;
// repeated quantiles merge).
func Build(model, version string, features []string, values []float64, classes []string, predictions []float64, bins int) (*Profile, error) {
	nf := len(features)
	if nf == 0 || len(values)%nf != 0 || len(values) == 0 {
		return nil, errors.New("no rows to profile")
	}
	rows := len(values) / nf
	if bins < 2 || bins > 100 {
		return nil, fmt.Errorf("bins %d is outside 2..100", bins)
	}
	p := &Profile{Model: model, Version: version, Rows: rows}
	col := make([]float64, 0, rows)
	for j, name := range features {
		col = col[:0]
		for i := 0; i < rows; i++ {
			col = append(col, values[i*nf+j])
		}
		f := Feature{Name: name, Edges: quantileEdges(col, bins)}
		counts := make([]float64, f.Bins())
		for _, x := range col {
			counts[f.Bin(x)]++
		}
		f.Proportions = normalise(counts)
		p.Features = append(p.Features, f)
	}
	width := 1
	if len(classes) > 0 {
		width = len(classes)
	}
	if len(predictions) != rows*width {
		return nil, fmt.Errorf("%d predictions for %d rows of %d outputs", len(predictions), rows, width)
	}
	if len(classes) > 0 {
		counts := make([]float64, len(classes))
		conf := make([]float64, 0, rows)
		for i := 0; i < rows; i++ {
			c, v := argmax(predictions[i*width : (i+1)*width])
			counts[c]++
			conf = append(conf, v)
		}
		p.Prediction = Distribution{Classes: slices.Clone(classes), Proportions: normalise(counts)}
		cd := Distribution{Edges: ConfidenceEdges}
		cc := make([]float64, len(cd.Edges)+1)
		for _, v := range conf {
			cc[cd.Bin(v)]++
		}
		cd.Proportions = normalise(cc)
		p.Confidence = &cd
	} else {
		d := Distribution{Edges: quantileEdges(predictions, bins)}
		counts := make([]float64, len(d.Edges)+1)
		for _, v := range predictions {
			counts[d.Bin(v)]++
		}
		d.Proportions = normalise(counts)
		p.Prediction = d
	}
	return p, p.Validate()
}

// ConfidenceEdges bin a classifier's confidence.
var ConfidenceEdges = []float64{0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99}

func argmax(row []float64) (int, float64) {
	best := 0
	for j, v := range row {
		if v > row[best] {
			best = j
		}
	}
	return best, row[best]
}

// quantileEdges returns the distinct inner quantiles of the finite values.
func quantileEdges(values []float64, bins int) []float64 {
	s := make([]float64, 0, len(values))
	for _, v := range values {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			s = append(s, v)
		}
	}
	if len(s) == 0 {
		return []float64{}
	}
	sort.Float64s(s)
	edges := []float64{}
	for k := 1; k < bins; k++ {
		e := s[k*len(s)/bins]
		if (len(edges) == 0 || e > edges[len(edges)-1]) && e > s[0] {
			edges = append(edges, e)
		}
	}
	return edges
}

func normalise(counts []float64) []float64 {
	total := 0.0
	for _, c := range counts {
		total += c
	}
	out := make([]float64, len(counts))
	if total == 0 {
		return out
	}
	for i, c := range counts {
		out[i] = c / total
	}
	return out
}

// Bounds on a profile. A profile.json is untrusted input, and a Monitor
// keeps, per tracked version, a count per bin in each of its sub-windows
// (ten by default) and sums them at every scrape: at MaxProfileBins that is
// about 46 MB per version.
const (
	// MaxProfileBytes bounds the size of a profile.json; a profile of
	// MaxProfileBins bins, indented as the profile command writes it, is
	// 30 to 40 MB, the more features the larger.
	MaxProfileBytes = 64 << 20
	// MaxProfileValues bounds the JSON values (numbers, strings, members)
	// of a profile.json, counted before it is decoded, so that a file of
	// short numbers cannot decode into more memory than a real profile.
	MaxProfileValues = 2 << 20
	// MaxProfileFeatures bounds the features of a profile.
	MaxProfileFeatures = 100_000
	// MaxProfileEdges bounds the edges of one feature or distribution; the
	// profile command writes at most 99.
	MaxProfileEdges = 1_000
	// MaxProfileClasses bounds the classes of a classifier's profile.
	MaxProfileClasses = model.MaxClasses
	// MaxProfileBins bounds the bins of a whole profile: every feature's,
	// missing-value bins included, and the prediction's and confidence's.
	MaxProfileBins = 1 << 19
)

// Validate checks that the profile is consistent and within the bounds:
// features named, distinct and at most MaxProfileFeatures; edges finite,
// strictly increasing and at most MaxProfileEdges per feature or
// distribution; proportions finite, not negative, one per bin and adding up
// to 1; at most MaxProfileClasses distinct classes and MaxProfileBins bins
// in all. Its error names the feature or distribution at fault.
func (p *Profile) Validate() error {
	if len(p.Features) == 0 {
		return errors.New("profile has no features")
	}
	if len(p.Features) > MaxProfileFeatures {
		return fmt.Errorf("%d features, more than %d", len(p.Features), MaxProfileFeatures)
	}
	if p.Rows < 0 {
		return fmt.Errorf("rows %d is negative", p.Rows)
	}
	bins := 0
	seen := make(map[string]bool, len(p.Features))
	for i := range p.Features {
		f := &p.Features[i]
		if f.Name == "" || seen[f.Name] {
			return fmt.Errorf("feature %d: name %q is empty or repeated", i, f.Name)
		}
		seen[f.Name] = true
		if err := checkEdges(f.Edges); err != nil {
			return fmt.Errorf("feature %s: %v", f.Name, err)
		}
		if len(f.Proportions) != f.Bins() {
			return fmt.Errorf("feature %s: %d proportions for %d edges, want %d (the bins, then missing values)", f.Name, len(f.Proportions), len(f.Edges), f.Bins())
		}
		if err := checkProportions(f.Proportions); err != nil {
			return fmt.Errorf("feature %s: %v", f.Name, err)
		}
		if bins += f.Bins(); bins > MaxProfileBins {
			return fmt.Errorf("more than %d bins", MaxProfileBins)
		}
	}
	d := p.Prediction
	if err := d.validate(); err != nil {
		return fmt.Errorf("prediction: %v", err)
	}
	bins += len(d.Proportions)
	if c := p.Confidence; c != nil {
		if len(c.Classes) > 0 {
			return errors.New("confidence: a distribution of values has no classes")
		}
		if err := c.validate(); err != nil {
			return fmt.Errorf("confidence: %v", err)
		}
		bins += len(c.Proportions)
	}
	if bins > MaxProfileBins {
		return fmt.Errorf("more than %d bins", MaxProfileBins)
	}
	return nil
}

// validate checks a distribution over classes (with no edges) or value bins.
func (d *Distribution) validate() error {
	want := len(d.Edges) + 1
	if len(d.Classes) > 0 {
		if len(d.Edges) > 0 {
			return errors.New("has both classes and edges")
		}
		if len(d.Classes) > MaxProfileClasses {
			return fmt.Errorf("%d classes, more than %d", len(d.Classes), MaxProfileClasses)
		}
		seen := make(map[string]bool, len(d.Classes))
		for i, c := range d.Classes {
			if c == "" || seen[c] {
				return fmt.Errorf("class %d: name %q is empty or repeated", i, c)
			}
			seen[c] = true
		}
		want = len(d.Classes)
	} else if err := checkEdges(d.Edges); err != nil {
		return err
	}
	if len(d.Proportions) != want {
		return fmt.Errorf("%d proportions, want %d", len(d.Proportions), want)
	}
	return checkProportions(d.Proportions)
}

// checkEdges checks that edges are finite, strictly increasing and at most
// MaxProfileEdges.
func checkEdges(edges []float64) error {
	if len(edges) > MaxProfileEdges {
		return fmt.Errorf("%d edges, more than %d", len(edges), MaxProfileEdges)
	}
	for i, e := range edges {
		if math.IsNaN(e) || math.IsInf(e, 0) {
			return fmt.Errorf("edge %d is %v; edges must be finite", i, e)
		}
		if i > 0 && e <= edges[i-1] {
			return fmt.Errorf("edge %d (%v) is not above edge %d (%v); edges must increase", i, e, i-1, edges[i-1])
		}
	}
	return nil
}

func checkProportions(ps []float64) error {
	sum := 0.0
	for i, p := range ps {
		if p < 0 || math.IsNaN(p) || math.IsInf(p, 0) {
			return fmt.Errorf("proportion %d is %v; proportions must be finite and not negative", i, p)
		}
		sum += p
	}
	if math.Abs(sum-1) > 1e-6 {
		return fmt.Errorf("proportions add up to %v, not 1", sum)
	}
	return nil
}

// ParseProfile reads and validates a profile.json, reading at most
// MaxProfileBytes+1 bytes of r. A file over MaxProfileBytes or
// MaxProfileValues is refused before it is decoded; unknown keys and data
// after the profile are refused too. Every error starts with "profile: " and
// says what is wrong.
func ParseProfile(r io.Reader) (*Profile, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxProfileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	if len(data) > MaxProfileBytes {
		return nil, fmt.Errorf("profile: larger than %d bytes", MaxProfileBytes)
	}
	if n := countValues(data); n > MaxProfileValues {
		return nil, fmt.Errorf("profile: more than %d values", MaxProfileValues)
	}
	var p Profile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("profile: data after the profile object")
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	return &p, nil
}

// countValues returns an upper bound on the values of a JSON text: one more
// than its commas outside strings.
func countValues(data []byte) int {
	n, inString, escaped := 1, false, false
	for _, c := range data {
		switch {
		case escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case c == '"':
			inString = !inString
		case !inString && c == ',':
			n++
		}
	}
	return n
}

// Epsilon replaces empty bins' proportions in PSI, which is otherwise
// infinite for a bin that is empty on one side.
const Epsilon = 1e-4

// PSI is the population stability index of actual counts against expected
// proportions: the sum over bins of (a - e) * ln(a / e), with a and e the
// actual and expected proportions, each at least Epsilon. Below 0.1 the
// populations are alike; above 0.2 they have shifted.
func PSI(expected, counts []float64) float64 {
	total := 0.0
	for _, c := range counts {
		total += c
	}
	psi := 0.0
	for i, e := range expected {
		a := counts[i] / total
		a, e = max(a, Epsilon), max(e, Epsilon)
		psi += (a - e) * math.Log(a/e)
	}
	return psi
}
