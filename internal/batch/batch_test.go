package batch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelwatch/modelwatch/internal/model"
	"github.com/modelwatch/modelwatch/internal/model/modeltest"
)

// classifier answers p(yes) = x/10 for a row (x, y).
func classifier(acceptsMissing bool) *modeltest.Model {
	return &modeltest.Model{
		Meta: model.Metadata{Name: "m", Version: "1", Features: []string{"x", "y"}, Classes: []string{"no", "yes"}, Outputs: 2, AcceptsMissing: acceptsMissing},
		PredictFunc: func(_ context.Context, in model.Batch) (model.Result, error) {
			out := model.Result{Rows: in.Rows, Cols: 2}
			for i := range in.Rows {
				p := in.Values[i*2] / 10
				out.Values = append(out.Values, 1-p, p)
			}
			return out, nil
		},
	}
}

func TestCSV(t *testing.T) {
	in := "id,y,x\n1,0,9\n2,0,oops\n3,,1\n4,0\n5,1,2\n"
	var out bytes.Buffer
	rep, err := Run(context.Background(), strings.NewReader(in), &out, Options{Model: classifier(true), Format: "csv", BatchSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	want := "id,y,x,prediction,confidence\n1,0,9,yes,0.9\n3,,1,no,0.9\n5,1,2,no,0.8\n"
	if out.String() != want {
		t.Errorf("output\n%s\nwant\n%s", out.String(), want)
	}
	if rep.Rows != 3 || rep.Failed != 2 || len(rep.BadRows) != 2 ||
		!strings.Contains(rep.BadRows[0], `line 3, column x: "oops" is not a number`) || !strings.Contains(rep.BadRows[1], "line 5") {
		t.Errorf("report %+v", rep)
	}
}

func TestJSONLines(t *testing.T) {
	in := `{"x": 5, "y": 1}
[7, null]

{"x": "a", "y": 1}
{"y": 1}
[1, 2, 3]
`
	var out bytes.Buffer
	rep, err := Run(context.Background(), strings.NewReader(in), &out, Options{Model: classifier(true), Format: "jsonl"})
	if err != nil {
		t.Fatal(err)
	}
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var m map[string]any
		json.Unmarshal([]byte(l), &m)
		lines = append(lines, m)
	}
	if len(lines) != 2 || lines[0]["line"] != 1.0 || lines[0]["prediction"] != "no" || lines[1]["line"] != 2.0 || lines[1]["prediction"] != "yes" {
		t.Errorf("output %s", out.String())
	}
	if rep.Failed != 3 || !strings.Contains(strings.Join(rep.BadRows, "|"), "line 4: x: a is not a number") ||
		!strings.Contains(strings.Join(rep.BadRows, "|"), "line 5: no value for x") || !strings.Contains(strings.Join(rep.BadRows, "|"), "line 6: 3 values; the model takes 2") {
		t.Errorf("bad rows %v", rep.BadRows)
	}
}

func TestFailOnBadRowKeepsWhatWasWritten(t *testing.T) {
	in := "x,y\n1,1\n2,2\n3,3\nbad,4\n5,5\n"
	var out bytes.Buffer
	rep, err := Run(context.Background(), strings.NewReader(in), &out, Options{Model: classifier(false), Format: "csv", BatchSize: 2, FailOnBadRow: true})
	if !errors.Is(err, ErrBadRow) {
		t.Fatalf("err %v", err)
	}
	if rep.Rows != 3 || strings.Count(out.String(), "\n") != 4 {
		t.Errorf("wrote %d rows:\n%s", rep.Rows, out.String())
	}
	// A missing value for a model that takes none is a bad row.
	_, err = Run(context.Background(), strings.NewReader("x,y\n1,\n"), &bytes.Buffer{}, Options{Model: classifier(false), Format: "csv", FailOnBadRow: true})
	if err == nil || !strings.Contains(err.Error(), "missing value, and the model takes none") {
		t.Errorf("missing value: %v", err)
	}
	if _, err := Run(context.Background(), strings.NewReader("a,b\n1,2\n"), &bytes.Buffer{}, Options{Model: classifier(false), Format: "csv"}); err == nil || !strings.Contains(err.Error(), `no column "x"`) {
		t.Errorf("missing column: %v", err)
	}
}

// slowOddBatches is classifier(true) that takes longer over every other batch
// of rows, so that parallel batches finish out of order.
func slowOddBatches() *modeltest.Model {
	m := classifier(true)
	predict := m.PredictFunc
	var calls atomic.Int64
	m.PredictFunc = func(ctx context.Context, in model.Batch) (model.Result, error) {
		if calls.Add(1)%2 == 1 {
			time.Sleep(2 * time.Millisecond)
		}
		return predict(ctx, in)
	}
	return m
}

// rows returns a CSV of n rows after the header "id,y,x", with a bad value
// on every line whose id is a multiple of badEvery, and the number of bad rows.
func rows(n, badEvery int) (string, int) {
	var b strings.Builder
	b.WriteString("id,y,x\n")
	bad := 0
	for i := 1; i <= n; i++ {
		x := strconv.Itoa(i % 10)
		if i%badEvery == 0 {
			x, bad = "bad", bad+1
		}
		fmt.Fprintf(&b, "%d,%d,%s\n", i, i%3, x)
	}
	return b.String(), bad
}

func TestWorkersKeepTheInputOrder(t *testing.T) {
	in, bad := rows(2000, 37)
	var want bytes.Buffer
	wantRep, err := Run(context.Background(), strings.NewReader(in), &want, Options{Model: classifier(true), Format: "csv", BatchSize: 7, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	if wantRep.Rows != 2000-bad || wantRep.Failed != bad || len(wantRep.BadRows) != bad ||
		wantRep.BadRows[0] != `bad row: line 38, column x: "bad" is not a number` {
		t.Fatalf("one worker: rows %d, failed %d, bad rows %d %q", wantRep.Rows, wantRep.Failed, len(wantRep.BadRows), wantRep.BadRows[:1])
	}
	if got := strings.Count(want.String(), "\n"); got != 1+2000-bad {
		t.Fatalf("one worker wrote %d lines, want %d", got, 1+2000-bad)
	}
	for _, workers := range []int{2, 8} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
			var out bytes.Buffer
			var progress []int
			rep, err := Run(context.Background(), strings.NewReader(in), &out, Options{
				Model: slowOddBatches(), Format: "csv", BatchSize: 7, Workers: workers,
				Progress: func(r Report) { progress = append(progress, r.Rows) },
			})
			if err != nil {
				t.Fatal(err)
			}
			if out.String() != want.String() {
				t.Errorf("the output differs from one worker's")
			}
			if rep.Rows != wantRep.Rows || rep.Failed != wantRep.Failed || !slices.Equal(rep.BadRows, wantRep.BadRows) {
				t.Errorf("report: rows %d, failed %d, bad rows %v; want %d, %d, %v", rep.Rows, rep.Failed, rep.BadRows, wantRep.Rows, wantRep.Failed, wantRep.BadRows)
			}
			if len(progress) != (2000+6)/7 || !slices.IsSorted(progress) || progress[len(progress)-1] != rep.Rows {
				t.Errorf("progress reported %d times, ending at %v, want %d times in order ending at %d", len(progress), progress[len(progress)-1:], (2000+6)/7, rep.Rows)
			}
		})
	}
}

func TestWorkersStopAtTheFirstBadRow(t *testing.T) {
	in, _ := rows(1000, 101) // the first bad row is id 101, on line 102
	var out bytes.Buffer
	rep, err := Run(context.Background(), strings.NewReader(in), &out, Options{Model: slowOddBatches(), Format: "csv", BatchSize: 8, Workers: 4, FailOnBadRow: true})
	if !errors.Is(err, ErrBadRow) || !strings.Contains(err.Error(), "line 102, column x") {
		t.Fatalf("err %v, want the bad row on line 102", err)
	}
	if rep.Rows != 100 || rep.Failed != 1 || len(rep.BadRows) != 1 {
		t.Errorf("report: rows %d, failed %d, bad rows %v; want 100 rows and 1 bad", rep.Rows, rep.Failed, rep.BadRows)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 101 || lines[100] != "100,1,0,no,1" {
		t.Errorf("wrote %d lines ending with %q, want the header and ids 1 to 100", len(lines), lines[len(lines)-1])
	}
}

func TestWorkersStopAtAFailedPrediction(t *testing.T) {
	m := classifier(true)
	predict := m.PredictFunc
	m.PredictFunc = func(ctx context.Context, in model.Batch) (model.Result, error) {
		for i := range in.Rows {
			if in.Row(i)[1] == 2 { // y == 2 only in row id 50
				return model.Result{}, errors.New("model failure")
			}
		}
		return predict(ctx, in)
	}
	var b strings.Builder
	b.WriteString("x,y\n")
	for i := 1; i <= 500; i++ {
		y := 0
		if i == 50 {
			y = 2
		}
		fmt.Fprintf(&b, "1,%d\n", y)
	}
	var out bytes.Buffer
	rep, err := Run(context.Background(), strings.NewReader(b.String()), &out, Options{Model: m, Format: "csv", BatchSize: 10, Workers: 4})
	// Row 50 is on line 51, in the batch of lines 42 to 51.
	if err == nil || err.Error() != "predict lines 42 to 51: model failure" {
		t.Fatalf("err %v", err)
	}
	if rep.Rows != 40 || strings.Count(out.String(), "\n") != 41 {
		t.Errorf("wrote %d rows, %d lines; want the 40 rows before the failed batch", rep.Rows, strings.Count(out.String(), "\n"))
	}
}

func TestWorkersStopAtAReadError(t *testing.T) {
	var b strings.Builder
	for range 100 {
		b.WriteString("[1, 2]\n")
	}
	b.WriteString("[" + strings.Repeat(" ", 17<<20) + "]\n[3, 4]\n")
	var out bytes.Buffer
	rep, err := Run(context.Background(), strings.NewReader(b.String()), &out, Options{Model: classifier(true), Format: "jsonl", BatchSize: 16, Workers: 4})
	if err == nil || err.Error() != "line 101: bufio.Scanner: token too long" {
		t.Fatalf("err %v", err)
	}
	if rep.Rows != 100 || strings.Count(out.String(), "\n") != 100 {
		t.Errorf("wrote %d rows; want the 100 before the long line", rep.Rows)
	}
}

func TestWorkersStopWhenTheContextEnds(t *testing.T) {
	in, _ := rows(5000, 1<<30)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out bytes.Buffer
	rep, err := Run(ctx, strings.NewReader(in), &out, Options{Model: slowOddBatches(), Format: "csv", BatchSize: 10, Workers: 4,
		Progress: func(r Report) {
			if r.Rows >= 100 {
				cancel()
			}
		}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	if rep.Rows < 100 || rep.Rows >= 5000 || strings.Count(out.String(), "\n") != rep.Rows+1 {
		t.Errorf("wrote %d lines for %d rows", strings.Count(out.String(), "\n"), rep.Rows)
	}
}
