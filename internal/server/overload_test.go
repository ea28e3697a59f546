package server

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/modelwatch/modelwatch/internal/batcher"
	"github.com/modelwatch/modelwatch/internal/model"
	"github.com/modelwatch/modelwatch/internal/model/modeltest"
)

// gate is a model that holds every request until released.
func gate(name string, entered chan<- struct{}, release <-chan struct{}) *modeltest.Model {
	return &modeltest.Model{Meta: model.Metadata{Name: name, Version: "1", Features: []string{"x", "y"}, Classes: []string{"no", "yes"}, Outputs: 2},
		PredictFunc: func(_ context.Context, in model.Batch) (model.Result, error) {
			entered <- struct{}{}
			<-release
			out := model.Result{Rows: in.Rows, Cols: 2, Values: make([]float64, 2*in.Rows)}
			for i := range in.Rows {
				out.Values[2*i+1] = 1
			}
			return out, nil
		}}
}

func TestInFlightLimit(t *testing.T) {
	entered, release := make(chan struct{}, 4), make(chan struct{})
	h := newHarness(t, func(o *Options) {
		o.MaxInFlight = 1
		g := gate("gated", entered, release)
		o.Models.Add(g)
		o.Metrics.ModelLoaded(g.Meta, 0)
	})
	done := make(chan int)
	go func() { done <- h.predict(`{"model_name": "gated", "inputs": [[1, 2]]}`).Code }()
	<-entered
	rec := h.predict(`{"inputs": [` + safeRow + `]}`)
	var e errorResponse
	json.Unmarshal(rec.Body.Bytes(), &e)
	if rec.Code != 503 || e.ErrorType != "overloaded" || rec.Header().Get("Retry-After") != "1" {
		t.Errorf("over the limit: %d %s, Retry-After %q", rec.Code, rec.Body, rec.Header().Get("Retry-After"))
	}
	close(release)
	if code := <-done; code != 200 {
		t.Errorf("the admitted request: %d", code)
	}
	if rec := h.predict(`{"inputs": [` + safeRow + `]}`); rec.Code != 200 {
		t.Errorf("after the slot freed: %d", rec.Code)
	}
	s := h.snapshot()
	if s[`model_prediction_errors_total{error_type="overloaded",model_name=""}`] != 1 || s[`http_requests_total{endpoint="/predict",method="POST",status="503"}`] != 1 {
		t.Errorf("overload not counted: %v", delta(map[string]float64{}, s))
	}
}

func TestBatchedModel(t *testing.T) {
	entered, release := make(chan struct{}, 64), make(chan struct{})
	var bm model.Model
	h := newHarness(t, func(o *Options) {
		g := gate("batched", entered, release)
		ser := o.Metrics.ModelLoaded(g.Meta, 0)
		bm = batcher.Wrap(g, batcher.Config{MaxBatchRows: 8, MaxDelay: 20 * time.Millisecond, QueueCapacity: 4, Workers: 1},
			batcher.Observers{QueueSize: o.Metrics.QueueSize.WithLabelValues("batched"), BatchSize: ser.BatchSize})
		o.Models.Add(bm)
	})
	defer bm.Close()
	// The first batch holds the worker; four more requests fill the queue;
	// the next one is refused with 429.
	var wg sync.WaitGroup
	codes := make(chan int, 8)
	send := func() {
		defer wg.Done()
		codes <- h.predict(`{"model_name": "batched", "inputs": [[1, 2]]}`).Code
	}
	wg.Add(1)
	go send()
	<-entered
	for range 4 {
		wg.Add(1)
		go send()
	}
	deadline := time.Now().Add(5 * time.Second)
	for h.snapshot()[`model_queue_size{model_name="batched"}`] < 4 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	rec := h.predict(`{"model_name": "batched", "inputs": [[1, 2]]}`)
	if rec.Code != 429 || rec.Header().Get("Retry-After") != "1" {
		t.Errorf("full queue: %d %s", rec.Code, rec.Body)
	}
	close(release)
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 200 {
			t.Errorf("a queued request got %d", c)
		}
	}
	s := h.snapshot()
	for k, v := range map[string]float64{
		`model_requests_total{model_name="batched",model_version="1",status="success"}`:            5,
		`model_batch_size_count{model_name="batched"}`:                                             2, // one of 1 row, one of the 4 queued
		`model_batch_size_sum{model_name="batched"}`:                                               5,
		`model_stage_duration_seconds_count{model_name="batched",model_version="1",stage="queue"}`: 5,
		`model_queue_size{model_name="batched"}`:                                                   0,
		`model_prediction_errors_total{error_type="overloaded",model_name="batched"}`:              1,
		`model_requests_total{model_name="batched",model_version="1",status="error"}`:              0,
	} {
		if s[k] != v {
			t.Errorf("%s = %v, want %v", k, s[k], v)
		}
	}
}
