// Package feedback joins labels that arrive later (POST /feedback) to the
// predictions a classifier made, and keeps a rolling accuracy per model
// version. Predictions wait in a store bounded in entries and time; an
// unknown or expired request id is reported, never stored.
package feedback

import (
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelwatch/modelwatch/internal/window"
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
//
// Predictions wait in a ring of fixed-size slots, in the order they were
// made, indexed by a hash of their request id. Neither the ring nor the
// index holds a pointer (only the rows after the first of a batch are kept
// apart), so the garbage collector does not trace the tens of thousands of
// predictions a busy server keeps, and keeping a one-row prediction
// allocates nothing.
type Store struct {
	opts  Options
	total *prometheus.CounterVec
	// confusion counts labelled rows by true and predicted class.
	confusion *prometheus.CounterVec
	seed      maphash.Seed

	mu    sync.Mutex
	index map[uint64]int32 // hash of a waiting prediction's request id -> its place in ring
	ring  []slot           // circular, oldest at start; grows up to 2*MaxEntries places
	start int
	used  int // places in use from start, labelled or forgotten ones included
	live  int // predictions waiting for a label
	// more holds, by place, the classes of a prediction's rows after the
	// first; nil for one-row predictions.
	more [][]uint16
	// models are the model versions (with their classes) of the waiting
	// predictions; a slot names one by its position. modelIDs finds the
	// current one of a name and version: a version reloaded with other
	// classes gets a new position, the old one serving its waiting
	// predictions until they go.
	models   []modelRef
	modelIDs map[key]uint16
	// epoch is when the store was made; expiries count from it, so that
	// they follow the monotonic clock.
	epoch time.Time
	acc   map[key]*window.Ring[counts]
}

type key struct{ name, version string }

type modelRef struct {
	key
	classes []string
	inUse   bool
	current bool // modelIDs points here
	live    int  // waiting predictions that name it
}

// maxIDLen is the longest request id kept; the server's ids (its own, or a
// client's X-Request-ID) are at most 64 bytes.
const maxIDLen = 64

// slot is one prediction waiting for its label.
type slot struct {
	hash    uint64
	expires time.Duration // since Store.epoch
	model   uint16
	rows    uint16 // rows kept (at most MaxRows)
	pred0   uint16 // the first row's class; the others are in Store.more
	live    bool
	idLen   uint8
	id      [maxIDLen]byte
}

func (sl *slot) is(id string) bool { return string(sl.id[:sl.idLen]) == id }

// counts are the labelled rows of one sub-window of the accuracy window.
type counts struct {
	correct, incorrect float64
}

// Results of a label, the result label values of model_feedback_total.
const (
	Correct        = "correct"
	Incorrect      = "incorrect"
	UnknownRequest = "unknown_request"
	// Recorded is the answer to a regressor's label, kept in the
	// prediction log and not scored (not a value of model_feedback_total).
	Recorded = "recorded"
)

var descAccuracy = prometheus.NewDesc("model_accuracy_ratio",
	"Share of labelled rows the model predicted correctly, over the rolling feedback window.",
	[]string{"model_name", "model_version"}, nil)

var _ prometheus.Collector = (*Store)(nil)

// New returns a Store counting into total, model_feedback_total with labels
// model_name, model_version and result, and into confusion (when not nil),
// model_labelled_rows_total with labels model_name, model_version,
// true_class and predicted_class.
func New(opts Options, total, confusion *prometheus.CounterVec) *Store {
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
	opts.MaxRows = min(opts.MaxRows, math.MaxUint16)
	return &Store{opts: opts, total: total, confusion: confusion, seed: maphash.MakeSeed(),
		index: map[uint64]int32{}, modelIDs: map[key]uint16{}, acc: map[key]*window.Ring[counts]{}, epoch: opts.Now()}
}

// Record keeps the classes predicted for a request's rows until its label
// arrives. classes names the model's classes; pred holds each row's class
// index. Rows past MaxRows are not kept; a request id longer than 64 bytes
// is not kept at all. Recording an id again replaces its prediction.
func (s *Store) Record(requestID, name, version string, classes []string, pred []int) {
	if requestID == "" || len(requestID) > maxIDLen || len(pred) == 0 {
		return
	}
	rows := min(len(pred), s.opts.MaxRows)
	h := maphash.String(s.seed, requestID)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.since()
	s.expire(now)
	if at, ok := s.index[h]; ok {
		// The same id again (or, once in 2^64, another with the same
		// hash): the new prediction replaces the old.
		s.drop(at)
	}
	model, ok := s.modelID(name, version, classes)
	if !ok {
		return
	}
	for s.live >= s.opts.MaxEntries {
		s.evictOldest()
	}
	if s.used == len(s.ring) {
		s.relayout()
	}
	at := int32((s.start + s.used) % len(s.ring))
	s.used++
	s.live++
	s.models[model].live++
	sl := &s.ring[at]
	*sl = slot{hash: h, expires: now + s.opts.TTL, model: model,
		rows: uint16(rows), pred0: uint16(pred[0]), live: true, idLen: uint8(len(requestID))}
	copy(sl.id[:], requestID)
	if rows > 1 {
		p := make([]uint16, rows-1)
		for i := range p {
			p[i] = uint16(pred[i+1])
		}
		s.more[at] = p
	}
	s.index[h] = at
}

// since is the store's clock: the time since its epoch.
func (s *Store) since() time.Duration { return s.opts.Now().Sub(s.epoch) }

// modelID returns the position of a model version with these classes in
// s.models, adding it; false when 65,536 model versions already have
// predictions waiting.
func (s *Store) modelID(name, version string, classes []string) (uint16, bool) {
	k := key{name, version}
	if id, ok := s.modelIDs[k]; ok {
		if slices.Equal(s.models[id].classes, classes) {
			return id, true
		}
		// Reloaded with other classes: the old position stays for the
		// predictions made under it.
		s.retire(id)
	}
	// A free position is reused; otherwise append. Positions in use are
	// bounded by the versions loaded, and the versions with predictions
	// still waiting.
	id := slices.IndexFunc(s.models, func(m modelRef) bool { return !m.inUse })
	if id < 0 {
		if len(s.models) > math.MaxUint16 {
			return 0, false
		}
		id = len(s.models)
		s.models = append(s.models, modelRef{})
	}
	s.models[id] = modelRef{key: k, classes: classes, inUse: true, current: true}
	s.modelIDs[k] = uint16(id)
	return uint16(id), true
}

// retire makes a model position no longer current; it is freed once no
// waiting prediction names it.
func (s *Store) retire(id uint16) {
	m := &s.models[id]
	if m.current {
		delete(s.modelIDs, m.key)
		m.current = false
	}
	if m.live == 0 {
		*m = modelRef{}
	}
}

// relayout makes room when every place of the ring is used: it keeps the
// waiting predictions only, oldest first, in a ring twice as large (up to
// 2*MaxEntries places; with fewer than MaxEntries waiting, at least half of
// it is then free).
func (s *Store) relayout() {
	n := len(s.ring)
	if n == 0 || s.live*2 > n {
		n = min(max(2*n, 64), 2*s.opts.MaxEntries)
	}
	ring, more := make([]slot, n), make([][]uint16, n)
	j := 0
	for i := range s.used {
		from := (s.start + i) % len(s.ring)
		if sl := s.ring[from]; sl.live {
			ring[j], more[j] = sl, s.more[from]
			s.index[sl.hash] = int32(j)
			j++
		}
	}
	s.ring, s.more, s.start, s.used = ring, more, 0, j
}

// expire drops predictions past their time.
func (s *Store) expire(now time.Duration) {
	for s.used > 0 && s.ring[s.start].expires <= now {
		s.evictOldest()
	}
}

// evictOldest frees the oldest place, dropping its prediction if it still
// waits.
func (s *Store) evictOldest() {
	if s.used == 0 {
		return
	}
	s.drop(int32(s.start))
	s.start = (s.start + 1) % len(s.ring)
	s.used--
}

// drop forgets the prediction at a place; the place stays used until it is
// the oldest.
func (s *Store) drop(at int32) {
	sl := &s.ring[at]
	if !sl.live {
		return
	}
	sl.live = false
	s.live--
	delete(s.index, sl.hash)
	s.more[at] = nil
	m := &s.models[sl.model]
	m.live--
	if m.live == 0 && !m.current {
		*m = modelRef{}
	}
}

// find returns the place of the prediction waiting under requestID.
func (s *Store) find(requestID string) (int32, bool) {
	if len(requestID) > maxIDLen {
		return 0, false
	}
	at, ok := s.index[maphash.String(s.seed, requestID)]
	if !ok || !s.ring[at].is(requestID) {
		return 0, false
	}
	return at, true
}

// class returns the class index predicted for a row of the prediction at a
// place.
func (s *Store) class(at int32, row int) uint16 {
	if row == 0 {
		return s.ring[at].pred0
	}
	return s.more[at][row-1]
}

// Len returns the number of predictions waiting for a label.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(s.since())
	return s.live
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
	s.expire(now.Sub(s.epoch))
	seen := map[string]bool{}
	for i, l := range labels {
		if seen[l.RequestID] {
			return nil, &InvalidError{fmt.Sprintf("feedback %d: request %q is labelled twice", i, l.RequestID)}
		}
		seen[l.RequestID] = true
		at, ok := s.find(l.RequestID)
		if !ok {
			continue
		}
		sl, m := &s.ring[at], &s.models[s.ring[at].model]
		if len(l.Labels) != int(sl.rows) {
			return nil, &InvalidError{fmt.Sprintf("feedback %d: the prediction has %d rows, the feedback %d labels", i, sl.rows, len(l.Labels))}
		}
		for _, lab := range l.Labels {
			if !slices.Contains(m.classes, lab) {
				return nil, &InvalidError{fmt.Sprintf("feedback %d: %q is not a class of model %s (classes: %v)", i, lab, m.name, m.classes)}
			}
		}
	}
	out := make([]Outcome, len(labels))
	for i, l := range labels {
		at, ok := s.find(l.RequestID)
		if !ok {
			out[i] = Outcome{RequestID: l.RequestID, Result: UnknownRequest}
			s.total.WithLabelValues("", "", UnknownRequest).Inc()
			continue
		}
		m := s.models[s.ring[at].model]
		predicted := make([]string, len(l.Labels))
		for r := range predicted {
			predicted[r] = m.classes[s.class(at, r)]
		}
		s.drop(at)
		out[i] = s.score(now, l.RequestID, m.key, m.classes, predicted, l.Labels)
	}
	return out, nil
}

// MaxConfusionClasses is the most classes a model may have for its labelled
// rows to be counted by true and predicted class
// (model_labelled_rows_total): k classes make k² series.
const MaxConfusionClasses = 20

// Score counts one request's labels against the classes predicted for its
// rows, as Apply does for the predictions the Store keeps, and returns the
// outcome: model_feedback_total, model_labelled_rows_total (for at most
// MaxConfusionClasses classes) and the accuracy window. classes are the
// model version's classes; labels must be among them and as many as
// predicted. The caller scores a request once.
func (s *Store) Score(requestID, name, version string, classes, predicted, labels []string) Outcome {
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.score(now, requestID, key{name, version}, classes, predicted, labels)
}

func (s *Store) score(now time.Time, requestID string, k key, classes, predicted, labels []string) Outcome {
	o := Outcome{RequestID: requestID, Model: k.name, Version: k.version}
	for r, lab := range labels {
		if predicted[r] == lab {
			o.Correct++
		} else {
			o.Incorrect++
		}
		if s.confusion != nil && len(classes) <= MaxConfusionClasses {
			s.confusion.WithLabelValues(k.name, k.version, lab, predicted[r]).Inc()
		}
	}
	o.Result = Correct
	if o.Incorrect > 0 {
		o.Result = Incorrect
	}
	s.total.WithLabelValues(k.name, k.version, Correct).Add(float64(o.Correct))
	s.total.WithLabelValues(k.name, k.version, Incorrect).Add(float64(o.Incorrect))
	w := s.acc[k]
	if w == nil {
		w = window.New[counts](s.opts.Window, s.opts.Slots)
		s.acc[k] = w
	}
	c := w.At(now, func(c *counts) { *c = counts{} })
	c.correct += float64(o.Correct)
	c.incorrect += float64(o.Incorrect)
	return o
}

// Tally scores labels against the classes predicted without counting them
// anywhere: for a model version that is no longer loaded, whose series are
// gone.
func Tally(requestID, name, version string, predicted, labels []string) Outcome {
	o := Outcome{RequestID: requestID, Result: Correct, Model: name, Version: version}
	for r, lab := range labels {
		if predicted[r] == lab {
			o.Correct++
		} else {
			o.Incorrect++
		}
	}
	if o.Incorrect > 0 {
		o.Result = Incorrect
	}
	return o
}

// CountUnknown counts a label for a request with no prediction to join.
func (s *Store) CountUnknown() { s.total.WithLabelValues("", "", UnknownRequest).Inc() }

// Has reports whether a prediction waits for a label under requestID.
func (s *Store) Has(requestID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.find(requestID)
	return ok
}

// Drop forgets the prediction waiting under requestID, once its label was
// counted elsewhere (through the prediction log).
func (s *Store) Drop(requestID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if at, ok := s.find(requestID); ok {
		s.drop(at)
	}
}

// Forget drops a model version's accuracy window and waiting predictions,
// when it is unloaded.
func (s *Store) Forget(name, version string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := key{name, version}
	delete(s.acc, k)
	for i := range s.used {
		at := int32((s.start + i) % len(s.ring))
		if sl := s.ring[at]; sl.live && s.models[sl.model].key == k {
			s.drop(at)
		}
	}
	if id, ok := s.modelIDs[k]; ok {
		s.retire(id)
	}
}

// Describe implements prometheus.Collector.
func (s *Store) Describe(ch chan<- *prometheus.Desc) { ch <- descAccuracy }

// Collect implements prometheus.Collector.
func (s *Store) Collect(ch chan<- prometheus.Metric) {
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, w := range s.acc {
		var c, n float64
		w.Each(now, func(sl *counts) {
			c += sl.correct
			n += sl.correct + sl.incorrect
		})
		if n >= float64(s.opts.MinLabels) {
			ch <- prometheus.MustNewConstMetric(descAccuracy, prometheus.GaugeValue, c/n, k.name, k.version)
		}
	}
}
