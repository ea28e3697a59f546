package model_test

import (
	"math"
	"reflect"
	"testing"

	"github.com/modelwatch/modelwatch/internal/model"
)

// TestRowOutputs: a classifier answers its probabilities in FP32 and its
// labels in each BYTES output; a model that declares FP64 gets its values
// unrounded.
func TestRowOutputs(t *testing.T) {
	clf := model.Metadata{Classes: []string{"safe", "fraud"}, PredictionOutput: "probabilities",
		OutputTensors: []model.TensorSpec{{Name: "probabilities", DataType: model.FP32}, {Name: "label", DataType: model.BYTES}}}
	got := clf.RowOutputs(model.Result{Rows: 2, Cols: 2, Values: []float64{0.9, 0.1, 0.25, 0.75}}, []int{0, 1})
	want := []model.Tensor{
		{Name: "probabilities", DataType: model.FP32, Shape: []int64{2, 2}, Data: []float32{0.9, 0.1, 0.25, 0.75}},
		{Name: "label", DataType: model.BYTES, Shape: []int64{2}, Data: []string{"safe", "fraud"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("classifier outputs\n%+v, want\n%+v", got, want)
	}
	reg := model.Metadata{PredictionOutput: "value", OutputTensors: []model.TensorSpec{{Name: "value", DataType: model.FP64}}}
	if reg.PredictionType() != model.FP64 {
		t.Errorf("PredictionType = %v", reg.PredictionType())
	}
	got = reg.RowOutputs(model.Result{Rows: 1, Cols: 1, Values: []float64{0.1 + 0.2}}, nil)
	want = []model.Tensor{{Name: "value", DataType: model.FP64, Shape: []int64{1, 1}, Data: []float64{0.1 + 0.2}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("regressor outputs %+v, want %+v", got, want)
	}
}

// TestNonFinite: the first NaN or infinity of floating-point data, -1 for
// none and for other data.
func TestNonFinite(t *testing.T) {
	for _, c := range []struct {
		data any
		want int
	}{
		{[]float32{1, 2, float32(math.Inf(1))}, 2},
		{[]float64{math.NaN(), 1}, 0},
		{[]float64{1, 2}, -1},
		{[]int64{1}, -1},
	} {
		if got := (model.Tensor{Data: c.data}).NonFinite(); got != c.want {
			t.Errorf("NonFinite(%v) = %d, want %d", c.data, got, c.want)
		}
	}
}
