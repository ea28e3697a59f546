package predlog_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/modelwatch/modelwatch/internal/predlog"
	"github.com/modelwatch/modelwatch/internal/predlog/predlogtest"
)

// metricValue returns a function reading the value of an unlabelled
// counter or gauge from reg.
func metricValue(t testing.TB, reg prometheus.Gatherer, name string) func() float64 {
	return func() float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			m := mf.GetMetric()[0]
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
		t.Fatalf("no metric %s", name)
		return 0
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func droppedText(queueFull, storeError, spoolFull, spoolCorrupt, shutdown float64) string {
	return droppedTextRejected(queueFull, storeError, spoolFull, spoolCorrupt, shutdown, 0)
}

func droppedTextRejected(queueFull, storeError, spoolFull, spoolCorrupt, shutdown, rejected float64) string {
	return fmt.Sprintf(`
# HELP model_prediction_log_dropped_total Prediction records not written to the prediction log, by reason.
# TYPE model_prediction_log_dropped_total counter
model_prediction_log_dropped_total{reason="queue_full"} %v
model_prediction_log_dropped_total{reason="rejected"} %v
model_prediction_log_dropped_total{reason="shutdown"} %v
model_prediction_log_dropped_total{reason="spool_corrupt"} %v
model_prediction_log_dropped_total{reason="spool_full"} %v
model_prediction_log_dropped_total{reason="store_error"} %v
`, queueFull, rejected, shutdown, spoolCorrupt, spoolFull, storeError)
}

// request returns the records of a request of rows rows.
func request(id string, rows int) []predlog.Record {
	recs := make([]predlog.Record, rows)
	for i := range recs {
		recs[i] = predlog.Record{RequestID: id, Row: i, Time: time.Now(), Model: "fraud_model", Version: "v1",
			Input: []float64{float64(i), 1}, Class: "safe", Output: []float64{0.9, 0.1}}
	}
	return recs
}

// collector is a fake store that keeps what it is given.
type collector struct {
	mu   sync.Mutex
	recs map[string]int // "id/row" -> times written
}

func (c *collector) store() *predlogtest.Store {
	c.recs = map[string]int{}
	return &predlogtest.Store{WriteFunc: func(_ context.Context, recs []predlog.Record) error {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, r := range recs {
			c.recs[fmt.Sprintf("%s/%d", r.RequestID, r.Row)]++
		}
		return nil
	}}
}

func (c *collector) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.recs)
}

func newLog(t *testing.T, store predlog.Store, opts predlog.Options) (*predlog.Log, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	l, err := predlog.New(store, opts, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(context.Background()) })
	return l, reg
}

func TestLogMetricsStart(t *testing.T) {
	_, reg := newLog(t, &predlogtest.Store{}, predlog.DefaultOptions())
	problems, err := testutil.GatherAndLint(reg)
	if err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %+v", err, problems)
	}
	want := droppedText(0, 0, 0, 0, 0) + `
# HELP model_prediction_log_pruned_total Prediction records deleted from the store, by reason (retention, size).
# TYPE model_prediction_log_pruned_total counter
model_prediction_log_pruned_total{reason="retention"} 0
model_prediction_log_pruned_total{reason="size"} 0
# HELP model_prediction_log_queue_capacity Prediction records the queue holds at most; past it records are dropped (reason queue_full).
# TYPE model_prediction_log_queue_capacity gauge
model_prediction_log_queue_capacity 65536
# HELP model_prediction_log_queue_length Prediction records waiting in the queue to be written.
# TYPE model_prediction_log_queue_length gauge
model_prediction_log_queue_length 0
# HELP model_prediction_log_lag_seconds Age of the oldest record waiting in the queue, 0 when it is empty.
# TYPE model_prediction_log_lag_seconds gauge
model_prediction_log_lag_seconds 0
# HELP model_prediction_log_spool_bytes Bytes of batches waiting in the on-disk spool for the store to come back.
# TYPE model_prediction_log_spool_bytes gauge
model_prediction_log_spool_bytes 0
# HELP model_prediction_log_store_up 1 when the prediction log's last write to its store succeeded, 0 when it failed.
# TYPE model_prediction_log_store_up gauge
model_prediction_log_store_up 1
# HELP model_prediction_log_written_total Prediction records the prediction log's store accepted, replayed ones from the spool included.
# TYPE model_prediction_log_written_total counter
model_prediction_log_written_total 0
# HELP model_prediction_log_spooled_total Prediction records put in the on-disk spool while the store could not take them.
# TYPE model_prediction_log_spooled_total counter
model_prediction_log_spooled_total 0
# HELP model_prediction_log_sampled_out_total Prediction records not logged because their request fell outside the sample share.
# TYPE model_prediction_log_sampled_out_total counter
model_prediction_log_sampled_out_total 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"model_prediction_log_dropped_total", "model_prediction_log_pruned_total", "model_prediction_log_queue_capacity",
		"model_prediction_log_queue_length", "model_prediction_log_lag_seconds", "model_prediction_log_spool_bytes",
		"model_prediction_log_store_up", "model_prediction_log_written_total", "model_prediction_log_spooled_total",
		"model_prediction_log_sampled_out_total"); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg, "model_prediction_log_write_duration_seconds"); err != nil || n != 1 {
		t.Fatalf("write duration histogram: %d, %v", n, err)
	}
}

func TestLogQueueFull(t *testing.T) {
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	var written sync.Map
	store := &predlogtest.Store{WriteFunc: func(_ context.Context, recs []predlog.Record) error {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
		for _, r := range recs {
			written.Store(fmt.Sprintf("%s/%d", r.RequestID, r.Row), true)
		}
		return nil
	}}
	opts := predlog.DefaultOptions()
	opts.QueueSize, opts.BatchSize, opts.MaxDelay = 10, 4, time.Millisecond
	l, reg := newLog(t, store, opts)

	l.Append(request("first", 4)) // a full batch: the writer takes it and blocks
	<-entered
	waitFor(t, "the writer to take the first batch", func() bool { return l.QueueLen() == 0 })
	for i := range 3 {
		l.Append(request(fmt.Sprintf("q%d", i), 3)) // 9 queued
	}
	l.Append(request("too-big", 2)) // 11 > 10: dropped whole
	l.Append(request("fits", 1))    // 10
	l.Append(request("full", 1))    // dropped
	if got := l.QueueLen(); got != 10 {
		t.Fatalf("queue holds %d, want 10", got)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(droppedText(3, 0, 0, 0, 0)), "model_prediction_log_dropped_total"); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	n := 0
	written.Range(func(k, _ any) bool {
		if strings.HasPrefix(k.(string), "too-big/") || strings.HasPrefix(k.(string), "full/") {
			t.Errorf("dropped record %s was written", k)
		}
		n++
		return true
	})
	if n != 14 || metricValue(t, reg, "model_prediction_log_written_total")() != 14 {
		t.Fatalf("%d records written, want 14", n)
	}
}

func TestLogCloseFlushes(t *testing.T) {
	ctx := context.Background()
	s := openSQLite(t, filepath.Join(t.TempDir(), predlog.SQLiteFileName), predlog.SQLiteOptions{})
	opts := predlog.DefaultOptions()
	opts.MaxDelay = time.Hour // nothing is written before Close
	l, reg := newLog(t, s, opts)
	for i := range 999 {
		l.Append(request(fmt.Sprintf("req-%d", i), 3))
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := metricValue(t, reg, "model_prediction_log_written_total")(); got != 2997 {
		t.Fatalf("written_total = %v, want 2997", got)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(droppedText(0, 0, 0, 0, 0)), "model_prediction_log_dropped_total"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"req-0", "req-500", "req-998"} {
		ps, err := s.Lookup(ctx, id)
		if err != nil || len(ps) != 3 {
			t.Fatalf("Lookup(%s) = %d rows, %v; want 3", id, len(ps), err)
		}
	}
	// After Close, records are refused and counted.
	l.Append(request("late", 2))
	if err := testutil.GatherAndCompare(reg, strings.NewReader(droppedText(0, 0, 0, 0, 2)), "model_prediction_log_dropped_total"); err != nil {
		t.Fatal(err)
	}
}

func TestLogCloseDeadline(t *testing.T) {
	// A store that hangs until its context is cancelled.
	store := &predlogtest.Store{WriteFunc: func(ctx context.Context, _ []predlog.Record) error {
		<-ctx.Done()
		return ctx.Err()
	}}
	opts := predlog.DefaultOptions()
	opts.BatchSize, opts.MaxDelay = 10, time.Millisecond
	l, reg := newLog(t, store, opts)
	for i := range 50 {
		l.Append(request(fmt.Sprintf("req-%d", i), 2))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := l.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close = %v, want the deadline", err)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(droppedText(0, 0, 0, 0, 100)), "model_prediction_log_dropped_total"); err != nil {
		t.Fatal(err)
	}
}

func TestLogStoreError(t *testing.T) {
	calls := 0
	store := &predlogtest.Store{WriteFunc: func(context.Context, []predlog.Record) error {
		calls++
		return errors.New("disk full")
	}}
	opts := predlog.DefaultOptions()
	opts.BatchSize, opts.MaxDelay, opts.Retries, opts.RetryBackoff = 5, time.Millisecond, 3, time.Millisecond
	l, reg := newLog(t, store, opts)
	l.Append(request("a", 5))
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if calls != 3 {
		t.Fatalf("store called %d times, want 3 (Retries)", calls)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(droppedText(0, 5, 0, 0, 0)+`
# HELP model_prediction_log_store_up 1 when the prediction log's last write to its store succeeded, 0 when it failed.
# TYPE model_prediction_log_store_up gauge
model_prediction_log_store_up 0
`), "model_prediction_log_dropped_total", "model_prediction_log_store_up"); err != nil {
		t.Fatal(err)
	}
	if n, _ := testutil.GatherAndCount(reg, "model_prediction_log_write_duration_seconds"); n != 1 {
		t.Fatalf("write duration series = %d", n)
	}
}

func TestLogSpoolReplay(t *testing.T) {
	// A store down for its first 4 calls: the 3 tries of the first batch
	// and the first replay.
	var c collector
	inner := c.store()
	var mu sync.Mutex
	failures := 4
	store := &predlogtest.Store{WriteFunc: func(ctx context.Context, recs []predlog.Record) error {
		mu.Lock()
		down := failures > 0
		failures--
		mu.Unlock()
		if down {
			return errors.New("connection refused")
		}
		return inner.Write(ctx, recs)
	}}
	dir := t.TempDir()
	spool, err := predlog.OpenSpool(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	opts := predlog.DefaultOptions()
	opts.BatchSize, opts.MaxDelay, opts.RetryBackoff = 4, time.Millisecond, time.Millisecond
	opts.ReplayInterval, opts.Spool = 20*time.Millisecond, spool
	l, reg := newLog(t, store, opts)
	l.Append(request("a", 4))
	waitFor(t, "a spooled", func() bool { return metricValue(t, reg, "model_prediction_log_spooled_total")() == 4 })
	l.Append(request("b", 4))
	waitFor(t, "the spool emptied", func() bool { return c.len() == 8 })
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	for k, n := range c.recs {
		if n != 1 {
			t.Errorf("%s written %d times", k, n)
		}
	}
	if got := metricValue(t, reg, "model_prediction_log_written_total")(); got != 8 {
		t.Fatalf("written_total = %v, want 8", got)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("spool directory holds %d files after replay", len(entries))
	}
}

func TestSpool(t *testing.T) {
	dir := t.TempDir()
	s, err := predlog.OpenSpool(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	a, b := request("a", 3), request("b", 2)
	b[1].Output = []float64{math.NaN(), math.Inf(1)} // kept as they are
	if err := s.Put(a); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(b); err != nil {
		t.Fatal(err)
	}
	size := s.Bytes()
	// Reopened, as after a restart: same batches, same order.
	s, err = predlog.OpenSpool(dir, size+1)
	if err != nil {
		t.Fatal(err)
	}
	if s.Batches() != 2 || s.Records() != 5 || s.Bytes() != size {
		t.Fatalf("reopened spool: %d batches, %d records, %d bytes; want 2, 5, %d", s.Batches(), s.Records(), s.Bytes(), size)
	}
	if err := s.Put(request("c", 1)); !errors.Is(err, predlog.ErrSpoolFull) {
		t.Fatalf("Put past the bound = %v, want ErrSpoolFull", err)
	}
	if s.Batches() != 2 || s.Bytes() != size {
		t.Fatalf("a refused batch changed the spool")
	}
	got, n, err := s.Oldest()
	if err != nil || n != 3 || got[2].RequestID != "a" || got[2].Row != 2 || !got[0].Time.Equal(a[0].Time) {
		t.Fatalf("Oldest = %+v, %d, %v", got, n, err)
	}
	if err := s.RemoveOldest(); err != nil {
		t.Fatal(err)
	}
	got, n, err = s.Oldest()
	if err != nil || n != 2 || got[0].RequestID != "b" || !math.IsNaN(got[1].Output[0]) || !math.IsInf(got[1].Output[1], 1) {
		t.Fatalf("Oldest = %+v, %d, %v", got, n, err)
	}
	// A batch damaged on disk is reported with its count and set aside.
	entries, _ := os.ReadDir(dir)
	if err := os.WriteFile(filepath.Join(dir, entries[0].Name()), []byte("not gob"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, n, err := s.Oldest(); err == nil || n != 2 {
		t.Fatalf("Oldest of a damaged batch = %d, %v; want an error and its count 2", n, err)
	}
	if err := s.SetAsideOldest(); err != nil {
		t.Fatal(err)
	}
	if s.Batches() != 0 || s.Bytes() != 0 {
		t.Fatalf("after setting aside: %d batches, %d bytes", s.Batches(), s.Bytes())
	}
	if _, err := os.Stat(filepath.Join(dir, entries[0].Name()+".corrupt")); err != nil {
		t.Fatal(err)
	}
}

func TestSampling(t *testing.T) {
	const requests = 10000
	ids := make([]string, requests)
	for i := range ids {
		ids[i] = fmt.Sprintf("req-%d", i)
	}
	kept := func(share float64) map[string]bool {
		var c collector
		opts := predlog.DefaultOptions()
		opts.Sample = share
		l, reg := newLog(t, c.store(), opts)
		for _, id := range ids {
			l.Append(request(id, 2))
		}
		if err := l.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		m := map[string]bool{}
		for k := range c.recs {
			id, _, _ := strings.Cut(k, "/")
			m[id] = true
		}
		// A request is logged whole or not at all.
		if len(c.recs) != 2*len(m) {
			t.Fatalf("share %v: %d records for %d requests", share, len(c.recs), len(m))
		}
		if out := metricValue(t, reg, "model_prediction_log_sampled_out_total")(); out != float64(2*(requests-len(m))) {
			t.Fatalf("share %v: sampled_out_total = %v, want %d", share, out, 2*(requests-len(m)))
		}
		return m
	}
	// The counts for these ids are fixed by the hash; each is within three
	// standard deviations of share*requests.
	cases := []struct {
		share float64
		want  int
	}{{0, 0}, {0.01, 113}, {0.1, 989}, {0.25, 2517}, {0.5, 5054}, {1, requests}}
	var prev map[string]bool
	for _, c := range cases {
		got := kept(c.share)
		if len(got) != c.want {
			t.Errorf("share %v keeps %d of %d requests, want %d", c.share, len(got), requests, c.want)
		}
		if sd := math.Sqrt(requests * c.share * (1 - c.share)); math.Abs(float64(c.want)-requests*c.share) > 3*sd {
			t.Errorf("share %v: %d is more than 3 sd from %v", c.share, c.want, requests*c.share)
		}
		for id := range prev {
			if !got[id] {
				t.Fatalf("share %v drops %s, which a smaller share keeps", c.share, id)
			}
		}
		prev = got
	}
	if _, err := predlog.New(&predlogtest.Store{}, predlog.Options{Sample: 1.5}, prometheus.NewRegistry()); err == nil {
		t.Fatal("a share of 1.5 was accepted")
	}
	if predlog.HashID("req-1") != predlog.HashID("req-1") || predlog.HashID("req-1") == predlog.HashID("req-2") {
		t.Fatal("the hash is not a function of the id")
	}
}

func TestLogPrunes(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	calls := make(chan time.Time, 10)
	store := &predlogtest.Store{PruneFunc: func(_ context.Context, at time.Time) (predlog.Pruned, error) {
		calls <- at
		return predlog.Pruned{Retention: 7, Size: 3}, nil
	}}
	opts := predlog.DefaultOptions()
	opts.Now = func() time.Time { return now }
	opts.PruneInterval = time.Hour // runs at start, then hourly
	l, reg := newLog(t, store, opts)
	if at := <-calls; !at.Equal(now) {
		t.Fatalf("Prune ran at %v, want the injected clock's %v", at, now)
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP model_prediction_log_pruned_total Prediction records deleted from the store, by reason (retention, size).
# TYPE model_prediction_log_pruned_total counter
model_prediction_log_pruned_total{reason="retention"} 7
model_prediction_log_pruned_total{reason="size"} 3
`), "model_prediction_log_pruned_total"); err != nil {
		t.Fatal(err)
	}
}

func TestLogLag(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	release := make(chan struct{})
	store := &predlogtest.Store{WriteFunc: func(context.Context, []predlog.Record) error { <-release; return nil }}
	opts := predlog.DefaultOptions()
	opts.Now = func() time.Time { return now }
	opts.BatchSize, opts.MaxDelay = 1, time.Millisecond
	l, reg := newLog(t, store, opts)
	recs := request("first", 1) // taken by the writer, which then blocks
	l.Append(recs)
	waitFor(t, "the writer to take the first record", func() bool { return l.QueueLen() == 0 })
	queued := request("queued", 1)
	queued[0].Time = now.Add(-90 * time.Second)
	l.Append(queued)
	if got := metricValue(t, reg, "model_prediction_log_lag_seconds")(); got != 90 {
		t.Fatalf("lag = %v s, want 90", got)
	}
	if got := metricValue(t, reg, "model_prediction_log_queue_length")(); got != 1 {
		t.Fatalf("queue length = %v, want 1", got)
	}
	close(release)
}

func TestLogRejected(t *testing.T) {
	var c collector
	inner := c.store()
	var calls atomic.Int32
	store := &predlogtest.Store{WriteFunc: func(ctx context.Context, recs []predlog.Record) error {
		calls.Add(1)
		if recs[0].RequestID == "bad" {
			return fmt.Errorf("invalid byte sequence: %w", predlog.ErrRejected)
		}
		return inner.Write(ctx, recs)
	}}
	opts := predlog.DefaultOptions()
	opts.BatchSize, opts.MaxDelay = 2, time.Millisecond
	l, reg := newLog(t, store, opts)
	l.Append(request("bad", 2))
	waitFor(t, "bad written", func() bool { return calls.Load() == 1 })
	l.Append(request("good", 2))
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 2 || c.len() != 2 {
		t.Fatalf("store called %d times and holds %d records; want a rejected batch tried once, then good", calls.Load(), c.len())
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(droppedTextRejected(0, 0, 0, 0, 0, 2)+`
# HELP model_prediction_log_store_up 1 when the prediction log's last write to its store succeeded, 0 when it failed.
# TYPE model_prediction_log_store_up gauge
model_prediction_log_store_up 1
`), "model_prediction_log_dropped_total", "model_prediction_log_store_up"); err != nil {
		t.Fatal(err)
	}
}

// TestLogSync: Sync returns once what was appended before it is in the
// store, without waiting out the batch delay twice, and gives up with ctx.
func TestLogSync(t *testing.T) {
	ctx := context.Background()
	s := openSQLite(t, filepath.Join(t.TempDir(), predlog.SQLiteFileName), predlog.SQLiteOptions{})
	opts := predlog.DefaultOptions()
	opts.MaxDelay = 50 * time.Millisecond
	l, _ := newLog(t, s, opts)
	if err := l.Sync(ctx); err != nil { // nothing appended: at once
		t.Fatal(err)
	}
	l.Append(request("req-sync", 2))
	if _, err := s.Lookup(ctx, "req-sync"); !errors.Is(err, predlog.ErrNotFound) {
		t.Fatalf("Lookup before the batch delay = %v, want ErrNotFound", err)
	}
	if err := l.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if ps, err := l.Store().Lookup(ctx, "req-sync"); err != nil || len(ps) != 2 {
		t.Fatalf("Lookup after Sync = %d rows, %v; want 2", len(ps), err)
	}

	// A store that blocks: Sync ends with its context.
	block := make(chan struct{})
	stuck := &predlogtest.Store{WriteFunc: func(ctx context.Context, _ []predlog.Record) error {
		select {
		case <-block:
		case <-ctx.Done():
		}
		return ctx.Err()
	}}
	opts.WriteTimeout = time.Minute
	l2, _ := newLog(t, stuck, opts)
	l2.Append(request("req-stuck", 1))
	sctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := l2.Sync(sctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Sync on a blocked store = %v, want DeadlineExceeded", err)
	}
	close(block)
}
