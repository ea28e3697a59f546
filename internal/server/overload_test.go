package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
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

// slowBody opens a connection that sends a request's headers announcing a
// body of length bytes, and only the first byte of it.
func slowBody(t *testing.T, addr, path string, length int) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{", path, length)
	return c
}

// TestSlowBodies: clients that announce large bodies and send little hold
// only what they send (4 KiB buffers, growing as bytes arrive), never an
// in-flight place, and together never more than MaxBodyMemory.
func TestSlowBodies(t *testing.T) {
	h := newHarness(t, func(o *Options) {
		o.MaxInFlight = 1
		o.MaxBodyBytes = 32 << 10
		o.MaxBodyMemory = 8 * 4 << 10 // eight slow bodies' first buffers
	})
	ts := httptest.NewServer(h.srv)
	t.Cleanup(ts.Close) // after the slow connections' own cleanups have closed them
	addr := strings.TrimPrefix(ts.URL, "http://")
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s (%d body bytes held)", what, h.srv.bodyBytes.Load())
			}
		}
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	post := func(path, body string) (int, string) {
		resp, err := client.Post(ts.URL+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for i := range 7 {
		slowBody(t, addr, []string{"/predict", "/v2/models/fraud_model/infer"}[i%2], 32<<10)
	}
	waitFor("seven slow bodies", func() bool { return h.srv.bodyBytes.Load() == 7*4<<10 })
	// The one in-flight place is free: a whole request gets it.
	if code, body := post("/predict", `{"inputs": [`+safeRow+`]}`); code != 200 {
		t.Errorf("a request beside seven slow bodies: %d %s", code, body)
	}
	// The eighth slow body takes the last of the memory; the next request
	// is refused at once, and counted as overload.
	slowBody(t, addr, "/predict", 32<<10)
	waitFor("eight slow bodies", func() bool { return h.srv.bodyBytes.Load() == 8*4<<10 })
	code, body := post("/predict", `{"inputs": [`+safeRow+`]}`)
	if code != 503 || !strings.Contains(body, `"error_type":"overloaded"`) || !strings.Contains(body, "limit of 32768 bytes of request bodies") {
		t.Errorf("over the body memory: %d %s", code, body)
	}
	if s := h.snapshot(); s[`model_prediction_errors_total{error_type="overloaded",model_name=""}`] != 1 {
		t.Errorf("overload not counted: %v", s)
	}
	// Closing the slow connections gives all of it back.
	ts.CloseClientConnections()
	waitFor("the memory back", func() bool { return h.srv.bodyBytes.Load() == 0 })
	if code, body := post("/predict", `{"inputs": [`+safeRow+`]}`); code != 200 {
		t.Errorf("after the slow clients left: %d %s", code, body)
	}
	waitFor("the last body released", func() bool { return h.srv.bodyBytes.Load() == 0 })
}

// TestBodyGrowsAsItArrives: a body sent whole in many pieces is read right,
// and an unannounced (chunked) body over the limit is refused.
func TestBodyGrowsAsItArrives(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.MaxBodyBytes = 1 << 20 })
	ts := httptest.NewServer(h.srv)
	defer ts.Close()
	// About 200 KiB: the buffer doubles from 4 KiB six times on the way.
	rows := strings.Repeat(safeRow+",", 7000) + safeRow
	big := `{"inputs": [` + rows + `]}`
	post := func(body io.Reader) (int, string) {
		req, _ := http.NewRequest("POST", ts.URL+"/predict", body)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, chunked := range []bool{false, true} {
		var rd io.Reader = strings.NewReader(big)
		if chunked {
			rd = io.MultiReader(rd) // no length: sent chunked
		}
		// 7001 rows: read whole, then refused for its rows, not its bytes.
		if code, b := post(rd); code != 413 || !strings.Contains(b, "the batch has 7001 rows, over the limit of 16") {
			t.Errorf("chunked %v: %d %.200s", chunked, code, b)
		}
	}
	over := strings.NewReader(`{"inputs": [` + strings.Repeat(safeRow+",", 40000) + safeRow + `]}`)
	if code, b := post(io.MultiReader(over)); code != 413 || !strings.Contains(b, "over the limit of 1048576 bytes") {
		t.Errorf("chunked body over the limit: %d %.200s", code, b)
	}
	if n := h.srv.bodyBytes.Load(); n != 0 {
		t.Errorf("%d body bytes still held", n)
	}
}
