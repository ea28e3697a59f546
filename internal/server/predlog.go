package server

import (
	"context"
	"errors"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/modelwatch/modelwatch/internal/feedback"
	"github.com/modelwatch/modelwatch/internal/model"
	"github.com/modelwatch/modelwatch/internal/predlog"
)

// logRows queues a successful request's rows for the prediction log: each
// row's input (from input, which appends it to dst), its class and its
// output. Requests outside the log's sample cost one hash.
func (s *Server) logRows(ctx context.Context, v *view, rows int, out *outcome, input func(dst []float64, row int) []float64) {
	l := s.opts.PredictionLog
	if l == nil {
		return
	}
	id := requestInfoFrom(ctx).id
	if !l.Admit(id, rows) {
		return
	}
	width := 0
	if rows > 0 && len(out.pred)%rows == 0 {
		width = len(out.pred) / rows
	}
	// One allocation holds every row's input and output: the log keeps
	// the slices until they are written.
	vals := make([]float64, 0, rows*(len(v.meta.Features)+width))
	recs := make([]predlog.Record, rows)
	now := s.opts.Now()
	for i := range recs {
		start := len(vals)
		vals = input(vals, i)
		in := vals[start:len(vals):len(vals)]
		start = len(vals)
		vals = append(vals, out.pred[i*width:(i+1)*width]...)
		r := predlog.Record{RequestID: id, Row: i, Time: now, Model: v.meta.Name, Version: v.meta.Version,
			Input: in, Output: vals[start:len(vals):len(vals)]}
		if out.class != nil {
			r.Class = v.meta.Classes[out.class[i]]
		}
		recs[i] = r
	}
	l.Append(recs)
}

// batchRow appends row i of a batch of rows to dst.
func batchRow(b model.Batch) func(dst []float64, i int) []float64 {
	return func(dst []float64, i int) []float64 { return append(dst, b.Values[i*b.Cols:(i+1)*b.Cols]...) }
}

// tensorRow appends row i of a tensor model's inputs to dst: each numeric
// input's elements of that row, in the order of the inputs (BYTES inputs
// are left out).
func tensorRow(inputs []model.Tensor, rows int) func(dst []float64, i int) []float64 {
	flat := make([][]float64, len(inputs))
	for j, t := range inputs {
		flat[j], _ = t.Float64s()
	}
	return func(dst []float64, i int) []float64 {
		for _, f := range flat {
			if n := len(f) / rows; n > 0 {
				dst = append(dst, f[i*n:(i+1)*n]...)
			}
		}
		return dst
	}
}

// logSyncTimeout bounds the wait for this replica's queued predictions to
// be written when a label arrives before its prediction is in the log.
const logSyncTimeout = 5 * time.Second

// maxLabelLen bounds a label written to the log for a model version whose
// classes are not known any more (unloaded), or for a regressor.
const maxLabelLen = 256

// joined is a label found beside its prediction in the log.
type joined struct {
	label   feedback.Label
	preds   []predlog.Prediction
	classes []string // the version's classes while it is loaded; nil otherwise
	live    bool     // the version is loaded: its metrics count the label
	known   bool     // the prediction is in the log and unlabelled
}

// feedbackThroughLog joins labels to predictions in the prediction log, so
// that a label reaches its prediction on any replica, after restarts, for
// as long as the log keeps it. Every label is checked before any is
// written; a row is counted by the replica whose write labelled it first,
// so labels sent twice, or to two replicas at once, count once.
func (s *Server) feedbackThroughLog(ctx context.Context, labels []feedback.Label) ([]feedback.Outcome, *apiError) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	defer cancel()
	js := make([]joined, len(labels))
	seen := make(map[string]bool, len(labels))
	for i, l := range labels {
		if seen[l.RequestID] {
			return nil, newError(errInvalidInput, "feedback %d: request %q is labelled twice", i, l.RequestID)
		}
		seen[l.RequestID] = true
		j, aerr := s.join(ctx, i, l)
		if aerr != nil {
			return nil, aerr
		}
		js[i] = j
	}
	newly, aerr := s.writeLabels(ctx, js)
	if aerr != nil {
		return nil, aerr
	}
	out := make([]feedback.Outcome, len(js))
	for i, j := range js {
		var n []int
		if j.known {
			n, newly = newly[:len(j.preds)], newly[len(j.preds):]
		}
		out[i] = s.count(j, n)
	}
	return out, nil
}

// join finds label i's prediction in the log and checks the label against
// it; a prediction not logged, or already labelled, is not known.
func (s *Server) join(ctx context.Context, i int, l feedback.Label) (joined, *apiError) {
	j := joined{label: l}
	store := s.opts.PredictionLog.Store()
	preds, err := store.Lookup(ctx, l.RequestID)
	if errors.Is(err, predlog.ErrNotFound) && s.opts.Feedback != nil && s.opts.Feedback.Has(l.RequestID) {
		// Made here, and maybe still queued: wait for the queue.
		sctx, scancel := context.WithTimeout(ctx, logSyncTimeout)
		err = s.opts.PredictionLog.Sync(sctx)
		scancel()
		if err == nil {
			preds, err = store.Lookup(ctx, l.RequestID)
		}
	}
	switch {
	case errors.Is(err, predlog.ErrNotFound):
		return j, nil
	case err != nil:
		s.log.Error("prediction log lookup failed", "request_id", l.RequestID, "err", err)
		return j, newError(errUnavailable, "the prediction log cannot be read; nothing was labelled, try again")
	case slices.ContainsFunc(preds, predlog.Prediction.Labelled):
		return j, nil // already labelled: answered as unknown, as before the log
	}
	if len(l.Labels) != len(preds) {
		return j, newError(errInvalidInput, "feedback %d: the prediction has %d rows, the feedback %d labels", i, len(preds), len(l.Labels))
	}
	j.preds, j.known = preds, true
	if m, err := s.models.Resolve(preds[0].Model, preds[0].Version); err == nil {
		meta := m.Metadata()
		j.classes, j.live = meta.Classes, true
	}
	classifier := preds[0].Class != ""
	for _, lab := range l.Labels {
		switch {
		case classifier && j.live && !slices.Contains(j.classes, lab):
			return j, newError(errInvalidInput, "feedback %d: %q is not a class of model %s (classes: %v)", i, lab, preds[0].Model, j.classes)
		case !classifier && !finiteNumber(lab):
			return j, newError(errInvalidInput, "feedback %d: %q is not a number; model %s is a regressor", i, lab, preds[0].Model)
		case len(lab) > maxLabelLen:
			return j, newError(errInvalidInput, "feedback %d: a label is longer than %d bytes", i, maxLabelLen)
		}
	}
	return j, nil
}

// writeLabels writes the labels of the known predictions in one
// transaction, and returns for each of their rows, in order, whether this
// write labelled it.
func (s *Server) writeLabels(ctx context.Context, js []joined) ([]int, *apiError) {
	now := s.opts.Now()
	var write []predlog.Label
	for _, j := range js {
		if !j.known {
			continue
		}
		for r, lab := range j.label.Labels {
			write = append(write, predlog.Label{RequestID: j.label.RequestID, Row: j.preds[r].Row, Value: lab, Time: now})
		}
	}
	if len(write) == 0 {
		return nil, nil
	}
	newly, err := s.opts.PredictionLog.Store().WriteLabels(ctx, write)
	if err != nil {
		s.log.Error("prediction log label write failed", "labels", len(write), "err", err)
		return nil, newError(errUnavailable, "the prediction log cannot be written; nothing was labelled, try again")
	}
	return newly, nil
}

// count scores and counts the rows of one label that this replica's write
// labelled (newly, one entry a row), and answers it.
func (s *Server) count(j joined, newly []int) feedback.Outcome {
	id := j.label.RequestID
	if !j.known {
		return s.unknownLabel(id)
	}
	var predicted, labelled []string
	for r := range j.preds {
		if newly[r] > 0 {
			predicted = append(predicted, j.preds[r].Class)
			labelled = append(labelled, j.label.Labels[r])
		}
	}
	if s.opts.Feedback != nil {
		s.opts.Feedback.Drop(id)
	}
	if len(labelled) == 0 { // another replica labelled it first
		return s.unknownLabel(id)
	}
	p := j.preds[0]
	switch {
	case p.Class == "":
		// A regressor's label is kept in the log, the labelled data set;
		// accuracy is a classifier's.
		return feedback.Outcome{RequestID: id, Result: feedback.Recorded, Model: p.Model, Version: p.Version}
	case j.live && s.opts.Feedback != nil:
		return s.opts.Feedback.Score(id, p.Model, p.Version, j.classes, predicted, labelled)
	}
	// The version is not loaded any more: its series are gone and stay
	// gone; the label is in the log.
	return feedback.Tally(id, p.Model, p.Version, predicted, labelled)
}

// unknownLabel answers, and counts, a label whose prediction is not in the
// log or is labelled already.
func (s *Server) unknownLabel(id string) feedback.Outcome {
	if s.opts.Feedback != nil {
		s.opts.Feedback.CountUnknown()
	}
	return feedback.Outcome{RequestID: id, Result: feedback.UnknownRequest}
}

// finiteNumber reports whether a label is a finite decimal number.
func finiteNumber(s string) bool {
	x, err := strconv.ParseFloat(s, 64)
	return err == nil && !math.IsInf(x, 0) && !math.IsNaN(x)
}
