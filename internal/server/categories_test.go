package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/modelwatch/modelwatch/internal/model"
	"github.com/modelwatch/modelwatch/internal/model/modeltest"
)

// missingEcho is what the echo models answer for a missing value.
const missingEcho = -999

// echoModel is a regressor of rows whose four outputs are its four inputs
// (a missing value answered as missingEcho): amount (numeric), channel
// (categorical with names: online, store, phone), merchant (categorical by
// code only) and hour (numeric).
func echoModel(name, typ string, acceptsMissing bool) *modeltest.Model {
	return &modeltest.Model{
		Meta: model.Metadata{
			Name: name, Version: "1", Type: typ, Outputs: 4, AcceptsMissing: acceptsMissing,
			UnknownCategoryIsMissing: typ != "xgboost",
			Features:                 []string{"amount", "channel", "merchant", "hour"},
			Categorical: []model.CategoricalFeature{
				{Index: 1, Categories: []string{"online", "store", "phone"}},
				{Index: 2},
			},
			InputTensors:     []model.TensorSpec{{Name: "input", DataType: model.FP32, Shape: []int64{-1, 4}}},
			OutputTensors:    []model.TensorSpec{{Name: "value", DataType: model.FP32, Shape: []int64{-1, 4}}},
			PredictionOutput: "value",
		},
		PredictFunc: func(_ context.Context, in model.Batch) (model.Result, error) {
			out := model.Result{Rows: in.Rows, Cols: 4, Values: make([]float64, len(in.Values))}
			for i, x := range in.Values {
				if math.IsNaN(x) {
					x = missingEcho
				}
				out.Values[i] = x
			}
			return out, nil
		},
	}
}

// newCategoricalHarness serves the echo models: shop_xgb as XGBoost (an
// unknown category is refused), shop_lgb as LightGBM (an unknown category
// is missing), and shop_strict as LightGBM taking no missing values.
func newCategoricalHarness(t *testing.T, mutate ...func(*Options)) *harness {
	h := newHarness(t, func(o *Options) {
		for _, f := range mutate {
			f(o)
		}
	})
	for _, m := range []*modeltest.Model{
		echoModel("shop_xgb", "xgboost", true),
		echoModel("shop_lgb", "lightgbm", true),
		echoModel("shop_strict", "lightgbm", false),
	} {
		h.srv.models.Add(m)
		h.met.ModelLoaded(m.Meta, time.Millisecond)
	}
	return h
}

func TestPredictCategoryNames(t *testing.T) {
	h := newCategoricalHarness(t)
	longName := strings.Repeat("x", 100)
	for _, tc := range []struct {
		name, model, inputs string
		status              int
		want                string // the echoed rows, or the error
	}{
		{"names", "shop_xgb", `[[950.0, "online", 8, 3], [12.5, "phone", 0, 23]]`, 200, "[[950 0 8 3] [12.5 2 0 23]]"},
		{"codes", "shop_xgb", `[[950.0, 1, 8, 3]]`, 200, "[[950 1 8 3]]"},
		{"names and codes mixed", "shop_lgb", `[[1, "store", 2, 3], [4, 2, 5, 6], [7, null, 8, 9]]`, 200, "[[1 1 2 3] [4 2 5 6] [7 -999 8 9]]"},
		{"a single flat row", "shop_lgb", `[950.0, "phone", 8, 3]`, 200, "[[950 2 8 3]]"},
		{"an escaped name", "shop_xgb", `[[1, "st\u006fre", 2, 3]]`, 200, "[[1 1 2 3]]"},
		{"unknown name, LightGBM: missing", "shop_lgb", `[[1, "fax", 2, 3], [4, "online", 5, 6]]`, 200, "[[1 -999 2 3] [4 0 5 6]]"},
		{"names are case-sensitive", "shop_lgb", `[[1, "Online", 2, 3]]`, 200, "[[1 -999 2 3]]"},
		{"unknown name, XGBoost: refused", "shop_xgb", `[[1, "online", 2, 3], [4, "fax", 5, 6]]`, 422,
			`inputs[1][1] (channel) "fax" is not a category of channel in model shop_xgb 1 (GET /v2/models/shop_xgb/versions/1 lists them; null is a missing value)`},
		{"unknown name, no missing values", "shop_strict", `[[1, "fax", 2, 3]]`, 422,
			`inputs[0][1] (channel) "fax" is not a category of channel, which makes it a missing value, and model shop_strict takes no missing values`},
		{"a long unknown name is cut", "shop_xgb", `[[1, "` + longName + `", 2, 3]]`, 422,
			`inputs[0][1] (channel) "` + longName[:64] + `"... is not a category of channel in model shop_xgb 1 (GET /v2/models/shop_xgb/versions/1 lists them; null is a missing value)`},
		{"name for a numeric feature", "shop_xgb", `[["950.0", "online", 8, 3]]`, 422,
			"inputs[0][0] (amount) is a string, but amount is a numeric feature: send a number"},
		{"name for a feature known by code", "shop_lgb", `[[1, "online", "8", 3]]`, 422,
			"inputs[0][2] (merchant) is a string, but model shop_lgb 1 knows the categories of merchant by code only: send the code, a whole number"},
		{"a name in a ragged batch", "shop_lgb", `[[1, "online", 2, 3], [1, "online"]]`, 422, "rows differ in length: row 1 has 2 values, row 0 has 4"},
		{"a name in a row too short", "shop_lgb", `[[1, "online", 2]]`, 422, "rows have 3 values; model shop_lgb 1 takes 4 features: amount, channel, merchant, hour"},
		{"a boolean", "shop_lgb", `[[1, true, 2, 3]]`, 400, "inputs[0][1] must be a number, a string or null, not a boolean"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := h.predict(`{"model_name": "` + tc.model + `", "inputs": ` + tc.inputs + `}`)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			if tc.status != 200 {
				var e errorResponse
				json.Unmarshal(rec.Body.Bytes(), &e)
				if e.Error != tc.want {
					t.Errorf("error %q\nwant  %q", e.Error, tc.want)
				}
				return
			}
			var resp struct {
				Predictions []struct {
					Value []float64 `json:"value"`
				} `json:"predictions"`
			}
			json.Unmarshal(rec.Body.Bytes(), &resp)
			var got [][]float64
			for _, p := range resp.Predictions {
				got = append(got, p.Value)
			}
			if fmt.Sprint(got) != tc.want {
				t.Errorf("rows %v, want %s", got, tc.want)
			}
		})
	}
	// Errors are counted under the model, never under anything the client sent.
	s := h.snapshot()
	for k, v := range map[string]float64{
		`model_prediction_errors_total{error_type="invalid_input",model_name="shop_xgb"}`:    3,
		`model_prediction_errors_total{error_type="invalid_input",model_name="shop_lgb"}`:    1,
		`model_prediction_errors_total{error_type="invalid_input",model_name="shop_strict"}`: 1,
		`model_prediction_errors_total{error_type="shape_mismatch",model_name="shop_lgb"}`:   2,
	} {
		if s[k] != v {
			t.Errorf("%s = %v, want %v", k, s[k], v)
		}
	}
	for k := range s {
		if strings.Contains(k, "fax") || strings.Contains(k, "online") || strings.Contains(k, "xxxx") {
			t.Errorf("a series carries a category name: %s", k)
		}
	}
}

func TestV2CategoryNames(t *testing.T) {
	h := newCategoricalHarness(t)
	h.srv.models.Add(scorer())
	infer := func(model, input, datatype, shape, data string) (int, string) {
		t.Helper()
		rec := h.do("POST", "/v2/models/"+model+"/infer", "application/json",
			`{"inputs": [{"name": "`+input+`", "shape": `+shape+`, "datatype": "`+datatype+`", "data": `+data+`}]}`)
		if rec.Code != 200 {
			var e errorResponse
			json.Unmarshal(rec.Body.Bytes(), &e)
			return rec.Code, e.Error
		}
		var r v2Response
		json.Unmarshal(rec.Body.Bytes(), &r)
		var vals []float32
		json.Unmarshal(r.Outputs[0].Data, &vals)
		return rec.Code, fmt.Sprint(r.Outputs[0].Name, r.Outputs[0].Shape, vals)
	}
	for _, tc := range []struct {
		name, model, datatype, shape, data string
		status                             int
		want                               string
	}{
		{"BYTES: names and decimals", "shop_xgb", "BYTES", "[2, 4]", `["950.5", "online", "8", "3", "-1e2", "phone", "0", "23"]`, 200, "value[2 4] [950.5 0 8 3 -100 2 0 23]"},
		{"BYTES, nested", "shop_xgb", "BYTES", "[1, 4]", `[["1", "store", "2", "3"]]`, 200, "value[1 4] [1 1 2 3]"},
		{"BYTES: unknown name, LightGBM: missing", "shop_lgb", "BYTES", "[1, 4]", `["1", "fax", "2", "3"]`, 200, "value[1 4] [1 -999 2 3]"},
		{"BYTES: a code is not a name", "shop_lgb", "BYTES", "[1, 4]", `["1", "0", "2", "3"]`, 200, "value[1 4] [1 -999 2 3]"},
		{"FP32 codes", "shop_xgb", "FP32", "[1, 4]", `[1, 2, 2, 3]`, 200, "value[1 4] [1 2 2 3]"},
		{"BYTES: unknown name, XGBoost: refused", "shop_xgb", "BYTES", "[2, 4]", `["1", "online", "2", "3", "4", "fax", "5", "6"]`, 422,
			`input input: value 5 (channel) "fax" is not a category of channel in model shop_xgb 1 (GET /v2/models/shop_xgb/versions/1 lists them; null is a missing value)`},
		{"BYTES: unknown name, no missing values", "shop_strict", "BYTES", "[1, 4]", `["1", "fax", "2", "3"]`, 422,
			`input input: value 1 (channel) "fax" is not a category of channel, which makes it a missing value, and model shop_strict takes no missing values`},
		{"BYTES: not a number for a numeric feature", "shop_xgb", "BYTES", "[1, 4]", `["1", "online", "2", "three"]`, 422,
			`input input: value 3 (hour) "three" is not a decimal number, which a BYTES element must be for feature hour`},
		{"BYTES: NaN is not a decimal number", "shop_lgb", "BYTES", "[1, 4]", `["NaN", "online", "2", "3"]`, 422,
			`input input: value 0 (amount) "NaN" is not a decimal number, which a BYTES element must be for feature amount`},
		{"BYTES: a name for a feature known by code", "shop_lgb", "BYTES", "[1, 4]", `["1", "online", "eight", "3"]`, 422,
			`input input: value 2 (merchant) "eight" is not a decimal number, which a BYTES element must be for feature merchant`},
		{"BYTES: beyond float32", "shop_lgb", "BYTES", "[1, 4]", `["1e39", "online", "2", "3"]`, 422,
			`input input: value 0 (amount) is too large for the model's 32-bit float input`},
		{"BYTES: a number element", "shop_lgb", "BYTES", "[1, 4]", `[1, "online", "2", "3"]`, 400,
			`input input: value 0 must be a string, not a number`},
		{"BYTES: too few elements", "shop_lgb", "BYTES", "[1, 4]", `["1", "online", "2"]`, 422,
			`input input has 3 values; shape [1 4] needs 4`},
		{"BYTES: a tensor model takes none", "scorer", "BYTES", "[1, 2]", `["1", "2"]`, 422,
			`input numeric is BYTES; the model takes FP32 (BYTES is for models of rows)`},
		{"FP32: a string element", "shop_lgb", "FP32", "[1, 4]", `[1, "online", 2, 3]`, 400,
			`input input: value 1 must be a number, not a string`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			input := "input"
			if tc.model == "scorer" {
				input = "numeric"
			}
			status, got := infer(tc.model, input, tc.datatype, tc.shape, tc.data)
			if status != tc.status || got != tc.want {
				t.Errorf("%d %q\nwant %d %q", status, got, tc.status, tc.want)
			}
		})
	}
}

func TestCategoricalMetadata(t *testing.T) {
	h := newCategoricalHarness(t)
	rec := h.do("GET", "/v2/models/shop_lgb", "", "")
	want := `{"inputs":[{"name":"input","datatype":"FP32","shape":[-1,4]}],"name":"shop_lgb","outputs":[{"name":"value","datatype":"FP32","shape":[-1,4]}],` +
		`"parameters":{"categorical":{"channel":["online","store","phone"],"merchant":null},"features":["amount","channel","merchant","hour"],"version":"1"},` +
		`"platform":"lightgbm_txt","versions":["1"]}`
	if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != want {
		t.Errorf("v2 metadata: %d\n%s\nwant\n%s", rec.Code, rec.Body, want)
	}
	rec = h.do("GET", "/", "", "")
	var info struct {
		Models []json.RawMessage `json:"models"`
	}
	json.Unmarshal(rec.Body.Bytes(), &info)
	var shop string
	for _, m := range info.Models {
		switch {
		case strings.Contains(string(m), `"name":"fraud_model"`) && strings.Contains(string(m), "categorical"):
			t.Errorf("GET /: a model without categorical features lists them: %s", m)
		case strings.Contains(string(m), `"name":"shop_xgb"`):
			shop = string(m)
		}
	}
	wantShop := `{"name":"shop_xgb","version":"1","type":"xgboost","features":["amount","channel","merchant","hour"],"categorical":{"channel":["online","store","phone"],"merchant":null}}`
	if shop != wantShop {
		t.Errorf("GET / lists shop_xgb as\n%s\nwant\n%s", shop, wantShop)
	}
}

func TestCategoryIndex(t *testing.T) {
	meta := &model.Metadata{
		Name: "m", Version: "1", Type: "lightgbm", AcceptsMissing: true, UnknownCategoryIsMissing: true,
		Features: []string{"a", "b", "c"},
		Categorical: []model.CategoricalFeature{
			{Index: 2, Categories: []string{"x", "y", "x"}},
			{Index: 7, Categories: []string{"out of range"}},
		},
	}
	var cache categoryCache
	idx := cache.get(meta)
	if again := cache.get(meta); again != idx {
		t.Error("the index of one model's metadata was built twice")
	}
	for _, tc := range []struct {
		col        int
		name       string
		want       float64
		wantReason string
	}{
		{2, "x", 0, ""}, // listed twice: the first code, as CategoricalFeature.Code
		{2, "y", 1, ""},
		{2, "z", math.NaN(), ""},
		{0, "x", 0, "is a string, but a is a numeric feature: send a number"},
	} {
		got, why := idx.code(meta, tc.col, tc.name)
		if why != tc.wantReason || (why == "" && got != tc.want && !(math.IsNaN(got) && math.IsNaN(tc.want))) {
			t.Errorf("code(%d, %q) = %v %q, want %v %q", tc.col, tc.name, got, why, tc.want, tc.wantReason)
		}
	}
	if cache.get(&model.Metadata{Features: []string{"a"}}) != noCategories {
		t.Error("a model without categorical features has an index of its own")
	}
}

// TestCategoryCacheForgetsUnloadedModels: an entry goes once its model's
// metadata is collected.
func TestCategoryCacheForgetsUnloadedModels(t *testing.T) {
	var cache categoryCache
	func() {
		meta := &model.Metadata{Features: []string{"a"}, Categorical: []model.CategoricalFeature{{Index: 0, Categories: []string{"x"}}}}
		cache.get(meta)
	}()
	entries := func() int {
		n := 0
		cache.m.Range(func(any, any) bool { n++; return true })
		return n
	}
	for range 200 {
		if entries() == 0 {
			return
		}
		runtime.GC()
		time.Sleep(5 * time.Millisecond)
	}
	t.Errorf("%d entries left after the metadata was collected", entries())
}

func TestParseDecimal(t *testing.T) {
	for _, tc := range []struct {
		s    string
		want float64
		ok   bool
	}{
		{"0", 0, true}, {"-1.5", -1.5, true}, {"1e3", 1000, true}, {"2.5E-1", 0.25, true}, {"1e999", math.Inf(1), true},
		{"", 0, false}, {"-", 0, false}, {"01", 0, false}, {"1.", 0, false}, {".5", 0, false}, {"+1", 0, false},
		{"1e", 0, false}, {" 1", 0, false}, {"1 ", 0, false}, {"NaN", 0, false}, {"Inf", 0, false}, {"0x10", 0, false}, {"1_000", 0, false},
	} {
		got, ok := parseDecimal(tc.s)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("parseDecimal(%q) = %v %v, want %v %v", tc.s, got, ok, tc.want, tc.ok)
		}
	}
}

// TestV2TensorPerFeature: one tensor per feature, named after it, as
// MLServer's pandas codec sends a DataFrame.
func TestV2TensorPerFeature(t *testing.T) {
	h := newCategoricalHarness(t)
	col := func(name, datatype, shape, data string) string {
		return `{"name": "` + name + `", "datatype": "` + datatype + `", "shape": ` + shape + `, "data": ` + data + `}`
	}
	amount, merchant, hour := col("amount", "FP64", "[2]", "[950.5, 12]"), col("merchant", "INT64", "[2, 1]", "[[8], [0]]"), col("hour", "INT32", "[2]", "[3, 23]")
	for _, tc := range []struct {
		name, model, inputs string
		status              int
		want                string
	}{
		{"names and numbers", "shop_xgb", amount + "," + col("channel", "BYTES", "[2]", `["online", "phone"]`) + "," + merchant + "," + hour, 200,
			"value[2 4] [950.5 0 8 3 12 2 0 23]"},
		{"any order, codes", "shop_xgb", hour + "," + col("channel", "FP32", "[2, 1]", "[[1], [2]]") + "," + amount + "," + merchant, 200,
			"value[2 4] [950.5 1 8 3 12 2 0 23]"},
		{"numbers as BYTES", "shop_lgb", col("amount", "BYTES", "[2]", `["950.5", "12"]`) + "," + col("channel", "BYTES", "[2]", `["fax", "store"]`) + "," + merchant + "," + hour, 200,
			"value[2 4] [950.5 -999 8 3 12 1 0 23]"},
		{"unknown name, XGBoost", "shop_xgb", amount + "," + col("channel", "BYTES", "[2]", `["online", "fax"]`) + "," + merchant + "," + hour, 422,
			`input channel: value 1 "fax" is not a category of channel in model shop_xgb 1 (GET /v2/models/shop_xgb/versions/1 lists them; null is a missing value)`},
		{"a feature missing", "shop_xgb", amount + "," + merchant + "," + hour, 400,
			"the request sends one tensor per feature but none for channel; the model takes amount, channel, merchant, hour"},
		{"a feature twice", "shop_xgb", amount + "," + amount, 400, `input "amount" is given twice`},
		{"not a feature", "shop_xgb", amount + "," + col("colour", "FP32", "[2]", "[1, 2]"), 400,
			`inputs[1]: the model has no feature "colour"; send one tensor per feature: amount, channel, merchant, hour`},
		{"rows disagree", "shop_xgb", amount + "," + col("channel", "FP32", "[1]", "[1]") + "," + merchant + "," + hour, 422,
			"inputs disagree on the batch size (first dimension)"},
		{"a column of two values a row", "shop_xgb", col("amount", "FP64", "[2, 2]", "[1, 2, 3, 4]"), 422,
			"input amount has shape [2 2]; the model takes [-1, 1] (-1: any size)"},
		{"a value the model cannot take", "shop_xgb", col("amount", "FP64", "[2]", "[1, 1e39]") + "," + col("channel", "FP32", "[2]", "[1, 2]") + "," + merchant + "," + hour, 422,
			"input amount: value 1 is too large for the model's 32-bit float input"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := h.do("POST", "/v2/models/"+tc.model+"/infer", "application/json", `{"parameters": {"content_type": "pd"}, "inputs": [`+tc.inputs+`]}`)
			var got string
			if rec.Code == 200 {
				var r v2Response
				json.Unmarshal(rec.Body.Bytes(), &r)
				var vals []float32
				json.Unmarshal(r.Outputs[0].Data, &vals)
				got = fmt.Sprint(r.Outputs[0].Name, r.Outputs[0].Shape, vals)
			} else {
				var e errorResponse
				json.Unmarshal(rec.Body.Bytes(), &e)
				got = e.Error
			}
			if rec.Code != tc.status || got != tc.want {
				t.Errorf("%d %q\nwant %d %q", rec.Code, got, tc.status, tc.want)
			}
		})
	}
}

// TestCategoryNamesLoggedAtDebugOnly: a name a client sends appears in the
// log at debug level only, with the rejection it caused.
func TestCategoryNamesLoggedAtDebugOnly(t *testing.T) {
	for _, level := range []slog.Level{slog.LevelInfo, slog.LevelDebug} {
		var buf bytes.Buffer
		h := newCategoricalHarness(t, func(o *Options) {
			o.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: level}))
		})
		for _, m := range []string{"shop_xgb", "shop_lgb", "shop_strict"} {
			h.predict(`{"model_name": "` + m + `", "inputs": [[1, "secret-name", 2, 3]]}`)
			h.predict(`{"model_name": "` + m + `", "inputs": [["secret-amount", "online", 2, 3]]}`)
			h.do("POST", "/v2/models/"+m+"/infer", "application/json",
				`{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "BYTES", "data": ["1", "secret-bytes", "2", "3"]}]}`)
		}
		logged := strings.Contains(buf.String(), "secret-")
		if want := level == slog.LevelDebug; logged != want {
			t.Errorf("at level %v, a name is in the log: %v, want %v\n%s", level, logged, want, buf.String())
		}
	}
}
