package predlog

import (
	"os"
	"syscall"
)

// mapFile allocates size bytes of f on disk and maps them, shared, with
// their pages present: a first write to a page of a shared file mapping
// costs tens of microseconds on ext4, which the writer pays here instead of
// a request.
func mapFile(f *os.File, size int) ([]byte, error) {
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, int64(size)); err != nil {
		// A file system without fallocate: a sparse file does too.
		if err := f.Truncate(int64(size)); err != nil {
			return nil, err
		}
	}
	return syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED|syscall.MAP_POPULATE)
}

func unmap(b []byte) error { return syscall.Munmap(b) }
