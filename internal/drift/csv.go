package drift

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// ReadCSV reads training rows from CSV with a header: the columns named by
// features, in that order (other columns are ignored). An empty cell, "NA" or
// "NaN" is a missing value. It returns rows x len(features) values.
func ReadCSV(r io.Reader, features []string) ([]float64, error) {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("read header: %w", err)
	}
	cols := make([]int, len(features))
	for i, f := range features {
		cols[i] = slices.Index(header, f)
		if cols[i] < 0 {
			return nil, fmt.Errorf("the header has no column %q (it has %s)", f, strings.Join(header, ", "))
		}
	}
	var out []float64
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		for i, c := range cols {
			cell := strings.TrimSpace(rec[c])
			switch cell {
			case "", "NA", "NaN", "nan":
				out = append(out, math.NaN())
				continue
			}
			v, err := strconv.ParseFloat(cell, 64)
			if err != nil || math.IsInf(v, 0) {
				return nil, fmt.Errorf("line %d, column %s: %q is not a number", line, features[i], cell)
			}
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no rows")
	}
	return out, nil
}
