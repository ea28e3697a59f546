//go:build !unix

package predlog

import (
	"errors"
	"os"
)

// mapFile: the journal needs a shared file mapping, which this system does
// not offer through package syscall; the Log runs without a journal.
func mapFile(*os.File, int) ([]byte, error) { return nil, errors.ErrUnsupported }

func unmap([]byte) error { return nil }
