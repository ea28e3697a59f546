package lightgbm

import (
	"context"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/modelwatch/modelwatch/internal/model"
)

// BenchmarkPredict measures Predict on LightGBM 4.x's 30-tree multiclass
// model and on LightGBM 2.x's 130-tree categorical multiclass model, for one
// row and for 1000 rows of varied values.
func BenchmarkPredict(b *testing.B) {
	for _, c := range []struct{ name, path string }{
		{"multiclass", "testdata/boosters/multiclass/model.txt"},
		{"kddcup99", "testdata/leaves/lg_kddcup99.model"},
	} {
		m := load(b, c.path)
		n := len(m.Metadata().Features)
		r := rand.New(rand.NewPCG(1, 2))
		for _, rows := range []int{1, 1000} {
			in := model.Batch{Rows: rows, Cols: n, Values: make([]float64, rows*n)}
			for i := range in.Values {
				in.Values[i] = float64(r.IntN(40)) - 4 + r.Float64()
			}
			b.Run(c.name+"/rows="+strconv.Itoa(rows), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := m.Predict(context.Background(), in); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
