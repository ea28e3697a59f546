// Package feedback joins labels that arrive later (POST /feedback) to the
// predictions a classifier made, and keeps a rolling accuracy per model
// version. Predictions wait in a store bounded in entries and time; an
// unknown or expired request id is reported, never stored.
package feedback

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Options configures a Store. Zero values take the defaults noted.
type Options struct {
	// MaxEntries bounds the predictions waiting for a label (default 100000);
	// past it the oldest go first.
	MaxEntries int
	// MaxRows bounds the rows kept per prediction (default 1024).
	MaxRows int
	// TTL is how long a prediction waits for its label (default 1h).
	TTL time.Duration
	// Window is the span of the rolling accuracy (default 1h), made of
	// Slots sub-windows (default 12).
	Window time.Duration
	Slots  int
	// MinLabels is the fewest labelled rows in the window for which
	// model_accuracy_ratio is exported (default 10).
	MinLabels int
	Now       func() time.Time
}

// Store keeps recent classifier predictions by request id. It is a
// prometheus.Collector exporting model_accuracy_ratio.
type Store struct {
	opts    Options
	slotDur time.Duration
	total   *prometheus.CounterVec

	mu      sync.Mutex
	entries map[string]*entry
	queue   []queued // insertion order, for expiry and eviction
	head    int
	acc     map[key]*window
}

type key struct{ name, version string }

type entry struct {
	model   key
	classes []string
	pred    []uint16
	expires time.Time
}

type queued struct {
	id      string
	expires time.Time
	e       *entry
}

type window struct {
	slots []accSlot
}

type accSlot struct {
	epoch              int64
	correct, incorrect float64
}

// Results of a label, the result label values of model_feedback_total.
const (
	Correct        = "correct"
	Incorrect      = "incorrect"
	UnknownRequest = "unknown_request"
)

var descAccuracy = prometheus.NewDesc("model_accuracy_ratio",
	"Share of labelled rows the model predicted correctly, over the rolling feedback window.",
	[]string{"model_name", "model_version"}, nil)

var _ prometheus.Collector = (*Store)(nil)

// New returns a Store counting into total, model_feedback_total with labels
// model_name, model_version and result.
func New(opts Options, total *prometheus.CounterVec) *Store {
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = 100_000
	}
	if opts.MaxRows <= 0 {
		opts.MaxRows = 1024
	}
	if opts.TTL <= 0 {
		opts.TTL = time.Hour
	}
	if opts.Window <= 0 {
		opts.Window = time.Hour
	}
	if opts.Slots <= 0 {
		opts.Slots = 12
	}
	if opts.MinLabels <= 0 {
		opts.MinLabels = 10
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Store{opts: opts, slotDur: opts.Window / time.Duration(opts.Slots), total: total,
		entries: map[string]*entry{}, acc: map[key]*window{}}
}

// Record keeps the classes predicted for a request's rows until its label
// arrives. classes names the model's classes; pred holds each row's class
// index. Rows past MaxRows are not kept.
func (s *Store) Record(requestID, name, version string, classes []string, pred []int) {
	if requestID == "" || len(pred) == 0 {
		return
	}
	p := make([]uint16, min(len(pred), s.opts.MaxRows))
	for i := range p {
		p[i] = uint16(pred[i])
	}
	now := s.opts.Now()
	e := &entry{model: key{name, version}, classes: classes, pred: p, expires: now.Add(s.opts.TTL)}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now)
	for len(s.entries) >= s.opts.MaxEntries {
		s.evictOldest()
	}
	s.entries[requestID] = e
	s.queue = append(s.queue, queued{id: requestID, expires: e.expires, e: e})
	// Labelled predictions leave the map but not the queue: keep the queue
	// within twice the map's bound by dropping their places.
	if len(s.queue)-s.head > 2*s.opts.MaxEntries {
		live := s.queue[:0]
		for _, q := range s.queue[s.head:] {
			if s.entries[q.id] == q.e {
				live = append(live, q)
			}
		}
		clear(s.queue[len(live):])
		s.queue, s.head = live, 0
	}
}

// expire drops predictions past their time.
func (s *Store) expire(now time.Time) {
	for s.head < len(s.queue) && !s.queue[s.head].expires.After(now) {
		s.evictOldest()
	}
	// Compact the queue once half of it is spent.
	if s.head > 1024 && s.head*2 > len(s.queue) {
		s.queue = append(s.queue[:0], s.queue[s.head:]...)
		s.head = 0
	}
}

func (s *Store) evictOldest() {
	if s.head >= len(s.queue) {
		return
	}
	q := s.queue[s.head]
	s.queue[s.head] = queued{}
	s.head++
	// The id may have been recorded again since, or labelled already.
	if s.entries[q.id] == q.e {
		delete(s.entries, q.id)
	}
}

// Len returns the number of predictions waiting for a label.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(s.opts.Now())
	return len(s.entries)
}

// Label is one request's labels: one per row of the prediction.
type Label struct {
	RequestID string
	Labels    []string
}

// Outcome is what a label did.
type Outcome struct {
	RequestID string `json:"request_id"`
	Result    string `json:"result"` // correct, incorrect (any row wrong), unknown_request
	Correct   int    `json:"correct"`
	Incorrect int    `json:"incorrect"`
	Model     string `json:"model_name,omitempty"`
	Version   string `json:"model_version,omitempty"`
}

// InvalidError says why a set of labels was refused; nothing was changed.
type InvalidError struct{ Msg string }

func (e *InvalidError) Error() string { return e.Msg }

// ErrInvalid matches every *InvalidError with errors.Is.
var ErrInvalid = errors.New("invalid feedback")

func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

// Apply joins labels to their predictions, counts each row correct or
// incorrect, and forgets the predictions (a request is labelled once). It
// checks every label first: a label that is not one of the model's classes,
// or a count of labels other than the prediction's rows, refuses the whole
// set with an *InvalidError and changes nothing. Unknown or expired request
// ids are counted and reported as unknown_request.
func (s *Store) Apply(labels []Label) ([]Outcome, error) {
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now)
	seen := map[string]bool{}
	for i, l := range labels {
		if seen[l.RequestID] {
			return nil, &InvalidError{fmt.Sprintf("feedback %d: request %q is labelled twice", i, l.RequestID)}
		}
		seen[l.RequestID] = true
		e := s.entries[l.RequestID]
		if e == nil {
			continue
		}
		if len(l.Labels) != len(e.pred) {
			return nil, &InvalidError{fmt.Sprintf("feedback %d: the prediction has %d rows, the feedback %d labels", i, len(e.pred), len(l.Labels))}
		}
		for _, lab := range l.Labels {
			if !slices.Contains(e.classes, lab) {
				return nil, &InvalidError{fmt.Sprintf("feedback %d: %q is not a class of model %s (classes: %v)", i, lab, e.model.name, e.classes)}
			}
		}
	}
	out := make([]Outcome, len(labels))
	epoch := now.UnixNano() / int64(s.slotDur)
	for i, l := range labels {
		e := s.entries[l.RequestID]
		if e == nil {
			out[i] = Outcome{RequestID: l.RequestID, Result: UnknownRequest}
			s.total.WithLabelValues("", "", UnknownRequest).Inc()
			continue
		}
		delete(s.entries, l.RequestID)
		o := Outcome{RequestID: l.RequestID, Model: e.model.name, Version: e.model.version}
		for r, lab := range l.Labels {
			if e.classes[e.pred[r]] == lab {
				o.Correct++
			} else {
				o.Incorrect++
			}
		}
		o.Result = Correct
		if o.Incorrect > 0 {
			o.Result = Incorrect
		}
		s.total.WithLabelValues(e.model.name, e.model.version, Correct).Add(float64(o.Correct))
		s.total.WithLabelValues(e.model.name, e.model.version, Incorrect).Add(float64(o.Incorrect))
		w := s.acc[e.model]
		if w == nil {
			w = &window{slots: make([]accSlot, s.opts.Slots)}
			for j := range w.slots {
				w.slots[j].epoch = -1
			}
			s.acc[e.model] = w
		}
		sl := &w.slots[epoch%int64(len(w.slots))]
		if sl.epoch != epoch {
			*sl = accSlot{epoch: epoch}
		}
		sl.correct += float64(o.Correct)
		sl.incorrect += float64(o.Incorrect)
		out[i] = o
	}
	return out, nil
}

// Forget drops a model version's accuracy window and waiting predictions,
// when it is unloaded.
func (s *Store) Forget(name, version string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.acc, key{name, version})
	for id, e := range s.entries {
		if e.model == (key{name, version}) {
			delete(s.entries, id)
		}
	}
}

// Describe implements prometheus.Collector.
func (s *Store) Describe(ch chan<- *prometheus.Desc) { ch <- descAccuracy }

// Collect implements prometheus.Collector.
func (s *Store) Collect(ch chan<- prometheus.Metric) {
	now := s.opts.Now().UnixNano() / int64(s.slotDur)
	oldest := now - int64(s.opts.Slots) + 1
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, w := range s.acc {
		var c, n float64
		for _, sl := range w.slots {
			if sl.epoch >= oldest && sl.epoch <= now {
				c += sl.correct
				n += sl.correct + sl.incorrect
			}
		}
		if n >= float64(s.opts.MinLabels) {
			ch <- prometheus.MustNewConstMetric(descAccuracy, prometheus.GaugeValue, c/n, k.name, k.version)
		}
	}
}
