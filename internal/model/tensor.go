package model

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"
)

// DataType names an element type the way the Open Inference Protocol does.
type DataType string

// The element types the server accepts and returns.
const (
	BOOL  DataType = "BOOL"
	INT32 DataType = "INT32"
	INT64 DataType = "INT64"
	FP32  DataType = "FP32"
	FP64  DataType = "FP64"
	BYTES DataType = "BYTES" // strings, such as class labels
)

// TensorSpec describes one input or output tensor. A dimension of -1 varies
// from request to request (the batch dimension, usually).
type TensorSpec struct {
	Name     string
	DataType DataType
	Shape    []int64
}

// Tensor is a named n-dimensional array in row-major order. Data is a
// []bool, []int32, []int64, []float32, []float64 or []string, as DataType
// says, with as many elements as the shape's product.
type Tensor struct {
	Name     string
	DataType DataType
	Shape    []int64
	Data     any
}

// Len returns the number of elements the tensor's shape calls for.
func (t Tensor) Len() int {
	n := 1
	for _, d := range t.Shape {
		n *= int(d)
	}
	return n
}

// DataLen returns the number of elements in Data, or -1 if Data does not
// match DataType.
func (t Tensor) DataLen() int {
	switch d := t.Data.(type) {
	case []bool:
		if t.DataType == BOOL {
			return len(d)
		}
	case []int32:
		if t.DataType == INT32 {
			return len(d)
		}
	case []int64:
		if t.DataType == INT64 {
			return len(d)
		}
	case []float32:
		if t.DataType == FP32 {
			return len(d)
		}
	case []float64:
		if t.DataType == FP64 {
			return len(d)
		}
	case []string:
		if t.DataType == BYTES {
			return len(d)
		}
	}
	return -1
}

// Float64s returns the tensor's elements as float64s; booleans are 0 and 1.
func (t Tensor) Float64s() ([]float64, error) {
	switch d := t.Data.(type) {
	case []float64:
		return d, nil
	case []float32:
		return convert(d), nil
	case []int64:
		return convert(d), nil
	case []int32:
		return convert(d), nil
	case []bool:
		out := make([]float64, len(d))
		for i, b := range d {
			if b {
				out[i] = 1
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: tensor %s of %s is not numeric", ErrInvalidInput, t.Name, t.DataType)
}

func convert[T int32 | int64 | float32](in []T) []float64 {
	out := make([]float64, len(in))
	for i, v := range in {
		out[i] = float64(v)
	}
	return out
}

// ErrInvalidInput means a request's values cannot be given to the model,
// for example a fraction for an integer input. Wrapped errors say why.
var ErrInvalidInput = errors.New("invalid input")

// TensorModel is a Model that also evaluates named tensors, as the Open
// Inference Protocol sends them: several inputs, integer and boolean types,
// and a choice of outputs. A model that is not a TensorModel takes one input
// tensor of shape [rows, features] through Predict.
type TensorModel interface {
	Model
	// Infer evaluates inputs, which have been checked against
	// Metadata().InputTensors (names, types, shapes, and the batch dimension
	// agreeing), and returns the named outputs, or every output when outputs
	// is empty. It returns an error wrapping ErrInvalidInput for values the
	// model cannot take, and ctx's error if ctx ends first.
	Infer(ctx context.Context, inputs []Tensor, outputs []string) ([]Tensor, error)
}

// ErrOverloaded means the model cannot take the request now: its queue is
// full. The client should retry later.
var ErrOverloaded = errors.New("model overloaded")

// Timing lets a model report how long a request waited in its queue.
type Timing struct {
	Queue time.Duration
}

type timingKey struct{}

// WithTiming returns a context that carries t for the model to fill in.
func WithTiming(ctx context.Context, t *Timing) context.Context {
	return context.WithValue(ctx, timingKey{}, t)
}

// TimingFrom returns the Timing the context carries, or nil.
func TimingFrom(ctx context.Context) *Timing {
	t, _ := ctx.Value(timingKey{}).(*Timing)
	return t
}

// RowOutputs turns the result of a model of rows into its output tensors,
// as the Open Inference Protocol answers them: the prediction output (class
// probabilities, or the predicted values) and, for a classifier, its class
// labels (BYTES) for each row, from class, the index of each row's class.
func (m *Metadata) RowOutputs(res Result, class []int) []Tensor {
	main := Tensor{Name: m.PredictionOutput, DataType: FP32, Shape: []int64{int64(res.Rows), int64(res.Cols)}}
	if m.PredictionType() == FP64 {
		// A runtime that computes in double precision (LightGBM) declares
		// FP64 and answers it unrounded.
		main.DataType, main.Data = FP64, res.Values
	} else {
		vals := make([]float32, len(res.Values))
		for i, x := range res.Values {
			vals[i] = float32(x)
		}
		main.Data = vals
	}
	if !m.IsClassifier() {
		return []Tensor{main}
	}
	labels := make([]string, res.Rows)
	for i, c := range class {
		labels[i] = m.Classes[c]
	}
	ts := []Tensor{main}
	for _, spec := range m.OutputTensors {
		if spec.DataType == BYTES {
			ts = append(ts, Tensor{Name: spec.Name, DataType: BYTES, Shape: []int64{int64(res.Rows)}, Data: labels})
		}
	}
	return ts
}

// PredictionType is the datatype the model declares for its prediction
// output, FP32 unless it says otherwise.
func (m *Metadata) PredictionType() DataType {
	for _, spec := range m.OutputTensors {
		if spec.Name == m.PredictionOutput {
			return spec.DataType
		}
	}
	return FP32
}

// NonFinite returns the index of the first NaN or infinity in the tensor's
// data, or -1 (always for data that is not floating point).
func (t Tensor) NonFinite() int {
	switch d := t.Data.(type) {
	case []float32:
		for i, x := range d {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				return i
			}
		}
	case []float64:
		for i, x := range d {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return i
			}
		}
	}
	return -1
}
