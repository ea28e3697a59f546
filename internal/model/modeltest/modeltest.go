// Package modeltest provides a model.Model whose behaviour a test sets, for
// testing what serves models without depending on a runtime.
package modeltest

import (
	"context"

	"github.com/modelwatch/modelwatch/internal/model"
)

// Model is a model.Model built from function fields. A nil PredictFunc
// predicts the row's first value for every output.
type Model struct {
	Meta        model.Metadata
	PredictFunc func(ctx context.Context, in model.Batch) (model.Result, error)
	CloseFunc   func() error
}

var _ model.Model = (*Model)(nil)

// Metadata implements model.Model.
func (m *Model) Metadata() model.Metadata { return m.Meta }

// Predict implements model.Model.
func (m *Model) Predict(ctx context.Context, in model.Batch) (model.Result, error) {
	if m.PredictFunc != nil {
		return m.PredictFunc(ctx, in)
	}
	out := model.Result{Rows: in.Rows, Cols: m.Meta.Outputs, Values: make([]float64, in.Rows*m.Meta.Outputs)}
	for i := 0; i < in.Rows; i++ {
		for j := range out.Row(i) {
			out.Row(i)[j] = in.Row(i)[0]
		}
	}
	return out, nil
}

// Close implements model.Model.
func (m *Model) Close() error {
	if m.CloseFunc != nil {
		return m.CloseFunc()
	}
	return nil
}

// TensorModel is a model.TensorModel built from function fields.
type TensorModel struct {
	Model
	InferFunc func(ctx context.Context, inputs []model.Tensor, outputs []string) ([]model.Tensor, error)
}

var _ model.TensorModel = (*TensorModel)(nil)

// Infer implements model.TensorModel.
func (m *TensorModel) Infer(ctx context.Context, inputs []model.Tensor, outputs []string) ([]model.Tensor, error) {
	return m.InferFunc(ctx, inputs, outputs)
}
