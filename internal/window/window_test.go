package window

import (
	"testing"
	"time"
)

// TestRing: counts land in the sub-window of their time, and leave the
// window a sub-window at a time as it slides.
func TestRing(t *testing.T) {
	r := New[int](time.Minute, 6) // sub-windows of 10 s
	t0 := time.Unix(1_000_000, 0)
	add := func(at time.Duration, n int) { *r.At(t0.Add(at), func(v *int) { *v = 0 }) += n }
	sum := func(at time.Duration) int {
		total := 0
		r.Each(t0.Add(at), func(v *int) { total += *v })
		return total
	}
	add(0, 1)
	add(5*time.Second, 2)
	add(25*time.Second, 4)
	if got := sum(30 * time.Second); got != 7 {
		t.Errorf("sum at 30 s = %d, want 7", got)
	}
	// At 65 s the window is (5 s, 65 s]: the first sub-window (0-10 s) left.
	if got := sum(65 * time.Second); got != 4 {
		t.Errorf("sum at 65 s = %d, want 4", got)
	}
	// The first sub-window's place is reused for 60-70 s, reset first.
	add(62*time.Second, 8)
	if got := sum(65 * time.Second); got != 12 {
		t.Errorf("sum at 65 s after reuse = %d, want 12", got)
	}
	if got := sum(10 * time.Minute); got != 0 {
		t.Errorf("sum long after = %d, want 0", got)
	}
}
