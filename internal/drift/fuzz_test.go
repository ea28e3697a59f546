package drift

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/modelwatch/modelwatch/internal/model"
)

// FuzzParseProfile feeds ParseProfile arbitrary profile.json files, seeded
// with the embedded model's profile cut to its first feature (the fuzzer
// spends up to a minute minimising each new input, in proportion to its
// size) and small valid and broken ones. A file
// is refused with an error that starts with "profile: ", or gives a profile
// that reads back the same once written out again and that a Monitor
// tracks, counts rows of zeros, NaNs and huge values against, and scrapes.
func FuzzParseProfile(f *testing.F) {
	data, err := os.ReadFile("../../models/fraud_model/v1/profile.json")
	if err != nil {
		f.Fatal(err)
	}
	embedded, err := ParseProfile(bytes.NewReader(data))
	if err != nil {
		f.Fatal(err)
	}
	embedded.Features = embedded.Features[:1]
	cut, err := json.Marshal(embedded)
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		string(cut),
		small,
		`{"features": [{"name": "a", "edges": [], "proportions": [1, 0]}], "prediction": {"classes": ["no", "yes"], "proportions": [0.5, 0.5]}, "confidence": {"edges": [0.5, 0.9], "proportions": [0.2, 0.3, 0.5]}}`,
		strings.Replace(small, `[1, 2]`, `[2, 1]`, 1),
		strings.Replace(small, `"rows"`, `"rowz"`, 1),
		`{"features": [{"name": "a", "edges": [1e308, 1.7976931348623157e308], "proportions": [0, 0, 1, 0]}], "prediction": {"proportions": [1]}}`,
		`[]`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParseProfile(bytes.NewReader(data))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "profile: ") {
				t.Fatalf("error %q does not start with \"profile: \"", err)
			}
			return
		}
		out, err := json.Marshal(p)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		again, err := ParseProfile(bytes.NewReader(out))
		if err != nil {
			t.Fatalf("the profile written out is refused: %v\n%s", err, out)
		}
		if out2, _ := json.Marshal(again); !bytes.Equal(out, out2) {
			t.Fatalf("read back\n%s\nwant\n%s", out2, out)
		}
		meta := model.Metadata{Name: "m", Version: "1", Classes: p.Prediction.Classes, Outputs: max(1, len(p.Prediction.Classes))}
		for _, f := range p.Features {
			meta.Features = append(meta.Features, f.Name)
		}
		m := NewMonitor(Options{MinSamples: 1, Now: func() time.Time { return time.Unix(1000, 0) }})
		if err := m.Add(meta, p); err != nil {
			t.Fatalf("Add: %v", err)
		}
		row := []float64{0, math.NaN(), -1e300, 1e300, math.Inf(1)}
		n := len(meta.Features)
		in := model.Batch{Rows: len(row), Cols: n, Values: make([]float64, len(row)*n)}
		for i, v := range row {
			for j := range n {
				in.Values[i*n+j] = v
			}
		}
		classes := []int{0, len(meta.Classes) - 1, -1, len(meta.Classes), 0}
		m.Observe("m", "1", in, classes, model.Result{Rows: len(row), Cols: 1, Values: row})
		got := values(t, m)
		if len(got) != min(len(p.Features), 50)+1 {
			t.Fatalf("%d PSI values for %d features", len(got), len(p.Features))
		}
		for name, v := range got {
			if math.IsNaN(v) || v < 0 {
				t.Fatalf("PSI of %q is %v", name, v)
			}
		}
	})
}
