package feedback

import (
	"errors"
	"fmt"
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
	return New(opts, total), total, c
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
	if len(s.queue)-s.head > 2*3+1 {
		t.Errorf("queue holds %d places for a bound of 3", len(s.queue)-s.head)
	}
	s.Record("y", "m", "1", classes, []int{0})
	s.Forget("m", "1")
	if s.Len() != 0 || testutil.CollectAndCount(s) != 0 {
		t.Error("Forget left state behind")
	}
}

func BenchmarkRecord(b *testing.B) {
	s, _, _ := newStore(Options{})
	for _, rows := range []int{1, 64} {
		pred := make([]int, rows)
		b.Run(fmt.Sprint("rows=", rows), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				s.Record(fmt.Sprint(i), "m", "1", classes, pred)
			}
		})
	}
}
