package server

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkJSONPaths measures the /predict fast JSON path and the
// hand-written response writer alone, each against encoding/json doing the
// same work, for one row and 64 (docs/BENCHMARKS.md, "The /predict JSON
// path"): decode is decodePredict (the fast path, which valid bodies take)
// against slowDecodePredict (encoding/json with the rows' own
// UnmarshalJSON); encode is appendPredictResponse against json.Marshal of
// the same answer.
func BenchmarkJSONPaths(b *testing.B) {
	h := newHarness(&testing.T{}, func(o *Options) { o.Now = time.Now; o.MaxBatchRows = 1024; o.MaxBodyBytes = 1 << 20 })
	for _, n := range []int{1, 64} {
		body := []byte(`{"inputs": [` + strings.TrimSuffix(strings.Repeat(safeRow+",", n), ",") + `]}`)
		decode := map[string]func([]byte, *predictRequest) *apiError{"fast": decodePredict, "encoding-json": slowDecodePredict}
		for _, name := range []string{"fast", "encoding-json"} {
			b.Run("decode/"+name+"/rows="+strconv.Itoa(n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					req := predictRequest{Inputs: rows{maxRows: 1024, maxValues: 1024 * 6}}
					if err := decode[name](body, &req); err != nil || req.Inputs.n != n {
						b.Fatalf("%v, %d rows", err, req.Inputs.n)
					}
				}
			})
		}

		v, aerr := h.srv.acquire("fraud_model", "")
		if aerr != nil {
			b.Fatal(aerr)
		}
		req := predictRequest{Inputs: rows{maxRows: 1024, maxValues: 1024 * 6}}
		if err := decodePredict(body, &req); err != nil {
			b.Fatal(err)
		}
		batch, aerr := h.srv.validate(v, &req.Inputs)
		if aerr != nil {
			b.Fatal(aerr)
		}
		out, aerr := h.srv.infer(context.Background(), v, batch, time.Now())
		if aerr != nil {
			b.Fatal(aerr)
		}
		b.Run("encode/append/rows="+strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = appendPredictResponse(make([]byte, 0, 256+64*n), v, "7QWERTYUIOPASDFGHJKLZXCV", out, 1234*time.Microsecond)
			}
		})
		b.Run("encode/encoding-json/rows="+strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := json.Marshal(predictAnswer(v, "7QWERTYUIOPASDFGHJKLZXCV", out, 1234*time.Microsecond)); err != nil {
					b.Fatal(err)
				}
			}
		})
		v.release()
	}
}

// predictAnswer is the /predict answer as encoding/json would write it from
// structs (its probabilities in sorted rather than class order).
func predictAnswer(v *view, id string, out outcome, latency time.Duration) any {
	type prediction struct {
		Class         string             `json:"class"`
		Confidence    float64            `json:"confidence"`
		Probabilities map[string]float64 `json:"probabilities"`
	}
	type answer struct {
		ModelName    string       `json:"model_name"`
		ModelVersion string       `json:"model_version"`
		RequestID    string       `json:"request_id"`
		Prediction   string       `json:"prediction,omitempty"`
		Confidence   float64      `json:"confidence,omitempty"`
		Predictions  []prediction `json:"predictions"`
		LatencyMS    float64      `json:"latency_ms"`
	}
	a := answer{ModelName: v.meta.Name, ModelVersion: v.meta.Version, RequestID: id, LatencyMS: float64(latency.Microseconds()) / 1e3}
	for i := 0; i < out.result.Rows; i++ {
		p := prediction{Class: v.meta.Classes[out.class[i]], Confidence: out.confidence[i], Probabilities: map[string]float64{}}
		for j, x := range out.result.Row(i) {
			p.Probabilities[v.meta.Classes[j]] = x
		}
		a.Predictions = append(a.Predictions, p)
	}
	if out.result.Rows == 1 {
		a.Prediction, a.Confidence = a.Predictions[0].Class, a.Predictions[0].Confidence
	}
	return a
}
