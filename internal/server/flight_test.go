package server

import (
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// blockingGatherer counts its gatherings and holds each until released.
type blockingGatherer struct {
	reg     prometheus.Gatherer
	calls   atomic.Int32
	entered chan struct{}
	release chan struct{}
}

func (g *blockingGatherer) Gather() ([]*dto.MetricFamily, error) {
	g.calls.Add(1)
	g.entered <- struct{}{}
	<-g.release
	return g.reg.Gather()
}

func TestStatusRequestsShareOneGatheringAndAreBounded(t *testing.T) {
	g := &blockingGatherer{entered: make(chan struct{}, 8), release: make(chan struct{})}
	h := newHarness(t, func(o *Options) { o.Gatherer, o.MaxStatusRequests = g, 4 })
	g.reg = h.reg

	codes := make(chan int, 4)
	get := func() {
		rec := httptest.NewRecorder()
		h.srv.ServeHTTP(rec, httptest.NewRequest("GET", "/status.json", nil))
		codes <- rec.Code
	}
	go get()
	<-g.entered // the first request gathers
	for range 3 {
		go get()
	}
	// The three others wait for its result; a fifth is past the bound.
	deadline := time.Now().Add(5 * time.Second)
	for {
		h.srv.statusFlight.mu.Lock()
		waiting := h.srv.statusFlight.waiting
		h.srv.statusFlight.mu.Unlock()
		if waiting == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d status requests waiting, want 4", waiting)
		}
		time.Sleep(time.Millisecond)
	}
	rec := httptest.NewRecorder()
	h.srv.ServeHTTP(rec, httptest.NewRequest("GET", "/status.json", nil))
	if rec.Code != 503 || rec.Header().Get("Retry-After") != "1" {
		t.Errorf("a status request past the bound: %d %q %s", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
	close(g.release)
	for range 4 {
		if code := <-codes; code != 200 {
			t.Errorf("a shared status request: %d", code)
		}
	}
	if n := g.calls.Load(); n != 1 {
		t.Errorf("%d gatherings for 4 concurrent requests, want 1", n)
	}
	// The next request gathers anew.
	rec = httptest.NewRecorder()
	h.srv.ServeHTTP(rec, httptest.NewRequest("GET", "/status.json", nil))
	if rec.Code != 200 || g.calls.Load() != 2 {
		t.Errorf("a later request: %d, %d gatherings", rec.Code, g.calls.Load())
	}
	snap := h.snapshot()
	if snap[`http_requests_total{endpoint="/status.json",method="GET",status="200"}`] != 5 ||
		snap[`http_requests_total{endpoint="/status.json",method="GET",status="503"}`] != 1 {
		t.Errorf("status requests counted: %v", snap)
	}
}
