package predlog

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Journal keeps the records waiting in a Log's queue in files on local
// disk, so that a process killed without warning (SIGKILL, the OOM killer)
// loses none of the predictions it answered: Append copies each request's
// records into the current segment before it returns, the Log starts a new
// segment whenever its writer takes a batch, and deletes a segment once
// every record in it is written (or spooled, or counted dropped). A Log
// opened on a journal that a previous process left writes its records
// first; the stores' Write being idempotent, records that were written
// already are stored once.
//
// A segment is a file mapped into memory (mmap, MAP_SHARED): appending is a
// copy into the kernel's page cache, with no system call, and what is copied
// there outlives the process. The journal is not synced: a machine that
// loses power may lose the last seconds. A Journal belongs to one process:
// give each replica its own directory.
type Journal struct {
	dir string
	cur mapped
	// next is a segment made ready ahead of the next rotation (Prepare), so
	// that no file is created while appends wait.
	next *mapped
	// unsealed are rotated segments still to be cut and closed (Seal).
	unsealed []mapped
	seq      uint64 // the next segment's number
	// closed are the segments before the current one, oldest first, each
	// with the count of records appended up to its end.
	closed []segment
	// buf is reused to encode a request's records.
	buf []byte
	// failed is the last error that left the journal without a segment.
	failed error
}

// mapped is one segment file and its mapping.
type mapped struct {
	file *os.File
	mem  []byte
	seq  uint64
	off  int // bytes used in mem
}

type segment struct {
	seq uint64
	end uint64
}

const journalSuffix = ".journal"

// segmentSize is the size a segment is mapped with: a 100 ms batch of
// 20,000 one-row requests a second fills about a seventh of it. Its pages
// are made present when it is made (off the request path): a first write to
// a page of a shared file mapping costs tens of microseconds on ext4, and
// the two segments mapped at a time hold 4 MiB of page cache.
const segmentSize = 2 << 20

func (j *Journal) path(seq uint64) string {
	return filepath.Join(j.dir, fmt.Sprintf("%020d%s", seq, journalSuffix))
}

// OpenJournal opens the journal in dir, creating the directory if needed,
// and reads back the records a previous process left in it, with the
// number of damaged frames it found. The Log writes those records to its
// store before any other.
func OpenJournal(dir string) (*Journal, []Record, int, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, nil, 0, fmt.Errorf("prediction log journal: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("prediction log journal: %w", err)
	}
	j := &Journal{dir: dir}
	var left []Record
	corrupt := 0
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), journalSuffix)
		if !ok {
			continue
		}
		seq, err := strconv.ParseUint(name, 10, 64)
		if err != nil {
			continue
		}
		recs, bad, err := readSegment(j.path(seq))
		if err != nil {
			return nil, nil, 0, err
		}
		left = append(left, recs...)
		corrupt += bad
		j.closed = append(j.closed, segment{seq: seq})
		j.seq = max(j.seq, seq+1)
	}
	if j.cur, err = j.newSegment(j.seq, segmentSize); err != nil {
		return nil, nil, 0, err
	}
	j.seq++
	return j, left, corrupt, nil
}

// newSegment creates segment seq of size bytes, allocated on disk and
// mapped with its pages present, zero-filled: a frame length of 0 marks the
// end of what was written.
func (j *Journal) newSegment(seq uint64, size int) (mapped, error) {
	f, err := os.OpenFile(j.path(seq), os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o640)
	if err != nil {
		return mapped{}, fmt.Errorf("prediction log journal: %w", err)
	}
	mem, err := mapFile(f, size)
	if err != nil {
		f.Close()
		return mapped{}, fmt.Errorf("prediction log journal: %w", err)
	}
	return mapped{file: f, mem: mem, seq: seq}, nil
}

// seal cuts a segment to what it holds, unmaps and closes it.
func (m mapped) seal() error {
	err := unmap(m.mem)
	if terr := m.file.Truncate(int64(m.off)); err == nil {
		err = terr
	}
	if cerr := m.file.Close(); err == nil {
		err = cerr
	}
	return err
}

// append copies one request's records into the current segment as one
// frame; appended is the count of records appended before them, the end of
// the current segment should it be full. Callers hold the Log's lock.
func (j *Journal) append(recs []Record, appended uint64) error {
	if j.cur.mem == nil {
		return j.failed
	}
	j.buf = encodeFrame(j.buf[:0], recs)
	if j.cur.off+len(j.buf) > len(j.cur.mem) {
		// Full (hundreds of thousands of requests within one batch
		// delay): a segment is made here, on the request path.
		if err := j.switchTo(appended, max(segmentSize, len(j.buf))); err != nil {
			return err
		}
	}
	j.cur.off += copy(j.cur.mem[j.cur.off:], j.buf)
	return nil
}

// rotate ends the current segment, which holds records up to end (counted
// as Log.appended counts them), and continues in the next one; nothing
// happens when the current segment is empty. Callers hold the Log's lock.
func (j *Journal) rotate(end uint64) error {
	if j.cur.off == 0 || j.cur.mem == nil {
		return nil
	}
	return j.switchTo(end, segmentSize)
}

func (j *Journal) switchTo(end uint64, size int) error {
	j.unsealed = append(j.unsealed, j.cur)
	j.closed = append(j.closed, segment{seq: j.cur.seq, end: end})
	j.cur = mapped{}
	if j.next != nil && len(j.next.mem) >= size {
		j.cur, j.next = *j.next, nil
		return nil
	}
	m, err := j.newSegment(j.seq, size)
	j.seq++
	if err != nil {
		j.failed = err
		return err
	}
	j.cur = m
	return nil
}

// sealAll seals segments taken from unsealed.
func sealAll(ms []mapped) error {
	var first error
	for _, m := range ms {
		if err := m.seal(); err != nil && first == nil {
			first = fmt.Errorf("prediction log journal: %w", err)
		}
	}
	return first
}

// release returns the closed segments whose records are all finished, and
// forgets them.
func (j *Journal) release(finished uint64) []uint64 {
	var done []uint64
	for len(j.closed) > 0 && j.closed[0].end <= finished {
		done = append(done, j.closed[0].seq)
		j.closed = j.closed[1:]
	}
	return done
}

// keepLeftover keeps the segments a previous process left, which are not
// all written.
func (j *Journal) keepLeftover() {
	for i := range j.closed {
		if j.closed[i].end == 0 {
			j.closed[i].end = math.MaxUint64
		}
	}
}

func (j *Journal) remove(seqs []uint64) {
	for _, s := range seqs {
		_ = os.Remove(j.path(s))
	}
}

// close seals every segment; with empty, it deletes the current one (and
// the prepared one, always).
func (j *Journal) close(empty bool) {
	sealAll(j.unsealed)
	j.unsealed = nil
	if j.next != nil {
		j.next.seal()
		_ = os.Remove(j.path(j.next.seq))
		j.next = nil
	}
	if j.cur.mem == nil {
		return
	}
	j.cur.seal()
	if empty {
		_ = os.Remove(j.path(j.cur.seq))
	}
	j.cur = mapped{}
}

// Frame layout, little-endian: payload length (uint32), CRC-32C of the
// payload (uint32), payload. The payload is the record count (uvarint) and
// each record: request id, model, version and class (uvarint length and
// bytes), row (uvarint), time (varint Unix nanoseconds), input and output
// (uvarint count and float64 bits each).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// maxFrame bounds a frame read back: a request's records, at most the
// largest batch of rows with their values.
const maxFrame = 1 << 30

func encodeFrame(b []byte, recs []Record) []byte {
	b = append(b, 0, 0, 0, 0, 0, 0, 0, 0)
	b = binary.AppendUvarint(b, uint64(len(recs)))
	for i := range recs {
		r := &recs[i]
		for _, s := range []string{r.RequestID, r.Model, r.Version, r.Class} {
			b = binary.AppendUvarint(b, uint64(len(s)))
			b = append(b, s...)
		}
		b = binary.AppendUvarint(b, uint64(r.Row))
		b = binary.AppendVarint(b, r.Time.UnixNano())
		for _, vs := range [][]float64{r.Input, r.Output} {
			b = binary.AppendUvarint(b, uint64(len(vs)))
			for _, v := range vs {
				b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
			}
		}
	}
	payload := b[8:]
	binary.LittleEndian.PutUint32(b[0:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(b[4:], crc32.Checksum(payload, castagnoli))
	return b
}

var errFrame = errors.New("malformed journal frame")

func decodeFrame(p []byte) ([]Record, error) {
	d := decoder{p: p}
	n := d.uvarint()
	if n > uint64(len(p)) {
		return nil, errFrame
	}
	recs := make([]Record, 0, n)
	for range n {
		var r Record
		r.RequestID, r.Model, r.Version, r.Class = d.str(), d.str(), d.str(), d.str()
		r.Row = int(d.uvarint())
		r.Time = time.Unix(0, d.varint())
		r.Input, r.Output = d.floats(), d.floats()
		if d.err != nil {
			return nil, d.err
		}
		recs = append(recs, r)
	}
	if len(d.p) != 0 {
		return nil, errFrame
	}
	return recs, nil
}

type decoder struct {
	p   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.p)
	if n <= 0 {
		d.err, d.p = errFrame, nil
		return 0
	}
	d.p = d.p[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.p)
	if n <= 0 {
		d.err, d.p = errFrame, nil
		return 0
	}
	d.p = d.p[n:]
	return v
}

func (d *decoder) str() string {
	n := d.uvarint()
	if n > uint64(len(d.p)) {
		d.err, d.p = errFrame, nil
		return ""
	}
	s := string(d.p[:n])
	d.p = d.p[n:]
	return s
}

func (d *decoder) floats() []float64 {
	n := d.uvarint()
	if n > uint64(len(d.p)/8) {
		d.err, d.p = errFrame, nil
		return nil
	}
	if n == 0 {
		return nil
	}
	vs := make([]float64, n)
	for i := range vs {
		vs[i] = math.Float64frombits(binary.LittleEndian.Uint64(d.p[8*i:]))
	}
	d.p = d.p[8*n:]
	return vs
}

// readSegment reads a segment's frames up to its end or its first damaged
// frame, and says whether one was damaged (1) or not (0): a frame is
// written whole by one write(2), so only a machine's crash damages the
// last.
func readSegment(path string) ([]Record, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("prediction log journal: %w", err)
	}
	defer f.Close()
	r := bufio.NewReader(f)
	var recs []Record
	var head [8]byte
	for {
		if _, err := io.ReadFull(r, head[:]); err == io.EOF {
			return recs, 0, nil
		} else if err != nil {
			return recs, 1, nil
		}
		n := binary.LittleEndian.Uint32(head[0:])
		if n == 0 && binary.LittleEndian.Uint32(head[4:]) == 0 {
			return recs, 0, nil // the zeros after the last frame of a mapped segment
		}
		if n > maxFrame {
			return recs, 1, nil
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(r, p); err != nil || crc32.Checksum(p, castagnoli) != binary.LittleEndian.Uint32(head[4:]) {
			return recs, 1, nil
		}
		got, err := decodeFrame(p)
		if err != nil {
			return recs, 1, nil
		}
		recs = append(recs, got...)
	}
}
