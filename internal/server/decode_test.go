package server

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/modelwatch/modelwatch/internal/model"
)

func TestDecodeRows(t *testing.T) {
	for _, tc := range []struct {
		body       string
		n, cols    int
		values     []float64
		ragged     int
		maxRows    int
		wantStored int
		names      string // the strings kept, with where they stand
	}{
		{body: `{"inputs": [[1, 2.5, -3e2], [4, 5, 6]]}`, n: 2, cols: 3, values: []float64{1, 2.5, -300, 4, 5, 6}, ragged: -1},
		{body: `{"inputs": [1, 2]}`, n: 1, cols: 2, values: []float64{1, 2}, ragged: -1},
		{body: "{\"inputs\":\n[ [ 1 ,null ] ,\t[2,3] ]\n}", n: 2, cols: 2, values: []float64{1, math.NaN(), 2, 3}, ragged: -1},
		{body: `{"inputs": [[1, 2], [3], [4, 5, 6]]}`, n: 3, cols: 2, values: []float64{1, 2, 3}, ragged: 1},
		{body: `{"inputs": []}`, n: 0, cols: 0, values: nil, ragged: -1},
		{body: `{"inputs": [[1], [2], [3], [4]]}`, n: 4, cols: 1, values: []float64{1, 2}, ragged: -1, maxRows: 2},
		{body: `{"inputs": [[1, "online"], [null, 2], ["st\u00f6re", "a\"b"]]}`, n: 3, cols: 2, values: []float64{1, math.NaN(), math.NaN(), 2, math.NaN(), math.NaN()}, ragged: -1,
			names: `[{1 online} {4 störe} {5 a"b}]`},
		{body: `{"inputs": [1, "", 3]}`, n: 1, cols: 3, values: []float64{1, math.NaN(), 3}, ragged: -1, names: `[{1 }]`},
		{body: `{"inputs": [["a"], ["b"], ["c"]]}`, n: 3, cols: 1, values: []float64{math.NaN(), math.NaN()}, ragged: -1, maxRows: 2, names: `[{0 a} {1 b}]`},
		{body: `{"inputs": [["a", "b"], ["c"], ["d", "e"]]}`, n: 3, cols: 2, values: []float64{math.NaN(), math.NaN(), math.NaN()}, ragged: 1, names: `[{0 a} {1 b} {2 c}]`},
	} {
		req := predictRequest{Inputs: rows{maxRows: 100}}
		if tc.maxRows > 0 {
			req.Inputs.maxRows = tc.maxRows
		}
		if err := decodePredict([]byte(tc.body), &req); err != nil {
			t.Errorf("%s: %v", tc.body, err)
			continue
		}
		in := req.Inputs
		if in.n != tc.n || in.cols != tc.cols || in.ragged != tc.ragged || len(in.values) != len(tc.values) {
			t.Errorf("%s: n %d cols %d ragged %d values %v", tc.body, in.n, in.cols, in.ragged, in.values)
			continue
		}
		if got := fmt.Sprint(in.stringCells()); tc.names != "" && got != tc.names || tc.names == "" && len(in.stringCells()) > 0 {
			t.Errorf("%s: names %s, want %s", tc.body, got, tc.names)
		}
		for i, v := range tc.values {
			if got := in.values[i]; got != v && !(math.IsNaN(v) && math.IsNaN(got)) {
				t.Errorf("%s: value %d = %v, want %v", tc.body, i, got, v)
			}
		}
	}
}

// FuzzDecodePredict feeds arbitrary bodies to the /predict decoder: it must
// never panic, every error must be of a known type, and a decoded batch must
// be consistent.
func FuzzDecodePredict(f *testing.F) {
	for _, seed := range []string{
		`{"inputs": [[1, 2, 3], [4, 5, 6]]}`,
		`{"model_name": "fraud_model", "model_version": "v1", "inputs": [[950.0, 2, 8, 120.5, 11, 12]]}`,
		`{"inputs": [1, null, 3]}`,
		`{"inputs": [[1, 2], [3]]}`,
		`{"inputs": [[1, NaN]]}`,
		`{"inputs": [[1e999, -0, 0.5e-3]]}`,
		`{"inputs": "x"}`,
		`{"inputs": [[[1]]]}`,
		`{"inputs": [{"a": 1}]}`,
		`[]`, `null`, ``, `{`, `{"inputs": [[1,2]]} x`,
		`{"model_name": "a\"b", "inputs": [[1]]}`, `{"inputs": [[1]], "inputs": [[2, 3]]}`, `{"model_name": null, "inputs": []}`,
		` { "model_version" : "v1" , "inputs" : [ 1 , 2 ] } `,
		`{"inputs": [1, 2], "inputs": [3, 4]}`, `{"inputs": [[1, 2], [3]], "inputs": [[4, 5]]}`,
		`{"inputs": [` + strings.Repeat("1, ", 40) + `1]}`,
		`{"inputs": [[950.0, "online", 8, 3], [1, 2, "phone", null]]}`,
		`{"inputs": [1, "st\u006fre", "\ud800", 3]}`,
		`{"inputs": [["a", "b"], ["c"]]}`,
		`{"model_name": "shop", "inputs": [["", "\"", "\\", "é"]]}`,
	} {
		f.Add([]byte(seed))
	}
	known := map[errorType]bool{}
	for _, typ := range errorTypes() {
		known[typ] = true
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		// The fast path, where it answers, agrees with encoding/json.
		fast, slow := predictRequest{Inputs: rows{maxRows: 8, maxValues: 32}}, predictRequest{Inputs: rows{maxRows: 8, maxValues: 32}}
		if json.Valid(body) {
			if ferr, ok := fastDecodePredict(body, &fast); ok {
				serr := slowDecodePredict(body, &slow)
				if (ferr == nil) != (serr == nil) || (ferr != nil && ferr.typ != serr.typ) {
					t.Fatalf("fast path %v, encoding/json %v", ferr, serr)
				}
				if ferr == nil && fmt.Sprintf("%q %q %v %+v %d %d %d", fast.ModelName, fast.ModelVersion, fast.Inputs.values, fast.Inputs.stringCells(), fast.Inputs.n, fast.Inputs.cols, fast.Inputs.ragged) !=
					fmt.Sprintf("%q %q %v %+v %d %d %d", slow.ModelName, slow.ModelVersion, slow.Inputs.values, slow.Inputs.stringCells(), slow.Inputs.n, slow.Inputs.cols, slow.Inputs.ragged) {
					t.Fatalf("fast path %+v, encoding/json %+v", fast, slow)
				}
			}
		}
		req := predictRequest{Inputs: rows{maxRows: 8, maxValues: 32}}
		if err := decodePredict(body, &req); err != nil {
			if !known[err.typ] || err.status() < 400 || err.msg == "" {
				t.Fatalf("error %+v", err)
			}
			return
		}
		in := req.Inputs
		if !in.present {
			t.Fatal("decoded without inputs")
		}
		if in.ragged < 0 && in.n <= 8 && len(in.values) != in.n*in.cols {
			t.Fatalf("%d rows of %d values, %d values stored", in.n, in.cols, len(in.values))
		}
		if len(in.values) > 32 || len(in.values) > 8*max(in.cols, 1) && in.cols > 0 {
			t.Fatalf("%d values stored for at most 8 rows of %d", len(in.values), in.cols)
		}
		names := in.stringCells()
		for i, n := range names {
			if n.at >= len(in.values) || !math.IsNaN(in.values[n.at]) || i > 0 && n.at <= names[i-1].at {
				t.Fatalf("name %d at %d of %d values (%v)", i, n.at, len(in.values), in.values)
			}
		}
		// Names resolve against a model of as many features as the rows
		// have: every name becomes a code, a missing value, or an error.
		if in.ragged >= 0 || in.cols == 0 || len(in.values) != in.n*in.cols {
			return
		}
		meta := fuzzCategoricalMeta(in.cols)
		if _, why := newCategoryIndex(&meta).resolveNames(&meta, in.values, in.cols, names); why != "" {
			return
		}
		for _, n := range names {
			if x := in.values[n.at]; !math.IsNaN(x) && (x != math.Trunc(x) || x < 0 || x > 2) {
				t.Fatalf("name %q became %v", n.name, x)
			}
		}
	})
}

// fuzzCategoricalMeta is a LightGBM model of cols features whose even
// columns are categorical with the names a, b and c (column 0 by code only).
func fuzzCategoricalMeta(cols int) model.Metadata {
	meta := model.Metadata{Name: "fuzz", Version: "1", Type: "lightgbm", AcceptsMissing: true, UnknownCategoryIsMissing: true, Features: make([]string, cols)}
	for i := range cols {
		meta.Features[i] = fmt.Sprintf("f%d", i)
		if i%2 == 0 {
			cf := model.CategoricalFeature{Index: i}
			if i > 0 {
				cf.Categories = []string{"a", "b", "c"}
			}
			meta.Categorical = append(meta.Categorical, cf)
		}
	}
	return meta
}
