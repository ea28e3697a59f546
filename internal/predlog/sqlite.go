package predlog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the database/sql driver "sqlite", pure Go
)

// SQLiteFileName is the name of the embedded store's file in the data
// directory.
const SQLiteFileName = "predictions.db"

// SQLiteOptions configures the embedded store. Zero values take the
// defaults noted.
type SQLiteOptions struct {
	// Retention is how long records are kept (default DefaultRetention).
	Retention time.Duration
	// MaxBytes bounds the database file: past it Prune deletes the oldest
	// records until it is under nine tenths of the bound. Zero means no
	// bound.
	MaxBytes int64
}

// SQLite is the embedded store: one SQLite file (written through
// modernc.org/sqlite, pure Go) in WAL mode, so that readers (Lookup, a
// person with the sqlite3 tool) do not wait for the writer. The file uses
// incremental auto-vacuum, so that what Prune deletes gives the space back
// to the file system.
//
// Request ids are random, so each batch dirties pages all over the
// request_id index. The write-ahead log is checkpointed every 16384 pages
// (64 MiB) rather than SQLite's 1000: a checkpoint copies each page once
// however many batches changed it, and syncs the file once. On a 2-core
// machine with a file of 400,000 records this took batches of 1000 from
// 3,200 to 11,600 rows/s, and batches of 10,000 to 31,000 rows/s
// (BenchmarkSQLiteWrite).
type SQLite struct {
	path string
	opts SQLiteOptions
	w    *sql.DB // one connection: SQLite has one writer
	r    *sql.DB
	// insertFull is the INSERT of sqliteRowsPerInsert records.
	insertFull string
}

var _ Store = (*SQLite)(nil)

// OpenSQLite opens the store in the file at path, creating the file, its
// directory and its schema if needed, and migrating an older schema.
func OpenSQLite(ctx context.Context, path string, opts SQLiteOptions) (*SQLite, error) {
	if opts.Retention <= 0 {
		opts.Retention = DefaultRetention
	}
	if opts.MaxBytes < 0 {
		return nil, fmt.Errorf("prediction log size bound %d is negative", opts.MaxBytes)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("prediction log: %w", err)
	}
	dsn := func(extra string) string {
		return "file:" + (&url.URL{Path: path}).EscapedPath() +
			"?_busy_timeout=10000&_auto_vacuum=incremental&_journal_mode=wal&_synchronous=normal&_pragma=wal_autocheckpoint(16384)&_pragma=temp_store(memory)" + extra
	}
	w, err := sql.Open("sqlite", dsn("&_txlock=immediate"))
	if err != nil {
		return nil, fmt.Errorf("prediction log %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetConnMaxIdleTime(0)
	s := &SQLite{path: path, opts: opts, w: w, insertFull: sqliteInsert(sqliteRowsPerInsert)}
	if err := s.migrate(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("prediction log %s: %w", path, err)
	}
	r, err := sql.Open("sqlite", dsn("&_query_only=1"))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("prediction log %s: %w", path, err)
	}
	r.SetMaxOpenConns(4)
	s.r = r
	return s, nil
}

func (s *SQLite) migrate(ctx context.Context) error {
	ms, err := migrations("sqlite")
	if err != nil {
		return err
	}
	tx, err := s.w.BeginTx(ctx, nil) // BEGIN IMMEDIATE: one migrator at a time
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at_us INTEGER NOT NULL)`); err != nil {
		return err
	}
	for _, m := range ms {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM schema_migrations WHERE version = ?`, m.version).Scan(&one)
		if err == nil {
			continue
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return fmt.Errorf("migration %s: %w", m.name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at_us) VALUES (?, ?, ?)`,
			m.version, m.name, time.Now().UnixMicro()); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// Path returns the database file's path.
func (s *SQLite) Path() string { return s.path }

// sqliteRowsPerInsert is the rows one INSERT statement writes: a
// statement per row costs the driver's round trip per row, and 64 rows of 8
// parameters stay far under SQLite's limit of 32766 parameters.
const sqliteRowsPerInsert = 64

// sqliteInsert returns the statement writing rows records; it keeps the
// first copy of a record written twice.
func sqliteInsert(rows int) string {
	var sb strings.Builder
	sb.WriteString(`INSERT INTO predictions (request_id, row_index, predicted_at_us, model_name, model_version,
		inputs, predicted_class, outputs) VALUES `)
	for i := range rows {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString("(?,?,?,?,?,?,?,?)")
	}
	sb.WriteString(` ON CONFLICT (request_id, row_index) DO NOTHING`)
	return sb.String()
}

// Write stores records in one transaction.
func (s *SQLite) Write(ctx context.Context, recs []Record) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("prediction log write: %w", err)
	}
	defer tx.Rollback()
	var full *sql.Stmt
	if len(recs) >= sqliteRowsPerInsert {
		if full, err = tx.PrepareContext(ctx, s.insertFull); err != nil {
			return fmt.Errorf("prediction log write: %w", err)
		}
		defer full.Close()
	}
	args := make([]any, 0, 8*sqliteRowsPerInsert)
	var buf []byte
	for len(recs) > 0 {
		n := min(len(recs), sqliteRowsPerInsert)
		args = args[:0]
		for i := range recs[:n] {
			r := &recs[i]
			buf = appendJSONFloats(buf[:0], r.Input)
			in := string(buf)
			buf = appendJSONFloats(buf[:0], r.Output)
			var class any
			if r.Class != "" {
				class = r.Class
			}
			args = append(args, r.RequestID, r.Row, tsMicros(r.Time), r.Model, r.Version, in, class, string(buf))
		}
		if n == sqliteRowsPerInsert {
			_, err = full.ExecContext(ctx, args...)
		} else {
			_, err = tx.ExecContext(ctx, sqliteInsert(n), args...)
		}
		if err != nil {
			return fmt.Errorf("prediction log write: %w", err)
		}
		recs = recs[n:]
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("prediction log write: %w", err)
	}
	return nil
}

// appendJSONFloats appends vs as a JSON array; a NaN or an infinity, which
// JSON cannot write, becomes null.
func appendJSONFloats(b []byte, vs []float64) []byte {
	b = append(b, '[')
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			b = append(b, "null"...)
			continue
		}
		b = strconv.AppendFloat(b, v, 'g', -1, 64)
	}
	return append(b, ']')
}

// Lookup returns the logged rows of a request, or ErrNotFound.
func (s *SQLite) Lookup(ctx context.Context, requestID string) ([]Prediction, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT row_index, predicted_at_us, model_name, model_version,
		predicted_class, label, labelled_at_us FROM predictions WHERE request_id = ? ORDER BY row_index`, requestID)
	if err != nil {
		return nil, fmt.Errorf("prediction log lookup: %w", err)
	}
	defer rows.Close()
	var ps []Prediction
	for rows.Next() {
		var p Prediction
		var at int64
		var class, label sql.NullString
		var labelAt sql.NullInt64
		if err := rows.Scan(&p.Row, &at, &p.Model, &p.Version, &class, &label, &labelAt); err != nil {
			return nil, fmt.Errorf("prediction log lookup: %w", err)
		}
		p.Time = time.UnixMicro(at).UTC()
		p.Class = class.String
		if labelAt.Valid {
			p.Label = label.String
			p.LabelTime = time.UnixMicro(labelAt.Int64).UTC()
		}
		ps = append(ps, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("prediction log lookup: %w", err)
	}
	if len(ps) == 0 {
		return nil, ErrNotFound
	}
	return ps, nil
}

// WriteLabels writes labels beside their predictions in one transaction.
func (s *SQLite) WriteLabels(ctx context.Context, labels []Label) ([]int, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("prediction log label: %w", err)
	}
	defer tx.Rollback()
	n := make([]int, len(labels))
	for i, l := range labels {
		var res sql.Result
		if l.Row == AllRows {
			res, err = tx.ExecContext(ctx, `UPDATE predictions SET label = ?, labelled_at_us = ?
				WHERE request_id = ? AND labelled_at_us IS NULL`, l.Value, tsMicros(l.Time), l.RequestID)
		} else {
			res, err = tx.ExecContext(ctx, `UPDATE predictions SET label = ?, labelled_at_us = ?
				WHERE request_id = ? AND row_index = ? AND labelled_at_us IS NULL`, l.Value, tsMicros(l.Time), l.RequestID, l.Row)
		}
		if err != nil {
			return nil, fmt.Errorf("prediction log label: %w", err)
		}
		k, err := res.RowsAffected()
		if err != nil {
			return nil, fmt.Errorf("prediction log label: %w", err)
		}
		n[i] = int(k)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("prediction log label: %w", err)
	}
	return n, nil
}

// pruneChunk is the most records one delete transaction removes, so that a
// large prune lets writes in between.
const pruneChunk = 10000

// Prune deletes the records older than the retention, then, while the file
// is over its size bound, the oldest records, until it is under nine tenths
// of the bound, and gives the freed pages back to the file system.
func (s *SQLite) Prune(ctx context.Context, now time.Time) (Pruned, error) {
	var p Pruned
	cutoff := tsMicros(now.Add(-s.opts.Retention))
	for {
		res, err := s.w.ExecContext(ctx, `DELETE FROM predictions WHERE rowid IN
			(SELECT rowid FROM predictions WHERE predicted_at_us < ? LIMIT ?)`, cutoff, pruneChunk)
		if err != nil {
			return p, fmt.Errorf("prediction log prune: %w", err)
		}
		k, _ := res.RowsAffected()
		p.Retention += k
		if k < pruneChunk {
			break
		}
	}
	if err := s.vacuum(ctx); err != nil {
		return p, err
	}
	if s.opts.MaxBytes == 0 {
		return p, s.checkpoint(ctx)
	}
	target := s.opts.MaxBytes / 10 * 9
	for {
		size, err := s.Size(ctx)
		if err != nil {
			return p, err
		}
		if size <= s.opts.MaxBytes && (p.Size == 0 || size <= target) {
			break
		}
		var count int64
		if err := s.w.QueryRowContext(ctx, `SELECT count(*) FROM predictions`).Scan(&count); err != nil {
			return p, fmt.Errorf("prediction log prune: %w", err)
		}
		if count == 0 {
			break
		}
		// Records take about size/count bytes each; deleting that share
		// of them, at least one, and measuring again converges in a few
		// rounds even though index pages do not empty in record order.
		k := min(max((size-target)*count/size, 1), pruneChunk)
		res, err := s.w.ExecContext(ctx, `DELETE FROM predictions WHERE rowid IN
			(SELECT rowid FROM predictions ORDER BY predicted_at_us, rowid LIMIT ?)`, k)
		if err != nil {
			return p, fmt.Errorf("prediction log prune: %w", err)
		}
		k, _ = res.RowsAffected()
		p.Size += k
		if err := s.vacuum(ctx); err != nil {
			return p, err
		}
	}
	return p, s.checkpoint(ctx)
}

func (s *SQLite) vacuum(ctx context.Context) error {
	if _, err := s.w.ExecContext(ctx, `PRAGMA incremental_vacuum`); err != nil {
		return fmt.Errorf("prediction log prune: %w", err)
	}
	return nil
}

// checkpoint copies the write-ahead log into the database file and empties
// it, when no reader holds it.
func (s *SQLite) checkpoint(ctx context.Context) error {
	if _, err := s.w.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		return fmt.Errorf("prediction log checkpoint: %w", err)
	}
	return nil
}

// Size returns the size of the database, in bytes: its pages in use and
// free (the write-ahead log aside).
func (s *SQLite) Size(ctx context.Context) (int64, error) {
	var pages, pageSize int64
	if err := s.w.QueryRowContext(ctx, `PRAGMA page_count`).Scan(&pages); err != nil {
		return 0, fmt.Errorf("prediction log size: %w", err)
	}
	if err := s.w.QueryRowContext(ctx, `PRAGMA page_size`).Scan(&pageSize); err != nil {
		return 0, fmt.Errorf("prediction log size: %w", err)
	}
	return pages * pageSize, nil
}

// Close closes the file.
func (s *SQLite) Close() error {
	return errors.Join(s.r.Close(), s.w.Close())
}
