package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// BenchmarkPredictAuth measures a one-row POST /predict through the whole
// handler without a token check ("open") and with --inference-auth and a
// valid bearer token ("token"): the check hashes the token with SHA-256 and
// looks its sum up, which must cost under 2% of the request.
func BenchmarkPredictAuth(b *testing.B) {
	dir := b.TempDir()
	path := filepath.Join(dir, "tokens")
	if err := os.WriteFile(path, []byte(adminToken+" admin\n"+inferenceToken+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	tokens, err := LoadTokens(path, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	body := `{"inputs": [` + safeRow + `]}`
	for _, auth := range []bool{false, true} {
		name := "open"
		if auth {
			name = "token"
		}
		h := newHarness(&testing.T{}, func(o *Options) {
			o.Now = time.Now
			if auth {
				o.Tokens, o.InferenceAuth = tokens, true
			}
		})
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, "/predict", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+inferenceToken)
				rec := httptest.NewRecorder()
				h.srv.ServeHTTP(rec, req)
				if rec.Code != 200 {
					b.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
			}
		})
	}
}

// BenchmarkAuthorize measures the token check alone, for a request that
// passes: the header read and the lookup of a token in use.
func BenchmarkAuthorize(b *testing.B) {
	path := filepath.Join(b.TempDir(), "tokens")
	if err := os.WriteFile(path, []byte(adminToken+" admin\n"+inferenceToken+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	tokens, err := LoadTokens(path, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	s := &Server{opts: Options{Tokens: tokens, InferenceAuth: true}}
	req := httptest.NewRequest(http.MethodPost, "/predict", nil)
	req.Header.Set("Authorization", "Bearer "+inferenceToken)
	// The middleware gives every request its start time, which the check
	// reads instead of the clock.
	req = req.WithContext(context.WithValue(req.Context(), requestInfoKey{}, requestInfo{id: "bench", start: time.Now()}))
	b.ReportAllocs()
	for b.Loop() {
		if err, _ := s.authorize(req, accessInference, false); err != nil {
			b.Fatal(err)
		}
	}
}
