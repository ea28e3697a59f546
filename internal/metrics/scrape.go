package metrics

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/common/expfmt"
)

// Scrapes paces the scrapes of a metrics handler so that a storm of them
// cannot take the CPU that inference needs, while a Prometheus that scrapes
// once per interval sees no difference.
//
// Scrapes that ask for the same format share one answer: the first starts a
// gathering (a call of the handler it wraps, promhttp's) and every scrape that
// arrives before it ends gets that answer. A new gathering of a format starts
// no sooner than MinInterval after the last one began, nor sooner than ten
// times as long as the last one took, so gathering takes at most a tenth of
// one core whatever the storm; a scrape that arrives sooner waits for it. At
// most Max scrapes wait or are served at once; the others are answered 503
// when the next gathering is due (or a MinInterval later, while one is under
// way) rather than at once, so that a client that asks again at once is paced
// too.
type Scrapes struct {
	next        http.Handler
	max         int
	minInterval time.Duration

	mu       sync.Mutex
	waiting  int
	variants map[string]*variant
}

// MinScrapeInterval is the shortest time between two gatherings of one
// format that serve's /metrics handler allows: a Prometheus scraping every
// second or less often never waits, two scraping at the same moment share
// one gathering.
const MinScrapeInterval = 100 * time.Millisecond

// maxVariants bounds the formats (and query strings) kept apart; a scrape of
// another one is refused while that many are known.
const maxVariants = 16

// variant is the schedule of one format's gatherings.
type variant struct {
	cur       *gathering // in progress or due; nil when none is
	lastStart time.Time
	lastTook  time.Duration
}

type gathering struct {
	due  time.Time
	done chan struct{}
	ans  answer
}

// answer is a recorded response of the wrapped handler.
type answer struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (a *answer) Header() http.Header { return a.header }
func (a *answer) Write(b []byte) (int, error) {
	if a.status == 0 {
		a.status = http.StatusOK
	}
	return a.body.Write(b)
}
func (a *answer) WriteHeader(code int) {
	if a.status == 0 {
		a.status = code
	}
}

// NewScrapes wraps next, which serves the metrics, with at most max scrapes
// waiting or served at once and gatherings of one format at least
// minInterval apart.
func NewScrapes(next http.Handler, max int, minInterval time.Duration) *Scrapes {
	return &Scrapes{next: next, max: max, minInterval: minInterval, variants: map[string]*variant{}}
}

// ServeHTTP implements http.Handler.
func (s *Scrapes) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := variantKey(r)
	now := time.Now()
	s.mu.Lock()
	v := s.variants[key]
	if v == nil && len(s.variants) < maxVariants {
		v = &variant{}
		s.variants[key] = v
	}
	var g *gathering
	lead := false
	if v != nil {
		if g = v.cur; g == nil {
			due := v.lastStart.Add(max(s.minInterval, 10*v.lastTook))
			if due.Before(now) {
				due = now
			}
			g = &gathering{due: due, done: make(chan struct{}), ans: answer{header: http.Header{}}}
			v.cur, lead = g, true
		}
	}
	refused := v == nil || (!lead && s.waiting >= s.max)
	if !refused {
		s.waiting++
	}
	s.mu.Unlock()

	if refused {
		// Answer when the next gathering is due, so that a client that
		// retries at once asks no more often than the gatherings happen.
		due := now.Add(s.minInterval)
		if g != nil && g.due.After(now) {
			due = g.due
		}
		wait(r, due)
		w.Header().Set("Retry-After", "1")
		http.Error(w, "Too many scrapes at once; try again later.", http.StatusServiceUnavailable)
		return
	}
	defer func() {
		s.mu.Lock()
		s.waiting--
		s.mu.Unlock()
	}()
	if lead {
		s.gather(v, g, r)
	} else {
		select {
		case <-g.done:
		case <-r.Context().Done():
			return
		}
	}
	for k, vs := range g.ans.header {
		w.Header()[k] = vs
	}
	w.WriteHeader(g.ans.status)
	w.Write(g.ans.body.Bytes())
}

// gather runs the wrapped handler for g once it is due and hands its answer
// to every scrape that waits for it. It runs even when the leading scrape's
// client goes away, since others may wait for the answer.
func (s *Scrapes) gather(v *variant, g *gathering, r *http.Request) {
	if d := time.Until(g.due); d > 0 {
		time.Sleep(d)
	}
	start := time.Now()
	s.next.ServeHTTP(&g.ans, r.WithContext(context.WithoutCancel(r.Context())))
	if g.ans.status == 0 {
		g.ans.status = http.StatusOK
	}
	s.mu.Lock()
	v.cur, v.lastStart, v.lastTook = nil, start, time.Since(start)
	s.mu.Unlock()
	close(g.done)
}

// variantKey names what a scrape asks for: the negotiated format, the
// encodings it accepts and its query (name[] filters), each cut short.
func variantKey(r *http.Request) string {
	format := string(expfmt.NegotiateIncludingOpenMetrics(r.Header))
	return format + "|" + cut(r.Header.Get("Accept-Encoding"), 64) + "|" + cut(r.URL.RawQuery, 256)
}

func cut(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return strings.TrimSpace(s)
}

// wait returns at t, or when the client goes away.
func wait(r *http.Request, t time.Time) {
	d := time.Until(t)
	if d <= 0 {
		return
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-r.Context().Done():
	}
}
