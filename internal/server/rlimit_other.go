//go:build !unix

package server

import "errors"

// RaiseFileLimit reports that the file descriptor limit is not known on
// this system.
func RaiseFileLimit() (uint64, error) {
	return 0, errors.New("the file descriptor limit is not known on this system")
}
