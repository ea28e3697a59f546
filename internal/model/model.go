// Package model defines what the server serves: the Model interface every
// runtime implements, the metadata that describes a model's inputs and
// outputs, and the Registry that resolves a request's model name and version
// to a loaded model.
package model

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync/atomic"
)

// Model is one loaded version of a model. Implementations are safe for
// concurrent use by many requests at once.
type Model interface {
	// Metadata describes the model. It does not change once the model is loaded.
	Metadata() Metadata
	// Predict evaluates every row of in and returns one Result row per input
	// row. The rows have already been validated against Metadata: in.Cols equals
	// the number of features and every value is finite or NaN (missing), and
	// NaN only where the model accepts missing values. Predict returns ctx's
	// error if the context ends before it is done.
	Predict(ctx context.Context, in Batch) (Result, error)
	// Close releases what the model holds. The model is not used afterwards.
	Close() error
}

// MaxClasses bounds the classes of a model, as every runtime reads them
// from a model file, a config.yaml names them, and a training profile
// lists them: the metric series per class stay bounded.
const MaxClasses = 10_000

// Metadata describes a model version's inputs and outputs.
type Metadata struct {
	// Name and Version identify the model, as a request names it.
	Name    string
	Version string
	// Type names the runtime that evaluates the model, for example "xgboost".
	Type string
	// Description is free text for people, from the model's configuration.
	Description string
	// Features names the input features in the order a row lists them. It is
	// empty for a model that takes anything but one tensor of rows, which
	// only the Open Inference Protocol can then call.
	Features []string
	// Classes names the classes of a classifier, in the order of its
	// probability outputs. It is empty for a regressor.
	Classes []string
	// Outputs is the number of values a Result holds per row: len(Classes) for
	// a classifier, the number of targets for a regressor.
	Outputs int
	// AcceptsMissing reports whether NaN may stand for a missing value.
	AcceptsMissing bool
	// Categorical lists the features whose values are categories, in column
	// order. A row gives such a feature as a category code (a whole number,
	// as the training library encoded it) or, where Categories names them,
	// as a category name that the server turns into its code.
	Categorical []CategoricalFeature
	// UnknownCategoryIsMissing says what a category name the model does not
	// know stands for: a missing value when true (LightGBM, whose pandas
	// handling turns an unseen category into NaN), a refused input when false
	// (XGBoost 3.1 and later refuse a category not in the training set).
	UnknownCategoryIsMissing bool
	// InputTensors and OutputTensors describe the model's tensors, as the
	// Open Inference Protocol's metadata endpoint shows them.
	InputTensors, OutputTensors []TensorSpec
	// PredictionOutput names the output tensor whose values Predict returns
	// (class probabilities or predictions); the configuration may choose it.
	PredictionOutput string
	// MaxBatchRows bounds the rows of one request; 0 leaves the server's limit.
	MaxBatchRows int
}

// CategoricalFeature describes one categorical input feature.
type CategoricalFeature struct {
	// Index is the feature's column in a row (its index in Features).
	Index int
	// Categories names the categories in the order of their codes: the
	// category named Categories[i] has code i. It is nil when the model file
	// knows the codes only.
	Categories []string
}

// Code returns the code of the category called name, and false when the
// feature has no category of that name.
func (c CategoricalFeature) Code(name string) (int, bool) {
	for i, n := range c.Categories {
		if n == name {
			return i, true
		}
	}
	return 0, false
}

// IsClassifier reports whether the model predicts classes.
func (m Metadata) IsClassifier() bool { return len(m.Classes) > 0 }

// Batch is a dense row-major matrix of input rows.
type Batch struct {
	Rows, Cols int
	// Values holds Rows*Cols numbers; row i is Values[i*Cols : (i+1)*Cols].
	Values []float64
}

// Row returns row i of the batch.
func (b Batch) Row(i int) []float64 { return b.Values[i*b.Cols : (i+1)*b.Cols] }

// Result is a dense row-major matrix of outputs: class probabilities for a
// classifier, predicted values for a regressor.
type Result struct {
	Rows, Cols int
	Values     []float64
}

// Row returns row i of the result.
func (r Result) Row(i int) []float64 { return r.Values[i*r.Cols : (i+1)*r.Cols] }

// Errors that callers branch on. Runtimes wrap them with %w to add context.
var (
	// ErrModelNotFound means no loaded model has the requested name.
	ErrModelNotFound = errors.New("model not found")
	// ErrVersionNotFound means the model exists but not in the requested version.
	ErrVersionNotFound = errors.New("model version not found")
	// ErrInvalidModel means a model file or its configuration cannot be used.
	ErrInvalidModel = errors.New("invalid model")
)

// PanicError is returned by SafePredict when a model's Predict panicked.
type PanicError struct {
	Value any
	// Stack is the stack of the goroutine that panicked.
	Stack []byte

	reported atomic.Bool
}

// FirstReport reports whether this is the first call for this panic: a
// panic in a batch fails every request in it with one *PanicError, which is
// logged, with its stack, once.
func (e *PanicError) FirstReport() bool { return !e.reported.Swap(true) }

func (e *PanicError) Error() string { return fmt.Sprintf("model panicked: %v", e.Value) }

// SafeInfer calls m.Infer and turns a panic inside it into a *PanicError
// with the stack of the goroutine that panicked, as SafePredict does for
// Predict: every runtime call goes through one of the two.
func SafeInfer(ctx context.Context, m TensorModel, ins []Tensor, outs []string) (ts []Tensor, err error) {
	defer func() {
		if v := recover(); v != nil {
			ts, err = nil, &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return m.Infer(ctx, ins, outs)
}

// SafePredict calls m.Predict and turns a panic inside it into a *PanicError,
// so one faulty model cannot take the server down. It also checks that the
// result has one row per input row and Metadata().Outputs columns.
func SafePredict(ctx context.Context, m Model, in Batch) (res Result, err error) {
	defer func() {
		if v := recover(); v != nil {
			res, err = Result{}, &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	res, err = m.Predict(ctx, in)
	if err != nil {
		return Result{}, err
	}
	if want := m.Metadata().Outputs; res.Rows != in.Rows || res.Cols != want || len(res.Values) != res.Rows*res.Cols {
		return Result{}, fmt.Errorf("model returned %dx%d values for %d rows, want %d columns", res.Rows, res.Cols, in.Rows, want)
	}
	return res, nil
}
