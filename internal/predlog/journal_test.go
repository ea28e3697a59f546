package predlog_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/modelwatch/modelwatch/internal/predlog"
	"github.com/modelwatch/modelwatch/internal/predlog/predlogtest"
)

func journalFiles(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.journal"))
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// TestJournalAfterKill: records a process queued but never wrote (it was
// killed: its Log is abandoned, not closed) are written by the next process
// on the same journal, exactly as they were, and the journal is emptied.
func TestJournalAfterKill(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	block := make(chan struct{})
	defer close(block)
	stuck := &predlogtest.Store{WriteFunc: func(ctx context.Context, _ []predlog.Record) error {
		select {
		case <-block:
		case <-ctx.Done():
		}
		return errors.New("store stuck")
	}}
	opts := predlog.DefaultOptions()
	opts.JournalDir = dir
	opts.WriteTimeout = time.Hour
	opts.PruneInterval = -1
	first, err := predlog.New(stuck, opts, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	_ = first // killed: never closed
	t0 := time.Date(2026, 11, 30, 1, 2, 3, 456789000, time.UTC)
	want := []predlog.Record{
		{RequestID: "req-1", Row: 0, Time: t0, Model: "fraud_model", Version: "v1", Input: []float64{1.5, math.NaN(), -3}, Class: "fraud", Output: []float64{0.25, 0.75}},
		{RequestID: "req-2", Row: 0, Time: t0, Model: "price", Version: "2", Input: []float64{42}, Output: []float64{1234.5}},
		{RequestID: "req-2", Row: 1, Time: t0, Model: "price", Version: "2", Input: []float64{43}, Output: []float64{1300}},
	}
	first.Append(want[:1])
	first.Append(want[1:])
	for range 100 {
		first.Append(request(fmt.Sprintf("more-%d", len(want)), 1))
	}
	if len(journalFiles(t, dir)) == 0 {
		t.Fatal("no journal segment on disk")
	}

	s := openSQLite(t, filepath.Join(t.TempDir(), predlog.SQLiteFileName), predlog.SQLiteOptions{Retention: 100 * 365 * 24 * time.Hour})
	opts.WriteTimeout = 10 * time.Second
	second, reg := newLog(t, s, opts)
	if err := second.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the leftover to be written", func() bool {
		return metricValue(t, reg, "model_prediction_log_written_total")() == 103
	})
	for _, id := range []string{"req-1", "req-2"} {
		ps, err := s.Lookup(ctx, id)
		if err != nil || (id == "req-2" && len(ps) != 2) || ps[0].Class != map[string]string{"req-1": "fraud", "req-2": ""}[id] || !ps[0].Time.Equal(t0.Truncate(time.Microsecond)) {
			t.Fatalf("Lookup(%s) = %+v, %v", id, ps, err)
		}
	}
	if err := second.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := journalFiles(t, dir); len(got) != 0 {
		t.Fatalf("journal after a clean close: %v", got)
	}
}

// TestJournalDamagedTail: a frame cut short (a machine's crash) is counted
// lost; the frames before it are written.
func TestJournalDamagedTail(t *testing.T) {
	dir := t.TempDir()
	opts := predlog.DefaultOptions()
	opts.JournalDir = dir
	opts.PruneInterval = -1
	opts.MaxDelay = time.Hour
	stuck := &predlogtest.Store{WriteFunc: func(ctx context.Context, _ []predlog.Record) error { <-ctx.Done(); return ctx.Err() }}
	first, err := predlog.New(stuck, opts, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	first.Append(request("whole", 2))
	first.Append(request("cut", 1))
	files := journalFiles(t, dir)
	if len(files) == 0 {
		t.Fatal("no journal segment")
	}
	// The second frame loses its last byte, as a machine's crash in the
	// middle of a copy would leave it.
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	n1 := int(binary.LittleEndian.Uint32(b))
	n2 := int(binary.LittleEndian.Uint32(b[8+n1:]))
	end := 8 + n1 + 8 + n2
	b[end-1] ^= 0xff
	if err := os.WriteFile(files[0], b, 0o640); err != nil {
		t.Fatal(err)
	}

	s := openSQLite(t, filepath.Join(t.TempDir(), predlog.SQLiteFileName), predlog.SQLiteOptions{Retention: 100 * 365 * 24 * time.Hour})
	opts.MaxDelay = 10 * time.Millisecond
	second, reg := newLog(t, s, opts)
	waitFor(t, "the leftover", func() bool { return metricValue(t, reg, "model_prediction_log_written_total")() == 2 })
	if err := testutil.GatherAndCompare(reg, strings.NewReader(droppedText(0, 0, 0, 1, 0)), "model_prediction_log_dropped_total"); err != nil {
		t.Fatal(err)
	}
	second.Close(context.Background())
}

// TestJournalCloseDeadline: records Close had no time to write stay in the
// journal, not counted dropped, and the next process writes them.
func TestJournalCloseDeadline(t *testing.T) {
	dir := t.TempDir()
	opts := predlog.DefaultOptions()
	opts.JournalDir = dir
	opts.PruneInterval = -1
	opts.Retries = 1
	stuck := &predlogtest.Store{WriteFunc: func(ctx context.Context, _ []predlog.Record) error { <-ctx.Done(); return ctx.Err() }}
	first, reg := newLog(t, stuck, opts)
	first.Append(request("late", 3))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	first.Close(ctx)
	if len(journalFiles(t, dir)) == 0 {
		t.Fatal("the journal was emptied with records unwritten")
	}
	s := openSQLite(t, filepath.Join(t.TempDir(), predlog.SQLiteFileName), predlog.SQLiteOptions{Retention: 100 * 365 * 24 * time.Hour})
	_, reg2 := newLog(t, s, opts)
	waitFor(t, "the leftover", func() bool { return metricValue(t, reg2, "model_prediction_log_written_total")() == 3 })
	_ = reg
}
