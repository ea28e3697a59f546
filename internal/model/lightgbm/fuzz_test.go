package lightgbm

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/modelwatch/modelwatch/internal/model"
)

// FuzzParse feeds Parse arbitrary files, seeded with every model in testdata
// cut to its first iteration's trees (whole files of hundreds of kilobytes make each run,
// and the minimising of each new input, slow).
// A file is refused with ErrInvalidModel or loads and predicts, without a
// panic, on rows of zeros, NaNs, negatives and huge values.
func FuzzParse(f *testing.F) {
	f.Add([]byte(catModel))
	for _, pattern := range []string{"testdata/boosters/*/model.txt", "testdata/leaves/*.model"} {
		paths, err := filepath.Glob(pattern)
		if err != nil {
			f.Fatal(err)
		}
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			seed := firstIteration(b)
			if _, err := Parse(seed, model.Metadata{}); err != nil {
				f.Fatalf("seed from %s: %v", p, err)
			}
			f.Add(seed)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data, model.Metadata{})
		if err != nil {
			if !errors.Is(err, model.ErrInvalidModel) {
				t.Fatalf("error %v does not wrap ErrInvalidModel", err)
			}
			return
		}
		md := m.Metadata()
		n := len(md.Features)
		values := []float64{0, math.NaN(), -1, 1e300, 3}
		in := model.Batch{Rows: len(values), Cols: n, Values: make([]float64, len(values)*n)}
		for i, v := range values {
			for j := range n {
				in.Values[i*n+j] = v
			}
		}
		if _, err := model.SafePredict(context.Background(), m, in); err != nil {
			t.Fatalf("predict: %v", err)
		}
	})
}

// firstIteration returns the header and the trees of the first iteration
// of a model file, without its tree_sizes line.
func firstIteration(b []byte) []byte {
	s := regexp.MustCompile(`(?m)^tree_sizes=.*\n`).ReplaceAllString(string(b), "")
	n := 1
	if m := regexp.MustCompile(`(?m)^num_tree_per_iteration=(\d+)$`).FindStringSubmatch(s); m != nil {
		n, _ = strconv.Atoi(m[1])
	}
	i := 0
	for range n + 1 {
		j := strings.Index(s[i:], "\nTree=")
		if j < 0 {
			return []byte(s)
		}
		i += j + 1
	}
	return []byte(s[:i])
}
