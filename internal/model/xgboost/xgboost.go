// Package xgboost evaluates XGBoost models in pure Go from the files that
// XGBoost 2.0 to 3.x writes with Booster.save_model: JSON (model.json) and
// UBJSON (model.ubj, the default since 2.1). It answers what XGBoost's own
// predict answers, to float32 precision.
//
// No maintained Go library reads these files: dmitryikh/leaves predates the
// JSON format and fails on files written by XGBoost >= 1.0. This package
// implements the schema of XGBoost's own source (src/learner.cc,
// src/gbm/gbtree_model.cc, src/tree/tree_model.cc, src/data/cat_container.cc):
//
//   - boosters: gbtree; dart in all three layouts ("dart" wrapping a gbtree,
//     XGBoost 3.3's "gbtree" with weight_drop beside the model and 3.4's with
//     weight_drop inside it), every tree weighted by its weight_drop; gblinear
//     (a missing value contributes nothing, as in XGBoost's linear predictor).
//   - splits: numerical (value < threshold goes left) and categorical. A
//     categorical split sends the categories it lists right and every other
//     value left, including codes that are not categories at all (negative,
//     2^24 or more); a fractional code is truncated to an integer first. This
//     is common::Decision in src/common/categorical.h. NaN is missing and takes
//     the node's default branch, for both kinds of split.
//   - base_score, one value or (XGBoost 3.1+) one per output group, turned
//     into a margin in float32 as the objective's ProbToMargin does.
//   - objectives, each with the transform XGBoost's predict applies by
//     default and the margin transform of base_score:
//     binary:logistic (classifier; sigmoid; base_score is a probability),
//     binary:hinge (classifier; class 1 gets probability 1 when the margin
//     is positive, else 0, as predict answers 1 or 0),
//     multi:softprob and multi:softmax (classifiers; softmax; multi:softmax's
//     predict answers the likeliest class index, here its probabilities),
//     reg:logistic (regressor; sigmoid; base_score a probability),
//     binary:logitraw (regressor; the raw margin),
//     reg:squarederror, reg:linear, reg:squaredlogerror, reg:pseudohubererror,
//     reg:absoluteerror, reg:quantileerror with one quantile, rank:pairwise,
//     rank:ndcg and rank:map (regressors; the margin),
//     count:poisson, reg:gamma, reg:tweedie, survival:aft and survival:cox
//     (regressors; exp; base_score is turned into a margin with log).
//   - best_iteration: when the file's learner attributes hold best_iteration
//     (the scikit-learn wrapper stores it after early stopping), only the
//     trees of iterations 0 to best_iteration are used, as the wrapper's
//     predict does with iteration_range=(0, best_iteration+1). The native
//     Booster.predict would use every tree; a user who wants that must remove
//     the attribute. gblinear has no iterations: the wrapper ignores
//     best_iteration for it, and so does this package.
//   - category names: XGBoost 3.1+ keeps the training DataFrame's categories
//     in the model ("cats"); Metadata.Categorical lists them in code order.
//     XGBoost itself refuses a DataFrame holding a category name it did not
//     see in training ("Found a category not in the training set"), so a
//     caller should refuse such a name too rather than guess a code.
//
// Vector leaves (multi_strategy "multi_output_tree"), multi-target models,
// reg:quantileerror with several quantiles and other objectives are refused
// at load with an error that names them, as are files past the bounds
// MaxTrees, MaxNodes, MaxFeatures and MaxClasses.
//
// Parsing (parse.go) and evaluation (predict.go) are kept apart: a parsed
// Model is a flat list of trees whose nodes hold float32 thresholds, as
// XGBoost's do, and evaluation sums leaf values in float32 in tree order.
// Trees without categorical splits are also compiled into a forest
// (forest.go) that Predict walks without data-dependent branches, a block
// of rows at a time as XGBoost's CPU predictor does, to the same results
// bit for bit.
package xgboost

import (
	"github.com/modelwatch/modelwatch/internal/model"
)

// Type is the runtime name reported in model metadata.
const Type = "xgboost"

// File names of an XGBoost model in a model version directory: the JSON and
// the UBJSON format. Parse recognises either format by its content, whatever
// the file is called.
const (
	File       = "model.json"
	UBJSONFile = "model.ubj"
)

// Tensor names of an XGBoost model in the Open Inference Protocol: one input
// of shape [rows, features]; a classifier's class probabilities and
// predicted class names, or a regressor's predictions.
const (
	InputName         = "input"
	ProbabilitiesName = "probabilities"
	LabelName         = "label"
	PredictionName    = "prediction"
)

func loadModel(data []byte, meta model.Metadata) (model.Model, error) { return Parse(data, meta) }

// Runtime describes the JSON model file (model.json) to a model loader.
var Runtime = model.Runtime{Type: Type, File: File, Load: loadModel}

// Runtimes describes both model files a version directory may hold,
// model.json and model.ubj, to a model loader.
var Runtimes = []model.Runtime{Runtime, {Type: Type, File: UBJSONFile, Load: loadModel}}

// Model is a parsed XGBoost model. It is immutable and safe for concurrent use.
type Model struct {
	meta model.Metadata
	// trees is empty for a gblinear model, linear nil for a tree model.
	trees  []tree
	linear *linear
	// categorical reports whether a tree has a categorical split.
	categorical bool
	groups      int
	// baseMargin holds one margin per output group, the intercept every
	// prediction starts from.
	baseMargin []float32
	link       link
	// forest is the trees compiled for fast evaluation (forest.go), or nil:
	// a gblinear model, or one with categorical splits.
	forest *forest
}

var _ model.Model = (*Model)(nil)

// Metadata implements model.Model.
func (m *Model) Metadata() model.Metadata { return m.meta }

// Close implements model.Model; a parsed model holds nothing to release.
func (m *Model) Close() error { return nil }
