package xgboost

import (
	"fmt"
	"math"
)

// link is the transform XGBoost's predict applies to a margin by default
// (the objective's PredTransform).
type link int

const (
	linkIdentity link = iota // the margin itself
	linkSigmoid              // 1/(1+exp(-x)): one probability, of class 1
	linkHinge                // 1 if x > 0 else 0: the predicted class of binary:hinge
	linkSoftmax              // one probability per class
	linkExp                  // exp(x): log-link regression
)

// intercept says how an objective turns base_score into a margin (its
// ProbToMargin).
type intercept int

const (
	interceptIdentity intercept = iota // the value is already a margin
	interceptLogit                     // -log(1/p - 1), p in (0, 1)
	interceptLog                       // log(v), v > 0
)

// kind says how a model's outputs reach a user.
type kind int

const (
	regressor  kind = iota // one value per row
	binary                 // two classes; the link gives the probability of class 1
	multiclass             // num_class classes, one probability each
)

// objective describes one XGBoost objective as prediction sees it.
type objective struct {
	link      link
	intercept intercept
	kind      kind
}

// objectives lists every objective this package evaluates, with the link
// XGBoost's predict applies by default and the margin transform of
// base_score, both from XGBoost's src/objective.
//
// multi:softmax's predict answers the index of the likeliest class; here it
// answers the class probabilities, whose largest names the same class.
// binary:hinge's predict answers 0 or 1; here class 1 gets probability 1 or 0
// accordingly. binary:logitraw answers the raw margin, as a regressor's value.
// The rank:* objectives answer the ranking score (the margin); reg:logistic
// answers a value in (0, 1) as a regressor.
var objectives = map[string]objective{
	"binary:logistic":      {linkSigmoid, interceptLogit, binary},
	"reg:logistic":         {linkSigmoid, interceptLogit, regressor},
	"binary:logitraw":      {linkIdentity, interceptIdentity, regressor},
	"binary:hinge":         {linkHinge, interceptIdentity, binary},
	"multi:softprob":       {linkSoftmax, interceptIdentity, multiclass},
	"multi:softmax":        {linkSoftmax, interceptIdentity, multiclass},
	"reg:squarederror":     {linkIdentity, interceptIdentity, regressor},
	"reg:linear":           {linkIdentity, interceptIdentity, regressor},
	"reg:squaredlogerror":  {linkIdentity, interceptIdentity, regressor},
	"reg:pseudohubererror": {linkIdentity, interceptIdentity, regressor},
	"reg:absoluteerror":    {linkIdentity, interceptIdentity, regressor},
	"reg:quantileerror":    {linkIdentity, interceptIdentity, regressor},
	"count:poisson":        {linkExp, interceptLog, regressor},
	"reg:gamma":            {linkExp, interceptLog, regressor},
	"reg:tweedie":          {linkExp, interceptLog, regressor},
	"survival:aft":         {linkExp, interceptLog, regressor},
	"survival:cox":         {linkExp, interceptLog, regressor},
	"rank:pairwise":        {linkIdentity, interceptIdentity, regressor},
	"rank:ndcg":            {linkIdentity, interceptIdentity, regressor},
	"rank:map":             {linkIdentity, interceptIdentity, regressor},
}

// margin turns one base_score value into a margin in float32 arithmetic, as
// XGBoost's ProbToMargin does (logf on a float).
func (in intercept) margin(v float32) (float32, error) {
	switch in {
	case interceptLogit:
		if !(v > 0 && v < 1) {
			return 0, fmt.Errorf("base_score %g is not a probability", v)
		}
		return -logf(1/v - 1), nil
	case interceptLog:
		if !(v > 0) {
			return 0, fmt.Errorf("base_score %g is not positive, as a log-link objective needs", v)
		}
		return logf(v), nil
	}
	return v, nil
}

// logf and expf are C's float functions: the float64 result rounded to
// float32, which is what a correctly rounded logf and expf return.
func logf(v float32) float32 { return float32(math.Log(float64(v))) }
func expf(v float32) float32 { return float32(math.Exp(float64(v))) }

// sigmoid is XGBoost's common::Sigmoid, in float32.
func sigmoid(x float32) float32 {
	const eps = 1e-16
	return 1 / (expf(min(-x, 88.7)) + 1 + eps)
}
