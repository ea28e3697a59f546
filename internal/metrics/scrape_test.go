package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingHandler answers its number of calls, after release is closed.
type countingHandler struct {
	calls   atomic.Int64
	started chan struct{}
	release chan struct{}
	starts  []time.Time
	mu      sync.Mutex
}

func (h *countingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := h.calls.Add(1)
	h.mu.Lock()
	h.starts = append(h.starts, time.Now())
	h.mu.Unlock()
	if n == 1 && h.started != nil {
		close(h.started)
	}
	if h.release != nil {
		<-h.release
	}
	w.Header().Set("Content-Type", "text/plain")
	io.WriteString(w, "gathering "+strings.Repeat("x", int(n)))
}

func scrapeOnce(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Error(err)
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestScrapesShareOneGatheringAndRefusePastTheBound(t *testing.T) {
	h := &countingHandler{started: make(chan struct{}), release: make(chan struct{})}
	const bound, scrapes = 4, 20
	srv := httptest.NewServer(NewScrapes(h, bound, time.Millisecond))
	defer srv.Close()
	type result struct {
		code int
		body string
	}
	results := make(chan result, scrapes)
	var wg sync.WaitGroup
	get := func() {
		defer wg.Done()
		code, body := scrapeOnce(t, srv.URL)
		results <- result{code, body}
	}
	wg.Add(1)
	go get()
	<-h.started
	for range scrapes - 1 {
		wg.Add(1)
		go get()
	}
	// The first leads the gathering, bound-1 of the others wait for it and
	// the rest are refused, a MinInterval (1ms here) after they came.
	for range scrapes - bound {
		if r := <-results; r.code != http.StatusServiceUnavailable {
			t.Fatalf("a scrape past the bound: %d %q", r.code, r.body)
		}
	}
	close(h.release)
	wg.Wait()
	close(results)
	n := 0
	for r := range results {
		n++
		if r.code != http.StatusOK || r.body != "gathering x" {
			t.Errorf("a scrape within the bound: %d %q, want the one gathering's answer", r.code, r.body)
		}
	}
	if n != bound || h.calls.Load() != 1 {
		t.Errorf("%d scrapes answered 200 from %d gatherings, want %d from 1", n, h.calls.Load(), bound)
	}
}

func TestScrapesArePaced(t *testing.T) {
	h := &countingHandler{}
	const interval = 200 * time.Millisecond
	srv := httptest.NewServer(NewScrapes(h, 8, interval))
	defer srv.Close()
	for i := range 3 {
		if code, body := scrapeOnce(t, srv.URL); code != http.StatusOK || body != "gathering "+strings.Repeat("x", i+1) {
			t.Fatalf("scrape %d: %d %q", i, code, body)
		}
	}
	// Each scrape came right after the last answer, so each gathering
	// waited until the interval since the previous one had passed.
	for i := 1; i < len(h.starts); i++ {
		if gap := h.starts[i].Sub(h.starts[i-1]); gap < interval {
			t.Errorf("gatherings %d and %d were %v apart, less than %v", i-1, i, gap, interval)
		}
	}
	// Another format is paced on its own.
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	req.Header.Set("Accept", "application/openmetrics-text; version=1.0.0")
	before := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || h.calls.Load() != 4 {
		t.Errorf("OpenMetrics scrape: %d after %d gatherings", resp.StatusCode, h.calls.Load())
	}
	if h.starts[3].Sub(before) >= interval {
		t.Errorf("the first OpenMetrics gathering waited for the text format's interval")
	}
}

func TestScrapeRefusalsWaitForTheNextGathering(t *testing.T) {
	h := &countingHandler{}
	const interval = 300 * time.Millisecond
	s := NewScrapes(h, 1, interval)
	srv := httptest.NewServer(s)
	defer srv.Close()
	if code, _ := scrapeOnce(t, srv.URL); code != http.StatusOK {
		t.Fatal(code)
	}
	// The next gathering is due in 300ms: one scrape waits for it, and one
	// past the bound is refused when it is due, not before.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); scrapeOnce(t, srv.URL) }()
	for {
		s.mu.Lock()
		w := s.waiting
		s.mu.Unlock()
		if w == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	code, _ := scrapeOnce(t, srv.URL)
	h.mu.Lock()
	first := h.starts[0]
	h.mu.Unlock()
	if code != http.StatusServiceUnavailable || time.Since(first) < interval {
		t.Errorf("refused scrape: %d after %v, want 503 no sooner than %v after the last gathering", code, time.Since(first), interval)
	}
	wg.Wait()
}
