package predlog

import (
	"bufio"
	"encoding/gob"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// ErrSpoolFull is returned by Spool.Put when the batch would take the spool
// past its bound.
var ErrSpoolFull = errors.New("prediction log spool is full")

// Spool keeps, in a directory on local disk, the batches a store could not
// take, so that they outlive an outage of the store and a restart of the
// process. It is bounded in bytes. Each batch is one file, named by its
// sequence number and record count, written to a temporary name, synced and
// renamed, so a crash leaves either the whole batch or none of it.
//
// A Spool belongs to one process: give each replica its own directory.
type Spool struct {
	dir      string
	maxBytes int64

	mu    sync.Mutex
	files []spoolFile // oldest first
	bytes int64
	next  uint64
}

type spoolFile struct {
	seq  uint64
	n    int
	size int64
}

func (f spoolFile) name() string { return fmt.Sprintf("%020d-%d.batch", f.seq, f.n) }

const spoolSuffix = ".batch"

// OpenSpool opens (creating it if needed) the spool in dir, bounded to
// maxBytes (which must be positive), and finds the batches a previous
// process left there.
func OpenSpool(dir string, maxBytes int64) (*Spool, error) {
	if maxBytes <= 0 {
		return nil, fmt.Errorf("prediction log spool bound %d is not positive", maxBytes)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("prediction log spool: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("prediction log spool: %w", err)
	}
	s := &Spool{dir: dir, maxBytes: maxBytes}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".tmp-") {
			// A batch whose write did not finish: it was never counted as
			// spooled, its records were counted dropped or not yet taken.
			_ = os.Remove(filepath.Join(dir, name))
			continue
		}
		f, ok := parseSpoolName(name)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return nil, fmt.Errorf("prediction log spool: %w", err)
		}
		f.size = info.Size()
		s.files = append(s.files, f)
		s.bytes += f.size
		s.next = max(s.next, f.seq+1)
	}
	slices.SortFunc(s.files, func(a, b spoolFile) int { return cmpUint(a.seq, b.seq) })
	return s, nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func parseSpoolName(name string) (spoolFile, bool) {
	base, ok := strings.CutSuffix(name, spoolSuffix)
	if !ok {
		return spoolFile{}, false
	}
	seqText, nText, ok := strings.Cut(base, "-")
	if !ok {
		return spoolFile{}, false
	}
	seq, err1 := strconv.ParseUint(seqText, 10, 64)
	n, err2 := strconv.Atoi(nText)
	if err1 != nil || err2 != nil || n < 0 {
		return spoolFile{}, false
	}
	return spoolFile{seq: seq, n: n}, true
}

// Put writes a batch to the spool, durably. It returns ErrSpoolFull when the
// batch would take the spool past its bound: at once, writing nothing, when
// the spool is already full, and otherwise after encoding the batch to know
// its size, whose file it then removes.
func (s *Spool) Put(recs []Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bytes >= s.maxBytes {
		return ErrSpoolFull
	}
	f := spoolFile{seq: s.next, n: len(recs)}
	tmp := filepath.Join(s.dir, fmt.Sprintf(".tmp-%d", f.seq))
	size, err := writeBatchFile(tmp, recs)
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("prediction log spool: %w", err)
	}
	if s.bytes+size > s.maxBytes {
		_ = os.Remove(tmp)
		return ErrSpoolFull
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, f.name())); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("prediction log spool: %w", err)
	}
	f.size = size
	s.files = append(s.files, f)
	s.bytes += size
	s.next++
	return nil
}

func writeBatchFile(path string, recs []Record) (int64, error) {
	file, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err != nil {
		return 0, err
	}
	w := bufio.NewWriter(file)
	if err := gob.NewEncoder(w).Encode(recs); err != nil {
		file.Close()
		return 0, err
	}
	if err := w.Flush(); err != nil {
		file.Close()
		return 0, err
	}
	if err := file.Sync(); err != nil {
		file.Close()
		return 0, err
	}
	info, err := file.Stat()
	if err != nil {
		file.Close()
		return 0, err
	}
	return info.Size(), file.Close()
}

// Oldest reads the oldest batch back. It returns the batch's record count
// (from its name) also when the file cannot be read or decoded, so that the
// loss can be counted.
func (s *Spool) Oldest() ([]Record, int, error) {
	s.mu.Lock()
	if len(s.files) == 0 {
		s.mu.Unlock()
		return nil, 0, errors.New("prediction log spool is empty")
	}
	f := s.files[0]
	s.mu.Unlock()
	file, err := os.Open(filepath.Join(s.dir, f.name()))
	if err != nil {
		return nil, f.n, fmt.Errorf("prediction log spool: %w", err)
	}
	defer file.Close()
	var recs []Record
	if err := gob.NewDecoder(bufio.NewReader(file)).Decode(&recs); err != nil {
		return nil, f.n, fmt.Errorf("prediction log spool %s: %w", f.name(), err)
	}
	if len(recs) != f.n {
		return nil, f.n, fmt.Errorf("prediction log spool %s: holds %d records", f.name(), len(recs))
	}
	return recs, f.n, nil
}

// RemoveOldest deletes the oldest batch, once the store has taken it.
func (s *Spool) RemoveOldest() error {
	return s.dropOldest(func(path string) error { return os.Remove(path) })
}

// SetAsideOldest renames the oldest batch, one that cannot be read, to end
// in ".corrupt", out of the spool's count and bound, for a person to look
// at.
func (s *Spool) SetAsideOldest() error {
	return s.dropOldest(func(path string) error { return os.Rename(path, path+".corrupt") })
}

func (s *Spool) dropOldest(op func(path string) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.files) == 0 {
		return nil
	}
	f := s.files[0]
	if err := op(filepath.Join(s.dir, f.name())); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("prediction log spool: %w", err)
	}
	s.files = slices.Delete(s.files, 0, 1)
	s.bytes -= f.size
	return nil
}

// Batches returns the number of batches in the spool.
func (s *Spool) Batches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.files)
}

// Records returns the number of records in the spool.
func (s *Spool) Records() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, f := range s.files {
		n += f.n
	}
	return n
}

// Bytes returns the spool's size on disk.
func (s *Spool) Bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}
