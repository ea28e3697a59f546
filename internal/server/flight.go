package server

import (
	"encoding/json"
	"net/http"
	"slices"
	"sync"
)

// flight shares one computation of an answer among the requests that ask
// for it while it runs, and refuses requests past max at once, so that a
// dashboard left polling, or a hundred of them, costs one computation at a
// time and never more than max waiting requests.
type flight struct {
	max int

	mu      sync.Mutex
	waiting int
	cur     *flightCall
}

type flightCall struct {
	done chan struct{}
	body json.RawMessage
	err  *apiError
}

// do returns the answer of f: the one of the call in progress if there is
// one, else of a new call. Past max requests at once it returns a 503 at
// once. The body returned is shared and must not be changed.
func (fl *flight) do(r *http.Request, f func() (any, *apiError)) (json.RawMessage, *apiError) {
	fl.mu.Lock()
	if fl.waiting >= fl.max {
		fl.mu.Unlock()
		e := newError(errOverloaded, "%d status requests are already being answered; retry shortly", fl.max)
		e.statusCode, e.retryAfter = http.StatusServiceUnavailable, 1
		return nil, e
	}
	fl.waiting++
	c, lead := fl.cur, fl.cur == nil
	if lead {
		c = &flightCall{done: make(chan struct{})}
		fl.cur = c
	}
	fl.mu.Unlock()
	defer func() {
		fl.mu.Lock()
		fl.waiting--
		fl.mu.Unlock()
	}()
	if lead {
		func() {
			defer func() {
				fl.mu.Lock()
				fl.cur = nil
				fl.mu.Unlock()
				close(c.done)
			}()
			v, aerr := f()
			if aerr != nil {
				c.err = aerr
				return
			}
			body, err := json.Marshal(v)
			if err != nil {
				c.err = newError(errInternal, "encoding the response failed")
				return
			}
			// Each request appends a newline to the body it writes: no
			// spare capacity lets one write into another's.
			c.body = slices.Clip(body)
		}()
	}
	select {
	case <-c.done:
	case <-r.Context().Done():
		return nil, newError(errCanceled, "the client closed the request")
	}
	if c.err != nil {
		e := *c.err
		return nil, &e
	}
	return c.body, nil
}

// sharedStatus serves GET /status.json through statusFlight.
func (s *Server) sharedStatus(r *http.Request) (any, *apiError) {
	body, err := s.statusFlight.do(r, func() (any, *apiError) { return s.status(r) })
	if err != nil {
		return nil, err
	}
	return body, nil
}
