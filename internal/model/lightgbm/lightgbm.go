// Package lightgbm evaluates LightGBM tree ensembles in pure Go from the text
// model format (Booster.save_model, "version=v2" to "v4": LightGBM 2.x to 4.x),
// answering what LightGBM 4.x's own predict answers for the same rows.
//
// dmitryikh/leaves, the Go library that reads these files, has had no release
// since 2023, accepts only "version=v2" (files from LightGBM < 2.3), and lacks
// linear trees and most objectives, so this package implements what LightGBM's
// own predictor does (src/io/tree.cpp, include/LightGBM/tree.h,
// src/boosting/gbdt_model_text.cpp, src/boosting/gbdt_prediction.cpp,
// src/objective):
//
//   - raw scores: the sum, in float64 and tree order, of each tree's output,
//     one sum per tree of an iteration (num_tree_per_iteration: one per class
//     for multiclass and multiclassova, trees interleaved by class). With
//     average_output (random forest mode) the sums are divided by the number
//     of iterations, then the link applies, as LightGBM 3.x and 4.x do (2.x
//     skipped the link for random forests).
//   - numerical splits: a value within kZeroThreshold (1e-35f) of zero is
//     zero; NaN counts as 0 unless the split's missing type is NaN; a missing
//     value (NaN for missing type NaN, zero for missing type Zero, as
//     zero_as_missing trains) takes the split's default direction; otherwise
//     value <= threshold goes left.
//   - categorical splits: NaN goes right; a value is truncated to an integer
//     category code; a negative code, or one not in the split's bitset
//     (cat_boundaries, cat_threshold), goes right. LightGBM's Python package
//     turns a category name it did not see in training into NaN (pandas
//     set_categories, then code -1 replaced by NaN), so an unknown name is a
//     missing value and goes right at every categorical split.
//   - linear trees (is_linear): the leaf's constant plus its coefficients
//     times its features, or its leaf_value when one of them is NaN.
//   - objectives and their links: binary (classifier; 1/(1+exp(-sigmoid*x))),
//     multiclass (classifier; softmax), multiclassova (classifier; the binary
//     link per class, which need not sum to 1), regression, regression_l1,
//     huber, fair, quantile, mape (identity, or sign(x)*x*x with reg_sqrt),
//     poisson, gamma, tweedie (exp), cross_entropy (sigmoid),
//     cross_entropy_lambda (log(1+exp(x))), lambdarank and rank_xendcg (the
//     score), and no objective line, a custom objective (the raw scores).
//   - category names: the "pandas_categorical:" line the Python package
//     writes names the categories of each categorical DataFrame column;
//     Metadata.Categorical lists them in code order when the file's
//     categorical features and the lists match one to one.
//
// Other objectives and format versions, missing type 3, and files whose
// trees are not trees are refused at load with an error that names them.
// The tests compare predictions with LightGBM's own on files that LightGBM
// 2.x, 3.x and 4.x wrote (testdata/README.md).
package lightgbm

import (
	"context"
	"fmt"
	"math"

	"github.com/modelwatch/modelwatch/internal/model"
)

// Type is the runtime name reported in model metadata.
const Type = "lightgbm"

// File is the file name of a LightGBM model in a model version directory.
const File = "model.txt"

// Tensor names of a LightGBM model in the Open Inference Protocol, the same as
// the XGBoost runtime's: one input of shape [rows, features]; a classifier's
// class probabilities and predicted class names, or a regressor's predictions.
const (
	InputName         = "input"
	ProbabilitiesName = "probabilities"
	LabelName         = "label"
	PredictionName    = "prediction"
)

// Runtime describes this package to a model loader.
var Runtime = model.Runtime{Type: Type, File: File, Load: func(data []byte, meta model.Metadata) (model.Model, error) {
	return Parse(data, meta)
}}

// kZeroThreshold is LightGBM's kZeroThreshold (1e-35f): values within it of
// zero are zero, both when LightGBM reads a row and for missing_type Zero.
var kZeroThreshold = float64(float32(1e-35))

// Model is a parsed LightGBM model. It is immutable and safe for concurrent use.
type Model struct {
	meta      model.Metadata
	trees     []tree
	perIter   int // trees per iteration: the number of raw scores
	average   bool
	iters     int // iterations, the divisor of average_output
	objective objective
}

var _ model.Model = (*Model)(nil)

// Metadata implements model.Model.
func (m *Model) Metadata() model.Metadata { return m.meta }

// Close implements model.Model; a parsed model holds nothing to release.
func (m *Model) Close() error { return nil }

// Predict implements model.Model. A NaN value is missing and goes where
// LightGBM sends it (see tree.decide); a categorical value is its category
// code.
func (m *Model) Predict(ctx context.Context, in model.Batch) (model.Result, error) {
	if in.Cols != len(m.meta.Features) || len(in.Values) != in.Rows*in.Cols {
		return model.Result{}, fmt.Errorf("batch of %dx%d values for a model with %d features", in.Rows, in.Cols, len(m.meta.Features))
	}
	out := model.Result{Rows: in.Rows, Cols: m.meta.Outputs, Values: make([]float64, in.Rows*m.meta.Outputs)}
	row := make([]float64, in.Cols)
	raw := make([]float64, m.perIter)
	for i := 0; i < in.Rows; i++ {
		if i&63 == 63 {
			if err := ctx.Err(); err != nil {
				return model.Result{}, err
			}
		}
		copyRow(row, in.Row(i))
		m.rawScores(row, raw)
		m.objective.convert(raw, out.Row(i))
	}
	return out, nil
}

// copyRow copies a row the way LightGBM's C API reads a dense row: values
// within kZeroThreshold of zero become zero.
func copyRow(dst, src []float64) {
	for j, v := range src {
		if math.Abs(v) <= kZeroThreshold {
			v = 0
		}
		dst[j] = v
	}
}

// rawScores sums the trees' outputs per raw score in float64 and tree order,
// and averages them for a random-forest model, as GBDT::Predict does before
// the objective's link function.
func (m *Model) rawScores(row, raw []float64) {
	clear(raw)
	for i := range m.trees {
		raw[i%m.perIter] += m.trees[i].predict(row)
	}
	if m.average {
		for k := range raw {
			raw[k] /= float64(m.iters)
		}
	}
}
