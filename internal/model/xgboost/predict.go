package xgboost

import (
	"context"
	"fmt"
	"slices"

	"github.com/modelwatch/modelwatch/internal/model"
)

// node is one tree node. A leaf has feature -1 and its value in threshold.
type node struct {
	threshold   float32
	feature     int32
	left, right int32
	missing     int32 // the child that a missing value goes to
}

type tree struct {
	nodes  []node
	cats   *categories // nil for a tree without categorical splits
	group  int32       // output group (class) the tree adds to
	weight float32     // dart's weight_drop, 1 for gbtree
}

// categories holds the category sets of a tree's categorical splits.
type categories struct {
	// of[i] is 0 for node i if it is a numerical split or a leaf, and for a
	// categorical split one more than the index of its set in sets.
	of []int32
	// sets are sorted; a split sends the categories of its set right.
	sets [][]int32
}

// linear is a gblinear model: weights[f*groups+g] is feature f's weight in
// output group g, and bias[g] the group's bias.
type linear struct {
	weights []float32
	bias    []float32
}

// maxCategory bounds the category codes a categorical split can match:
// XGBoost treats a code of 2^24 or more as invalid (common::InvalidCat).
const maxCategory = 1 << 24

// Predict implements model.Model. A NaN value is missing: it takes each
// split's default branch in a tree model and adds nothing in a linear one.
// A categorical feature's value is its category code, as XGBoost's DMatrix
// holds it; a value that is no category of a split goes left.
func (m *Model) Predict(ctx context.Context, in model.Batch) (model.Result, error) {
	if in.Cols != len(m.meta.Features) || len(in.Values) != in.Rows*in.Cols {
		return model.Result{}, fmt.Errorf("batch of %dx%d values for a model with %d features", in.Rows, in.Cols, len(m.meta.Features))
	}
	out := model.Result{Rows: in.Rows, Cols: m.meta.Outputs, Values: make([]float64, in.Rows*m.meta.Outputs)}
	if m.forest != nil {
		if err := m.forest.predict(ctx, m, in, out); err != nil {
			return model.Result{}, err
		}
		return out, nil
	}
	row := make([]float32, in.Cols)
	margin := make([]float32, m.groups)
	for i := 0; i < in.Rows; i++ {
		if i&63 == 63 {
			if err := ctx.Err(); err != nil {
				return model.Result{}, err
			}
		}
		for j, v := range in.Row(i) {
			row[j] = float32(v)
		}
		copy(margin, m.baseMargin)
		if m.linear != nil {
			m.linear.add(row, margin)
		} else {
			m.addTrees(row, margin)
		}
		m.transform(margin, out.Row(i))
	}
	return out, nil
}

// addTrees adds the trees' leaf values to margin, in float32 and in tree
// order as XGBoost does.
func (m *Model) addTrees(row []float32, margin []float32) {
	if m.categorical {
		m.addCategoricalTrees(row, margin)
		return
	}
	for ti := range m.trees {
		t := &m.trees[ti]
		nodes := t.nodes
		i := int32(0)
		for {
			nd := &nodes[i]
			if nd.feature < 0 {
				break
			}
			v := row[nd.feature]
			switch {
			case v != v: // NaN: missing
				i = nd.missing
			case v < nd.threshold:
				i = nd.left
			default:
				i = nd.right
			}
		}
		// The explicit conversion keeps the product rounded to float32 before
		// the sum, as XGBoost computes it, on machines that fuse multiply-add.
		margin[t.group] += float32(t.weight * nodes[i].threshold)
	}
}

// addCategoricalTrees is addTrees for a model with categorical splits. It is
// a loop of its own so that the loop over numerical splits alone, which
// most models have, stays as short as it can be.
func (m *Model) addCategoricalTrees(row []float32, margin []float32) {
	for ti := range m.trees {
		t := &m.trees[ti]
		margin[t.group] += float32(t.weight * t.leaf(row))
	}
}

// leaf returns the value of the leaf that row reaches in t.
func (t *tree) leaf(row []float32) float32 {
	var of []int32
	var sets [][]int32
	if t.cats != nil {
		of, sets = t.cats.of, t.cats.sets
	}
	nodes := t.nodes
	i := int32(0)
	for {
		nd := &nodes[i]
		if nd.feature < 0 {
			return nd.threshold
		}
		v := row[nd.feature]
		switch {
		case v != v: // NaN: missing
			i = nd.missing
		case of != nil && of[i] != 0:
			if inCategories(sets[of[i]-1], v) {
				i = nd.right
			} else {
				i = nd.left
			}
		case v < nd.threshold:
			i = nd.left
		default:
			i = nd.right
		}
	}
}

// inCategories reports whether category value v is one of cats, as
// XGBoost's common::Decision decides: a value that is not a valid category
// (negative or too large) is in no set, and a fraction is truncated.
func inCategories(cats []int32, v float32) bool {
	if v < 0 || v >= maxCategory {
		return false
	}
	_, found := slices.BinarySearch(cats, int32(v))
	return found
}

// add adds the linear model's terms to margin: the bias, then each present
// feature's term in column order, in float32 as XGBoost's linear predictor.
func (l *linear) add(row []float32, margin []float32) {
	groups := len(margin)
	for g := range margin {
		sum := margin[g] + l.bias[g]
		for f, v := range row {
			if v == v {
				sum += float32(v * l.weights[f*groups+g])
			}
		}
		margin[g] = sum
	}
}

// transform applies the objective's link to a row's margins and writes the
// row's outputs.
func (m *Model) transform(margin []float32, out []float64) {
	switch m.link {
	case linkSigmoid:
		p := sigmoid(margin[0])
		if len(out) == 2 {
			out[0], out[1] = 1-float64(p), float64(p)
		} else {
			out[0] = float64(p)
		}
	case linkHinge:
		out[0], out[1] = 1, 0
		if margin[0] > 0 {
			out[0], out[1] = 0, 1
		}
	case linkSoftmax:
		mx := margin[0]
		for _, v := range margin[1:] {
			mx = max(mx, v)
		}
		var sum float32
		for _, v := range margin {
			sum += expf(v - mx)
		}
		for g, v := range margin {
			out[g] = float64(expf(v-mx) / sum)
		}
	case linkExp:
		out[0] = float64(expf(margin[0]))
	default:
		out[0] = float64(margin[0])
	}
}
