package server

import (
	"bytes"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/modelwatch/modelwatch/internal/drift"
	"github.com/modelwatch/modelwatch/internal/feedback"
	"github.com/modelwatch/modelwatch/models"
)

// BenchmarkPredict measures POST /predict through the whole handler (decode,
// validate, the embedded XGBoost model, every metric, encode), without the
// network; "quality" adds drift tracking against the embedded profile and
// the feedback store, to show what model-quality monitoring costs.
func BenchmarkPredict(b *testing.B) {
	for _, quality := range []bool{false, true} {
		name := "plain"
		if quality {
			name = "quality"
		}
		b.Run(name, func(b *testing.B) { benchmarkPredict(b, quality) })
	}
}

func benchmarkPredict(b *testing.B, quality bool) {
	t := &testing.T{}
	h := newHarness(t, func(o *Options) {
		o.Now = time.Now
		o.MaxBodyBytes = 1 << 20
		o.MaxBatchRows = 1024
		if quality {
			data, err := fs.ReadFile(models.FS, "fraud_model/v1/profile.json")
			if err != nil {
				b.Fatal(err)
			}
			p, err := drift.ParseProfile(bytes.NewReader(data))
			if err != nil {
				b.Fatal(err)
			}
			o.Drift = drift.NewMonitor(drift.Options{})
			m, _ := o.Models.Resolve("fraud_model", "v1")
			if err := o.Drift.Add(m.Metadata(), p); err != nil {
				b.Fatal(err)
			}
			o.Feedback = feedback.New(feedback.Options{}, o.Metrics.FeedbackTotal, o.Metrics.LabelledRows)
		}
	})
	for _, rows := range []int{1, 64} {
		body := `{"inputs": [` + strings.TrimSuffix(strings.Repeat(safeRow+",", rows), ",") + `]}`
		b.Run("rows="+strconv.Itoa(rows), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				postPredict(b, h, body)
			}
		})
	}
}

// BenchmarkStatusAgainstScrape compares GET /status.json with GET /metrics on
// the same server: the status page must cost no more than a scrape.
func BenchmarkStatusAgainstScrape(b *testing.B) {
	h := newHarness(&testing.T{}, func(o *Options) { o.Now = time.Now })
	h.srv.opts.Gatherer = h.reg
	for range 100 {
		req := httptest.NewRequest(http.MethodPost, "/predict", strings.NewReader(`{"inputs": [`+safeRow+`]}`))
		req.Header.Set("Content-Type", "application/json")
		h.srv.ServeHTTP(httptest.NewRecorder(), req)
	}
	for _, path := range []string{"/metrics", "/status.json"} {
		b.Run(strings.TrimPrefix(path, "/"), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				rec := httptest.NewRecorder()
				h.srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
				if rec.Code != 200 {
					b.Fatal(rec.Code)
				}
			}
		})
	}
}

// BenchmarkDecodePredict measures the /predict body decoder alone: rows of
// numbers, and a row that names a category (whose names the model turns
// into codes after decoding).
func BenchmarkDecodePredict(b *testing.B) {
	for _, bc := range []struct{ name, row string }{
		{"numbers", safeRow},
		{"names", `[25.0, "online", 0, 1.5, "store", 900]`},
	} {
		for _, n := range []int{1, 64} {
			body := []byte(`{"inputs": [` + strings.TrimSuffix(strings.Repeat(bc.row+",", n), ",") + `]}`)
			b.Run(bc.name+"/rows="+strconv.Itoa(n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					req := predictRequest{Inputs: rows{maxRows: 1024, maxValues: 1024 * 6}}
					if err := decodePredict(body, &req); err != nil || req.Inputs.n != n {
						b.Fatalf("%v, %d rows", err, req.Inputs.n)
					}
				}
			})
		}
	}
}

// postPredict sends one POST /predict through the whole handler, without
// the network, and fails the benchmark unless it is answered 200.
func postPredict(b *testing.B, h *harness, body string) {
	req := httptest.NewRequest(http.MethodPost, "/predict", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.srv.ServeHTTP(rec, req)
	if rec.Code != 200 {
		b.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
}
