package feedback

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newStore(opts Options) (*Store, *prometheus.CounterVec, *clock) {
	c := &clock{t: time.Unix(1_000_000, 0)}
	opts.Now = c.now
	total := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "model_feedback_total", Help: "h"}, []string{"model_name", "model_version", "result"})
	confusion := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "model_labelled_rows_total", Help: "h"},
		[]string{"model_name", "model_version", "true_class", "predicted_class"})
	return New(opts, total, confusion), total, c
}

var classes = []string{"safe", "fraud"}

func TestApply(t *testing.T) {
	s, total, _ := newStore(Options{MinLabels: 3})
	s.Record("r1", "fraud_model", "v1", classes, []int{1})
	s.Record("r2", "fraud_model", "v1", classes, []int{0, 0, 1})
	s.Record("r3", "fraud_model", "v1", classes, []int{0})

	out, err := s.Apply([]Label{
		{RequestID: "r1", Labels: []string{"fraud"}},
		{RequestID: "r2", Labels: []string{"safe", "fraud", "fraud"}},
		{RequestID: "nope", Labels: []string{"safe"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(out)
	want := "[{r1 correct 1 0 fraud_model v1} {r2 incorrect 2 1 fraud_model v1} {nope unknown_request 0 0  }]"
	if got != want {
		t.Errorf("outcomes\n got %s\nwant %s", got, want)
	}
	for labels, v := range map[[3]string]float64{
		{"fraud_model", "v1", "correct"}:   3,
		{"fraud_model", "v1", "incorrect"}: 1,
		{"", "", "unknown_request"}:        1,
	} {
		if got := testutil.ToFloat64(total.WithLabelValues(labels[:]...)); got != v {
			t.Errorf("model_feedback_total%v = %v, want %v", labels, got, v)
		}
	}
	if err := testutil.CollectAndCompare(s, strings.NewReader(`
# HELP model_accuracy_ratio Share of labelled rows the model predicted correctly, over the rolling feedback window.
# TYPE model_accuracy_ratio gauge
model_accuracy_ratio{model_name="fraud_model",model_version="v1"} 0.75
`)); err != nil {
		t.Error(err)
	}
	// A request is labelled once.
	out, _ = s.Apply([]Label{{RequestID: "r1", Labels: []string{"fraud"}}})
	if out[0].Result != UnknownRequest {
		t.Errorf("second label: %v", out)
	}
	if s.Len() != 1 {
		t.Errorf("%d predictions waiting, want r3", s.Len())
	}
}

func TestInvalidChangesNothing(t *testing.T) {
	s, total, _ := newStore(Options{})
	s.Record("r1", "m", "1", classes, []int{1})
	s.Record("r2", "m", "1", classes, []int{1, 0})
	for _, labels := range [][]Label{
		{{RequestID: "r1", Labels: []string{"fraud"}}, {RequestID: "r2", Labels: []string{"maybe", "safe"}}},
		{{RequestID: "r1", Labels: []string{"fraud"}}, {RequestID: "r2", Labels: []string{"safe"}}},
		{{RequestID: "r1", Labels: []string{"fraud"}}, {RequestID: "r1", Labels: []string{"fraud"}}},
	} {
		if _, err := s.Apply(labels); !errors.Is(err, ErrInvalid) {
			t.Errorf("%v: %v", labels, err)
		}
	}
	if s.Len() != 2 || testutil.CollectAndCount(total) != 0 {
		t.Errorf("a refused feedback changed state: %d waiting, %d series", s.Len(), testutil.CollectAndCount(total))
	}
}

func TestBounds(t *testing.T) {
	s, _, c := newStore(Options{MaxEntries: 3, TTL: time.Minute, MaxRows: 2, MinLabels: 1, Window: time.Minute, Slots: 2})
	for i := range 5 {
		s.Record(fmt.Sprint("r", i), "m", "1", classes, []int{0, 1, 1})
	}
	if s.Len() != 3 {
		t.Errorf("%d entries with a bound of 3", s.Len())
	}
	out, _ := s.Apply([]Label{{RequestID: "r0", Labels: []string{"safe", "fraud"}}})
	if out[0].Result != UnknownRequest {
		t.Errorf("the oldest prediction was not evicted: %v", out)
	}
	// Rows past MaxRows are not kept: r4 has 2 rows to label.
	if out, err := s.Apply([]Label{{RequestID: "r4", Labels: []string{"safe", "fraud"}}}); err != nil || out[0].Correct != 2 {
		t.Errorf("r4: %v %v", out, err)
	}
	c.t = c.t.Add(2 * time.Minute)
	if s.Len() != 0 {
		t.Errorf("%d entries after the TTL", s.Len())
	}
	if n := testutil.CollectAndCount(s); n != 0 {
		t.Errorf("accuracy still exported after its window: %d", n)
	}
	// Many labelled predictions do not grow the queue without bound.
	for i := range 1000 {
		id := fmt.Sprint("x", i)
		s.Record(id, "m", "1", classes, []int{0})
		s.Apply([]Label{{RequestID: id, Labels: []string{"safe"}}})
	}
	if s.used > 2*3 || len(s.ring) > 2*3 {
		t.Errorf("%d places in use, %d in the ring, for a bound of 3", s.used, len(s.ring))
	}
	s.Record("y", "m", "1", classes, []int{0})
	s.Forget("m", "1")
	if s.Len() != 0 || testutil.CollectAndCount(s) != 0 {
		t.Error("Forget left state behind")
	}
}

// BenchmarkRecord keeps predictions in a store already full at the
// server's default bound (20,000), as under steady traffic: each one evicts
// the oldest.
func BenchmarkRecord(b *testing.B) {
	ids := make([]string, 1<<20)
	for i := range ids {
		ids[i] = fmt.Sprintf("%024d", i)
	}
	for _, rows := range []int{1, 64} {
		pred := make([]int, rows)
		b.Run(fmt.Sprint("rows=", rows), func(b *testing.B) {
			s, _, _ := newStore(Options{MaxEntries: 20_000})
			for i := range 40_000 {
				s.Record(ids[i], "m", "1", classes, pred)
			}
			b.ReportAllocs()
			i := 40_000
			for b.Loop() {
				s.Record(ids[i%len(ids)], "m", "1", classes, pred)
				i++
			}
		})
	}
}

// refStore is the store's behaviour written plainly: a list of places in
// the order predictions were made. TestAgainstReference runs both on the
// same random operations.
type refStore struct {
	max, maxRows int
	ttl          time.Duration
	places       []refPlace
}

type refPlace struct {
	id      string
	model   key
	pred    []int
	expires time.Time
	live    bool
}

func (r *refStore) live() int {
	n := 0
	for _, p := range r.places {
		if p.live {
			n++
		}
	}
	return n
}

func (r *refStore) expire(now time.Time) {
	for len(r.places) > 0 && !r.places[0].expires.After(now) {
		r.places = r.places[1:]
	}
}

func (r *refStore) find(id string) int {
	for i, p := range r.places {
		if p.live && p.id == id {
			return i
		}
	}
	return -1
}

func (r *refStore) record(now time.Time, id string, m key, pred []int) {
	if id == "" || len(id) > maxIDLen || len(pred) == 0 {
		return
	}
	r.expire(now)
	if i := r.find(id); i >= 0 {
		r.places[i].live = false
	}
	for r.live() >= r.max {
		r.places = r.places[1:]
	}
	r.places = append(r.places, refPlace{id: id, model: m, pred: pred[:min(len(pred), r.maxRows)], expires: now.Add(r.ttl), live: true})
}

// apply labels one request with the labels given and says what it found:
// "unknown", or the rows correct and incorrect.
func (r *refStore) apply(now time.Time, id string, labels []string) string {
	r.expire(now)
	i := r.find(id)
	if i < 0 {
		return "unknown"
	}
	if len(labels) != len(r.places[i].pred) {
		return "invalid"
	}
	c, w := 0, 0
	for row, l := range labels {
		if classes[r.places[i].pred[row]] == l {
			c++
		} else {
			w++
		}
	}
	r.places[i].live = false
	return fmt.Sprint(c, " ", w)
}

func (r *refStore) forget(m key) {
	for i := range r.places {
		if r.places[i].model == m {
			r.places[i].live = false
		}
	}
}

func TestAgainstReference(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 7))
		max := 1 + rng.IntN(40)
		if seed%2 == 1 {
			max = 100 + rng.IntN(100) // the ring grows several times
		}
		s, _, c := newStore(Options{MaxEntries: max, MaxRows: 3, TTL: time.Minute})
		ref := &refStore{max: max, maxRows: 3, ttl: time.Minute}
		models := []key{{"m", "1"}, {"m", "2"}, {"n", "1"}}
		id := func() string {
			if rng.IntN(50) == 0 {
				return strings.Repeat("x", 64+rng.IntN(2)) // at and over the longest id kept
			}
			return fmt.Sprint("r", rng.IntN(3*max))
		}
		for op := range 3000 {
			if rng.IntN(20) == 0 {
				c.t = c.t.Add(10 * time.Second) // expiries land on the clock exactly
			}
			switch k := rng.IntN(10); {
			case k < 5:
				m := models[rng.IntN(len(models))]
				pred := make([]int, 1+rng.IntN(4))
				for i := range pred {
					pred[i] = rng.IntN(2)
				}
				rid := id()
				s.Record(rid, m.name, m.version, classes, pred)
				ref.record(c.t, rid, m, pred)
			case k < 9:
				rid := id()
				labels := make([]string, 1+rng.IntN(3))
				for i := range labels {
					labels[i] = classes[rng.IntN(2)]
				}
				want := ref.apply(c.t, rid, labels)
				out, err := s.Apply([]Label{{RequestID: rid, Labels: labels}})
				got := "invalid"
				if err == nil {
					got = fmt.Sprint(out[0].Correct, " ", out[0].Incorrect)
					if out[0].Result == UnknownRequest {
						got = "unknown"
					}
				}
				if got != want {
					t.Fatalf("seed %d op %d: apply %s %v: %s, want %s", seed, op, rid, labels, got, want)
				}
			default:
				m := models[rng.IntN(len(models))]
				s.Forget(m.name, m.version)
				ref.forget(m)
			}
			ref.expire(c.t)
			if s.Len() != ref.live() {
				t.Fatalf("seed %d op %d: %d waiting, want %d", seed, op, s.Len(), ref.live())
			}
			if s.used > 2*max || len(s.ring) > 2*max || len(s.index) != s.live {
				t.Fatalf("seed %d op %d: %d places used, ring %d, index %d, live %d, bound %d", seed, op, s.used, len(s.ring), len(s.index), s.live, max)
			}
		}
	}
}

// TestLabelledPlacesNeverEvictWaitingOnes: predictions that got their label
// leave places behind; however many, they never push out a prediction still
// waiting while fewer than MaxEntries wait.
func TestLabelledPlacesNeverEvictWaitingOnes(t *testing.T) {
	s, _, _ := newStore(Options{MaxEntries: 100})
	s.Record("keep", "m", "1", classes, []int{1})
	for i := range 1000 {
		id := fmt.Sprint("x", i)
		s.Record(id, "m", "1", classes, []int{0})
		s.Apply([]Label{{RequestID: id, Labels: []string{"safe"}}})
	}
	out, err := s.Apply([]Label{{RequestID: "keep", Labels: []string{"fraud"}}})
	if err != nil || out[0].Result != Correct {
		t.Errorf("the waiting prediction: %v %v", out, err)
	}
	if len(s.ring) > 200 {
		t.Errorf("%d places for a bound of 100", len(s.ring))
	}
}

// TestReloadWithOtherClasses: a version reloaded with other classes labels
// each prediction against the classes it was made with.
func TestReloadWithOtherClasses(t *testing.T) {
	s, total, _ := newStore(Options{})
	s.Record("old", "m", "1", []string{"a", "b"}, []int{1})
	s.Record("new", "m", "1", []string{"a", "b", "c"}, []int{2})
	out, err := s.Apply([]Label{{RequestID: "new", Labels: []string{"c"}}, {RequestID: "old", Labels: []string{"b"}}})
	if err != nil || out[0].Result != Correct || out[1].Result != Correct {
		t.Fatalf("%v %v", out, err)
	}
	if _, err := s.Apply([]Label{{RequestID: "x", Labels: []string{"c"}}}); err != nil {
		t.Error(err)
	}
	if got := testutil.ToFloat64(total.WithLabelValues("m", "1", Correct)); got != 2 {
		t.Errorf("correct %v", got)
	}
	// Both positions are free again once their predictions are gone.
	s.Forget("m", "1")
	for i, m := range s.models {
		if m.inUse {
			t.Errorf("model position %d still in use: %+v", i, m)
		}
	}
}

// TestConfusion: Apply and Score count labelled rows by true and predicted
// class, Has and Drop see the waiting predictions, and a model of more than
// MaxConfusionClasses classes is not counted by class.
func TestConfusion(t *testing.T) {
	s, total, _ := newStore(Options{MinLabels: 1})
	s.Record("r1", "fraud_model", "v1", classes, []int{1, 0, 0})
	if !s.Has("r1") || s.Has("r2") {
		t.Fatalf("Has(r1), Has(r2) = %v, %v; want true, false", s.Has("r1"), s.Has("r2"))
	}
	if _, err := s.Apply([]Label{{RequestID: "r1", Labels: []string{"fraud", "fraud", "safe"}}}); err != nil {
		t.Fatal(err)
	}
	// Labelled through the log elsewhere: Score counts, Drop forgets.
	s.Record("r2", "fraud_model", "v1", classes, []int{0})
	o := s.Score("r2", "fraud_model", "v1", classes, []string{"safe"}, []string{"fraud"})
	s.Drop("r2")
	if o != (Outcome{RequestID: "r2", Result: Incorrect, Incorrect: 1, Model: "fraud_model", Version: "v1"}) || s.Has("r2") {
		t.Fatalf("Score = %+v, Has(r2) = %v", o, s.Has("r2"))
	}
	many := make([]string, MaxConfusionClasses+1)
	for i := range many {
		many[i] = fmt.Sprintf("c%d", i)
	}
	s.Score("r3", "digits", "v1", many, []string{"c1"}, []string{"c1"})
	if err := testutil.CollectAndCompare(s.confusion, strings.NewReader(`
# HELP model_labelled_rows_total h
# TYPE model_labelled_rows_total counter
model_labelled_rows_total{model_name="fraud_model",model_version="v1",predicted_class="fraud",true_class="fraud"} 1
model_labelled_rows_total{model_name="fraud_model",model_version="v1",predicted_class="safe",true_class="fraud"} 2
model_labelled_rows_total{model_name="fraud_model",model_version="v1",predicted_class="safe",true_class="safe"} 1
`)); err != nil {
		t.Fatal(err)
	}
	for labels, v := range map[[3]string]float64{
		{"fraud_model", "v1", "correct"}:   2,
		{"fraud_model", "v1", "incorrect"}: 2,
		{"digits", "v1", "correct"}:        1,
	} {
		if got := testutil.ToFloat64(total.WithLabelValues(labels[:]...)); got != v {
			t.Errorf("model_feedback_total%v = %v, want %v", labels, got, v)
		}
	}
}
