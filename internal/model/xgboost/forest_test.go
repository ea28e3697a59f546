package xgboost

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelwatch/modelwatch/internal/model"
)

// rowByRow returns a copy of m that evaluates its trees one row at a time,
// node by node, as Predict does for a model without a forest.
func rowByRow(m *Model) *Model {
	c := *m
	c.forest = nil
	return &c
}

// withSteps returns a copy of m whose forest walks every tree in a fixed
// number of steps (fixed) or stops at the leaf (!fixed).
func withSteps(m *Model, fixed bool) *Model {
	c := *m
	f := *m.forest
	f.trees = append([]flatTree(nil), f.trees...)
	for i := range f.trees {
		if fixed {
			f.trees[i].steps = depth(m.trees[i].nodes, 0)
		} else {
			f.trees[i].steps = -1
		}
	}
	c.forest = &f
	return &c
}

func depth(nodes []node, i int32) int32 {
	if nodes[i].feature < 0 {
		return 0
	}
	return 1 + max(depth(nodes, nodes[i].left), depth(nodes, nodes[i].right))
}

// probeRows returns rows of m's features whose values sit on the model's
// thresholds, just below and above them, or are missing or infinite, so
// that every kind of comparison a split makes is exercised.
func probeRows(m *Model, rows int) model.Batch {
	cols := len(m.meta.Features)
	thresholds := make([][]float32, cols)
	for _, t := range m.trees {
		for _, nd := range t.nodes {
			if nd.feature >= 0 {
				thresholds[nd.feature] = append(thresholds[nd.feature], nd.threshold)
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	in := model.Batch{Rows: rows, Cols: cols, Values: make([]float64, rows*cols)}
	for i := range in.Values {
		ts := thresholds[i%cols]
		v := float32(rng.NormFloat64())
		if len(ts) > 0 {
			v = ts[rng.IntN(len(ts))]
		}
		switch rng.IntN(10) {
		case 0:
			v = float32(math.NaN())
		case 1:
			v = math.Nextafter32(v, float32(math.Inf(-1)))
		case 2:
			v = math.Nextafter32(v, float32(math.Inf(1)))
		case 3:
			v = float32(math.Inf(2*rng.IntN(2) - 1))
		case 4:
			v = float32(rng.NormFloat64() * 100)
		}
		in.Values[i] = float64(v)
	}
	return in
}

// TestForestIsRowByRow checks that the compiled forest predicts what the
// row-by-row evaluation of the same trees predicts, bit for bit, with either
// kind of traversal, for every tree model without categorical splits in
// testdata and for batches of one row, a part of a block and several
// blocks.
func TestForestIsRowByRow(t *testing.T) {
	var files []string
	for _, pattern := range []string{"testdata/*.json", "testdata/*.ubj", "testdata/boosters/*.model.json", "../../../models/fraud_model/v1/model.json"} {
		matches, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, matches...)
	}
	compiled := 0
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		m, err := Parse(data, model.Metadata{})
		if err != nil {
			continue // a file that tests a refusal
		}
		if len(m.trees) == 0 || m.categorical {
			if m.forest != nil {
				t.Errorf("%s: a forest for a model with categorical splits or without trees", file)
			}
			continue
		}
		t.Run(strings.TrimSuffix(filepath.Base(file), ".json"), func(t *testing.T) {
			if m.forest == nil {
				t.Fatal("no forest")
			}
			compiled++
			in := probeRows(m, 3*blockRows+5)
			want := predict(t, rowByRow(m), in)
			for _, variant := range []struct {
				name string
				m    *Model
			}{{"as compiled", m}, {"fixed steps", withSteps(m, true)}, {"to the leaf", withSteps(m, false)}} {
				for _, rows := range []int{1, 7, in.Rows} {
					part := model.Batch{Rows: rows, Cols: in.Cols, Values: in.Values[:rows*in.Cols]}
					got := predict(t, variant.m, part)
					for i, v := range got.Values {
						if math.Float64bits(v) != math.Float64bits(want.Values[i]) {
							t.Fatalf("%s, %d rows: output %d is %v, row by row %v", variant.name, rows, i, v, want.Values[i])
						}
					}
				}
			}
		})
	}
	if compiled < 20 {
		t.Errorf("only %d models compiled to a forest", compiled)
	}
}

// TestForestRefusesSharedNodes checks that trees whose splits share a child,
// which no XGBoost file holds, are evaluated as they are rather than
// compiled: compiling would copy the shared nodes once per path.
func TestForestRefusesSharedNodes(t *testing.T) {
	nodes := []node{
		{feature: 0, threshold: 1, left: 1, right: 1, missing: 1},
		{feature: -1, threshold: 2},
	}
	if f := compileForest([]tree{{nodes: nodes, weight: 1}}, 1); f != nil {
		t.Fatal("compiled a tree whose split has one node as both children")
	}
}

// randomTree returns a tree of depth at most depth, with at least one leaf
// that deep, splitting on features 0 to cols-1 at thresholds among -1, 0
// and 1, with missing values going either way.
func randomTree(rng *rand.Rand, depth, cols int) tree {
	var t tree
	var grow func(d int, deep bool) int32
	grow = func(d int, deep bool) int32 {
		i := int32(len(t.nodes))
		t.nodes = append(t.nodes, node{})
		if d == depth || (!deep && rng.IntN(3) == 0) {
			t.nodes[i] = node{feature: -1, threshold: float32(rng.NormFloat64())}
			return i
		}
		deepLeft := deep && rng.IntN(2) == 0
		l := grow(d+1, deepLeft)
		r := grow(d+1, deep && !deepLeft)
		nd := node{feature: int32(rng.IntN(cols)), threshold: float32(rng.IntN(3) - 1), left: l, right: r, missing: r}
		if rng.IntN(2) == 0 {
			nd.missing = l
		}
		t.nodes[i] = nd
		return i
	}
	grow(0, true)
	t.weight = 1
	return t
}

// TestForestDepths checks the forest against the row-by-row evaluation for
// trees of every depth that addSteps and addRow unroll and beyond, with
// either kind of traversal, on batches with and without missing values, of
// odd and even sizes.
func TestForestDepths(t *testing.T) {
	base := load(t, "testdata/regression.json", model.Metadata{})
	cols := len(base.meta.Features)
	rng := rand.New(rand.NewPCG(3, 4))
	for depth := range 12 {
		m := *base
		m.trees = nil
		for range 5 {
			m.trees = append(m.trees, randomTree(rng, depth, cols))
		}
		m.forest = compileForest(m.trees, cols)
		in := model.Batch{Rows: 2*blockRows + 3, Cols: cols, Values: make([]float64, (2*blockRows+3)*cols)}
		for i := range in.Values {
			in.Values[i] = float64(rng.IntN(5)-2) / 2
			if i > len(in.Values)/2 && rng.IntN(8) == 0 {
				in.Values[i] = math.NaN()
			}
		}
		want := predict(t, rowByRow(&m), in)
		for _, variant := range []*Model{&m, withSteps(&m, true), withSteps(&m, false)} {
			for _, rows := range []int{1, 2, 5, 64, in.Rows} {
				for _, start := range []int{0, in.Rows - rows} {
					part := model.Batch{Rows: rows, Cols: cols, Values: in.Values[start*cols : (start+rows)*cols]}
					got := predict(t, variant, part)
					for i, v := range got.Values {
						if w := want.Values[start+i]; math.Float64bits(v) != math.Float64bits(w) {
							t.Fatalf("depth %d, rows %d from %d: output %d is %v, row by row %v", depth, rows, start, i, v, w)
						}
					}
				}
			}
		}
	}
}
