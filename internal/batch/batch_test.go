package batch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

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
