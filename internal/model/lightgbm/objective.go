package lightgbm

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// link is the function an objective applies to the raw scores (its
// ConvertOutput in LightGBM's src/objective).
type link int

const (
	linkIdentity link = iota // regression, l1, huber, fair, quantile, mape, ranking, custom
	linkSquare               // the regression family with reg_sqrt: sign(x)*x*x
	linkExp                  // poisson, gamma, tweedie
	linkSigmoid              // binary (two classes), cross_entropy
	linkSoftmax              // multiclass
	linkOVA                  // multiclassova: a sigmoid per class
	linkLog1pExp             // cross_entropy_lambda: log(1+exp(x))
)

// objective is a parsed "objective=" line.
type objective struct {
	name    string
	link    link
	sigmoid float64 // binary and multiclassova
	classes int     // number of classes of a classifier, 0 for the others
}

// regression objectives, all of which accept a "sqrt" parameter (reg_sqrt);
// poisson, gamma and tweedie answer exp(x) whatever it says, as their
// ConvertOutput overrides the squaring one.
var regressionLinks = map[string]link{
	"regression":    linkIdentity,
	"regression_l1": linkIdentity,
	"huber":         linkIdentity,
	"fair":          linkIdentity,
	"quantile":      linkIdentity,
	"mape":          linkIdentity,
	"poisson":       linkExp,
	"gamma":         linkExp,
	"tweedie":       linkExp,
}

// supportedObjectives lists, for error messages, the objective names Parse
// knows.
const supportedObjectives = "binary, multiclass, multiclassova, regression, regression_l1, huber, fair, quantile, mape, poisson, gamma, tweedie, cross_entropy, cross_entropy_lambda, lambdarank, rank_xendcg, or none for a custom objective"

// parseObjective reads the value of an "objective=" line, as LightGBM writes
// it: a name, then parameters such as "sigmoid:1", "num_class:3" or "sqrt".
// An empty line (no objective in the file) is a custom objective: the raw
// scores are the output.
func parseObjective(s string) (objective, error) {
	fields := strings.Fields(s)
	if len(fields) == 0 {
		return objective{name: "custom", link: linkIdentity}, nil
	}
	o := objective{name: fields[0]}
	params := map[string]string{}
	for _, f := range fields[1:] {
		k, v, _ := strings.Cut(f, ":")
		params[k] = v
	}
	// take removes a parameter and reads it as a number.
	take := func(key string) (float64, bool, error) {
		v, ok := params[key]
		if !ok {
			return 0, false, nil
		}
		delete(params, key)
		x, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
			return 0, true, fmt.Errorf("objective %s: %s:%s is not a number", o.name, key, v)
		}
		return x, true, nil
	}
	switch o.name {
	case "binary", "multiclassova":
		sig, ok, err := take("sigmoid")
		if err != nil {
			return o, err
		}
		if !ok {
			return o, fmt.Errorf("objective %s has no sigmoid parameter", o.name)
		}
		if sig <= 0 {
			return o, fmt.Errorf("objective %s: sigmoid %g is not positive", o.name, sig)
		}
		o.sigmoid, o.link, o.classes = sig, linkSigmoid, 2
		if o.name == "multiclassova" {
			o.link = linkOVA
			if o.classes, err = takeClasses(o.name, take); err != nil {
				return o, err
			}
		}
	case "multiclass":
		o.link = linkSoftmax
		var err error
		if o.classes, err = takeClasses(o.name, take); err != nil {
			return o, err
		}
	case "cross_entropy", "xentropy": // xentropy: the name in early 2.x files
		o.link = linkSigmoid
		o.sigmoid = 1
	case "cross_entropy_lambda", "xentlambda":
		o.link = linkLog1pExp
	case "lambdarank", "rank_xendcg", "custom", "none":
		o.link = linkIdentity
	default:
		l, ok := regressionLinks[o.name]
		if !ok {
			return o, fmt.Errorf("objective %q is not supported (supported: %s)", o.name, supportedObjectives)
		}
		o.link = l
		if _, sqrt := params["sqrt"]; sqrt {
			delete(params, "sqrt")
			if l == linkIdentity {
				o.link = linkSquare
			}
		}
	}
	for k := range params {
		return o, fmt.Errorf("objective %s: parameter %q is not supported", o.name, k)
	}
	return o, nil
}

func takeClasses(name string, take func(string) (float64, bool, error)) (int, error) {
	n, ok, err := take("num_class")
	switch {
	case err != nil:
		return 0, err
	case !ok:
		return 0, fmt.Errorf("objective %s has no num_class parameter", name)
	case n < 2 || n > maxClasses || n != math.Trunc(n):
		return 0, fmt.Errorf("objective %s: num_class %g is not a whole number from 2 to %d", name, n, maxClasses)
	}
	return int(n), nil
}

// treesPerIteration is the number of trees an iteration of this objective
// adds, or 0 when any number is fine (custom objectives).
func (o objective) treesPerIteration() int {
	switch o.link {
	case linkSoftmax, linkOVA:
		return o.classes
	}
	if o.name == "custom" || o.name == "none" {
		return 0
	}
	return 1
}

// isClassifier reports whether the objective predicts class probabilities.
func (o objective) isClassifier() bool { return o.classes > 0 }

// convert turns raw scores into the output LightGBM's predict gives by
// default, in LightGBM's float64 arithmetic. For a binary model out holds the
// probabilities of class 0 and class 1.
func (o objective) convert(raw, out []float64) {
	switch o.link {
	case linkIdentity:
		copy(out, raw)
	case linkSquare:
		x := raw[0]
		out[0] = sign(x) * x * x
	case linkExp:
		out[0] = math.Exp(raw[0])
	case linkSigmoid:
		p := 1 / (1 + math.Exp(-o.sigmoid*raw[0]))
		if o.classes == 2 {
			out[0], out[1] = 1-p, p
		} else {
			out[0] = p
		}
	case linkOVA:
		for k, x := range raw {
			out[k] = 1 / (1 + math.Exp(-o.sigmoid*x))
		}
	case linkSoftmax:
		softmax(raw, out)
	case linkLog1pExp:
		// Common::SafeLog(1 + exp(x)): -inf for a non-positive argument.
		if y := 1 + math.Exp(raw[0]); y > 0 {
			out[0] = math.Log(y)
		} else {
			out[0] = math.Inf(-1)
		}
	}
}

func sign(x float64) float64 {
	switch {
	case x > 0:
		return 1
	case x < 0:
		return -1
	}
	return 0
}

// softmax is LightGBM's Common::Softmax.
func softmax(in, out []float64) {
	mx := in[0]
	for _, v := range in[1:] {
		mx = max(v, mx)
	}
	var sum float64
	for k, v := range in {
		out[k] = math.Exp(v - mx)
		sum += out[k]
	}
	for k := range out {
		out[k] /= sum
	}
}
