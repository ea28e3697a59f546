package main

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// blockingCollector counts its collections and holds each one until release
// is closed, so that a test can pile scrapes up behind one gathering.
type blockingCollector struct {
	desc     *prometheus.Desc
	collects atomic.Int64
	started  chan struct{}
	release  chan struct{}
}

func (c *blockingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *blockingCollector) Collect(ch chan<- prometheus.Metric) {
	if c.collects.Add(1) == 1 {
		close(c.started)
	}
	<-c.release
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, 1)
}

func TestMetricsHandlerSharesGatheringAndRefusesPastBound(t *testing.T) {
	reg := prometheus.NewRegistry()
	slow := &blockingCollector{
		desc:    prometheus.NewDesc("slow_reading", "A reading that takes a while.", nil, nil),
		started: make(chan struct{}), release: make(chan struct{}),
	}
	reg.MustRegister(slow)
	const bound, scrapes = 4, 20
	srv := httptest.NewServer(newMetricsHandler(reg, bound, slog.New(slog.DiscardHandler)))
	defer srv.Close()

	type answer struct {
		code int
		body string
	}
	answers := make(chan answer, scrapes)
	var wg sync.WaitGroup
	get := func() {
		defer wg.Done()
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Error(err)
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		answers <- answer{resp.StatusCode, string(b)}
	}
	// The first scrape starts the gathering and blocks in it; the next
	// bound-1 join it, and every one past the bound is refused a tenth of a
	// second later (metrics.MinScrapeInterval).
	wg.Add(1)
	go get()
	<-slow.started
	for range bound - 1 {
		wg.Add(1)
		go get()
	}
	for range scrapes - bound {
		wg.Add(1)
		go get()
	}
	for range scrapes - bound {
		if a := <-answers; a.code != http.StatusServiceUnavailable || !strings.Contains(a.body, "Too many scrapes at once") {
			t.Fatalf("scrape past the bound: %d %q, want 503", a.code, a.body)
		}
	}
	// The scrapes within the bound wait for the one gathering; those past
	// it have been refused, so no scrape is left to start another.
	close(slow.release)
	wg.Wait()
	close(answers)
	for a := range answers {
		if a.code != http.StatusOK || !strings.Contains(a.body, "slow_reading 1") {
			t.Errorf("scrape within the bound: %d %q", a.code, a.body)
		}
	}
	if n := slow.collects.Load(); n != 1 {
		t.Errorf("%d scrapes at once gathered %d times, want them to share one", bound, n)
	}
	want := `# HELP promhttp_metric_handler_requests_total Total number of scrapes by HTTP status code.
# TYPE promhttp_metric_handler_requests_total counter
promhttp_metric_handler_requests_total{code="200"} 4
promhttp_metric_handler_requests_total{code="500"} 0
promhttp_metric_handler_requests_total{code="503"} 16
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "promhttp_metric_handler_requests_total"); err != nil {
		t.Error(err)
	}
}

// TestScrapeStormLeavesInferenceServing runs the real binary with a bound of
// two scrapes and sends many at once: those past the bound get 503 and are
// counted, and inference answers as before.
func TestScrapeStormLeavesInferenceServing(t *testing.T) {
	p := start(t, 1, "--max-concurrent-scrapes", "2")
	const clients, rounds = 32, 10
	var ok, refused atomic.Int64
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				resp, err := http.Get(p.url("/metrics"))
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch resp.StatusCode {
				case http.StatusOK:
					ok.Add(1)
				case http.StatusServiceUnavailable:
					refused.Add(1)
				default:
					t.Errorf("scrape: status %d", resp.StatusCode)
				}
			}
		}()
	}
	for range 20 {
		if code, out := post(t, p.url("/predict"), `{"inputs": [[950.0, 2, 8, 120.5, 11, 12]]}`); code != http.StatusOK || out["prediction"] != "fraud" {
			t.Fatalf("predict during the storm: %d %v", code, out)
		}
	}
	wg.Wait()
	if ok.Load()+refused.Load() != clients*rounds || ok.Load() == 0 {
		t.Fatalf("%d scrapes answered 200 and %d 503 of %d", ok.Load(), refused.Load(), clients*rounds)
	}
	_, body, _ := get(t, http.DefaultClient, p.url("/metrics"))
	m := scrape(t, body)
	if got := m[`promhttp_metric_handler_requests_total{code="503"}`]; got != float64(refused.Load()) {
		t.Errorf("promhttp_metric_handler_requests_total{code=\"503\"} = %v, the clients saw %d refusals", got, refused.Load())
	}
	// The scrape that read the counters is itself counted after it answered.
	if got := m[`promhttp_metric_handler_requests_total{code="200"}`]; got != float64(ok.Load()) {
		t.Errorf("promhttp_metric_handler_requests_total{code=\"200\"} = %v, the clients saw %d answers", got, ok.Load())
	}
}
