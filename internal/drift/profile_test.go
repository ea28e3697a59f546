package drift

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"strings"
	"testing"
)

// small is a valid profile of one feature and a regressor's prediction,
// to break one part at a time.
const small = `{"model": "m", "version": "1", "rows": 10,
 "features": [{"name": "a", "edges": [1, 2], "proportions": [0.25, 0.25, 0.5, 0]}],
 "prediction": {"edges": [0.5], "proportions": [0.5, 0.5]}}`

func TestParseProfileRefuses(t *testing.T) {
	if _, err := ParseProfile(strings.NewReader(small)); err != nil {
		t.Fatalf("the valid profile: %v", err)
	}
	classifier := `{"features": [{"name": "a", "edges": [], "proportions": [1, 0]}], "prediction": {"classes": ["no", "yes"], "proportions": [0.5, 0.5]}`
	if _, err := ParseProfile(strings.NewReader(classifier + "}")); err != nil {
		t.Fatalf("the valid classifier profile: %v", err)
	}
	feature := `{"name": "a", "edges": [1, 2], "proportions": [0.25, 0.25, 0.5, 0]}`
	for _, tc := range []struct {
		name, old, new, want string
	}{
		{"unknown key", `"rows"`, `"rowz"`, `json: unknown field "rowz"`},
		{"not json", `"rows": 10`, `"rows": 10,,`, "invalid character ','"},
		{"data after", `0.5]}}`, `0.5]}} {}`, "data after the profile object"},
		{"no features", feature, ``, "profile has no features"},
		{"negative rows", `"rows": 10`, `"rows": -1`, "rows -1 is negative"},
		{"empty name", `"name": "a"`, `"name": ""`, `feature 0: name "" is empty or repeated`},
		{"repeated name", feature, feature + "," + feature, `feature 1: name "a" is empty or repeated`},
		{"unsorted edges", `[1, 2]`, `[2, 1]`, "feature a: edge 1 (1) is not above edge 0 (2); edges must increase"},
		{"repeated edge", `[1, 2]`, `[1, 1]`, "feature a: edge 1 (1) is not above edge 0 (1)"},
		{"infinite edge", `[1, 2]`, `[1, 1e400]`, "cannot unmarshal number 1e400"},
		{"NaN edge", `[1, 2]`, `[1, NaN]`, "invalid character 'N'"},
		{"proportions count", `[0.25, 0.25, 0.5, 0]`, `[0.25, 0.25, 0.5]`, "feature a: 3 proportions for 2 edges, want 4 (the bins, then missing values)"},
		{"negative proportion", `[0.25, 0.25, 0.5, 0]`, `[0.5, 0.25, 0.5, -0.25]`, "feature a: proportion 3 is -0.25; proportions must be finite and not negative"},
		{"proportions sum", `[0.25, 0.25, 0.5, 0]`, `[0.25, 0.25, 0.5, 0.5]`, "feature a: proportions add up to 1.5, not 1"},
		{"prediction count", `"proportions": [0.5, 0.5]}`, `"proportions": [1]}`, "prediction: 1 proportions, want 2"},
		{"prediction edges", `"edges": [0.5]`, `"edges": [0.5, 0.5]`, "prediction: edge 1 (0.5) is not above edge 0 (0.5)"},
		{"classes and edges", `"edges": [0.5]`, `"classes": ["x"], "edges": [0.5]`, "prediction: has both classes and edges"},
		{"confidence classes", `}}`, `}, "confidence": {"classes": ["x"], "proportions": [1]}}`, "confidence: a distribution of values has no classes"},
		{"confidence count", `}}`, `}, "confidence": {"edges": [0.5, 0.9], "proportions": [1]}}`, "confidence: 1 proportions, want 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := strings.Replace(small, tc.old, tc.new, 1)
			if doc == small {
				t.Fatalf("%q is not in the profile", tc.old)
			}
			_, err := ParseProfile(strings.NewReader(doc))
			if err == nil || !strings.HasPrefix(err.Error(), "profile: ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name, doc, want string
	}{
		{"repeated class", strings.Replace(classifier, `"yes"`, `"no"`, 1) + "}", `prediction: class 1: name "no" is empty or repeated`},
		{"too many classes", strings.Replace(classifier, `["no", "yes"]`, `[`+names(MaxProfileClasses+1)+`]`, 1) + "}", "prediction: 10001 classes, more than 10000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseProfile(strings.NewReader(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
}

// names returns n distinct quoted names, comma-separated.
func names(n int) string {
	s := make([]string, n)
	for i := range s {
		s[i] = fmt.Sprintf(`"c%d"`, i)
	}
	return strings.Join(s, ",")
}

// sized returns a regressor's profile whose bins add up to bins: features
// of MaxProfileEdges edges, then one smaller, then the prediction's bin.
func sized(bins int) *Profile {
	p := &Profile{Model: "m", Version: "1", Rows: 1, Prediction: Distribution{Proportions: []float64{1}}}
	left := bins - 1
	for i := 0; left > 0; i++ {
		n := min(left, MaxProfileEdges+2)
		f := Feature{Name: fmt.Sprint("f", i), Edges: make([]float64, n-2), Proportions: make([]float64, n)}
		for j := range f.Edges {
			f.Edges[j] = float64(j)
		}
		f.Proportions[0] = 1
		p.Features = append(p.Features, f)
		left -= n
	}
	return p
}

func TestProfileBounds(t *testing.T) {
	if err := sized(MaxProfileBins).Validate(); err != nil {
		t.Errorf("a profile of %d bins: %v", MaxProfileBins, err)
	}
	if err := sized(MaxProfileBins + 1).Validate(); err == nil || err.Error() != "more than 524288 bins" {
		t.Errorf("a profile of one bin more: %v", err)
	}
	// As many features as the profile command's default of 10 bins (12
	// with the missing-value bin) allows, with edges and proportions of as
	// many digits as real ones have, fit the byte and value bounds as the
	// profile command writes them. The file grows by the same bytes and
	// values with each feature, so two small profiles give its size.
	real := func(n int) *Profile {
		p := &Profile{Model: "m", Version: "1", Rows: 1, Prediction: Distribution{Proportions: []float64{1}}}
		for i := range n {
			f := Feature{Name: fmt.Sprintf("feature_%06d", i), Edges: make([]float64, 10), Proportions: make([]float64, 12)}
			for j := range f.Edges {
				f.Edges[j] = float64(j) + 0.123456789012345
			}
			for j := range f.Proportions {
				f.Proportions[j] = 1.0 / 12
			}
			p.Features = append(p.Features, f)
		}
		return p
	}
	file := func(n int) []byte {
		b, err := json.MarshalIndent(real(n), "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	n := (MaxProfileBins - 1) / 12
	if err := real(n).Validate(); err != nil {
		t.Fatalf("%d features of 12 bins: %v", n, err)
	}
	small, twice := file(100), file(200)
	size := len(small) + (n-100)*(len(twice)-len(small))/100
	values := countValues(small) + (n-100)*(countValues(twice)-countValues(small))/100
	if size > MaxProfileBytes || values > MaxProfileValues {
		t.Errorf("%d features of 12 bins: %d bytes and %d values", n, size, values)
	}
	if _, err := ParseProfile(bytes.NewReader(twice)); err != nil {
		t.Errorf("200 features of 12 bins: %v", err)
	}
	one := Feature{Name: "x", Edges: make([]float64, MaxProfileEdges+1), Proportions: make([]float64, MaxProfileEdges+3)}
	for j := range one.Edges {
		one.Edges[j] = float64(j)
	}
	one.Proportions[0] = 1
	edges := &Profile{Features: []Feature{one}, Prediction: Distribution{Proportions: []float64{1}}}
	if err := edges.Validate(); err == nil || err.Error() != "feature x: 1001 edges, more than 1000" {
		t.Errorf("a feature of %d edges: %v", len(one.Edges), err)
	}
	many := &Profile{Prediction: Distribution{Proportions: []float64{1}}}
	for i := range MaxProfileFeatures + 1 {
		many.Features = append(many.Features, Feature{Name: fmt.Sprint("f", i), Proportions: []float64{1, 0}})
	}
	if err := many.Validate(); err == nil || err.Error() != "100001 features, more than 100000" {
		t.Errorf("%d features: %v", len(many.Features), err)
	}
	inf := sized(10)
	inf.Features[0].Edges[3] = math.Inf(1)
	if err := inf.Validate(); err == nil || err.Error() != "feature f0: edge 3 is +Inf; edges must be finite" {
		t.Errorf("an infinite edge: %v", err)
	}
	nan := sized(10)
	nan.Features[0].Edges[0] = math.NaN()
	if err := nan.Validate(); err == nil || err.Error() != "feature f0: edge 0 is NaN; edges must be finite" {
		t.Errorf("a NaN edge: %v", err)
	}
	nan = sized(10)
	nan.Features[0].Proportions[1] = math.NaN()
	if err := nan.Validate(); err == nil || err.Error() != "feature f0: proportion 1 is NaN; proportions must be finite and not negative" {
		t.Errorf("a NaN proportion: %v", err)
	}
}

// TestParseProfileAllocations: a file of many short numbers is refused
// before it is decoded, having allocated little more than reading it does.
func TestParseProfileAllocations(t *testing.T) {
	doc := `{"features": [{"name": "a", "edges": [` + strings.Repeat("0,", MaxProfileValues) + `0], "proportions": [1]}]}`
	allocated := func(f func()) uint64 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		f()
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	reading := allocated(func() { io.ReadAll(io.LimitReader(strings.NewReader(doc), MaxProfileBytes+1)) })
	var err error
	parsing := allocated(func() { _, err = ParseProfile(strings.NewReader(doc)) })
	if err == nil || err.Error() != "profile: more than 2097152 values" {
		t.Fatalf("error %v", err)
	}
	// Decoding the numbers would allocate 8 bytes each, 4 times the file.
	if parsing > reading+uint64(len(doc)) {
		t.Errorf("allocated %d bytes refusing a %d-byte file, which takes %d to read", parsing, len(doc), reading)
	}
}

// endless is a reader that never ends.
type endless struct{ n int }

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	e.n += len(p)
	return len(p), nil
}

func TestParseProfileReadsAtMostTheBound(t *testing.T) {
	r := &endless{}
	if _, err := ParseProfile(r); err == nil || err.Error() != "profile: larger than 67108864 bytes" {
		t.Errorf("endless file: %v", err)
	}
	if r.n != MaxProfileBytes+1 {
		t.Errorf("read %d bytes of an endless file, want %d", r.n, MaxProfileBytes+1)
	}
}

func TestCountValues(t *testing.T) {
	for doc, want := range map[string]int{
		`{}`:                           1,
		`[1,2,3]`:                      3,
		`{"a,b": [1, 2], "c": "\",,"}`: 3,
		`["\\", 1]`:                    2,
	} {
		if got := countValues([]byte(doc)); got != want {
			t.Errorf("countValues(%s) = %d, want %d", doc, got, want)
		}
	}
}

func TestEmbeddedProfileParses(t *testing.T) {
	data, err := os.ReadFile("../../models/fraud_model/v1/profile.json")
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParseProfile(bytes.NewReader(data))
	if err != nil || len(p.Features) != 6 {
		t.Fatalf("the embedded profile: %v", err)
	}
}
