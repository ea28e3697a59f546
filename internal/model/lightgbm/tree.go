package lightgbm

import "math"

// Missing-value handling of a numerical split, bits 2-3 of decision_type.
const (
	missingNone = 0
	missingZero = 1
	missingNaN  = 2
)

// decision_type bits.
const (
	categoricalMask = 1
	defaultLeftMask = 2
)

// node is one split. A child is a node index when >= 0, and ^leaf otherwise,
// as in LightGBM's left_child and right_child.
type node struct {
	threshold   float64
	left, right int32
	feature     int32
	categorical bool
	defaultLeft bool
	missing     uint8
	// The category bitset of a categorical split is the tree's
	// bits[catStart : catStart+catLen].
	catStart, catLen int32
}

// tree is one LightGBM tree. A tree with one leaf has no nodes.
type tree struct {
	nodes  []node
	leaves []float64
	// bits holds the category bitsets of the categorical splits.
	bits []uint32
	// linear holds the leaf models of a linear tree, nil otherwise.
	linear []leafModel
}

// leafModel is the linear model of one leaf: leaf_const plus the sum of
// coeff[i] times the value of feature features[i].
type leafModel struct {
	constant float64
	features []int32
	coeffs   []float64
}

// predict returns the tree's output for a row, as Tree::Predict does: a
// linear leaf whose features include a NaN answers its constant leaf_value.
// A linear leaf's multiply-adds are fused (one rounding each): LightGBM's
// predictions for the linear model in testdata match only so, as a compiler
// that contracts "output += coeff * value" into FMA computes them (the
// default on arm64); a LightGBM build without FMA may differ in the last bit.
func (t *tree) predict(row []float64) float64 {
	leaf := t.leaf(row)
	if t.linear == nil {
		return t.leaves[leaf]
	}
	lm := &t.linear[leaf]
	out := lm.constant
	for i, f := range lm.features {
		v := row[f]
		if v != v {
			return t.leaves[leaf]
		}
		out = math.FMA(lm.coeffs[i], v, out)
	}
	return out
}

// leaf returns the index of the leaf a row reaches.
func (t *tree) leaf(row []float64) int {
	if len(t.nodes) == 0 {
		return 0
	}
	i := int32(0)
	for i >= 0 {
		n := &t.nodes[i]
		if n.decide(row[n.feature], t.bits) {
			i = n.left
		} else {
			i = n.right
		}
	}
	return int(^i)
}

// decide reports whether v goes left, as Tree::NumericalDecision and
// Tree::CategoricalDecision decide.
//
// Numerical: NaN counts as 0 unless the split's missing type is NaN; a
// missing value (NaN for missing type NaN, a value within kZeroThreshold of
// zero for missing type Zero) takes the default direction; otherwise v goes
// left when v <= threshold.
//
// Categorical: NaN goes right; otherwise v is truncated to an integer (so
// -0.5 is category 0), and a negative category goes right, the others left
// when they are in the split's category bitset.
func (n *node) decide(v float64, bits []uint32) bool {
	if n.categorical {
		if v != v || v <= -1 {
			return false
		}
		// static_cast<int> of a value past int32 is negative in LightGBM's
		// builds, so it goes right; so does any code outside the bitset.
		if v >= math.MaxInt32+1 {
			return false
		}
		c := uint64(v)
		w := c / 32
		return w < uint64(n.catLen) && bits[uint64(n.catStart)+w]>>(c%32)&1 == 1
	}
	if v != v && n.missing != missingNaN {
		v = 0
	}
	if (n.missing == missingZero && v >= -kZeroThreshold && v <= kZeroThreshold) || (n.missing == missingNaN && v != v) {
		return n.defaultLeft
	}
	return v <= n.threshold
}
