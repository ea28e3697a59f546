package xgboost

import (
	"context"
	"encoding/csv"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/modelwatch/modelwatch/internal/model"
)

// heldoutRows is how many rows BenchmarkHeldout predicts in one call: the
// count bench/treespeed/run.sh gives XGBoost's own predictor.
const heldoutRows = 200_000

// heldout returns the embedded model, loaded with the names of its
// config.yaml, and the feature columns of its held-out rows (every column
// whose name does not start with "xgboost_"; an empty cell is missing)
// repeated to rows rows, as bench/treespeed/xgboost_native.py reads them.
func heldout(tb testing.TB, rows int) (*Model, model.Batch) {
	tb.Helper()
	const dir = "../../../models/fraud_model/"
	f, err := os.Open(dir + "config.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	cfg, err := model.ParseConfig(f)
	if err != nil {
		tb.Fatal(err)
	}
	m := load(tb, dir+"v1/model.json", cfg.Metadata("fraud_model", "v1", Type))

	csvFile, err := os.Open(dir + "testdata/heldout.csv")
	if err != nil {
		tb.Fatal(err)
	}
	defer csvFile.Close()
	recs, err := csv.NewReader(csvFile).ReadAll()
	if err != nil {
		tb.Fatal(err)
	}
	header := slices.DeleteFunc(slices.Clone(recs[0]), func(h string) bool { return strings.HasPrefix(h, "xgboost_") })
	if !slices.Equal(header, cfg.Features) {
		tb.Fatalf("heldout.csv's features %v differ from config.yaml's %v", header, cfg.Features)
	}
	cols := len(header)
	base := make([]float64, 0, (len(recs)-1)*cols)
	for _, rec := range recs[1:] {
		for _, s := range rec[:cols] {
			v := math.NaN()
			if s != "" {
				if v, err = strconv.ParseFloat(s, 64); err != nil {
					tb.Fatal(err)
				}
			}
			base = append(base, v)
		}
	}
	in := model.Batch{Rows: rows, Cols: cols, Values: make([]float64, rows*cols)}
	for i := 0; i < len(in.Values); i += len(base) {
		copy(in.Values[i:], base)
	}
	return m, in
}

// BenchmarkHeldout predicts the embedded model's held-out rows repeated to
// 200,000 rows in one call on one goroutine, the workload of
// bench/treespeed/xgboost_native.py, and reports the time per row. It logs
// the sum of the fraud probabilities, which that script prints too.
func BenchmarkHeldout(b *testing.B) {
	m, in := heldout(b, heldoutRows)
	var res model.Result
	for b.Loop() {
		var err error
		if res, err = m.Predict(context.Background(), in); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*in.Rows), "ns/row")
	sum := 0.0
	for i := range res.Rows {
		sum += res.Row(i)[1]
	}
	b.Logf("sum of predictions %.6f", sum)
}
