package server

import (
	"container/list"
	"net"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// ConnLimiter bounds the TCP connections one listener holds open. When a
// new connection arrives at the limit, the connection that has waited
// longest without a request in progress (a keep-alive connection between
// requests, or an accepted connection that has sent nothing yet) is closed
// to make room, so that a flood of idle connections cannot keep new clients
// out nor exhaust the process's file descriptors. When every connection is
// serving a request, the new one is closed instead. It is safe for
// concurrent use.
//
// Wrap the listener with Listener and set http.Server.ConnState to the
// limiter's ConnState; the limiter learns from it which connections are
// between requests.
type ConnLimiter struct {
	max int

	mu   sync.Mutex
	open int
	// waiting holds the connections with no request in progress, the one
	// that has waited longest first.
	waiting list.List

	openGauge                              prometheus.Gauge
	closedIdle, closedSilent, closedOverLm prometheus.Counter
}

// NewConnLimiter returns a limiter of limit connections (at least 1) whose
// counts go to m under the listener label.
func NewConnLimiter(listener string, limit int, m *AccessMetrics) *ConnLimiter {
	limit = max(limit, 1)
	m.MaxConnections.WithLabelValues(listener).Set(float64(limit))
	return &ConnLimiter{
		max:          limit,
		openGauge:    m.OpenConnections.WithLabelValues(listener),
		closedIdle:   m.ConnectionsClosed.WithLabelValues(listener, ClosedIdle),
		closedSilent: m.ConnectionsClosed.WithLabelValues(listener, ClosedSilent),
		closedOverLm: m.ConnectionsClosed.WithLabelValues(listener, ClosedOverLimit),
	}
}

// Max returns the most connections the limiter holds open at once.
func (l *ConnLimiter) Max() int { return l.max }

// Open returns the connections open at the moment.
func (l *ConnLimiter) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// Listener returns ln with its accepted connections held to the limit.
func (l *ConnLimiter) Listener(ln net.Listener) net.Listener {
	return &limitedListener{Listener: ln, lim: l}
}

// trackedConn is a connection the limiter counts.
type trackedConn struct {
	net.Conn
	lim *ConnLimiter
	// The fields below are guarded by lim.mu.
	elem     *list.Element // in lim.waiting, or nil while serving
	state    http.ConnState
	released bool // no longer counted: closed, or chosen to be closed
}

// Close closes the connection and gives back its place.
func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.lim.release(c)
	return err
}

type limitedListener struct {
	net.Listener
	lim *ConnLimiter
}

// Accept returns the next connection, making room for it first when the
// listener is at its limit. A connection for which there is no room is
// closed and the next one waited for.
func (ll *limitedListener) Accept() (net.Conn, error) {
	for {
		c, err := ll.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if tc := ll.lim.admit(c); tc != nil {
			return tc, nil
		}
	}
}

// admit counts c in, closing waiting connections to make room; it returns
// nil, having closed c, when every connection is serving.
func (l *ConnLimiter) admit(c net.Conn) *trackedConn {
	var victims []*trackedConn
	l.mu.Lock()
	for l.open >= l.max {
		e := l.waiting.Front()
		if e == nil {
			break
		}
		v := e.Value.(*trackedConn)
		l.waiting.Remove(e)
		v.elem, v.released = nil, true
		l.open--
		if v.state == http.StateIdle {
			l.closedIdle.Inc()
		} else {
			l.closedSilent.Inc()
		}
		victims = append(victims, v)
	}
	var tc *trackedConn
	if l.open < l.max {
		tc = &trackedConn{Conn: c, lim: l, state: http.StateNew}
		tc.elem = l.waiting.PushBack(tc)
		l.open++
	}
	l.openGauge.Set(float64(l.open))
	l.mu.Unlock()
	for _, v := range victims {
		// The server's goroutine for v sees the close, and its own Close
		// finds v already released.
		v.Conn.Close()
	}
	if tc == nil {
		c.Close()
		l.closedOverLm.Inc()
	}
	return tc
}

// release stops counting c; it may be called more than once.
func (l *ConnLimiter) release(c *trackedConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.released {
		return
	}
	c.released = true
	if c.elem != nil {
		l.waiting.Remove(c.elem)
		c.elem = nil
	}
	l.open--
	l.openGauge.Set(float64(l.open))
}

// ConnState is the http.Server.ConnState hook that tells the limiter which
// connections are serving a request and which are waiting.
func (l *ConnLimiter) ConnState(c net.Conn, state http.ConnState) {
	// A TLS server hands the hook the *tls.Conn over the accepted one.
	if nc, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = nc.NetConn()
	}
	tc, ok := c.(*trackedConn)
	if !ok || tc.lim != l {
		return
	}
	if state == http.StateClosed {
		l.release(tc)
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if tc.released {
		return
	}
	tc.state = state
	switch state {
	case http.StateIdle:
		if tc.elem != nil {
			l.waiting.MoveToBack(tc.elem)
		} else {
			tc.elem = l.waiting.PushBack(tc)
		}
	case http.StateActive, http.StateHijacked:
		if tc.elem != nil {
			l.waiting.Remove(tc.elem)
			tc.elem = nil
		}
	}
}
