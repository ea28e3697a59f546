// Package batch scores a file of rows with a model: CSV with a header naming
// the model's features, or JSON lines of {"feature": value, ...} objects or
// [values...] arrays. Predictions are written as they are made, batch by
// batch, so a failed run keeps everything it wrote; bad rows are reported
// with their line numbers and skipped or fatal.
package batch

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/modelwatch/modelwatch/internal/model"
)

// Options configures a run.
type Options struct {
	Model model.Model
	// Format is "csv" or "jsonl".
	Format string
	// BatchSize is the rows per model call (default 256).
	BatchSize int
	// Workers is how many batches are parsed, predicted and formatted at
	// once (default runtime.GOMAXPROCS(0), at most 1024). An input of one
	// batch or less is scored on the calling goroutine whatever the setting.
	Workers int
	// FailOnBadRow stops the run at the first bad row instead of skipping it.
	FailOnBadRow bool
	// Progress, if set, is called after each batch is written, from the
	// goroutine that called Run.
	Progress func(Report)
}

// Report is what a run did.
type Report struct {
	Rows     int // rows predicted
	Failed   int // bad rows
	Started  time.Time
	Duration time.Duration
	// BadRows describes the first bad rows (at most 100), with line numbers.
	BadRows []string
}

// ErrBadRow is wrapped by the error of a run stopped by a bad row.
var ErrBadRow = errors.New("bad row")

const (
	// maxBadRows is how many bad rows a Report describes.
	maxBadRows = 100
	// maxWorkers bounds Options.Workers, and with it the batches in memory.
	maxWorkers = 1024
)

// Run reads rows from in and writes one prediction per good row to out, in
// the same format: CSV with the input's columns and the prediction's, or JSON
// lines with line, prediction (class), confidence and probabilities (or
// value for a regressor).
//
// Rows are read in batches of BatchSize; up to Workers batches are parsed,
// predicted and formatted at once, and written in the input's order as soon
// as every batch before them is written. A run that stops (a bad row with
// FailOnBadRow, a failed prediction, a read error, ctx ending) has written
// every prediction for the rows before the one that stopped it, and no other.
// Run returns once it no longer reads in or writes out.
func Run(ctx context.Context, in io.Reader, out io.Writer, opts Options) (Report, error) {
	if opts.BatchSize <= 0 {
		opts.BatchSize = 256
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	opts.Workers = min(opts.Workers, maxWorkers)
	meta := opts.Model.Metadata()
	if len(meta.Features) == 0 {
		return Report{}, fmt.Errorf("model %s takes tensors, not rows of features", meta.Name)
	}
	rep := Report{Started: time.Now()}
	w := bufio.NewWriter(out)
	r, err := newReader(in, w, opts.Format, meta)
	if err != nil {
		return rep, err
	}
	s := &scorer{opts: opts, meta: meta, cols: r.cols}
	first := r.chunk(opts.BatchSize)
	if opts.Workers == 1 || first.last {
		return s.sequential(ctx, r, first, w, rep)
	}
	return s.parallel(ctx, r, first, w, rep)
}

// item is one row as read: its line number and either its fields (CSV), its
// text (JSON lines) or the reason it is a bad row.
type item struct {
	line   int
	fields []string
	text   []byte
	err    error
}

// chunk is one batch of rows on its way through a run.
type chunk struct {
	items []item
	// last is set on the chunk that ends the input; readErr, if set, is
	// the error that ended it, reported once the chunk's rows are written.
	last    bool
	readErr error

	// Set by score.
	out  bytes.Buffer
	rows int
	bad  []error
	err  error
	done chan struct{}
}

// reader splits the input into chunks of rows.
type reader struct {
	next func() (item, error)
	// cols are the CSV columns of the model's features, in its order.
	cols []int
}

// newReader reads the CSV header, checks it and writes the output's header.
func newReader(in io.Reader, w io.Writer, format string, meta model.Metadata) (*reader, error) {
	switch format {
	case "csv":
		cr := csv.NewReader(in)
		cr.FieldsPerRecord = -1
		header, err := cr.Read()
		if err != nil {
			return nil, fmt.Errorf("read the header: %w", err)
		}
		header = slices.Clone(header)
		cols := make([]int, len(meta.Features))
		for i, f := range meta.Features {
			if cols[i] = slices.Index(header, f); cols[i] < 0 {
				return nil, fmt.Errorf("the header has no column %q", f)
			}
		}
		outHeader := append(header, "prediction")
		if meta.IsClassifier() {
			outHeader = append(outHeader, "confidence")
		}
		cw := csv.NewWriter(w)
		cw.Write(outHeader)
		cw.Flush()
		line := 1
		return &reader{cols: cols, next: func() (item, error) {
			rec, err := cr.Read()
			line++
			if err != nil {
				var pe *csv.ParseError
				if errors.As(err, &pe) {
					return item{line: pe.Line, err: fmt.Errorf("%w: line %d: %v", ErrBadRow, pe.Line, pe.Err)}, nil
				}
				return item{line: line}, err
			}
			return item{line: line, fields: rec}, nil
		}}, nil
	case "jsonl":
		sc := bufio.NewScanner(in)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		line := 0
		return &reader{next: func() (item, error) {
			for {
				if !sc.Scan() {
					if err := sc.Err(); err != nil {
						return item{line: line + 1}, err
					}
					return item{line: line}, io.EOF
				}
				line++
				if len(bytes.TrimSpace(sc.Bytes())) != 0 {
					return item{line: line, text: slices.Clone(sc.Bytes())}, nil
				}
			}
		}}, nil
	default:
		return nil, fmt.Errorf("format %q is neither csv nor jsonl", format)
	}
}

// chunk reads up to n rows, or fewer at the end of the input.
func (r *reader) chunk(n int) *chunk {
	c := &chunk{items: make([]item, 0, n), done: make(chan struct{})}
	for len(c.items) < n {
		it, err := r.next()
		if errors.Is(err, io.EOF) {
			c.last = true
			break
		}
		if err != nil {
			c.last, c.readErr = true, fmt.Errorf("line %d: %w", it.line, err)
			break
		}
		c.items = append(c.items, it)
	}
	return c
}

// scorer turns chunks of rows into predictions.
type scorer struct {
	opts Options
	meta model.Metadata
	cols []int
}

// score parses a chunk's rows, predicts the good ones and formats the
// predictions. With FailOnBadRow it stops at the chunk's first bad row.
func (s *scorer) score(ctx context.Context, c *chunk) {
	defer close(c.done)
	batch := model.Batch{Cols: len(s.meta.Features), Values: make([]float64, 0, len(c.items)*len(s.meta.Features))}
	lines := make([]int, 0, len(c.items))
	var raws [][]string
	for _, it := range c.items {
		vals, err := s.parse(it)
		if err != nil {
			c.bad = append(c.bad, err)
			if s.opts.FailOnBadRow {
				break
			}
			continue
		}
		batch.Values = append(batch.Values, vals...)
		batch.Rows++
		lines = append(lines, it.line)
		raws = append(raws, it.fields)
	}
	if batch.Rows == 0 {
		return
	}
	res, err := model.SafePredict(ctx, s.opts.Model, batch)
	if err != nil {
		c.err = fmt.Errorf("predict lines %d to %d: %w", lines[0], lines[len(lines)-1], err)
		return
	}
	if err := write(&c.out, s.opts.Format, s.meta, res, lines, raws); err != nil {
		c.err = err
		return
	}
	c.rows = batch.Rows
}

// parse reads one row's feature values; its error wraps ErrBadRow.
func (s *scorer) parse(it item) ([]float64, error) {
	if it.err != nil {
		return nil, it.err
	}
	if it.text != nil {
		vals, err := parseJSONRow(it.text, s.meta)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrBadRow, it.line, err)
		}
		return vals, nil
	}
	vals := make([]float64, len(s.meta.Features))
	for i, f := range s.meta.Features {
		c := s.cols[i]
		if c >= len(it.fields) {
			return nil, fmt.Errorf("%w: line %d: no value for %s", ErrBadRow, it.line, f)
		}
		v, err := parseValue(it.fields[c], s.meta.AcceptsMissing)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d, column %s: %v", ErrBadRow, it.line, f, err)
		}
		vals[i] = v
	}
	return vals, nil
}

// sequential scores one chunk after another on the calling goroutine.
func (s *scorer) sequential(ctx context.Context, r *reader, c *chunk, w *bufio.Writer, rep Report) (Report, error) {
	for {
		if err := ctx.Err(); err != nil {
			return finish(rep, w, err)
		}
		s.score(ctx, c)
		if stop, err := s.commit(&rep, w, c); stop {
			return finish(rep, w, err)
		}
		c = r.chunk(s.opts.BatchSize)
	}
}

// parallel reads chunks on one goroutine, scores them on Workers others and
// writes them in order on the calling goroutine. At most 3*Workers chunks
// are in memory at once: Workers being scored and twice as many waiting.
func (s *scorer) parallel(ctx context.Context, r *reader, first *chunk, w *bufio.Writer, rep Report) (Report, error) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	stop := func(err error) (Report, error) {
		cancel()
		wg.Wait()
		return finish(rep, w, err)
	}
	work := make(chan *chunk)
	order := make(chan *chunk, 2*s.opts.Workers)
	for range s.opts.Workers {
		wg.Go(func() {
			for c := range work {
				s.score(ctx, c)
			}
		})
	}
	wg.Go(func() {
		defer close(work)
		defer close(order)
		for c := first; ; c = r.chunk(s.opts.BatchSize) {
			select {
			case order <- c:
			case <-ctx.Done():
				return
			}
			select {
			case work <- c:
			case <-ctx.Done():
				return
			}
			if c.last {
				return
			}
		}
	})
	for c := range order {
		select {
		case <-c.done:
		case <-ctx.Done():
		}
		if err := ctx.Err(); err != nil {
			return stop(err)
		}
		if done, err := s.commit(&rep, w, c); done {
			return stop(err)
		}
	}
	return stop(ctx.Err())
}

// commit writes a scored chunk and counts it in rep. It reports whether the
// run ends with this chunk, and the error it ends with.
func (s *scorer) commit(rep *Report, w *bufio.Writer, c *chunk) (bool, error) {
	for _, err := range c.bad {
		rep.Failed++
		if len(rep.BadRows) < maxBadRows {
			rep.BadRows = append(rep.BadRows, err.Error())
		}
	}
	var badErr error
	if s.opts.FailOnBadRow && len(c.bad) > 0 {
		badErr = c.bad[0]
	}
	if c.err != nil {
		return true, errors.Join(c.err, badErr)
	}
	if c.rows > 0 {
		w.Write(c.out.Bytes())
		if err := w.Flush(); err != nil {
			return true, errors.Join(err, badErr)
		}
		rep.Rows += c.rows
		rep.Duration = time.Since(rep.Started)
		if s.opts.Progress != nil {
			s.opts.Progress(*rep)
		}
	}
	if badErr != nil {
		return true, badErr
	}
	return c.last, c.readErr
}

func finish(rep Report, w *bufio.Writer, err error) (Report, error) {
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	rep.Duration = time.Since(rep.Started)
	return rep, err
}

func parseValue(s string, missingOK bool) (float64, error) {
	s = strings.TrimSpace(s)
	switch s {
	case "", "NA", "NaN", "nan", "null":
		if !missingOK {
			return 0, errors.New("missing value, and the model takes none")
		}
		return math.NaN(), nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(v, 0) {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	return v, nil
}

// parseJSONRow reads {"feature": value, ...} or [values...].
func parseJSONRow(b []byte, meta model.Metadata) ([]float64, error) {
	var v any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("not JSON: %v", err)
	}
	vals := make([]float64, len(meta.Features))
	get := func(i int, x any) error {
		switch x := x.(type) {
		case json.Number:
			f, err := x.Float64()
			if err != nil || math.IsInf(f, 0) {
				return fmt.Errorf("%s: %s is not a finite number", meta.Features[i], x)
			}
			vals[i] = f
		case nil:
			if !meta.AcceptsMissing {
				return fmt.Errorf("%s: missing value, and the model takes none", meta.Features[i])
			}
			vals[i] = math.NaN()
		default:
			return fmt.Errorf("%s: %v is not a number", meta.Features[i], x)
		}
		return nil
	}
	switch v := v.(type) {
	case map[string]any:
		for i, f := range meta.Features {
			x, ok := v[f]
			if !ok {
				return nil, fmt.Errorf("no value for %s", f)
			}
			if err := get(i, x); err != nil {
				return nil, err
			}
		}
	case []any:
		if len(v) != len(meta.Features) {
			return nil, fmt.Errorf("%d values; the model takes %d", len(v), len(meta.Features))
		}
		for i, x := range v {
			if err := get(i, x); err != nil {
				return nil, err
			}
		}
	default:
		return nil, errors.New("a row must be an object of features or a list of values")
	}
	return vals, nil
}

func write(w io.Writer, format string, meta model.Metadata, res model.Result, lines []int, raws [][]string) error {
	if format == "csv" {
		cw := csv.NewWriter(w)
		for i := range res.Rows {
			rec := append(slices.Clone(raws[i]), "")
			row := res.Row(i)
			if meta.IsClassifier() {
				best := 0
				for j, p := range row {
					if p > row[best] {
						best = j
					}
				}
				rec[len(rec)-1] = meta.Classes[best]
				rec = append(rec, strconv.FormatFloat(row[best], 'g', -1, 64))
			} else {
				rec[len(rec)-1] = strconv.FormatFloat(row[0], 'g', -1, 64)
			}
			cw.Write(rec)
		}
		cw.Flush()
		return cw.Error()
	}
	enc := json.NewEncoder(w)
	for i := range res.Rows {
		row := res.Row(i)
		out := map[string]any{"line": lines[i]}
		if meta.IsClassifier() {
			best := 0
			probs := map[string]float64{}
			for j, p := range row {
				probs[meta.Classes[j]] = p
				if p > row[best] {
					best = j
				}
			}
			out["prediction"], out["confidence"], out["probabilities"] = meta.Classes[best], row[best], probs
		} else {
			out["value"] = row[0]
		}
		if err := enc.Encode(out); err != nil {
			return err
		}
	}
	return nil
}
