// Package predlogtest holds a fake predlog.Store for tests of what sits in
// front of a store: a slow, failing or blocking one, which a real store
// cannot be made into on demand.
package predlogtest

import (
	"context"
	"time"

	"github.com/modelwatch/modelwatch/internal/predlog"
)

// Store is a predlog.Store whose methods call the function fields; a nil
// field succeeds and does nothing (Lookup then reports
// predlog.ErrNotFound).
type Store struct {
	WriteFunc       func(ctx context.Context, recs []predlog.Record) error
	LookupFunc      func(ctx context.Context, requestID string) ([]predlog.Prediction, error)
	WriteLabelsFunc func(ctx context.Context, labels []predlog.Label) ([]int, error)
	PruneFunc       func(ctx context.Context, now time.Time) (predlog.Pruned, error)
	CloseFunc       func() error
}

var _ predlog.Store = (*Store)(nil)

// Write calls WriteFunc.
func (s *Store) Write(ctx context.Context, recs []predlog.Record) error {
	if s.WriteFunc == nil {
		return nil
	}
	return s.WriteFunc(ctx, recs)
}

// Lookup calls LookupFunc.
func (s *Store) Lookup(ctx context.Context, requestID string) ([]predlog.Prediction, error) {
	if s.LookupFunc == nil {
		return nil, predlog.ErrNotFound
	}
	return s.LookupFunc(ctx, requestID)
}

// WriteLabels calls WriteLabelsFunc.
func (s *Store) WriteLabels(ctx context.Context, labels []predlog.Label) ([]int, error) {
	if s.WriteLabelsFunc == nil {
		return make([]int, len(labels)), nil
	}
	return s.WriteLabelsFunc(ctx, labels)
}

// Prune calls PruneFunc.
func (s *Store) Prune(ctx context.Context, now time.Time) (predlog.Pruned, error) {
	if s.PruneFunc == nil {
		return predlog.Pruned{}, nil
	}
	return s.PruneFunc(ctx, now)
}

// Close calls CloseFunc.
func (s *Store) Close() error {
	if s.CloseFunc == nil {
		return nil
	}
	return s.CloseFunc()
}
