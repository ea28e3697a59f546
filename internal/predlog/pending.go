package predlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// ErrNotConnected is returned by a store whose database has not been
// reached yet.
var ErrNotConnected = errors.New("prediction log store not connected yet")

// pendingStore stands for a PostgreSQL store whose database could not be
// reached at start: a replica must start, and serve, while the database is
// down. It connects in the background, retrying with backoff; until then
// Write fails (the Log spools the records), and Lookup and WriteLabels fail
// (POST /feedback answers 503).
type pendingStore struct {
	mu     sync.Mutex
	store  *Postgres
	err    error // the last connection error
	cancel context.CancelFunc
	done   chan struct{}
}

var _ Store = (*pendingStore)(nil)

// openPostgresEventually opens the PostgreSQL store, or, when the database
// cannot be reached (no answer, connection refused; not a bad URL or a
// database that refuses the credentials), returns a store that keeps trying.
func openPostgresEventually(ctx context.Context, dsn string, opts PostgresOptions, logger *slog.Logger) (Store, error) {
	s, err := OpenPostgres(ctx, dsn, opts)
	if err == nil {
		return s, nil
	}
	if !unreachable(err) {
		return nil, err
	}
	logger.Warn("prediction log: PostgreSQL cannot be reached; serving, spooling predictions, and retrying", "err", err)
	bg, cancel := context.WithCancel(context.Background())
	p := &pendingStore{err: err, cancel: cancel, done: make(chan struct{})}
	go p.connect(bg, dsn, opts, logger)
	return p, nil
}

// unreachable reports whether err is the database not answering rather than
// refusing: only then is waiting for it worth it.
func unreachable(err error) bool {
	var pgErr *pgconn.PgError
	var parseErr *pgconn.ParseConfigError
	return !errors.As(err, &pgErr) && !errors.As(err, &parseErr)
}

func (p *pendingStore) connect(ctx context.Context, dsn string, opts PostgresOptions, logger *slog.Logger) {
	defer close(p.done)
	backoff := time.Second
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		s, err := OpenPostgres(tctx, dsn, opts)
		cancel()
		p.mu.Lock()
		if err == nil {
			p.store, p.err = s, nil
			p.mu.Unlock()
			logger.Info("prediction log: connected to PostgreSQL")
			return
		}
		p.err = err
		p.mu.Unlock()
		backoff = min(2*backoff, 30*time.Second)
	}
}

func (p *pendingStore) get() (*Postgres, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.store == nil {
		return nil, fmt.Errorf("%w: %v", ErrNotConnected, p.err)
	}
	return p.store, nil
}

// Write implements Store.
func (p *pendingStore) Write(ctx context.Context, recs []Record) error {
	s, err := p.get()
	if err != nil {
		return err
	}
	return s.Write(ctx, recs)
}

// Lookup implements Store.
func (p *pendingStore) Lookup(ctx context.Context, requestID string) ([]Prediction, error) {
	s, err := p.get()
	if err != nil {
		return nil, err
	}
	return s.Lookup(ctx, requestID)
}

// WriteLabels implements Store.
func (p *pendingStore) WriteLabels(ctx context.Context, labels []Label) ([]int, error) {
	s, err := p.get()
	if err != nil {
		return nil, err
	}
	return s.WriteLabels(ctx, labels)
}

// Prune implements Store.
func (p *pendingStore) Prune(ctx context.Context, now time.Time) (Pruned, error) {
	s, err := p.get()
	if err != nil {
		return Pruned{}, err
	}
	return s.Prune(ctx, now)
}

// Close stops connecting and closes the store if it connected.
func (p *pendingStore) Close() error {
	p.cancel()
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.store != nil {
		return p.store.Close()
	}
	return nil
}
