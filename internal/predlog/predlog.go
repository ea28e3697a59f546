package predlog

import (
	"context"
	"errors"
	"time"
)

// Record is one row of one prediction.
type Record struct {
	// RequestID identifies the request; with Row it is the record's key.
	RequestID string
	// Row is the row's index within the request's batch, from 0.
	Row int
	// Time is when the prediction was made. Stores keep it to the
	// microsecond.
	Time time.Time
	// Model and Version name the model version that predicted.
	Model, Version string
	// Input is the row's features, in the model's feature order.
	Input []float64
	// Class is the predicted class's name for a classifier, empty for a
	// regressor.
	Class string
	// Output is the class probabilities for a classifier (in the model's
	// class order) or the predicted value(s) for a regressor.
	Output []float64
}

// AllRows, as a Label's Row, labels every row of the request.
const AllRows = -1

// Label is the true outcome of one row of a prediction (or of all of them),
// received after the prediction was made.
type Label struct {
	RequestID string
	// Row is the row labelled, or AllRows.
	Row int
	// Value is the true label: a class name for a classifier, the true value
	// written as text for a regressor.
	Value string
	// Time is when the label was received.
	Time time.Time
}

// Prediction is a logged row as Lookup returns it: what a label is scored
// against.
type Prediction struct {
	Row            int
	Time           time.Time
	Model, Version string
	// Class is the predicted class's name, empty for a regressor.
	Class string
	// Label is the row's label and LabelTime when it was received; both
	// are zero until the row is labelled.
	Label     string
	LabelTime time.Time
}

// Labelled reports whether the row has a label.
func (p Prediction) Labelled() bool { return !p.LabelTime.IsZero() }

// Store is a durable prediction log. Each backend implements it; all methods
// are safe for concurrent use.
type Store interface {
	// Write stores records. It is idempotent on (RequestID, Row): a record
	// written again, as an at-least-once retry does, is stored once and the
	// first copy kept. On error nothing or all of recs may have been
	// stored, never a part the caller cannot retry.
	Write(ctx context.Context, recs []Record) error
	// Lookup returns the logged rows of a request ordered by row, or
	// ErrNotFound when none is logged.
	Lookup(ctx context.Context, requestID string) ([]Prediction, error)
	// WriteLabels writes labels beside their predictions, all or none, and
	// returns, for each label, how many rows it newly labelled (0 or 1; up
	// to the request's rows for AllRows). A row keeps its first label:
	// labelling it again changes nothing and is not counted, so that when
	// replicas label one row at once, exactly one of them counts it. A label
	// for a row that is not logged changes nothing.
	WriteLabels(ctx context.Context, labels []Label) ([]int, error)
	// Prune deletes what the store must no longer keep at time now (records
	// past the retention; for a bounded store, the oldest records past its
	// size bound) and reports how many records it deleted, by reason.
	Prune(ctx context.Context, now time.Time) (Pruned, error)
	// Close releases the store.
	Close() error
}

// Pruned counts the records Prune deleted.
type Pruned struct {
	// Retention is the records older than the retention.
	Retention int64
	// Size is the oldest records deleted to bring the store under its size
	// bound.
	Size int64
}

// ErrNotFound is returned by Lookup when the request has no logged row.
var ErrNotFound = errors.New("prediction not found in the log")

// ErrRejected marks a Write error that retrying cannot cure: the store
// refused the batch's data (a text with a NUL byte, say). The Log drops
// such a batch (reason rejected) rather than retry or spool it.
var ErrRejected = errors.New("prediction log store rejected the records")

// DefaultRetention is how long records are kept unless configured.
const DefaultRetention = 30 * 24 * time.Hour

// tsMicros returns t as microseconds since the Unix epoch, the precision
// every store keeps.
func tsMicros(t time.Time) int64 { return t.UnixMicro() }
