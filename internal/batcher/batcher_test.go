package batcher

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/modelwatch/modelwatch/internal/model"
	"github.com/modelwatch/modelwatch/internal/model/modeltest"
)

// doubler answers each row with twice its first value, and counts its calls
// and the rows of each.
type doubler struct {
	mu      sync.Mutex
	calls   []int
	block   chan struct{}
	entered chan struct{} // if set, receives a value as each call starts
}

func (d *doubler) model() *modeltest.Model {
	return &modeltest.Model{
		Meta: model.Metadata{Name: "m", Version: "1", Features: []string{"x", "y"}, Outputs: 1},
		PredictFunc: func(_ context.Context, in model.Batch) (model.Result, error) {
			if d.entered != nil {
				d.entered <- struct{}{}
			}
			if d.block != nil {
				<-d.block
			}
			d.mu.Lock()
			d.calls = append(d.calls, in.Rows)
			d.mu.Unlock()
			out := model.Result{Rows: in.Rows, Cols: 1, Values: make([]float64, in.Rows)}
			for i := range in.Rows {
				out.Values[i] = 2 * in.Values[i*in.Cols]
			}
			return out, nil
		},
	}
}

func TestMergesAndSplits(t *testing.T) {
	d := &doubler{}
	queue := prometheus.NewGauge(prometheus.GaugeOpts{Name: "q", Help: "h"})
	sizes := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "b", Help: "h", Buckets: []float64{1, 8, 16, 32, 64}})
	m := Wrap(d.model(), Config{MaxBatchRows: 16, MaxDelay: 50 * time.Millisecond, Workers: 1}, Observers{QueueSize: queue, BatchSize: sizes})
	defer m.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rows := 1 + i%3
			in := model.Batch{Rows: rows, Cols: 2}
			for r := range rows {
				in.Values = append(in.Values, float64(1000*i+r), -1)
			}
			var timing model.Timing
			res, err := m.Predict(model.WithTiming(context.Background(), &timing), in)
			if err != nil {
				errs <- err
				return
			}
			for r := range rows {
				if res.Rows != rows || res.Values[r] != float64(2*(1000*i+r)) {
					errs <- fmt.Errorf("request %d got %v", i, res.Values)
					return
				}
			}
			if timing.Queue <= 0 {
				errs <- fmt.Errorf("request %d: no queue time reported", i)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	total := 0
	for _, n := range d.calls {
		if n > 16 {
			t.Errorf("a batch of %d rows, over the maximum of 16", n)
		}
		total += n
	}
	if total != 79 || len(d.calls) >= 40 {
		t.Errorf("%d rows in %d calls for 40 requests of 79 rows", total, len(d.calls))
	}
	if got := testutil.ToFloat64(queue); got != 0 {
		t.Errorf("queue size %v after the requests", got)
	}
	if n := testutil.CollectAndCount(sizes); n != 1 {
		t.Errorf("batch size histogram: %d", n)
	}
}

func TestOverloadedAndCancelled(t *testing.T) {
	d := &doubler{block: make(chan struct{}), entered: make(chan struct{}, 3)}
	m := Wrap(d.model(), Config{MaxBatchRows: 1, QueueCapacity: 2, Workers: 1}, Observers{})
	one := model.Batch{Rows: 1, Cols: 2, Values: []float64{1, 1}}
	results := make(chan error, 3)
	predict := func() { _, err := m.Predict(context.Background(), one); results <- err }
	// One running (blocked in the model, so nothing leaves the queue), two
	// queued: the next is refused at once.
	go predict()
	<-d.entered
	go predict()
	go predict()
	deadline := time.Now().Add(5 * time.Second)
	for len(m.(*Model).queue) < 2 {
		if time.Now().After(deadline) {
			close(d.block)
			t.Fatalf("%d requests queued after 5s, want 2", len(m.(*Model).queue))
		}
		time.Sleep(time.Millisecond)
	}
	// Bounded, so that a request wrongly queued fails the test instead of hanging it.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if _, err := m.Predict(ctx, one); !errors.Is(err, model.ErrOverloaded) {
		t.Errorf("full queue: %v", err)
	}
	cancel()
	close(d.block)
	for range 3 {
		if err := <-results; err != nil {
			t.Error(err)
		}
	}
	m.Close()
	if _, err := m.Predict(context.Background(), one); !errors.Is(err, model.ErrOverloaded) {
		t.Errorf("after Close: %v", err)
	}

	// A request whose context ends while queued returns at once.
	d2 := &doubler{block: make(chan struct{}), entered: make(chan struct{}, 2)}
	m2 := Wrap(d2.model(), Config{MaxBatchRows: 1, Workers: 1}, Observers{})
	go m2.Predict(context.Background(), one) // holds the only worker
	<-d2.entered
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := m2.Predict(ctx, one); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("cancelled while queued: %v", err)
	}
	close(d2.block)
	m2.Close()
	d2.mu.Lock()
	defer d2.mu.Unlock()
	if len(d2.calls) != 1 {
		t.Errorf("the worker ran %d batches; the cancelled request's must be skipped", len(d2.calls))
	}
}

func TestInconsistentBatchRefused(t *testing.T) {
	d := &doubler{}
	m := Wrap(d.model(), Config{MaxBatchRows: 8, Workers: 1}, Observers{})
	defer m.Close()
	for _, in := range []model.Batch{
		{Rows: 1, Cols: 2, Values: []float64{1, 2, 3, 4}},
		{Rows: 2, Cols: 2, Values: []float64{1, 2, 3}},
		{Rows: -1, Cols: -2, Values: []float64{1, 2}},
	} {
		if _, err := m.Predict(context.Background(), in); !errors.Is(err, model.ErrInvalidInput) {
			t.Errorf("%+v: %v", in, err)
		}
	}
	if len(d.calls) != 0 {
		t.Errorf("the model ran %d times", len(d.calls))
	}
}

func TestPanicReachesEveryRequest(t *testing.T) {
	var calls atomic.Int32
	inner := &modeltest.Model{Meta: model.Metadata{Features: []string{"x"}, Outputs: 1},
		PredictFunc: func(context.Context, model.Batch) (model.Result, error) { calls.Add(1); panic("boom") }}
	m := Wrap(inner, Config{MaxDelay: 30 * time.Millisecond, Workers: 1}, Observers{})
	defer m.Close()
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := m.Predict(context.Background(), model.Batch{Rows: 1, Cols: 1, Values: []float64{1}})
			var pe *model.PanicError
			if !errors.As(err, &pe) {
				t.Errorf("got %v, want the panic", err)
			}
		}()
	}
	wg.Wait()
}

func TestTensorBatches(t *testing.T) {
	var calls atomic.Int32
	inner := &modeltest.TensorModel{
		Model: modeltest.Model{Meta: model.Metadata{Name: "t"}},
		InferFunc: func(_ context.Context, ins []model.Tensor, _ []string) ([]model.Tensor, error) {
			calls.Add(1)
			a := ins[0].Data.([]float32) // [n, 2]
			c := ins[1].Data.([]int64)   // [n]
			n := len(c)
			sum := make([]float32, n)
			for i := range n {
				sum[i] = a[2*i] + a[2*i+1] + float32(c[i])
			}
			return []model.Tensor{
				{Name: "sum", DataType: model.FP32, Shape: []int64{int64(n)}, Data: sum},
				{Name: "c", DataType: model.INT64, Shape: []int64{int64(n)}, Data: c},
			}, nil
		},
	}
	m := Wrap(inner, Config{MaxDelay: 50 * time.Millisecond, Workers: 1}, Observers{}).(model.TensorModel)
	defer m.Close()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ins := []model.Tensor{
				{Name: "a", DataType: model.FP32, Shape: []int64{2, 2}, Data: []float32{float32(i), 1, float32(i), 2}},
				{Name: "c", DataType: model.INT64, Shape: []int64{2}, Data: []int64{int64(10 * i), 0}},
			}
			outs, err := m.Infer(context.Background(), ins, []string{"sum"})
			if err != nil {
				t.Error(err)
				return
			}
			got := outs[0].Data.([]float32)
			if len(outs) != 1 || outs[0].Shape[0] != 2 || got[0] != float32(11*i+1) || got[1] != float32(i+2) {
				t.Errorf("request %d: %+v", i, outs)
			}
		}()
	}
	wg.Wait()
	if c := calls.Load(); c >= 8 {
		t.Errorf("%d calls for 8 concurrent requests", c)
	}
}

// BenchmarkOverhead compares one-row requests from parallel clients to a
// cheap model, direct and through the batcher.
func BenchmarkOverhead(b *testing.B) {
	inner := (&doubler{}).model()
	one := model.Batch{Rows: 1, Cols: 2, Values: []float64{1, 2}}
	b.Run("direct", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				inner.Predict(context.Background(), one)
			}
		})
	})
	b.Run("batched", func(b *testing.B) {
		m := Wrap(inner, Config{MaxBatchRows: 64, MaxDelay: 50 * time.Microsecond, QueueCapacity: 4096}, Observers{})
		defer m.Close()
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := m.Predict(context.Background(), one); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}
