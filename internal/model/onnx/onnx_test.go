//go:build cgo

package onnx

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelwatch/modelwatch/internal/model"
	"github.com/modelwatch/modelwatch/internal/model/onnx/onnxtest"
)

func library(t testing.TB) string { return onnxtest.Library(t) }

func loadFixture(t testing.TB, name string, meta model.Metadata) *Model {
	t.Helper()
	if err := Init(library(t)); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join("testdata", name+".onnx"))
	if err != nil {
		t.Fatal(err)
	}
	meta.Name, meta.Version = name, "1"
	m, err := Load(data, meta)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

type expected []struct {
	Batch   int                        `json:"batch"`
	Inputs  map[string]json.RawMessage `json:"inputs"`
	Outputs map[string]json.RawMessage `json:"outputs"`
}

func readExpected(t *testing.T, name string) expected {
	b, err := os.ReadFile(filepath.Join("testdata", name+".expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var e expected
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatal(err)
	}
	return e
}

// flat reads a nested JSON list of numbers into a flat slice and a shape.
func flat(t *testing.T, raw json.RawMessage) ([]float64, []int64) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	var vals []float64
	var shape []int64
	var walk func(any, int)
	walk = func(x any, depth int) {
		switch x := x.(type) {
		case []any:
			if len(shape) <= depth {
				shape = append(shape, int64(len(x)))
			}
			for _, e := range x {
				walk(e, depth+1)
			}
		case float64:
			vals = append(vals, x)
		}
	}
	walk(v, 0)
	return vals, shape
}

func tensorOf(t *testing.T, name string, dt model.DataType, raw json.RawMessage) model.Tensor {
	vals, shape := flat(t, raw)
	var data any
	switch dt {
	case model.FP32:
		d := make([]float32, len(vals))
		for i, v := range vals {
			d[i] = float32(v)
		}
		data = d
	case model.FP64:
		data = vals
	case model.INT64:
		d := make([]int64, len(vals))
		for i, v := range vals {
			d[i] = int64(v)
		}
		data = d
	}
	return model.Tensor{Name: name, DataType: dt, Shape: shape, Data: data}
}

func maxDiff(t *testing.T, got model.Tensor, raw json.RawMessage) float64 {
	want, shape := flat(t, raw)
	g, err := got.Float64s()
	if err != nil {
		t.Fatal(err)
	}
	if len(g) != len(want) || len(got.Shape) != len(shape) {
		t.Fatalf("output %s: shape %v (%d values), want %v (%d)", got.Name, got.Shape, len(g), shape, len(want))
	}
	d := 0.0
	for i := range g {
		d = max(d, math.Abs(g[i]-want[i]))
	}
	return d
}

// TestAgainstPyTorch compares ONNX Runtime's outputs with PyTorch's for the
// same inputs at batch sizes 1, 7 and 64.
func TestAgainstPyTorch(t *testing.T) {
	const tolerance = 1e-5
	for _, tc := range []struct {
		name   string
		meta   model.Metadata
		inputs map[string]model.DataType
	}{
		{"mlp_classifier", model.Metadata{Classes: []string{"a", "b", "c"}}, map[string]model.DataType{"features": model.FP32}},
		{"regressor", model.Metadata{}, map[string]model.DataType{"features": model.FP64}},
		{"two_inputs", model.Metadata{}, map[string]model.DataType{"numeric": model.FP32, "category": model.INT64}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := loadFixture(t, tc.name, tc.meta)
			for _, c := range readExpected(t, tc.name) {
				var ins []model.Tensor
				for name, dt := range tc.inputs {
					ins = append(ins, tensorOf(t, name, dt, c.Inputs[name]))
				}
				outs, err := m.Infer(context.Background(), ins, nil)
				if err != nil {
					t.Fatalf("batch %d: %v", c.Batch, err)
				}
				if len(outs) != len(c.Outputs) {
					t.Fatalf("batch %d: %d outputs, want %d", c.Batch, len(outs), len(c.Outputs))
				}
				for _, o := range outs {
					if d := maxDiff(t, o, c.Outputs[o.Name]); d > tolerance {
						t.Errorf("batch %d output %s: max absolute difference %g > %g", c.Batch, o.Name, d, tolerance)
					}
					if o.Shape[0] != int64(c.Batch) {
						t.Errorf("batch %d output %s: shape %v", c.Batch, o.Name, o.Shape)
					}
				}
				// A model with one input of rows answers Predict with the same numbers.
				if m.Metadata().Features != nil {
					vals, shape := flat(t, c.Inputs["features"])
					res, err := m.Predict(context.Background(), model.Batch{Rows: int(shape[0]), Cols: int(shape[1]), Values: vals})
					if err != nil {
						t.Fatal(err)
					}
					want := "probabilities"
					if tc.name == "regressor" {
						want = "prediction"
					}
					if d := maxDiff(t, model.Tensor{Name: want, DataType: model.FP64, Shape: []int64{int64(res.Rows), int64(res.Cols)}, Data: res.Values}, c.Outputs[want]); d > tolerance {
						t.Errorf("Predict batch %d: max difference %g", c.Batch, d)
					}
				}
			}
		})
	}
}

func TestMetadata(t *testing.T) {
	m := loadFixture(t, "mlp_classifier", model.Metadata{Classes: []string{"a", "b", "c"}, Features: []string{"w", "x", "y", "z"}})
	meta := m.Metadata()
	if meta.Type != "onnx" || meta.Outputs != 3 || strings.Join(meta.Features, ",") != "w,x,y,z" || meta.AcceptsMissing {
		t.Errorf("metadata %+v", meta)
	}
	if got := specs(meta.InputTensors); got != "features FP32 [-1 4]" {
		t.Errorf("inputs %s", got)
	}
	if got := specs(meta.OutputTensors); got != "probabilities FP32 [-1 3]; label INT64 [-1]" {
		t.Errorf("outputs %s", got)
	}
	two := loadFixture(t, "two_inputs", model.Metadata{})
	if got := specs(two.Metadata().InputTensors); got != "numeric FP32 [-1 3]; category INT64 [-1]" {
		t.Errorf("two inputs: %s", got)
	}
	if two.Metadata().Features != nil {
		t.Error("a two-input model has features")
	}
	if _, err := two.Predict(context.Background(), model.Batch{Rows: 1, Cols: 3, Values: []float64{1, 2, 3}}); !errors.Is(err, model.ErrInvalidInput) {
		t.Errorf("Predict on a two-input model: %v", err)
	}
	// Output selection.
	outs, err := m.Infer(context.Background(), []model.Tensor{{Name: "features", DataType: model.FP32, Shape: []int64{1, 4}, Data: []float32{1, 2, 3, 4}}}, []string{"label"})
	if err != nil || len(outs) != 1 || outs[0].Name != "label" || outs[0].DataType != model.INT64 {
		t.Errorf("select label: %v %+v", err, outs)
	}
}

func specs(s []model.TensorSpec) string {
	var out []string
	for _, x := range s {
		b, _ := json.Marshal(x.Shape)
		out = append(out, x.Name+" "+string(x.DataType)+" "+strings.ReplaceAll(strings.Trim(string(b), ""), ",", " "))
	}
	return strings.Join(out, "; ")
}

func TestLoadErrors(t *testing.T) {
	if err := Init(library(t)); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile("testdata/mlp_classifier.onnx")
	for _, tc := range []struct {
		name string
		data []byte
		meta model.Metadata
		want string
	}{
		{"garbage", []byte("not onnx"), model.Metadata{}, "not a usable ONNX model"},
		{"class count", data, model.Metadata{Classes: []string{"a", "b"}}, "configuration names 2 classes, but no floating-point output has 2 columns"},
		{"feature count", data, model.Metadata{Features: []string{"a"}}, "configuration names 1 features, input features has 4"},
	} {
		_, err := Load(tc.data, tc.meta)
		if !errors.Is(err, model.ErrInvalidModel) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

func TestPredictConvertsAndChecksValues(t *testing.T) {
	two := loadFixture(t, "mlp_classifier", model.Metadata{Classes: []string{"a", "b", "c"}})
	if _, err := two.Predict(context.Background(), model.Batch{Rows: 1, Cols: 4, Values: []float64{0.5, 1, 2, 3}}); err != nil {
		t.Error(err)
	}
	if _, err := fromFloat64([]float64{1.5}, model.INT64); !errors.Is(err, model.ErrInvalidInput) {
		t.Errorf("fraction for INT64: %v", err)
	}
	if _, err := fromFloat64([]float64{1, -1e39}, model.FP32); !errors.Is(err, model.ErrInvalidInput) {
		t.Errorf("-1e39 for FP32: %v", err)
	}
	if v, err := fromFloat64([]float64{math.NaN(), -math.MaxFloat32}, model.FP32); err != nil || !math.IsNaN(float64(v.([]float32)[0])) {
		t.Errorf("NaN and the lowest float32 for FP32: %v %v", v, err)
	}
	if _, err := fromFloat64([]float64{2}, model.BOOL); !errors.Is(err, model.ErrInvalidInput) {
		t.Errorf("2 for BOOL: %v", err)
	}
	if v, err := fromFloat64([]float64{3, -4}, model.INT32); err != nil || v.([]int32)[1] != -4 {
		t.Errorf("INT32: %v %v", v, err)
	}
}

func TestContextEndsRun(t *testing.T) {
	m := loadFixture(t, "mlp_classifier", model.Metadata{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel()
	time.Sleep(time.Millisecond)
	in := model.Tensor{Name: "features", DataType: model.FP32, Shape: []int64{1, 4}, Data: []float32{1, 2, 3, 4}}
	if _, err := m.Infer(ctx, []model.Tensor{in}, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Infer after the deadline: %v", err)
	}
}

func BenchmarkPredict(b *testing.B) {
	m := loadFixture(b, "mlp_classifier", model.Metadata{Classes: []string{"a", "b", "c"}})
	for _, rows := range []int{1, 64} {
		in := model.Batch{Rows: rows, Cols: 4, Values: make([]float64, rows*4)}
		b.Run(map[int]string{1: "rows=1", 64: "rows=64"}[rows], func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := m.Predict(context.Background(), in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
