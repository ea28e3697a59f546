package server

import (
	"context"
	"sync"
	"time"
)

// deadlineCtx is a context with a deadline whose timer starts only when
// something asks whether it has passed (Done or Err). Most inferences never
// ask (the embedded XGBoost model checks every 64 rows), and a timer per
// request costs more than the model: context.WithTimeout allocates a timer,
// a channel and a parent registration on every request.
type deadlineCtx struct {
	context.Context // the parent: Value and the parent's own cancellation
	deadline        time.Time

	once   sync.Once
	timed  context.Context
	cancel context.CancelFunc
}

// withLazyDeadline returns a context that is done at deadline or when parent
// is, and a function that releases its timer, if it started one.
func withLazyDeadline(parent context.Context, deadline time.Time) (*deadlineCtx, func()) {
	c := &deadlineCtx{Context: parent, deadline: deadline}
	return c, c.stop
}

func (c *deadlineCtx) start() context.Context {
	c.once.Do(func() { c.timed, c.cancel = context.WithDeadline(c.Context, c.deadline) })
	return c.timed
}

func (c *deadlineCtx) stop() {
	c.once.Do(func() {}) // no timer from now on
	if c.cancel != nil {
		c.cancel()
	}
}

// Deadline returns the earlier of the parent's deadline and this one.
func (c *deadlineCtx) Deadline() (time.Time, bool) {
	if d, ok := c.Context.Deadline(); ok && d.Before(c.deadline) {
		return d, true
	}
	return c.deadline, true
}

func (c *deadlineCtx) Done() <-chan struct{} {
	if t := c.start(); t != nil {
		return t.Done()
	}
	return closedChan // asked after stop: the request is over
}

func (c *deadlineCtx) Err() error {
	if t := c.start(); t != nil {
		return t.Err()
	}
	return context.Canceled
}

var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()
