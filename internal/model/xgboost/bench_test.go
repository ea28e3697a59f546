package xgboost

import (
	"context"
	"encoding/csv"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelwatch/modelwatch/internal/model"
)

// heldoutRows is how many rows BenchmarkHeldout predicts in one call: the
// count bench/treespeed/run.sh gives XGBoost's own predictor.
const heldoutRows = 200_000

// heldout returns the embedded model, loaded with the names of its
// config.yaml, and the feature columns of its held-out rows (every column
// whose name does not start with "xgboost_"; an empty cell is missing)
// repeated to rows rows, as bench/treespeed/xgboost_native.py reads them;
// rows 0 asks for each held-out row once.
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
	if rows == 0 {
		rows = len(base) / cols
	}
	in := model.Batch{Rows: rows, Cols: cols, Values: make([]float64, rows*cols)}
	for i := 0; i < len(in.Values); i += len(base) {
		copy(in.Values[i:], base)
	}
	return m, in
}

// BenchmarkHeldout predicts the embedded model's held-out rows repeated to
// 200,000 rows in one call on one goroutine, after one call to warm up, the
// workload of
// bench/treespeed/xgboost_native.py, and reports the time per row: elapsed
// (ns/row) and the CPU time of the process (cpu-ns/row), which a loaded
// machine inflates less. It logs the sum of the fraud probabilities, which
// that script prints too.
func BenchmarkHeldout(b *testing.B) {
	m, in := heldout(b, heldoutRows)
	// One call to warm up, as the script makes, and a collection of what
	// loading left, so that the timed calls do not pay for it.
	res, err := m.Predict(context.Background(), in)
	if err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	cpu := cpuTime(b)
	for b.Loop() {
		if res, err = m.Predict(context.Background(), in); err != nil {
			b.Fatal(err)
		}
	}
	cpu = cpuTime(b) - cpu
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*in.Rows), "ns/row")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*in.Rows), "cpu-ns/row")
	sum := 0.0
	for i := range res.Rows {
		sum += res.Row(i)[1]
	}
	b.Logf("sum of predictions %.6f", sum)
}

// cpuTime returns the CPU time, user and system, that the process has used.
func cpuTime(tb testing.TB) time.Duration {
	var u syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}

// BenchmarkPredictRow predicts one row per call, as /predict does, going
// through the embedded model's held-out rows in turn: unlike
// BenchmarkPredict/rows=1, which repeats one row, the processor cannot learn
// the path of each row through the trees.
func BenchmarkPredictRow(b *testing.B) {
	m, in := heldout(b, 0)
	i := 0
	for b.Loop() {
		row := model.Batch{Rows: 1, Cols: in.Cols, Values: in.Row(i)}
		if _, err := m.Predict(context.Background(), row); err != nil {
			b.Fatal(err)
		}
		i = (i + 1) % in.Rows
	}
}
