package server

import (
	"bytes"
	"flag"
	"os"
	"testing"

	"github.com/prometheus/common/expfmt"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestMetricsGolden runs a scripted sequence of requests and compares the
// whole /metrics text with testdata/metrics.golden. The harness's clock makes
// every duration exact. Refresh with: go test ./internal/server -run Golden -update
func TestMetricsGolden(t *testing.T) {
	h := newHarness(t, nil)
	for _, req := range []struct{ method, path, body string }{
		{"POST", "/predict", `{"inputs": [` + fraudRow + `]}`},
		{"POST", "/predict", `{"inputs": [` + safeRow + `,` + fraudRow + `,[null, 3, 2, 30, 6, 40]]}`},
		{"POST", "/predict", `{"model_name": "no_such_model", "inputs": [` + safeRow + `]}`},
		{"POST", "/predict", `{"inputs": [[1, 2,`},
		{"POST", "/predict", `{"model_name": "faulty", "inputs": [[-1, 0]]}`},
		{"POST", "/predict", `{"model_name": "strict", "inputs": [[0.75, 1], [0.25, 2]]}`},
		{"GET", "/predict", ``},
		{"GET", "/health", ``},
		{"GET", "/nowhere", ``},
	} {
		h.do(req.method, req.path, "application/json", req.body)
	}
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if mf.GetName() == "modelwatch_build_info" { // its labels change with the toolchain
			continue
		}
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	const golden = "testdata/metrics.golden"
	if *update {
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("/metrics differs from %s (run with -update after checking the change):\n%s", golden, lineDiff(string(want), buf.String()))
	}
}

// lineDiff lists the lines only in want (-) and only in got (+).
func lineDiff(want, got string) string {
	count := map[string]int{}
	for _, l := range bytes.Split([]byte(want), []byte("\n")) {
		count[string(l)]++
	}
	var out bytes.Buffer
	for _, l := range bytes.Split([]byte(got), []byte("\n")) {
		if count[string(l)] > 0 {
			count[string(l)]--
			continue
		}
		out.WriteString("+ " + string(l) + "\n")
	}
	for l, n := range count {
		for ; n > 0; n-- {
			out.WriteString("- " + l + "\n")
		}
	}
	return out.String()
}
