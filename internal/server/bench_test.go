package server

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkPredict measures POST /predict through the whole handler (decode,
// validate, the embedded XGBoost model, every metric, encode), without the
// network.
func BenchmarkPredict(b *testing.B) {
	t := &testing.T{}
	h := newHarness(t, func(o *Options) {
		o.Now = time.Now
		o.MaxBodyBytes = 1 << 20
		o.MaxBatchRows = 1024
	})
	for _, rows := range []int{1, 64} {
		body := `{"inputs": [` + strings.TrimSuffix(strings.Repeat(safeRow+",", rows), ",") + `]}`
		b.Run("rows="+strconv.Itoa(rows), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, "/predict", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				rec := httptest.NewRecorder()
				h.srv.ServeHTTP(rec, req)
				if rec.Code != 200 {
					b.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
			}
		})
	}
}
