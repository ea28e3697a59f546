package server

import (
	"sync/atomic"
	"time"
)

// recheckInterval is how often, at most, a credential file (the token
// file, the TLS certificate and key) is read again: a change is seen within
// a second, and a flood of requests or handshakes reads it once a second.
const recheckInterval = time.Second

// recheck decides when a file is read again: at most once per
// recheckInterval, by one caller, whoever comes first once it is due, with
// no lock on the way of the others.
type recheck struct {
	next atomic.Int64 // unix nanoseconds
}

// read records that the file was read at now.
func (r *recheck) read(now time.Time) { r.next.Store(now.Add(recheckInterval).UnixNano()) }

// due reports whether the file is due to be read again at now, and if so
// claims the reading for the caller: others are told no until the next
// interval.
func (r *recheck) due(now time.Time) bool {
	next := r.next.Load()
	return now.UnixNano() >= next && r.next.CompareAndSwap(next, now.Add(recheckInterval).UnixNano())
}
