package server

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestLazyDeadline(t *testing.T) {
	t.Run("done at the deadline", func(t *testing.T) {
		ctx, stop := withLazyDeadline(context.Background(), time.Now().Add(20*time.Millisecond))
		defer stop()
		if err := ctx.Err(); err != nil {
			t.Fatalf("Err before the deadline: %v", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("not done 5s after a 20ms deadline")
		}
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Errorf("Err %v, want DeadlineExceeded", ctx.Err())
		}
	})
	t.Run("past deadline seen without waiting", func(t *testing.T) {
		ctx, stop := withLazyDeadline(context.Background(), time.Now().Add(-time.Second))
		defer stop()
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Errorf("Err %v, want DeadlineExceeded", ctx.Err())
		}
	})
	t.Run("parent canceled", func(t *testing.T) {
		parent, cancel := context.WithCancel(context.Background())
		ctx, stop := withLazyDeadline(parent, time.Now().Add(time.Hour))
		defer stop()
		done := ctx.Done()
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("not done after the parent was canceled")
		}
		if !errors.Is(ctx.Err(), context.Canceled) {
			t.Errorf("Err %v, want Canceled", ctx.Err())
		}
	})
	t.Run("earlier parent deadline and values", func(t *testing.T) {
		type key struct{}
		soon := time.Now().Add(time.Minute)
		parent, cancel := context.WithDeadline(context.WithValue(context.Background(), key{}, "v"), soon)
		defer cancel()
		ctx, stop := withLazyDeadline(parent, soon.Add(time.Hour))
		defer stop()
		if d, ok := ctx.Deadline(); !ok || !d.Equal(soon) {
			t.Errorf("Deadline %v %v, want the parent's %v", d, ok, soon)
		}
		if ctx.Value(key{}) != "v" {
			t.Errorf("the parent's value is lost")
		}
	})
	t.Run("stopped", func(t *testing.T) {
		ctx, stop := withLazyDeadline(context.Background(), time.Now().Add(time.Hour))
		stop()
		if ctx.timed != nil {
			t.Errorf("stop before any question started a timer")
		}
		select {
		case <-ctx.Done():
		default:
			t.Error("a stopped context is not done")
		}
		if !errors.Is(ctx.Err(), context.Canceled) {
			t.Errorf("Err %v after stop, want Canceled", ctx.Err())
		}
		started, stop2 := withLazyDeadline(context.Background(), time.Now().Add(time.Hour))
		done := started.Done()
		stop2()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("stop does not end a started context")
		}
	})
}
