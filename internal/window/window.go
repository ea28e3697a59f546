// Package window keeps a quantity over a sliding window of time: a ring of
// sub-windows, each the sum of what happened in its span, a sub-window
// reused once its span has left the window. The drift monitor's live
// counts and the feedback store's rolling accuracy are both kept this way.
package window

import "time"

// Ring is a sliding window of n sub-windows of T. It is not safe for
// concurrent use: its owner holds its lock around it.
type Ring[T any] struct {
	span  time.Duration // of one sub-window
	slots []slot[T]
}

type slot[T any] struct {
	epoch int64 // index of the sub-window's span since the Unix epoch; -1 for none yet
	v     T
}

// New returns a window of the given span made of n sub-windows.
func New[T any](span time.Duration, n int) *Ring[T] {
	r := &Ring[T]{span: span / time.Duration(n), slots: make([]slot[T], n)}
	for i := range r.slots {
		r.slots[i].epoch = -1
	}
	return r
}

func (r *Ring[T]) epoch(now time.Time) int64 { return now.UnixNano() / int64(r.span) }

// At returns the sub-window that holds now, first calling reset on it when
// it last held an older span (reset may keep its allocations).
func (r *Ring[T]) At(now time.Time, reset func(*T)) *T {
	e := r.epoch(now)
	s := &r.slots[e%int64(len(r.slots))]
	if s.epoch != e {
		s.epoch = e
		reset(&s.v)
	}
	return &s.v
}

// Each calls f with every sub-window whose span is within the window that
// ends at now.
func (r *Ring[T]) Each(now time.Time, f func(*T)) {
	last := r.epoch(now)
	first := last - int64(len(r.slots)) + 1
	for i := range r.slots {
		if s := &r.slots[i]; s.epoch >= first && s.epoch <= last {
			f(&s.v)
		}
	}
}
