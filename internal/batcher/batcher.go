// Package batcher merges concurrent requests to one model into batches:
// requests wait in a bounded queue until a batch is full or the oldest has
// waited the maximum delay, run as one backend call, and are split back. It
// wraps a model.Model as a model.Model, so the server and the metrics see
// the same interface; a full queue answers model.ErrOverloaded at once.
package batcher

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelwatch/modelwatch/internal/model"
)

// Config says how one model batches.
type Config struct {
	// MaxBatchRows is the most rows in one executed batch (default 64).
	MaxBatchRows int
	// MaxDelay is the longest a request waits for others (default 1ms).
	MaxDelay time.Duration
	// QueueCapacity is the most requests waiting (default 1024); past it,
	// requests are refused with model.ErrOverloaded.
	QueueCapacity int
	// Workers is the number of batches run at once (default GOMAXPROCS).
	Workers int
}

// Observers receive what the batcher does; nil ones are skipped.
type Observers struct {
	// QueueSize is model_queue_size: requests waiting for a batch slot.
	QueueSize prometheus.Gauge
	// BatchSize is model_batch_size: rows per executed batch.
	BatchSize prometheus.Observer
}

// Model batches the requests of an inner model. It is a model.Model, and a
// model.TensorModel when the inner model is one.
type Model struct {
	inner  model.Model
	tensor model.TensorModel
	cfg    Config
	obs    Observers
	queue  chan *job
	wg     sync.WaitGroup
	closed atomic.Bool
}

var (
	_ model.Model       = (*Model)(nil)
	_ model.TensorModel = (*tensorModel)(nil)
)

// tensorModel is a Model over an inner TensorModel.
type tensorModel struct{ *Model }

type job struct {
	ctx      context.Context
	enqueued time.Time
	rows     int
	batch    model.Batch    // rows jobs
	inputs   []model.Tensor // tensor jobs (nil for rows jobs)
	done     chan result
}

type result struct {
	res     model.Result
	tensors []model.Tensor
	err     error
}

// Wrap returns m behind a batcher with cfg. The result is a
// model.TensorModel if m is one.
func Wrap(m model.Model, cfg Config, obs Observers) model.Model {
	if cfg.MaxBatchRows <= 0 {
		cfg.MaxBatchRows = 64
	}
	if cfg.MaxDelay <= 0 {
		cfg.MaxDelay = time.Millisecond
	}
	if cfg.QueueCapacity <= 0 {
		cfg.QueueCapacity = 1024
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	b := &Model{inner: m, cfg: cfg, obs: obs, queue: make(chan *job, cfg.QueueCapacity)}
	b.tensor, _ = m.(model.TensorModel)
	for range cfg.Workers {
		b.wg.Add(1)
		go b.work()
	}
	if b.tensor != nil {
		return &tensorModel{b}
	}
	return b
}

// Batched reports that the model batches requests; the server then leaves
// model_batch_size to the batcher.
func (b *Model) Batched() bool { return true }

// Metadata implements model.Model.
func (b *Model) Metadata() model.Metadata { return b.inner.Metadata() }

// Close stops the workers once the queue is empty, then closes the inner model.
func (b *Model) Close() error {
	if b.closed.CompareAndSwap(false, true) {
		close(b.queue)
		b.wg.Wait()
	}
	return b.inner.Close()
}

// Predict implements model.Model: it queues the rows and waits for their
// batch. It returns model.ErrOverloaded at once when the queue is full.
func (b *Model) Predict(ctx context.Context, in model.Batch) (model.Result, error) {
	if in.Rows < 0 || in.Cols < 0 || len(in.Values) != in.Rows*in.Cols {
		// Merged with other requests, such a batch would shift their rows.
		return model.Result{}, fmt.Errorf("%w: a batch of %d values for %d rows of %d", model.ErrInvalidInput, len(in.Values), in.Rows, in.Cols)
	}
	r, err := b.submit(ctx, &job{batch: in, rows: in.Rows})
	return r.res, err
}

// Infer implements model.TensorModel.
func (t *tensorModel) Infer(ctx context.Context, inputs []model.Tensor, outputs []string) ([]model.Tensor, error) {
	rows := 0
	if len(inputs) > 0 && len(inputs[0].Shape) > 0 {
		rows = int(inputs[0].Shape[0])
	}
	r, err := t.submit(ctx, &job{inputs: inputs, rows: rows})
	if err != nil {
		return nil, err
	}
	return selectOutputs(r.tensors, outputs)
}

func (b *Model) submit(ctx context.Context, j *job) (result, error) {
	if b.closed.Load() {
		return result{}, fmt.Errorf("%w: the model is closing", model.ErrOverloaded)
	}
	j.ctx, j.enqueued, j.done = ctx, time.Now(), make(chan result, 1)
	if b.obs.QueueSize != nil {
		b.obs.QueueSize.Inc() // before the send, so a fast worker never takes it below 0
	}
	select {
	case b.queue <- j:
	default:
		b.dequeued()
		return result{}, model.ErrOverloaded
	}
	select {
	case r := <-j.done:
		return r, r.err
	case <-ctx.Done():
		// The worker sees the context ended and skips or ignores the job.
		return result{}, ctx.Err()
	}
}

// work collects batches from the queue and runs them.
func (b *Model) work() {
	defer b.wg.Done()
	var carry *job
	for {
		first := carry
		carry = nil
		if first == nil {
			var ok bool
			if first, ok = <-b.queue; !ok {
				return
			}
			b.dequeued()
		}
		jobs := []*job{first}
		rows := first.rows
		timer := time.NewTimer(b.cfg.MaxDelay - time.Since(first.enqueued))
	collect:
		for rows < b.cfg.MaxBatchRows {
			select {
			case j, ok := <-b.queue:
				if !ok {
					break collect
				}
				b.dequeued()
				if rows+j.rows > b.cfg.MaxBatchRows || (j.inputs == nil) != (first.inputs == nil) || !sameShape(first, j) {
					carry = j
					break collect
				}
				jobs = append(jobs, j)
				rows += j.rows
			case <-timer.C:
				break collect
			}
		}
		timer.Stop()
		b.run(jobs)
	}
}

func (b *Model) dequeued() {
	if b.obs.QueueSize != nil {
		b.obs.QueueSize.Dec()
	}
}

// sameShape reports whether two tensor jobs can share a batch: the same
// inputs with the same element types and non-batch dimensions.
func sameShape(a, c *job) bool {
	if a.inputs == nil {
		return a.batch.Cols == c.batch.Cols
	}
	if len(a.inputs) != len(c.inputs) {
		return false
	}
	for i := range a.inputs {
		x, y := a.inputs[i], c.inputs[i]
		if x.Name != y.Name || x.DataType != y.DataType || len(x.Shape) != len(y.Shape) || !slices.Equal(x.Shape[1:], y.Shape[1:]) {
			return false
		}
	}
	return true
}

// run executes one batch and answers its jobs.
func (b *Model) run(jobs []*job) {
	start := time.Now()
	live := jobs[:0]
	var deadline time.Time
	for _, j := range jobs {
		if j.ctx.Err() != nil {
			continue // its request has gone; the caller answered it
		}
		if t := model.TimingFrom(j.ctx); t != nil {
			t.Queue = start.Sub(j.enqueued)
		}
		if d, ok := j.ctx.Deadline(); ok && d.After(deadline) {
			deadline = d
		}
		live = append(live, j)
	}
	if len(live) == 0 {
		return
	}
	ctx := context.Background()
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	rows := 0
	for _, j := range live {
		rows += j.rows
	}
	if b.obs.BatchSize != nil {
		b.obs.BatchSize.Observe(float64(rows))
	}
	if live[0].inputs == nil {
		b.runRows(ctx, live, rows)
	} else {
		b.runTensors(ctx, live, rows)
	}
}

func (b *Model) runRows(ctx context.Context, jobs []*job, rows int) {
	cols := jobs[0].batch.Cols
	in := model.Batch{Rows: rows, Cols: cols, Values: make([]float64, 0, rows*cols)}
	for _, j := range jobs {
		in.Values = append(in.Values, j.batch.Values...)
	}
	res, err := model.SafePredict(ctx, b.inner, in)
	off := 0
	for _, j := range jobs {
		if err != nil {
			j.done <- result{err: err}
			continue
		}
		n := j.rows * res.Cols
		j.done <- result{res: model.Result{Rows: j.rows, Cols: res.Cols, Values: res.Values[off : off+n : off+n]}}
		off += n
	}
}

func (b *Model) runTensors(ctx context.Context, jobs []*job, rows int) {
	inputs := make([]model.Tensor, len(jobs[0].inputs))
	for i, t := range jobs[0].inputs {
		parts := make([]model.Tensor, len(jobs))
		for k, j := range jobs {
			parts[k] = j.inputs[i]
		}
		inputs[i] = concat(t, parts, rows)
	}
	outs, err := model.SafeInfer(ctx, b.tensor, inputs, nil)
	if err == nil {
		for _, o := range outs {
			if len(o.Shape) == 0 || int(o.Shape[0]) != rows {
				err = fmt.Errorf("output %s has shape %v for a batch of %d rows; it cannot be split", o.Name, o.Shape, rows)
			}
		}
	}
	off := 0
	for _, j := range jobs {
		if err != nil {
			j.done <- result{err: err}
			continue
		}
		split := make([]model.Tensor, len(outs))
		for i, o := range outs {
			split[i] = slice(o, off, off+j.rows)
		}
		j.done <- result{tensors: split}
		off += j.rows
	}
}

// concat joins tensors along their first dimension.
func concat(like model.Tensor, parts []model.Tensor, rows int) model.Tensor {
	out := model.Tensor{Name: like.Name, DataType: like.DataType, Shape: slices.Clone(like.Shape)}
	out.Shape[0] = int64(rows)
	switch like.Data.(type) {
	case []float32:
		out.Data = join[float32](parts)
	case []float64:
		out.Data = join[float64](parts)
	case []int64:
		out.Data = join[int64](parts)
	case []int32:
		out.Data = join[int32](parts)
	case []bool:
		out.Data = join[bool](parts)
	}
	return out
}

func join[T any](parts []model.Tensor) []T {
	var out []T
	for _, p := range parts {
		out = append(out, p.Data.([]T)...)
	}
	return out
}

// slice returns rows [from, to) of a tensor.
func slice(t model.Tensor, from, to int) model.Tensor {
	per := 1
	for _, d := range t.Shape[1:] {
		per *= int(d)
	}
	out := model.Tensor{Name: t.Name, DataType: t.DataType, Shape: slices.Clone(t.Shape)}
	out.Shape[0] = int64(to - from)
	switch d := t.Data.(type) {
	case []float32:
		out.Data = d[from*per : to*per : to*per]
	case []float64:
		out.Data = d[from*per : to*per : to*per]
	case []int64:
		out.Data = d[from*per : to*per : to*per]
	case []int32:
		out.Data = d[from*per : to*per : to*per]
	case []bool:
		out.Data = d[from*per : to*per : to*per]
	case []string:
		out.Data = d[from*per : to*per : to*per]
	}
	return out
}

func selectOutputs(ts []model.Tensor, names []string) ([]model.Tensor, error) {
	if len(names) == 0 {
		return ts, nil
	}
	var out []model.Tensor
	for _, n := range names {
		i := slices.IndexFunc(ts, func(t model.Tensor) bool { return t.Name == n })
		if i < 0 {
			return nil, fmt.Errorf("%w: the model has no output %s", model.ErrInvalidInput, n)
		}
		out = append(out, ts[i])
	}
	return out, nil
}
