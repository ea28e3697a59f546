package batch

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/modelwatch/modelwatch/internal/model"
	"github.com/modelwatch/modelwatch/internal/model/xgboost"
	"github.com/modelwatch/modelwatch/models"
)

// BenchmarkRun scores 200,000 rows (the embedded model's held-out rows,
// repeated) with the embedded model, on one worker and on every core.
func BenchmarkRun(b *testing.B) {
	loaded, _, err := model.LoadDir(models.FS, models.Default, []model.Runtime{xgboost.Runtime})
	if err != nil || len(loaded) == 0 || loaded[len(loaded)-1].Err != nil {
		b.Fatalf("load %s: %v %v", models.Default, err, loaded)
	}
	mdl := loaded[len(loaded)-1].Model
	defer mdl.Close()
	heldout, err := os.ReadFile("../../models/fraud_model/testdata/heldout.csv")
	if err != nil {
		b.Fatal(err)
	}
	header, body, _ := strings.Cut(strings.TrimSpace(string(heldout)), "\n")
	lines := strings.Split(body, "\n")
	const rows = 200_000
	var in bytes.Buffer
	in.WriteString(header + "\n")
	for i := range rows {
		in.WriteString(lines[i%len(lines)] + "\n")
	}
	for _, workers := range []int{1, runtime.GOMAXPROCS(0)} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			b.SetBytes(int64(in.Len()))
			for b.Loop() {
				rep, err := Run(context.Background(), bytes.NewReader(in.Bytes()), io.Discard, Options{Model: mdl, Format: "csv", Workers: workers})
				if err != nil || rep.Rows != rows {
					b.Fatalf("scored %d rows: %v", rep.Rows, err)
				}
			}
			b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
