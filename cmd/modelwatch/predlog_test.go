package main

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/modelwatch/modelwatch/internal/predlog"
)

// TestPredictionLogAcrossRestarts: with the embedded log (the default), a
// server keeps its predictions and their labels across a SIGTERM and a
// SIGKILL: labels sent after each restart join predictions made before it,
// and the log holds every prediction answered, once, with its label.
func TestPredictionLogAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	type made struct{ id, class string }
	var preds []made
	predict := func(p *process, n int) {
		t.Helper()
		for i := range n {
			row := safeRow
			if i%3 == 0 {
				row = fraudRow
			}
			code, r := post(t, p.url("/predict"), `{"inputs": [`+row+`]}`)
			if code != 200 {
				t.Fatalf("predict: %d %v", code, r)
			}
			preds = append(preds, made{r["request_id"].(string), r["prediction"].(string)})
		}
	}
	// label labels preds[from:to] with "safe" and checks each answer; it
	// returns the rows it expects counted correct.
	label := func(p *process, from, to int) (correct float64) {
		t.Helper()
		for _, m := range preds[from:to] {
			code, r := post(t, p.url("/feedback"), fmt.Sprintf(`{"request_id": %q, "label": "safe"}`, m.id))
			want := "incorrect"
			if m.class == "safe" {
				want = "correct"
				correct++
			}
			if code != 200 || r["result"] != want {
				t.Fatalf("label for %s (predicted %s): %d %v, want %s", m.id, m.class, code, r, want)
			}
		}
		return correct
	}
	stop := func(p *process, sig syscall.Signal) {
		t.Helper()
		if err := p.cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		select {
		case <-p.exited:
		case <-time.After(30 * time.Second):
			t.Fatalf("modelwatch did not exit after %v", sig)
		}
	}
	counted := func(p *process) (correct, incorrect float64) {
		t.Helper()
		_, text, _ := get(t, http.DefaultClient, p.url("/metrics"))
		s := scrape(t, text)
		return s[`model_feedback_total{model_name="fraud_model",model_version="v1",result="correct"}`],
			s[`model_feedback_total{model_name="fraud_model",model_version="v1",result="incorrect"}`]
	}

	p := start(t, 1, "--data-dir", dir)
	predict(p, 12)
	label(p, 0, 3) // at once, on the server that made them
	stop(p, syscall.SIGTERM)
	if !strings.Contains(p.logs.String(), "shut down cleanly") {
		t.Fatalf("no clean shutdown:\n%s", p.logs)
	}

	p = start(t, 1, "--data-dir", dir)
	c := label(p, 3, 8) // made before the restart
	if gc, gi := counted(p); gc != c || gc+gi != 5 {
		t.Errorf("after SIGTERM: counted %v correct, %v incorrect; want %v of 5 correct", gc, gi, c)
	}
	// Killed within the log's batch delay: these are in the journal only.
	predict(p, 6)
	stop(p, syscall.SIGKILL)

	p = start(t, 1, "--data-dir", dir)
	c = label(p, 8, 18)
	if gc, gi := counted(p); gc != c || gc+gi != 10 {
		t.Errorf("after SIGKILL: counted %v correct, %v incorrect; want %v of 10 correct", gc, gi, c)
	}
	// Labelled once: a label again is unknown.
	if code, r := post(t, p.url("/feedback"), fmt.Sprintf(`{"request_id": %q, "label": "safe"}`, preds[0].id)); code != 404 || r["error_type"] != "unknown_request" {
		t.Errorf("second label: %d %v", code, r)
	}
	stop(p, syscall.SIGTERM)

	// The file, read as any SQLite tool would: every prediction once, each
	// with its label.
	s, err := predlog.OpenSQLite(context.Background(), filepath.Join(dir, predlog.SQLiteFileName), predlog.SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, m := range preds {
		ps, err := s.Lookup(context.Background(), m.id)
		if err != nil || len(ps) != 1 || ps[0].Class != m.class || ps[0].Label != "safe" {
			t.Errorf("log for %s: %+v, %v; want one row predicted %s, labelled safe", m.id, ps, err, m.class)
		}
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, predlog.SQLiteFileName)+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var rows, labelled int
	if err := db.QueryRow(`SELECT count(*), count(label) FROM predictions`).Scan(&rows, &labelled); err != nil || rows != len(preds) || labelled != len(preds) {
		t.Errorf("the log holds %d predictions, %d labelled (%v); want %d of each", rows, labelled, err, len(preds))
	}
}
