package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestIsTerminal(t *testing.T) {
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	if isTerminal(devNull) {
		t.Errorf("isTerminal(%s) = true", os.DevNull)
	}
	if isTerminal(&bytes.Buffer{}) {
		t.Errorf("isTerminal(a buffer) = true")
	}
}

// TestBatchMatchesXGBoost scores the embedded model's held-out rows, ten
// times over, on one worker and on four: both outputs are the same and each
// row's fraud probability is the one XGBoost predicted for it.
func TestBatchMatchesXGBoost(t *testing.T) {
	heldout, err := os.ReadFile("../../models/fraud_model/testdata/heldout.csv")
	if err != nil {
		t.Fatal(err)
	}
	header, body, _ := strings.Cut(strings.TrimSpace(string(heldout)), "\n")
	dir := t.TempDir()
	input := filepath.Join(dir, "rows.csv")
	if err := os.WriteFile(input, []byte(header+"\n"+strings.Repeat(body+"\n", 10)), 0o644); err != nil {
		t.Fatal(err)
	}
	var outputs [][]byte
	for _, workers := range []string{"1", "4"} {
		output := filepath.Join(dir, "out"+workers+".csv")
		var stdout, stderr bytes.Buffer
		m := &Main{Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }}
		err := m.Run(context.Background(), []string{"batch", "--input", input, "--output", output, "--batch-size", "64", "--workers", workers})
		if err != nil {
			t.Fatalf("batch --workers %s: %v\n%s", workers, err, stderr.String())
		}
		if !strings.HasPrefix(stdout.String(), "scored 3000 rows of "+input+" with fraud_model v1") || stderr.Len() != 0 {
			t.Errorf("batch --workers %s: stdout %q, stderr %q", workers, stdout.String(), stderr.String())
		}
		out, err := os.ReadFile(output)
		if err != nil {
			t.Fatal(err)
		}
		outputs = append(outputs, out)
	}
	if !bytes.Equal(outputs[0], outputs[1]) {
		t.Errorf("four workers wrote a different file than one")
	}
	records, err := csv.NewReader(bytes.NewReader(outputs[1])).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(records) != 3001 {
		t.Fatalf("%d records, want a header and 3000 rows", len(records))
	}
	cols := map[string]int{}
	for i, name := range records[0] {
		cols[name] = i
	}
	for i, rec := range records[1:] {
		want, err := strconv.ParseFloat(rec[cols["xgboost_fraud_probability"]], 64)
		if err != nil {
			t.Fatal(err)
		}
		got, err := strconv.ParseFloat(rec[cols["confidence"]], 64)
		if err != nil {
			t.Fatal(err)
		}
		if rec[cols["prediction"]] == "safe" {
			got = 1 - got
		}
		if math.Abs(got-want) > 1e-6 {
			t.Errorf("row %d: fraud probability %v, XGBoost predicted %v", i+1, got, want)
		}
	}
}
