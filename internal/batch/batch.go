// Package batch scores a file of rows with a model: CSV with a header naming
// the model's features, or JSON lines of {"feature": value, ...} objects or
// [values...] arrays. Predictions are written as they are made, batch by
// batch, so a failed run keeps everything it wrote; bad rows are reported
// with their line numbers and skipped or fatal.
package batch

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
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
	// FailOnBadRow stops the run at the first bad row instead of skipping it.
	FailOnBadRow bool
	// Progress, if set, is called after each batch.
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

// Run reads rows from in and writes one prediction per good row to out, in
// the same format: CSV with the input's columns and the prediction's, or JSON
// lines with line, prediction (class), confidence and probabilities (or
// value for a regressor).
func Run(ctx context.Context, in io.Reader, out io.Writer, opts Options) (Report, error) {
	if opts.BatchSize <= 0 {
		opts.BatchSize = 256
	}
	meta := opts.Model.Metadata()
	if len(meta.Features) == 0 {
		return Report{}, fmt.Errorf("model %s takes tensors, not rows of features", meta.Name)
	}
	rep := Report{Started: time.Now()}
	var next func() (values []float64, line int, raw []string, err error)
	w := bufio.NewWriter(out)
	var header []string
	switch opts.Format {
	case "csv":
		cr := csv.NewReader(in)
		cr.FieldsPerRecord = -1
		h, err := cr.Read()
		if err != nil {
			return rep, fmt.Errorf("read the header: %w", err)
		}
		header = slices.Clone(h)
		cols := make([]int, len(meta.Features))
		for i, f := range meta.Features {
			if cols[i] = slices.Index(header, f); cols[i] < 0 {
				return rep, fmt.Errorf("the header has no column %q", f)
			}
		}
		cw := csv.NewWriter(w)
		outHeader := append(slices.Clone(header), "prediction")
		if meta.IsClassifier() {
			outHeader = append(outHeader, "confidence")
		}
		cw.Write(outHeader)
		cw.Flush()
		line := 1
		next = func() ([]float64, int, []string, error) {
			rec, err := cr.Read()
			line++
			if err != nil {
				var pe *csv.ParseError
				if errors.As(err, &pe) {
					return nil, pe.Line, nil, fmt.Errorf("%w: line %d: %v", ErrBadRow, pe.Line, pe.Err)
				}
				return nil, line, nil, err
			}
			vals := make([]float64, len(cols))
			for i, c := range cols {
				if c >= len(rec) {
					return nil, line, nil, fmt.Errorf("%w: line %d: no value for %s", ErrBadRow, line, meta.Features[i])
				}
				v, err := parseValue(rec[c], meta.AcceptsMissing)
				if err != nil {
					return nil, line, nil, fmt.Errorf("%w: line %d, column %s: %v", ErrBadRow, line, meta.Features[i], err)
				}
				vals[i] = v
			}
			return vals, line, slices.Clone(rec), nil
		}
	case "jsonl":
		sc := bufio.NewScanner(in)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		line := 0
		next = func() ([]float64, int, []string, error) {
			for {
				if !sc.Scan() {
					if err := sc.Err(); err != nil {
						return nil, line + 1, nil, err
					}
					return nil, line, nil, io.EOF
				}
				line++
				if strings.TrimSpace(sc.Text()) != "" {
					break
				}
			}
			vals, err := parseJSONRow(sc.Bytes(), meta)
			if err != nil {
				return nil, line, nil, fmt.Errorf("%w: line %d: %v", ErrBadRow, line, err)
			}
			return vals, line, nil, nil
		}
	default:
		return rep, fmt.Errorf("format %q is neither csv nor jsonl", opts.Format)
	}

	batch := model.Batch{Cols: len(meta.Features)}
	var lines []int
	var raws [][]string
	flush := func() error {
		if batch.Rows == 0 {
			return nil
		}
		res, err := model.SafePredict(ctx, opts.Model, batch)
		if err != nil {
			return fmt.Errorf("predict lines %d to %d: %w", lines[0], lines[len(lines)-1], err)
		}
		if err := write(w, opts.Format, meta, res, lines, raws); err != nil {
			return err
		}
		if err := w.Flush(); err != nil {
			return err
		}
		rep.Rows += batch.Rows
		batch.Rows, batch.Values, lines, raws = 0, batch.Values[:0], lines[:0], raws[:0]
		rep.Duration = time.Since(rep.Started)
		if opts.Progress != nil {
			opts.Progress(rep)
		}
		return nil
	}
	for {
		if err := ctx.Err(); err != nil {
			return finish(rep, w, err)
		}
		vals, line, raw, err := next()
		if errors.Is(err, io.EOF) {
			break
		}
		if errors.Is(err, ErrBadRow) {
			rep.Failed++
			if len(rep.BadRows) < 100 {
				rep.BadRows = append(rep.BadRows, err.Error())
			}
			if opts.FailOnBadRow {
				return finish(rep, w, errors.Join(flush(), err))
			}
			continue
		}
		if err != nil {
			return finish(rep, w, errors.Join(flush(), fmt.Errorf("line %d: %w", line, err)))
		}
		batch.Values = append(batch.Values, vals...)
		batch.Rows++
		lines = append(lines, line)
		raws = append(raws, raw)
		if batch.Rows == opts.BatchSize {
			if err := flush(); err != nil {
				return finish(rep, w, err)
			}
		}
	}
	return finish(rep, w, flush())
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
	dec := json.NewDecoder(strings.NewReader(string(b)))
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
