package predlog_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/modelwatch/modelwatch/internal/predlog"
)

// t0 is the time the test records are made, to the microsecond the stores
// keep.
var t0 = time.Date(2026, 11, 29, 12, 0, 0, 123456000, time.UTC)

// sample is two requests: a classifier's batch of two rows and a
// regressor's single row.
func sample() []predlog.Record {
	return []predlog.Record{
		{RequestID: "req-a", Row: 0, Time: t0, Model: "fraud_model", Version: "v1",
			Input: []float64{1.5, -2, 0.1}, Class: "fraud", Output: []float64{0.07, 0.93}},
		{RequestID: "req-a", Row: 1, Time: t0, Model: "fraud_model", Version: "v1",
			Input: []float64{0, 3.25, 1e-9}, Class: "safe", Output: []float64{0.8, 0.2}},
		{RequestID: "req-b", Row: 0, Time: t0.Add(time.Second), Model: "price", Version: "2",
			Input: []float64{42}, Output: []float64{1234.5}},
	}
}

func openSQLite(t *testing.T, path string, opts predlog.SQLiteOptions) *predlog.SQLite {
	t.Helper()
	s, err := predlog.OpenSQLite(context.Background(), path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// storeContract checks what every Store does with sample(): lookup, the
// first copy kept, labels joined once. It leaves req-a row 0 labelled
// "fraud" and req-b labelled "1200".
func storeContract(t *testing.T, writer, reader predlog.Store) {
	t.Helper()
	ctx := context.Background()
	recs := sample()
	if err := writer.Write(ctx, recs); err != nil {
		t.Fatal(err)
	}
	// An at-least-once retry, with a changed copy: the first stays.
	retry := sample()
	retry[0].Class = "safe"
	if err := writer.Write(ctx, retry); err != nil {
		t.Fatal(err)
	}
	got, err := reader.Lookup(ctx, "req-a")
	if err != nil {
		t.Fatal(err)
	}
	want := []predlog.Prediction{
		{Row: 0, Time: t0, Model: "fraud_model", Version: "v1", Class: "fraud"},
		{Row: 1, Time: t0, Model: "fraud_model", Version: "v1", Class: "safe"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Lookup(req-a) = %+v, want %+v", got, want)
	}
	if _, err := reader.Lookup(ctx, "never-logged"); !errors.Is(err, predlog.ErrNotFound) {
		t.Fatalf("Lookup(never-logged) error = %v, want ErrNotFound", err)
	}

	labelAt := t0.Add(72 * time.Hour)
	n, err := reader.WriteLabels(ctx, []predlog.Label{
		{RequestID: "req-a", Row: 0, Value: "fraud", Time: labelAt},
		{RequestID: "req-b", Row: predlog.AllRows, Value: "1200", Time: labelAt},
		{RequestID: "never-logged", Row: predlog.AllRows, Value: "safe", Time: labelAt},
	})
	if err != nil || !slices.Equal(n, []int{1, 1, 0}) {
		t.Fatalf("WriteLabels = %v, %v; want [1 1 0] rows labelled", n, err)
	}
	// Labelling again (another replica, a client's retry) changes nothing.
	n, err = writer.WriteLabels(ctx, []predlog.Label{
		{RequestID: "req-a", Row: predlog.AllRows, Value: "safe", Time: labelAt.Add(time.Hour)},
	})
	if err != nil || !slices.Equal(n, []int{1}) {
		t.Fatalf("second WriteLabels = %v, %v; want only req-a row 1 newly labelled", n, err)
	}
	got, err = writer.Lookup(ctx, "req-a")
	if err != nil {
		t.Fatal(err)
	}
	want[0].Label, want[0].LabelTime = "fraud", labelAt
	want[1].Label, want[1].LabelTime = "safe", labelAt.Add(time.Hour)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Lookup(req-a) after labels = %+v, want %+v", got, want)
	}
	got, err = writer.Lookup(ctx, "req-b")
	if err != nil {
		t.Fatal(err)
	}
	wantB := []predlog.Prediction{{Row: 0, Time: t0.Add(time.Second), Model: "price", Version: "2",
		Label: "1200", LabelTime: labelAt}}
	if !reflect.DeepEqual(got, wantB) {
		t.Fatalf("Lookup(req-b) = %+v, want %+v", got, wantB)
	}
}

func TestSQLiteStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", predlog.SQLiteFileName)
	s := openSQLite(t, path, predlog.SQLiteOptions{})
	storeContract(t, s, s)

	// What a person sees with the sqlite3 tool.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT request_id, row_index, predicted_at_us, model_name, model_version, inputs,
		coalesce(predicted_class, 'NULL'), outputs, coalesce(label, 'NULL') FROM predictions ORDER BY request_id, row_index`)
	if err != nil {
		t.Fatal(err)
	}
	var dump []string
	for rows.Next() {
		var id, model, version, in, class, out, label string
		var row int
		var at int64
		if err := rows.Scan(&id, &row, &at, &model, &version, &in, &class, &out, &label); err != nil {
			t.Fatal(err)
		}
		dump = append(dump, fmt.Sprintf("%s %d %d %s %s %s %s %s %s", id, row, at, model, version, in, class, out, label))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"req-a 0 1795953600123456 fraud_model v1 [1.5,-2,0.1] fraud [0.07,0.93] fraud",
		"req-a 1 1795953600123456 fraud_model v1 [0,3.25,1e-09] safe [0.8,0.2] safe",
		"req-b 0 1795953601123456 price 2 [42] NULL [1234.5] 1200",
	}
	if !reflect.DeepEqual(dump, want) {
		t.Fatalf("table holds\n%q\nwant\n%q", dump, want)
	}
	// The package doc's export query, at t0 + 3 days.
	var n int
	var first string
	if err := db.QueryRow(`SELECT count(*), min(inputs || ' ' || label) FROM predictions WHERE label IS NOT NULL
		AND predicted_at_us > (unixepoch('2026-12-02T12:00:00Z', '-7 days') * 1000000)`).Scan(&n, &first); err != nil ||
		n != 3 || first != "[0,3.25,1e-09] safe" {
		t.Fatalf("export query: %d rows from %q, %v", n, first, err)
	}
	var mode string
	if err := db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v; want wal", mode, err)
	}
}

func TestSQLiteSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), predlog.SQLiteFileName)
	s := openSQLite(t, path, predlog.SQLiteOptions{})
	if err := s.Write(ctx, sample()); err != nil {
		t.Fatal(err)
	}
	if n, err := s.WriteLabels(ctx, []predlog.Label{{RequestID: "req-a", Row: 1, Value: "safe", Time: t0}}); err != nil || !slices.Equal(n, []int{1}) {
		t.Fatalf("WriteLabels = %v, %v", n, err)
	}
	before, err := s.Lookup(ctx, "req-a")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openSQLite(t, path, predlog.SQLiteOptions{}) // migrations run again: a no-op
	after, err := s.Lookup(ctx, "req-a")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(before, after) {
		t.Fatalf("after reopening, Lookup = %+v, want %+v", after, before)
	}
	if n, err := s.WriteLabels(ctx, []predlog.Label{{RequestID: "req-a", Row: 0, Value: "fraud", Time: t0}}); err != nil || !slices.Equal(n, []int{1}) {
		t.Fatalf("WriteLabels after reopening = %v, %v", n, err)
	}
}

// records returns n one-row requests "r<i>", made a minute apart from
// start.
func records(n int, start time.Time) []predlog.Record {
	recs := make([]predlog.Record, n)
	for i := range recs {
		recs[i] = predlog.Record{RequestID: fmt.Sprintf("r%06d", i), Time: start.Add(time.Duration(i) * time.Minute),
			Model: "fraud_model", Version: "v1", Input: []float64{float64(i), 0.5, -1, 2, 3, 4, 5, 6},
			Class: "safe", Output: []float64{0.9, 0.1}}
	}
	return recs
}

// remaining returns the request ids left in the store, in order.
func remaining(t *testing.T, path string) []string {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT request_id FROM predictions ORDER BY request_id`)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

func TestSQLiteRetention(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), predlog.SQLiteFileName)
	s := openSQLite(t, path, predlog.SQLiteOptions{Retention: time.Hour})
	// 25,000 records a minute apart: 2.5 chunks of deletes.
	if err := s.Write(ctx, records(25000, t0)); err != nil {
		t.Fatal(err)
	}
	// At t0 + 24940 min + 1 h, records 0..24939 are older than an hour;
	// 24940 is exactly an hour old and stays.
	now := t0.Add(24940*time.Minute + time.Hour)
	p, err := s.Prune(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	if p != (predlog.Pruned{Retention: 24940}) {
		t.Fatalf("Prune = %+v, want 24940 by retention", p)
	}
	ids := remaining(t, path)
	if len(ids) != 60 || ids[0] != "r024940" || ids[59] != "r024999" {
		t.Fatalf("left %d records %v..., want r024940..r024999", len(ids), ids[:min(3, len(ids))])
	}
	p, err = s.Prune(ctx, now)
	if err != nil || p != (predlog.Pruned{}) {
		t.Fatalf("second Prune = %+v, %v; want nothing", p, err)
	}
}

func TestSQLiteSizeBound(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), predlog.SQLiteFileName)
	s := openSQLite(t, path, predlog.SQLiteOptions{})
	const n = 20000
	if err := s.Write(ctx, records(n, t0)); err != nil {
		t.Fatal(err)
	}
	full, err := s.Size(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := s.Prune(ctx, t0.Add(n*time.Minute)); err != nil || p != (predlog.Pruned{}) {
		t.Fatalf("Prune without a bound = %+v, %v; want nothing", p, err)
	}
	s.Close()

	bound := full / 2
	s = openSQLite(t, path, predlog.SQLiteOptions{MaxBytes: bound})
	p, err := s.Prune(ctx, t0.Add(n*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	size, err := s.Size(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if size > bound/10*9 {
		t.Fatalf("after Prune the file is %d bytes, over nine tenths of the bound %d", size, bound)
	}
	if p.Retention != 0 || p.Size < n/2 || p.Size > n*3/4 {
		t.Fatalf("Prune = %+v from %d records of %d bytes down to %d bytes; want about 55%% deleted by size",
			p, n, full, size)
	}
	// Exactly the oldest went.
	ids := remaining(t, path)
	if int64(len(ids)) != n-p.Size || ids[0] != fmt.Sprintf("r%06d", p.Size) || ids[len(ids)-1] != "r019999" {
		t.Fatalf("left %d records from %s, want the newest %d from r%06d", len(ids), ids[0], n-p.Size, p.Size)
	}
	// Under the bound, Prune leaves it be.
	if p, err := s.Prune(ctx, t0.Add(n*time.Minute)); err != nil || p != (predlog.Pruned{}) {
		t.Fatalf("second Prune = %+v, %v; want nothing", p, err)
	}
}
