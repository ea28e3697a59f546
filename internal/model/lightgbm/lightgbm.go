// Package lightgbm evaluates LightGBM tree ensembles in pure Go from the text
// model format (Booster.save_model, "version=v2" to "v4": LightGBM 2.x to 4.x).
//
// dmitryikh/leaves, the Go library that reads these files, has had no release
// since 2023, accepts only "version=v2" (files from LightGBM < 2.3), and lacks
// linear trees and most objectives, so this package implements what LightGBM's
// own predictor does (src/io/tree.cpp, include/LightGBM/tree.h,
// src/boosting/gbdt_model_text.cpp, src/objective): numerical splits with
// LightGBM's missing-value rules, categorical bitset splits, linear trees,
// average_output (random forest mode), and the link function of every built-in
// objective. Like LightGBM it works in float64 throughout; the tests compare
// its output with LightGBM's own predictions.
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
