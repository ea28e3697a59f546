//go:build unix

package server

import "syscall"

// RaiseFileLimit raises the soft limit on open file descriptors
// (RLIMIT_NOFILE) to the hard limit, as Prometheus does, and returns the
// soft limit then in force. Go's runtime raises it too at start; this makes
// sure and says what it is. An error means the limit could not be read; a
// limit that could not be raised is returned as it is.
func RaiseFileLimit() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur < lim.Max {
		raised := syscall.Rlimit{Cur: lim.Max, Max: lim.Max}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised) == nil {
			lim.Cur = lim.Max
		}
	}
	return lim.Cur, nil
}
