package predlog_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/modelwatch/modelwatch/internal/predlog"
	"github.com/modelwatch/modelwatch/internal/testenv"
)

func openPostgres(t testing.TB, dsn string) *predlog.Postgres {
	t.Helper()
	s, err := predlog.OpenPostgres(context.Background(), dsn, predlog.PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// query returns the first column of every row of a query, as text.
func query(t testing.TB, dsn, sql string) []string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, sql)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestPostgresMigrationsConcurrent(t *testing.T) {
	pg := testenv.StartPostgres(t)
	dsn := pg.DSN()
	// Four replicas start at once on an empty database.
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			s, err := predlog.OpenPostgres(context.Background(), dsn, predlog.PostgresOptions{})
			if err == nil {
				s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
	}
	// And once more, later: nothing to do.
	openPostgres(t, dsn)
	got := query(t, dsn, `SELECT version || ' ' || name FROM schema_migrations ORDER BY version`)
	if want := []string{"1 0001_predictions.sql"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("schema_migrations = %q, want %q", got, want)
	}
}

func TestPostgresStore(t *testing.T) {
	pg := testenv.StartPostgres(t)
	a := openPostgres(t, pg.DSN())
	b := openPostgres(t, pg.DSN()) // another replica
	storeContract(t, a, b)
	got := query(t, pg.DSN(), `SELECT concat_ws(' ', request_id, row_index, predicted_at AT TIME ZONE 'UTC',
		model_name, model_version, inputs, coalesce(predicted_class, 'NULL'), outputs, coalesce(label, 'NULL'))
		FROM predictions ORDER BY request_id, row_index`)
	want := []string{
		"req-a 0 2026-11-29 12:00:00.123456 fraud_model v1 {1.5,-2,0.1} fraud {0.07,0.93} fraud",
		"req-a 1 2026-11-29 12:00:00.123456 fraud_model v1 {0,3.25,1e-09} safe {0.8,0.2} safe",
		"req-b 0 2026-11-29 12:00:01.123456 price 2 {42} NULL {1234.5} 1200",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("table holds\n%q\nwant\n%q", got, want)
	}
	// The package doc's accuracy query.
	got = query(t, pg.DSN(), `SELECT concat_ws(' ', model_name, model_version, labelled, accuracy) FROM (
		SELECT model_name, model_version, count(*) AS labelled, avg((label = predicted_class)::int) AS accuracy
		FROM predictions WHERE label IS NOT NULL AND predicted_class IS NOT NULL GROUP BY 1, 2) AS a ORDER BY 1`)
	want = []string{"fraud_model v1 2 1.00000000000000000000"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("accuracy query: %q, want %q", got, want)
	}
}

func TestPostgresWriteIsIdempotent(t *testing.T) {
	pg := testenv.StartPostgres(t)
	ctx := context.Background()
	for _, mode := range []string{"copy", "insert"} {
		t.Run(mode, func(t *testing.T) {
			dsn := pg.CreateDatabase("idem_" + mode)
			s := openPostgres(t, dsn)
			predlog.SetMultiRowInsert(s, mode == "insert")
			recs := records(2500, t0)
			// A batch holding a record twice, then the whole batch again.
			if err := s.Write(ctx, append(recs[:2000:2000], recs[5])); err != nil {
				t.Fatal(err)
			}
			if err := s.Write(ctx, recs); err != nil {
				t.Fatal(err)
			}
			// Data PostgreSQL refuses is rejected for good, not retried.
			bad := records(1, t0)
			bad[0].RequestID = "nul\x00byte"
			if err := s.Write(ctx, bad); !errors.Is(err, predlog.ErrRejected) {
				t.Fatalf("Write of a NUL byte = %v, want ErrRejected", err)
			}
			got := query(t, dsn, `SELECT count(*)::text || ' ' || count(DISTINCT request_id)::text
				|| ' ' || min(request_id) || ' ' || max(request_id) FROM predictions`)
			if want := "2500 2500 r000000 r002499"; got[0] != want {
				t.Fatalf("predictions: %s, want %s", got[0], want)
			}
		})
	}
}

func TestPostgresRetention(t *testing.T) {
	pg := testenv.StartPostgres(t)
	ctx := context.Background()
	s, err := predlog.OpenPostgres(ctx, pg.DSN(), predlog.PostgresOptions{Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Write(ctx, records(25000, t0)); err != nil {
		t.Fatal(err)
	}
	p, err := s.Prune(ctx, t0.Add(24940*time.Minute+time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if p != (predlog.Pruned{Retention: 24940}) {
		t.Fatalf("Prune = %+v, want 24940 by retention", p)
	}
	got := query(t, pg.DSN(), `SELECT count(*)::text || ' ' || min(request_id) FROM predictions`)
	if got[0] != "60 r024940" {
		t.Fatalf("left %s, want 60 from r024940", got[0])
	}
}

// TestPostgresOutage stops the server in the middle of a run: the batches
// that cannot be written go to the spool, counted, and are replayed exactly
// once when it is back.
func TestPostgresOutage(t *testing.T) {
	pg := testenv.StartPostgres(t)
	ctx := context.Background()
	s := openPostgres(t, pg.DSN())
	spool, err := predlog.OpenSpool(t.TempDir(), 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	opts := predlog.DefaultOptions()
	opts.BatchSize = 100
	opts.MaxDelay = 5 * time.Millisecond
	opts.RetryBackoff = 5 * time.Millisecond
	opts.ReplayInterval = 50 * time.Millisecond
	opts.WriteTimeout = 2 * time.Second
	opts.Spool = spool
	l, err := predlog.New(s, opts, reg)
	if err != nil {
		t.Fatal(err)
	}
	appendRequests := func(from, to int) {
		for i := from; i < to; i++ {
			id := fmt.Sprintf("req-%05d", i)
			l.Append([]predlog.Record{
				{RequestID: id, Row: 0, Time: time.Now(), Model: "m", Version: "1", Input: []float64{float64(i)}, Class: "a", Output: []float64{1, 0}},
				{RequestID: id, Row: 1, Time: time.Now(), Model: "m", Version: "1", Input: []float64{-float64(i)}, Class: "b", Output: []float64{0, 1}},
			})
		}
	}
	written := metricValue(t, reg, "model_prediction_log_written_total")
	spooled := metricValue(t, reg, "model_prediction_log_spooled_total")
	up := metricValue(t, reg, "model_prediction_log_store_up")

	appendRequests(0, 500)
	waitFor(t, "1000 records written", func() bool { return written() == 1000 })

	pg.Stop()
	appendRequests(500, 1000)
	waitFor(t, "1000 records spooled", func() bool { return spooled() == 1000 })
	if up() != 0 {
		t.Fatalf("store_up = %v while the server is down", up())
	}
	if spool.Records() != 1000 || spool.Bytes() == 0 {
		t.Fatalf("spool holds %d records in %d bytes, want 1000", spool.Records(), spool.Bytes())
	}
	// While the spool holds a backlog, new batches join it, in order.
	appendRequests(1000, 1100)
	waitFor(t, "1200 records spooled", func() bool { return spooled() == 1200 })

	pg.Start()
	waitFor(t, "the spool replayed", func() bool { return spool.Batches() == 0 })
	appendRequests(1100, 1200)
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	got := query(t, pg.DSN(), `SELECT count(*)::text || ' ' || count(DISTINCT (request_id, row_index))::text FROM predictions`)
	if got[0] != "2400 2400" {
		t.Fatalf("predictions: %s, want 2400 records once each", got[0])
	}
	// Every record was written exactly once: none twice, none dropped.
	if written() != 2400 || up() != 1 {
		t.Fatalf("written_total = %v, store_up = %v; want 2400, 1", written(), up())
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(droppedText(0, 0, 0, 0, 0)), "model_prediction_log_dropped_total"); err != nil {
		t.Fatal(err)
	}
	if spool.Bytes() != 0 {
		t.Fatalf("spool holds %d bytes after replay", spool.Bytes())
	}
}

// BenchmarkPostgresWrite compares the two ways of writing a batch of 1000
// records idempotently: COPY into a temporary table then INSERT ... SELECT
// ON CONFLICT DO NOTHING, and multi-row INSERT ... ON CONFLICT DO NOTHING;
// "fresh" batches are new records, "retry" batches were all written before.
func BenchmarkPostgresWrite(b *testing.B) {
	pg := testenv.StartPostgres(b)
	ctx := context.Background()
	for _, mode := range []string{"copy", "insert"} {
		for _, kind := range []string{"fresh", "retry"} {
			b.Run(mode+"/"+kind, func(b *testing.B) {
				dsn := pg.CreateDatabase("bench_" + mode + "_" + kind)
				s := openPostgres(b, dsn)
				predlog.SetMultiRowInsert(s, mode == "insert")
				batch := records(1000, t0)
				if kind == "retry" {
					if err := s.Write(ctx, batch); err != nil {
						b.Fatal(err)
					}
				}
				b.ResetTimer()
				for i := 0; b.Loop(); i++ {
					if kind == "fresh" {
						for j := range batch {
							batch[j].RequestID = fmt.Sprintf("b%d-%d", i, j)
						}
					}
					if err := s.Write(ctx, batch); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "rows/s")
			})
		}
	}
}

func TestOpenStorePostgres(t *testing.T) {
	pg := testenv.StartPostgres(t)
	dir := t.TempDir()
	s, spool, err := predlog.OpenStore(context.Background(), predlog.StoreConfig{Store: pg.DSN(), DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok := s.(*predlog.Postgres); !ok || spool == nil || spool.Batches() != 0 {
		t.Fatalf("OpenStore = %T, %v; want *Postgres and an empty spool", s, spool)
	}
	if fi, err := os.Stat(filepath.Join(dir, "spool")); err != nil || !fi.IsDir() {
		t.Fatalf("spool directory: %v", err)
	}
}

// TestPostgresLabelsCountOnce: replicas labelling the same rows at once
// (a client retrying through another replica) count each row once between
// them.
func TestPostgresLabelsCountOnce(t *testing.T) {
	pg := testenv.StartPostgres(t)
	ctx := context.Background()
	stores := []*predlog.Postgres{openPostgres(t, pg.DSN()), openPostgres(t, pg.DSN())}
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	var recs []predlog.Record
	for i := range 50 {
		for r := range 2 {
			recs = append(recs, predlog.Record{RequestID: fmt.Sprintf("req-%d", i), Row: r, Time: t0, Model: "fraud_model",
				Version: "v1", Input: []float64{1}, Class: "safe", Output: []float64{0.9, 0.1}})
		}
	}
	if err := stores[0].Write(ctx, recs); err != nil {
		t.Fatal(err)
	}
	var counted atomic.Int64
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				labels := []predlog.Label{
					{RequestID: fmt.Sprintf("req-%d", i), Row: 0, Value: "fraud", Time: t0},
					{RequestID: fmt.Sprintf("req-%d", i), Row: 1, Value: "safe", Time: t0},
				}
				n, err := stores[w%2].WriteLabels(ctx, labels)
				if err != nil {
					t.Error(err)
					return
				}
				counted.Add(int64(n[0] + n[1]))
			}
		}()
	}
	wg.Wait()
	if got := counted.Load(); got != 100 {
		t.Fatalf("rows counted newly labelled across replicas = %d, want 100", got)
	}
}

// TestOpenStorePostgresDown: a database that does not answer at start does
// not stop the replica: the store connects when the database comes, and
// until then fails with ErrNotConnected, so that the Log spools. A bad URL
// and a database that refuses the connection still fail at once.
func TestOpenStorePostgresDown(t *testing.T) {
	pg := testenv.StartPostgres(t)
	ctx := context.Background()
	pg.Stop()
	s, spool, err := predlog.OpenStore(ctx, predlog.StoreConfig{Store: pg.DSN(), DataDir: t.TempDir()})
	if err != nil {
		t.Fatalf("OpenStore with the database down: %v", err)
	}
	defer s.Close()
	opts := predlog.DefaultOptions()
	opts.Spool = spool
	opts.ReplayInterval = 100 * time.Millisecond
	opts.Retries = 1
	l, reg := newLog(t, s, opts)
	l.Append(request("while-down", 2))
	waitFor(t, "the records spooled", func() bool { return metricValue(t, reg, "model_prediction_log_spooled_total")() == 2 })
	if _, err := s.Lookup(ctx, "while-down"); !errors.Is(err, predlog.ErrNotConnected) {
		t.Fatalf("Lookup before connecting = %v, want ErrNotConnected", err)
	}
	pg.Start()
	waitFor(t, "the spool replayed once connected", func() bool {
		ps, err := s.Lookup(ctx, "while-down")
		return err == nil && len(ps) == 2
	})

	for _, dsn := range []string{"postgres://x:y@127.0.0.1:%zz/db", strings.Replace(pg.DSN(), "/postgres?", "/nope?", 1)} {
		if s, _, err := predlog.OpenStore(ctx, predlog.StoreConfig{Store: dsn, DataDir: t.TempDir()}); err == nil {
			s.Close()
			t.Errorf("OpenStore(%s) succeeded; want an error at once", dsn)
		}
	}
}
