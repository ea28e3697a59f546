package predlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Options configures a Log. DefaultOptions gives every default; New fills a
// zero size or duration with its default.
type Options struct {
	// QueueSize bounds the records waiting to be written (default 65536).
	// A request whose rows do not all fit is dropped whole (queue_full).
	QueueSize int
	// BatchSize is the most records written in one batch (default 10000).
	// Below it a batch is written after MaxDelay; when the store falls
	// behind, batches grow towards it, and the store's cost per record
	// falls (see BenchmarkSQLiteWrite).
	BatchSize int
	// MaxDelay is the longest a record waits for its batch to fill before
	// it is written (default 100ms).
	MaxDelay time.Duration
	// Sample is the share of requests logged, in [0, 1]; which requests is
	// decided by a hash of the request id, the same on every replica, so a
	// request is logged whole or not at all. Zero logs nothing: start from
	// DefaultOptions, which logs every request.
	Sample float64
	// Retries is the attempts at writing a batch before it goes to the
	// spool or is dropped (default 3), RetryBackoff the wait after the first
	// failed one, doubled after each (default 100ms).
	Retries      int
	RetryBackoff time.Duration
	// WriteTimeout bounds one attempt at writing a batch (default 10s).
	WriteTimeout time.Duration
	// Spool, when set, keeps the batches the store could not take, and
	// replays them every ReplayInterval (default 2s) until the store takes
	// them.
	Spool          *Spool
	ReplayInterval time.Duration
	// PruneInterval is how often the store's Prune runs (default 10m), off
	// the writer's goroutine; it runs once at start too. Negative turns
	// pruning off.
	PruneInterval time.Duration
	// JournalDir, when set, keeps the queued records in a Journal there
	// too, so that a killed process loses none (see Journal); New writes
	// first what a previous process left in it.
	JournalDir string
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger receives the store's errors (default: discarded).
	Logger *slog.Logger
}

// DefaultOptions returns the defaults: every request logged.
func DefaultOptions() Options {
	return Options{
		QueueSize:      65536,
		BatchSize:      10000,
		MaxDelay:       100 * time.Millisecond,
		Sample:         1,
		Retries:        3,
		RetryBackoff:   100 * time.Millisecond,
		WriteTimeout:   10 * time.Second,
		ReplayInterval: 2 * time.Second,
		PruneInterval:  10 * time.Minute,
		Now:            time.Now,
	}
}

// Log is the asynchronous front of a Store: Append queues the records of a
// request without waiting for the store, and one writer goroutine writes
// them in batches. Everything that does not reach the store or the spool is
// counted in model_prediction_log_dropped_total by reason.
type Log struct {
	store     Store
	opts      Options
	m         *metrics
	log       *slog.Logger
	threshold uint64 // a request is logged when hash(id) < threshold
	all       bool   // Sample == 1

	mu     sync.Mutex
	buf    []Record // ring of queued records, oldest at head
	head   int
	n      int
	closed bool
	// appended counts the records ever queued, finished those whose write
	// is over (written, spooled or dropped); progress is closed and
	// replaced whenever finished grows, for Sync.
	appended, finished uint64
	progress           chan struct{}
	journal            *Journal
	// journalFailed says the journal's failure was logged.
	journalFailed bool
	// peak and quiet decide when a grown queue shrinks (shrinkIdle).
	peak, quiet int
	// leftover is what a previous process left in the journal.
	leftover []Record
	// kept counts the records Close's deadline interrupted that the
	// journal keeps (written by the writer goroutine, read after it ends).
	kept int

	wake    chan struct{} // a record arrived in an empty queue, or a batch filled
	drain   chan struct{} // closed by Close: write what is queued and stop
	stopped chan struct{} // closed when the writer and the pruner have returned
	wg      sync.WaitGroup
	ctx     context.Context
	abort   context.CancelFunc // Close's deadline passed
}

// New starts a Log writing to store, with its metrics registered with reg.
// It returns an error for options out of range. The Log does not close the
// store.
func New(store Store, opts Options, reg prometheus.Registerer) (*Log, error) {
	d := DefaultOptions()
	if opts.QueueSize <= 0 {
		opts.QueueSize = d.QueueSize
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = d.BatchSize
	}
	if opts.MaxDelay <= 0 {
		opts.MaxDelay = d.MaxDelay
	}
	if opts.Retries <= 0 {
		opts.Retries = d.Retries
	}
	if opts.RetryBackoff <= 0 {
		opts.RetryBackoff = d.RetryBackoff
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = d.WriteTimeout
	}
	if opts.ReplayInterval <= 0 {
		opts.ReplayInterval = d.ReplayInterval
	}
	if opts.PruneInterval == 0 {
		opts.PruneInterval = d.PruneInterval
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if !(opts.Sample >= 0 && opts.Sample <= 1) {
		return nil, fmt.Errorf("prediction log sample share %v is not between 0 and 1", opts.Sample)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Log{
		store:    store,
		opts:     opts,
		log:      opts.Logger.With("component", "predlog"),
		all:      opts.Sample == 1,
		buf:      make([]Record, min(opts.QueueSize, minQueue)),
		wake:     make(chan struct{}, 1),
		drain:    make(chan struct{}),
		stopped:  make(chan struct{}),
		progress: make(chan struct{}),
		ctx:      ctx,
		abort:    cancel,
	}
	l.threshold = sampleThreshold(opts.Sample)
	var corrupt int
	if opts.JournalDir != "" {
		var err error
		l.journal, l.leftover, corrupt, err = OpenJournal(opts.JournalDir)
		if errors.Is(err, errors.ErrUnsupported) {
			l.log.Warn("prediction log: no journal on this system; a killed process loses the records still queued")
			l.journal = nil
		} else if err != nil {
			cancel()
			return nil, err
		}
	}
	l.m = newMetrics(reg, l)
	if corrupt > 0 {
		l.log.Error("prediction log journal ends in a damaged frame; its records are lost", "frames", corrupt)
		l.m.dropped.WithLabelValues(DropSpoolCorrupt).Add(float64(corrupt))
	}
	l.wg.Add(1)
	go l.run()
	if opts.PruneInterval > 0 {
		l.wg.Add(1)
		go l.pruneLoop()
	}
	go func() {
		l.wg.Wait()
		close(l.stopped)
	}()
	return l, nil
}

// sampleThreshold maps a share in [0, 1) to the bound under which a hash is
// kept.
func sampleThreshold(share float64) uint64 {
	if share >= 1 {
		return math.MaxUint64
	}
	return uint64(share * (1 << 64))
}

// Sampled reports whether the request with this id is logged under the
// Log's sample share.
func (l *Log) Sampled(requestID string) bool {
	return l.all || hashID(requestID) < l.threshold
}

// Admit reports whether a request of rows rows with this id is logged, and
// counts its rows as sampled out when it is not: a caller that builds
// records only for admitted requests spends nothing on the others.
func (l *Log) Admit(requestID string, rows int) bool {
	if l.Sampled(requestID) {
		return true
	}
	l.m.sampledOut.Add(float64(rows))
	return false
}

// hashID is FNV-1a over the id, then SplitMix64's finaliser so that ids
// differing in their last characters spread over the whole range. It is
// fixed, so every replica samples the same requests.
func hashID(id string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(id); i++ {
		h ^= uint64(id[i])
		h *= 1099511628211
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

// Append queues the records of one request's rows (all with the same
// RequestID) to be written, and never waits for the store. The Log keeps
// the records' Input and Output slices until they are written: the caller
// must not change them. A request outside the sample share is counted as
// sampled out; one whose rows do not all fit in the queue, or that comes
// after Close, is dropped whole and counted.
func (l *Log) Append(recs []Record) {
	if len(recs) == 0 {
		return
	}
	if !l.Sampled(recs[0].RequestID) {
		l.m.sampledOut.Add(float64(len(recs)))
		return
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		l.m.dropped.WithLabelValues(DropShutdown).Add(float64(len(recs)))
		return
	}
	if l.n+len(recs) > len(l.buf) && !l.grow(l.n+len(recs)) {
		l.mu.Unlock()
		l.m.dropped.WithLabelValues(DropQueueFull).Add(float64(len(recs)))
		return
	}
	if l.journal != nil {
		if err := l.journal.append(recs, l.appended); err != nil && !l.journalFailed {
			l.journalFailed = true
			l.log.Error("prediction log journal write failed; queued records are not kept on disk", "err", err)
		}
	}
	was := l.n
	at := l.head + l.n
	for i := range recs {
		if at >= len(l.buf) {
			at -= len(l.buf)
		}
		l.buf[at] = recs[i]
		at++
	}
	l.n += len(recs)
	l.appended += uint64(len(recs))
	now := l.n
	l.mu.Unlock()
	if was == 0 || (was < l.opts.BatchSize && now >= l.opts.BatchSize) {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
}

// minQueue is the queue's size when it holds little: it grows, doubling, up
// to QueueSize while the store falls behind, and shrinks back once it is
// empty. A queue of its full size from the start would hold 9 MiB of
// pointers that every garbage collection scans, and which raise the heap
// the collector lets grow.
const minQueue = 1024

// grow makes room for need records, up to QueueSize; false when they
// cannot fit. Callers hold l.mu.
func (l *Log) grow(need int) bool {
	if need > l.opts.QueueSize {
		return false
	}
	size := len(l.buf)
	for size < need {
		size *= 2
	}
	l.resize(min(size, l.opts.QueueSize))
	return true
}

// shrinkIdle halves a grown queue once it has held less than a quarter of
// its places for shrinkAfter takes in a row (about 10 s at the default
// batch delay), so that a burst's memory goes back without the queue
// growing and shrinking at every batch. Callers hold l.mu.
func (l *Log) shrinkIdle() {
	if len(l.buf) <= minQueue {
		return
	}
	l.peak = max(l.peak, l.n+l.opts.BatchSize)
	if l.peak >= len(l.buf)/4 {
		l.quiet, l.peak = 0, 0
		return
	}
	if l.quiet++; l.quiet >= shrinkAfter {
		l.resize(max(len(l.buf)/2, minQueue))
		l.quiet, l.peak = 0, 0
	}
}

// shrinkAfter is the takes of a small queue after which it shrinks.
const shrinkAfter = 100

// resize moves the queue to a ring of size places. Callers hold l.mu.
func (l *Log) resize(size int) {
	buf := make([]Record, size)
	for i := range l.n {
		buf[i] = l.buf[(l.head+i)%len(l.buf)]
	}
	l.buf, l.head = buf, 0
}

// QueueLen returns the number of records waiting to be written.
func (l *Log) QueueLen() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

// Lag returns the age of the oldest queued record (by its Time), 0 when the
// queue is empty.
func (l *Log) Lag() time.Duration {
	l.mu.Lock()
	if l.n == 0 {
		l.mu.Unlock()
		return 0
	}
	t := l.buf[l.head].Time
	l.mu.Unlock()
	return max(l.opts.Now().Sub(t), 0)
}

// take moves up to BatchSize queued records into batch.
func (l *Log) take(batch []Record) []Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := min(l.n, l.opts.BatchSize)
	if l.journal != nil && k > 0 {
		if err := l.journal.rotate(l.appended); err != nil {
			l.log.Error("prediction log journal", "err", err)
		}
	}
	for range k {
		batch = append(batch, l.buf[l.head])
		l.buf[l.head] = Record{}
		l.head++
		if l.head == len(l.buf) {
			l.head = 0
		}
	}
	l.n -= k
	l.shrinkIdle()
	return batch
}

// Close stops taking records and writes what is queued, returning when it
// is written (or spooled) or when ctx is done, whichever is first; records
// still queued then are dropped and counted (reason shutdown), and
// ctx.Err() is returned. Close does not close the store.
func (l *Log) Close(ctx context.Context) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		<-l.stopped
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	close(l.drain)
	var err error
	select {
	case <-l.stopped:
	case <-ctx.Done():
		err = ctx.Err()
		l.abort()
		<-l.stopped
	}
	l.abort()
	n := l.discard()
	switch {
	case (n > 0 || l.kept > 0) && l.journal != nil && l.journal.failed == nil:
		n += l.kept
		// Not lost: the next process writes them.
		l.journal.close(false)
		l.log.Warn("prediction log closed before writing every record; they stay in the journal for the next start", "records", n)
	case n > 0:
		l.m.dropped.WithLabelValues(DropShutdown).Add(float64(n))
		l.log.Warn("prediction log closed before writing every record", "dropped", n)
	case l.journal != nil:
		l.journal.close(true)
		l.journal.remove(l.journal.release(l.finished))
	}
	if n > 0 && l.journal != nil && l.journal.failed != nil {
		l.journal.close(false)
	}
	return err
}

// discard empties the queue and returns how many records it held.
func (l *Log) discard() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.n
	for l.n > 0 {
		l.buf[l.head] = Record{}
		l.head = (l.head + 1) % len(l.buf)
		l.n--
	}
	return n
}

// pruneLoop runs the store's Prune at start and every PruneInterval, beside
// the writer: a store's Prune deletes in chunks, each its own statement, so
// that writes go on in between.
func (l *Log) pruneLoop() {
	defer l.wg.Done()
	t := time.NewTicker(l.opts.PruneInterval)
	defer t.Stop()
	for {
		l.prune()
		select {
		case <-t.C:
		case <-l.drain:
			return
		}
	}
}

// run is the writer goroutine.
func (l *Log) run() {
	defer l.wg.Done()
	replay := time.NewTicker(l.opts.ReplayInterval)
	defer replay.Stop()
	l.writeLeftover()
	l.finish(0)
	l.replay()
	var batch []Record
	for {
		select {
		case <-l.drain:
			l.flush(batch)
			return
		case <-replay.C:
			l.replay()
			continue
		case <-l.wake:
		}
		// Let a batch fill for up to MaxDelay.
		timer := time.NewTimer(l.opts.MaxDelay)
	fill:
		for l.QueueLen() < l.opts.BatchSize {
			select {
			case <-l.wake:
			case <-timer.C:
				break fill
			case <-l.drain:
				break fill
			}
		}
		timer.Stop()
		batch = l.flush(batch)
	}
}

// flush writes every queued record, in batches.
func (l *Log) flush(batch []Record) []Record {
	for l.ctx.Err() == nil {
		l.prepareJournal()
		batch = l.take(batch[:0])
		l.sealJournal()
		if len(batch) == 0 {
			break
		}
		if l.write(batch) {
			l.finish(len(batch))
		} else {
			l.kept += len(batch)
		}
		clear(batch)
	}
	return batch[:0]
}

// prepareJournal makes the journal's next segment ready before take
// rotates to it, so that no file is created while appends wait for the lock.
func (l *Log) prepareJournal() {
	j := l.journal
	if j == nil {
		return
	}
	l.mu.Lock()
	need := j.next == nil && j.failed == nil
	seq := j.seq
	if need {
		j.seq++
	}
	l.mu.Unlock()
	if !need {
		return
	}
	m, err := j.newSegment(seq, segmentSize)
	if err != nil {
		l.log.Error("prediction log journal", "err", err)
		return
	}
	l.mu.Lock()
	j.next = &m
	l.mu.Unlock()
}

// sealJournal cuts and closes the segments take rotated away from, outside
// the lock.
func (l *Log) sealJournal() {
	if l.journal == nil {
		return
	}
	l.mu.Lock()
	ms := l.journal.unsealed
	l.journal.unsealed = nil
	l.mu.Unlock()
	if err := sealAll(ms); err != nil {
		l.log.Error("prediction log journal", "err", err)
	}
}

// finish records that the write of n taken records is over.
func (l *Log) finish(n int) {
	l.mu.Lock()
	l.finished += uint64(n)
	close(l.progress)
	l.progress = make(chan struct{})
	var done []uint64
	if l.journal != nil {
		done = l.journal.release(l.finished)
	}
	l.mu.Unlock()
	if done != nil {
		l.journal.remove(done)
	}
}

// writeLeftover writes what a previous process left in the journal, before
// anything queued now; finish then deletes its segments.
func (l *Log) writeLeftover() {
	if len(l.leftover) == 0 {
		return
	}
	l.log.Info("prediction log: writing the records a previous process left in its journal", "records", len(l.leftover))
	for recs := range slices.Chunk(l.leftover, l.opts.BatchSize) {
		if !l.write(recs) {
			// Closed meanwhile: the old segments stay for the next start.
			l.mu.Lock()
			l.journal.keepLeftover()
			l.mu.Unlock()
			l.kept += len(recs)
		}
	}
	l.leftover = nil
}

// Sync waits until every record appended before it was called has been
// written to the store (or spooled, or dropped and counted), or until ctx
// is done. A label that arrives at the replica that made its prediction
// before the prediction's batch was written is joined after a Sync.
func (l *Log) Sync(ctx context.Context) error {
	l.mu.Lock()
	target := l.appended
	for l.finished < target {
		ch := l.progress
		l.mu.Unlock()
		select {
		case l.wake <- struct{}{}:
		default:
		}
		select {
		case <-ch:
		case <-l.stopped:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
		l.mu.Lock()
	}
	l.mu.Unlock()
	return nil
}

// Store returns the store the Log writes to, for reading and labelling.
func (l *Log) Store() Store { return l.store }

// write gets one batch to the store, or to the spool, or counts it dropped.
// It returns false for a batch that Close's deadline interrupted while the
// journal keeps it for the next process.
func (l *Log) write(batch []Record) bool {
	sp := l.opts.Spool
	if sp != nil && sp.Batches() > 0 {
		// The store was down: keep the order of the backlog, and let the
		// replay timer find when it is back.
		l.toSpool(batch, nil)
		return true
	}
	var err error
	backoff := l.opts.RetryBackoff
	for attempt := range l.opts.Retries {
		if attempt > 0 {
			select {
			case <-time.After(backoff):
			case <-l.ctx.Done():
			}
			backoff *= 2
		}
		if l.ctx.Err() != nil {
			break
		}
		if err = l.attempt(batch); err == nil {
			return true
		}
		if errors.Is(err, ErrRejected) {
			l.log.Error("prediction log store rejected a batch", "records", len(batch), "err", err)
			l.m.dropped.WithLabelValues(DropRejected).Add(float64(len(batch)))
			return true
		}
	}
	if err == nil {
		err = l.ctx.Err()
	}
	if l.ctx.Err() != nil && l.journal != nil && l.journal.failed == nil {
		return false
	}
	l.log.Error("prediction log store write failed", "records", len(batch), "err", err)
	if sp != nil {
		l.toSpool(batch, err)
		return true
	}
	if l.ctx.Err() != nil {
		l.m.dropped.WithLabelValues(DropShutdown).Add(float64(len(batch)))
		return true
	}
	l.m.dropped.WithLabelValues(DropStoreError).Add(float64(len(batch)))
	return true
}

// attempt writes a batch once, and records the outcome in the metrics.
func (l *Log) attempt(batch []Record) error {
	ctx, cancel := context.WithTimeout(l.ctx, l.opts.WriteTimeout)
	defer cancel()
	start := time.Now()
	err := l.store.Write(ctx, batch)
	l.m.duration.Observe(time.Since(start).Seconds())
	if errors.Is(err, ErrRejected) {
		return err // the store is up; the data was wrong
	}
	if err != nil {
		l.m.up.Set(0)
		return err
	}
	l.m.up.Set(1)
	l.m.written.Add(float64(len(batch)))
	return nil
}

// toSpool puts a batch the store could not take in the spool.
func (l *Log) toSpool(batch []Record, cause error) {
	err := l.opts.Spool.Put(batch)
	switch {
	case err == nil:
		l.m.spooled.Add(float64(len(batch)))
	case errors.Is(err, ErrSpoolFull):
		l.m.dropped.WithLabelValues(DropSpoolFull).Add(float64(len(batch)))
	default:
		l.log.Error("prediction log spool write failed", "records", len(batch), "err", err, "store_err", cause)
		l.m.dropped.WithLabelValues(DropStoreError).Add(float64(len(batch)))
	}
}

// replay writes spooled batches to the store, oldest first, until the spool
// is empty or the store fails. A batch is removed from the spool only after
// the store took it; the store's Write being idempotent, a batch replayed
// twice (a crash between the two) is stored once.
func (l *Log) replay() {
	sp := l.opts.Spool
	if sp == nil {
		return
	}
	for sp.Batches() > 0 && l.ctx.Err() == nil {
		select {
		case <-l.drain:
			return // the queue comes first at shutdown; the spool waits on disk
		default:
		}
		recs, n, err := sp.Oldest()
		if err != nil {
			l.log.Error("prediction log spooled batch unreadable, set aside", "records", n, "err", err)
			l.m.dropped.WithLabelValues(DropSpoolCorrupt).Add(float64(n))
			if err := sp.SetAsideOldest(); err != nil {
				l.log.Error("prediction log spool", "err", err)
				return
			}
			continue
		}
		err = l.attempt(recs)
		if errors.Is(err, ErrRejected) {
			// A batch the store will never take must not hold up the
			// ones behind it.
			l.log.Error("prediction log store rejected a spooled batch", "records", n, "err", err)
			l.m.dropped.WithLabelValues(DropRejected).Add(float64(n))
		} else if err != nil {
			return
		}
		if err := sp.RemoveOldest(); err != nil {
			l.log.Error("prediction log spool", "err", err)
			return
		}
	}
}

// prune runs the store's Prune and counts what it deleted.
func (l *Log) prune() {
	ctx, cancel := context.WithTimeout(l.ctx, 5*time.Minute)
	defer cancel()
	p, err := l.store.Prune(ctx, l.opts.Now())
	l.m.pruned.WithLabelValues(PruneRetention).Add(float64(p.Retention))
	l.m.pruned.WithLabelValues(PruneSize).Add(float64(p.Size))
	if err != nil {
		l.log.Error("prediction log prune failed", "err", err)
	}
}
