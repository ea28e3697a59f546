//go:build unix && !linux

package predlog

import (
	"os"
	"syscall"
)

// mapFile sizes f to size bytes and maps them, shared.
func mapFile(f *os.File, size int) ([]byte, error) {
	if err := f.Truncate(int64(size)); err != nil {
		return nil, err
	}
	return syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
}

func unmap(b []byte) error { return syscall.Munmap(b) }
