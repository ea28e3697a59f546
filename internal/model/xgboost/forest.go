package xgboost

import (
	"context"
	"math"
	"slices"

	"github.com/modelwatch/modelwatch/internal/model"
)

// forest is the form in which Predict evaluates a tree model without
// categorical splits: the nodes of every tree in one array, each tree's
// nodes numbered breadth-first so that a split's right child directly
// follows its left one. A split then chooses its child by adding 0 or 1 to
// the left child's index, without a branch the processor could mispredict.
// A leaf points to itself and no value passes its threshold (NaN), so a
// traversal may run past it: a tree of depth d is walked in exactly d steps
// whatever leaf a row reaches, again without a branch that depends on the
// row.
//
// Rows are evaluated in blocks, as XGBoost's CPU predictor does: each tree
// for every row of the block while its nodes are in cache. The traversals of
// different rows are independent of each other, so the processor overlaps
// them. Each row's margin still receives the leaf values in tree order, in
// float32, so predictions are those of a row-by-row evaluation bit for bit.
//
// The rows of a block are laid out one after the other, each followed by
// one more value, always 0, that every leaf reads: as 0 is never missing, a
// walk that stays on a leaf never takes the missing branch there.
type forest struct {
	nodes []flatNode
	trees []flatTree
	// cols is the number of features; a row with its padding takes cols+1
	// values.
	cols int
}

// flatNode is a node of a forest, 16 bytes. At a split, a value v of
// feature goes to node left+1 when v >= threshold, to left when
// v < threshold, and to aux when v is NaN. A leaf has threshold NaN, feature
// the padding value of the row and left its own index, so that every row
// stays there; aux holds the bits of its value: the tree's leaf value times
// the tree's weight, rounded to float32 as the row-by-row evaluation rounds
// the product.
type flatNode struct {
	threshold float32
	feature   uint32
	left      uint32
	aux       uint32
}

// value returns the value of leaf nd.
func (nd *flatNode) value() float32 { return math.Float32frombits(nd.aux) }

// flatTree is a tree of a forest.
type flatTree struct {
	root  uint32
	group uint32
	// steps is the depth of the tree when its traversal runs a fixed number
	// of steps, and -1 when it stops at the leaf instead: a tree whose
	// deepest leaf is much deeper than most paths through it.
	steps int32
}

// blockRows is how many rows a forest evaluates together, as XGBoost's
// CPU predictor does (kBlockOfRowsSize).
const blockRows = 64

// blockValues bounds the float32 input values of a block, so that a block of
// a model with many features stays small: it then has fewer rows.
const blockValues = 16 << 10

// maxExtraSteps is how many steps beyond its expected length a fixed-length
// traversal may take: about the cost of the one mispredicted branch of a
// traversal that stops at the leaf.
const maxExtraSteps = 6

// compileForest builds the forest of trees, which have no categorical
// splits and split on features 0 to cols-1, with leaf values multiplied by
// their trees' weights. It returns nil when a tree is not a tree (a node
// that two splits share), which only a damaged file holds; Predict then
// evaluates the trees as they are.
func compileForest(trees []tree, cols int) *forest {
	f := &forest{trees: make([]flatTree, len(trees)), cols: cols}
	total := 0
	for i := range trees {
		total += len(trees[i].nodes)
	}
	f.nodes = make([]flatNode, 0, total)
	type item struct {
		from  int32 // index in the tree's nodes
		depth int32
	}
	var queue []item
	for ti := range trees {
		t := &trees[ti]
		root := uint32(len(f.nodes))
		seen := make([]bool, len(t.nodes))
		queue = append(queue[:0], item{})
		seen[0] = true
		f.nodes = append(f.nodes, flatNode{})
		maxDepth, expected := int32(0), 0.0
		for k := 0; k < len(queue); k++ {
			it := queue[k]
			at := root + uint32(k)
			nd := &t.nodes[it.from]
			if nd.feature < 0 {
				// The explicit conversion rounds the product to float32, as
				// addTrees does, on machines that fuse multiply-add.
				value := float32(t.weight * nd.threshold)
				f.nodes[at] = flatNode{threshold: float32(math.NaN()), feature: uint32(cols), left: at, aux: math.Float32bits(value)}
				maxDepth = max(maxDepth, it.depth)
				expected += float64(it.depth) * math.Ldexp(1, -int(it.depth))
				continue
			}
			if seen[nd.left] || seen[nd.right] || nd.left == nd.right {
				return nil
			}
			seen[nd.left], seen[nd.right] = true, true
			left := root + uint32(len(queue))
			missing := left
			if nd.missing == nd.right {
				missing++
			}
			f.nodes[at] = flatNode{threshold: nd.threshold, feature: uint32(nd.feature), left: left, aux: missing}
			queue = append(queue, item{nd.left, it.depth + 1}, item{nd.right, it.depth + 1})
			f.nodes = append(f.nodes, flatNode{}, flatNode{})
		}
		steps := maxDepth
		if float64(maxDepth) > expected+maxExtraSteps {
			steps = -1
		}
		f.trees[ti] = flatTree{root: root, group: uint32(t.group), steps: steps}
	}
	// A length that is a power of two lets addSteps mask indices rather
	// than check them; the padding is never reached.
	f.nodes = append(f.nodes, make([]flatNode, powerOfTwo(len(f.nodes))-len(f.nodes))...)
	return f
}

// powerOfTwo returns the least power of two that is at least n.
func powerOfTwo(n int) int {
	p := 1
	for p < n {
		p *= 2
	}
	return p
}

// predict writes the outputs of m, whose forest f is, for the rows of in to
// out. It checks ctx between blocks of rows.
func (f *forest) predict(ctx context.Context, m *Model, in model.Batch, out model.Result) error {
	cols, stride, groups := in.Cols, in.Cols+1, m.groups
	if in.Rows == 1 {
		x := make([]float32, powerOfTwo(stride))
		for j, v := range in.Values {
			x[j] = float32(v)
		}
		margins := make([]float32, groups)
		copy(margins, m.baseMargin)
		f.addRow(x, margins)
		m.transform(margins, out.Values)
		return nil
	}
	rows := min(in.Rows, blockRows, max(1, blockValues/stride))
	// A length that is a power of two lets addSteps mask indices rather
	// than check them.
	x := make([]float32, powerOfTwo(rows*stride))
	// margins[g*rows+s] is the margin of output group g of the row in
	// slot s of x; row holds one row's margins for transform.
	margins := make([]float32, groups*rows)
	row := make([]float32, groups)
	// order[s] is the row of in whose values are in slot s of x: the rows
	// without missing values first, those with one after them.
	order := make([]int, rows)
	for start := 0; start < in.Rows; start += rows {
		if start > 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		n := min(rows, in.Rows-start)
		complete, incomplete := 0, n
		for r := start; r < start+n; r++ {
			src := in.Row(r)
			var s int
			if slices.ContainsFunc(src, math.IsNaN) {
				incomplete--
				s = incomplete
			} else {
				s = complete
				complete++
			}
			order[s] = r
			dst := x[s*stride : s*stride+cols]
			for j, v := range src {
				dst[j] = float32(v)
			}
		}
		for g, base := range m.baseMargin {
			gm := margins[g*rows : g*rows+n]
			for s := range gm {
				gm[s] = base
			}
		}
		f.addBlock(x, margins, rows, n, complete)
		for s, r := range order[:n] {
			for g := range row {
				row[g] = margins[g*rows+s]
			}
			m.transform(row, out.Row(r))
		}
	}
	return nil
}

// addRow adds the leaf values of every tree, in tree order, to the margins
// of one row, x, padded as in a block, its length a power of two. The steps
// of trees up to 8 deep are unrolled.
func (f *forest) addRow(x []float32, margins []float32) {
	nodes := f.nodes
	if len(nodes) == 0 || len(x) == 0 {
		return
	}
	nm, xm := uint(len(nodes)-1), uint(len(x)-1)
	for _, t := range f.trees {
		i := uint(t.root)
		switch t.steps {
		case 8:
			i = step(nodes, nm, i, x, xm)
			fallthrough
		case 7:
			i = step(nodes, nm, i, x, xm)
			fallthrough
		case 6:
			i = step(nodes, nm, i, x, xm)
			fallthrough
		case 5:
			i = step(nodes, nm, i, x, xm)
			fallthrough
		case 4:
			i = step(nodes, nm, i, x, xm)
			fallthrough
		case 3:
			i = step(nodes, nm, i, x, xm)
			fallthrough
		case 2:
			i = step(nodes, nm, i, x, xm)
			fallthrough
		case 1:
			i = step(nodes, nm, i, x, xm)
		default:
			if t.steps < 0 {
				i = walkToLeaf(nodes, i, x)
			} else {
				i = walk(nodes, i, t.steps, x)
			}
		}
		margins[t.group] += nodes[i&nm].value()
	}
}

// step returns the node that row, where a value may be missing, goes to
// from node i. nm and xm are the lengths of nodes and row less one, which
// are powers of two: masking an index that is in range changes nothing, and
// spares the bounds check.
func step(nodes []flatNode, nm, i uint, row []float32, xm uint) uint {
	nd := &nodes[i&nm]
	v := row[uint(nd.feature)&xm]
	next := uint(nd.left) + b2u(v >= nd.threshold)
	if v != v {
		next = uint(nd.aux)
	}
	return next
}

// addBlock adds the leaf values of every tree, in tree order, to the
// margins of the n rows of a block x: margins[g*rows+s] for output group g
// and the row in slot s. The rows in slots 0 to complete-1 have no missing
// values.
func (f *forest) addBlock(x []float32, margins []float32, rows, n, complete int) {
	nodes, stride := f.nodes, f.cols+1
	for _, t := range f.trees {
		gm := margins[int(t.group)*rows:][:n]
		if t.steps < 0 {
			for s := range gm {
				gm[s] += nodes[walkToLeaf(nodes, uint(t.root), x[s*stride:])].value()
			}
			continue
		}
		addSteps(nodes, uint(t.root), int(t.steps), x, stride, gm[:complete])
		if complete < n {
			addStepsMissing(nodes, uint(t.root), int(t.steps), x, stride, gm, complete)
		}
	}
}

// addStepsMissing is addSteps for the rows from first on, which may have
// missing values.
func addStepsMissing(nodes []flatNode, root uint, steps int, x []float32, stride int, margins []float32, first int) {
	if len(nodes) == 0 || len(x) == 0 {
		return
	}
	nm, xm := uint(len(nodes)-1), uint(len(x)-1)
	for r := first; r < len(margins); r++ {
		i, oi := root, uint(r*stride)
		for s := steps; s != 0; s-- {
			nd := &nodes[i&nm]
			v := x[(oi+uint(nd.feature))&xm]
			i = uint(nd.left) + b2u(v >= nd.threshold)
			if v != v {
				i = uint(nd.aux)
			}
		}
		margins[r] += nodes[i&nm].value()
	}
}

// addSteps adds to margins[r] the value of the leaf that row r of x reaches
// in the tree at root in steps steps. Each row takes stride values; none
// is missing. Most of the time of Predict is spent here. For trees up to 8
// deep the steps are unrolled, in a loop of their own for each depth, which
// saves a loop counter per step, and two rows are walked together, which
// gives the processor two independent chains of loads to overlap. The
// lengths of nodes and x are powers of two, so that indices are masked
// rather than checked (stepComplete).
func addSteps(nodes []flatNode, root uint, steps int, x []float32, stride int, margins []float32) {
	if len(nodes) == 0 || len(x) == 0 {
		return
	}
	nm, xm := uint(len(nodes)-1), uint(len(x)-1)
	r := 0
	switch steps {
	case 1:
		for ; r+1 < len(margins); r += 2 {
			i, j := root, root
			oi := uint(r * stride)
			oj := oi + uint(stride)
			i = stepComplete(nodes, nm, i, x, xm, oi)
			j = stepComplete(nodes, nm, j, x, xm, oj)
			margins[r] += nodes[i&nm].value()
			margins[r+1] += nodes[j&nm].value()
		}
	case 2:
		for ; r+1 < len(margins); r += 2 {
			i, j := root, root
			oi := uint(r * stride)
			oj := oi + uint(stride)
			i = stepComplete(nodes, nm, i, x, xm, oi)
			j = stepComplete(nodes, nm, j, x, xm, oj)
			i = stepComplete(nodes, nm, i, x, xm, oi)
			j = stepComplete(nodes, nm, j, x, xm, oj)
			margins[r] += nodes[i&nm].value()
			margins[r+1] += nodes[j&nm].value()
		}
	case 3:
		for ; r+1 < len(margins); r += 2 {
			i, j := root, root
			oi := uint(r * stride)
			oj := oi + uint(stride)
			i = stepComplete(nodes, nm, i, x, xm, oi)
			j = stepComplete(nodes, nm, j, x, xm, oj)
			i = stepComplete(nodes, nm, i, x, xm, oi)
			j = stepComplete(nodes, nm, j, x, xm, oj)
			i = stepComplete(nodes, nm, i, x, xm, oi)
			j = stepComplete(nodes, nm, j, x, xm, oj)
			margins[r] += nodes[i&nm].value()
			margins[r+1] += nodes[j&nm].value()
		}
	case 4:
		for ; r+1 < len(margins); r += 2 {
			i, j := root, root
			oi := uint(r * stride)
			oj := oi + uint(stride)
			i = stepComplete(nodes, nm, i, x, xm, oi)
			j = stepComplete(nodes, nm, j, x, xm, oj)
			i = stepComplete(nodes, nm, i, x, xm, oi)
			j = stepComplete(nodes, nm, j, x, xm, oj)
			i = stepComplete(nodes, nm, i, x, xm, oi)
			j = stepComplete(nodes, nm, j, x, xm, oj)
			i = stepComplete(nodes, nm, i, x, xm, oi)
			j = stepComplete(nodes, nm, j, x, xm, oj)
			margins[r] += nodes[i&nm].value()
			margins[r+1] += nodes[j&nm].value()
		}
	case 5:
		for ; r+1 < len(margins); r += 2 {
			i, j := root, root
			oi := uint(r * stride)
			oj := oi + uint(stride)
			i = stepComplete(nodes, nm, i, x, xm, oi)
			j = stepComplete(nodes, nm, j, x, xm, oj)
			i = stepComplete(nodes, nm, i, x, xm, oi)
			j = stepComplete(nodes, nm, j, x, xm, oj)
			i = stepComplete(nodes, nm, i, x, xm, oi)
			j = stepComplete(nodes, nm, j, x, xm, oj)
			i = stepComplete(nodes, nm, i, x, xm, oi)
			j = stepComplete(nodes, nm, j, x, xm, oj)
			i = stepComplete(nodes, nm, i, x, xm, oi)
			j = stepComplete(nodes, nm, j, x, xm, oj)
			margins[r] += nodes[i&nm].value()
			margins[r+1] += nodes[j&nm].value()
		}
	case 6:
		for ; r+1 < len(margins); r += 2 {
			i, j := root, root
			oi := uint(r * stride)
			oj := oi + uint(stride)
			i = stepComplete(nodes, nm, i, x, xm, oi)
			j = stepComplete(nodes, nm, j, x, xm, oj)
			i = stepComplete(nodes, nm, i, x, xm, oi)
			j = stepComplete(nodes, nm, j, x, xm, oj)
			i = stepComplete(nodes, nm, i, x, xm, oi)
			j = stepComplete(nodes, nm, j, x, xm, oj)
			i = stepComplete(nodes, nm, i, x, xm, oi)
			j = stepComplete(nodes, nm, j, x, xm, oj)
			i = stepComplete(nodes, nm, i, x, xm, oi)
			j = stepComplete(nodes, nm, j, x, xm, oj)
			i = stepComplete(nodes, nm, i, x, xm, oi)
			j = stepComplete(nodes, nm, j, x, xm, oj)
			margins[r] += nodes[i&nm].value()
			margins[r+1] += nodes[j&nm].value()
		}
	case 7:
		for ; r+1 < len(margins); r += 2 {
			i, j := root, root
			oi := uint(r * stride)
			oj := oi + uint(stride)
			i = stepComplete(nodes, nm, i, x, xm, oi)
			j = stepComplete(nodes, nm, j, x, xm, oj)
			i = stepComplete(nodes, nm, i, x, xm, oi)
			j = stepComplete(nodes, nm, j, x, xm, oj)
			i = stepComplete(nodes, nm, i, x, xm, oi)
			j = stepComplete(nodes, nm, j, x, xm, oj)
			i = stepComplete(nodes, nm, i, x, xm, oi)
			j = stepComplete(nodes, nm, j, x, xm, oj)
			i = stepComplete(nodes, nm, i, x, xm, oi)
			j = stepComplete(nodes, nm, j, x, xm, oj)
			i = stepComplete(nodes, nm, i, x, xm, oi)
			j = stepComplete(nodes, nm, j, x, xm, oj)
			i = stepComplete(nodes, nm, i, x, xm, oi)
			j = stepComplete(nodes, nm, j, x, xm, oj)
			margins[r] += nodes[i&nm].value()
			margins[r+1] += nodes[j&nm].value()
		}
	case 8:
		for ; r+1 < len(margins); r += 2 {
			i, j := root, root
			oi := uint(r * stride)
			oj := oi + uint(stride)
			i = stepComplete(nodes, nm, i, x, xm, oi)
			j = stepComplete(nodes, nm, j, x, xm, oj)
			i = stepComplete(nodes, nm, i, x, xm, oi)
			j = stepComplete(nodes, nm, j, x, xm, oj)
			i = stepComplete(nodes, nm, i, x, xm, oi)
			j = stepComplete(nodes, nm, j, x, xm, oj)
			i = stepComplete(nodes, nm, i, x, xm, oi)
			j = stepComplete(nodes, nm, j, x, xm, oj)
			i = stepComplete(nodes, nm, i, x, xm, oi)
			j = stepComplete(nodes, nm, j, x, xm, oj)
			i = stepComplete(nodes, nm, i, x, xm, oi)
			j = stepComplete(nodes, nm, j, x, xm, oj)
			i = stepComplete(nodes, nm, i, x, xm, oi)
			j = stepComplete(nodes, nm, j, x, xm, oj)
			i = stepComplete(nodes, nm, i, x, xm, oi)
			j = stepComplete(nodes, nm, j, x, xm, oj)
			margins[r] += nodes[i&nm].value()
			margins[r+1] += nodes[j&nm].value()
		}
	}
	for ; r < len(margins); r++ {
		i, oi := root, uint(r*stride)
		for s := steps; s != 0; s-- {
			i = stepComplete(nodes, nm, i, x, xm, oi)
		}
		margins[r] += nodes[i&nm].value()
	}
}

// stepComplete returns the node that the row of x at off, which has no
// missing values, goes to from node i. The lengths of nodes and x are
// powers of two, nm and xm those lengths less one: masking an index that is
// in range changes nothing, and spares the bounds check.
func stepComplete(nodes []flatNode, nm uint, i uint, x []float32, xm uint, off uint) uint {
	nd := &nodes[i&nm]
	return uint(nd.left) + b2u(x[(off+uint(nd.feature))&xm] >= nd.threshold)
}

// walk returns the leaf that row, where a value may be missing, reaches
// from node i in steps steps.
func walk(nodes []flatNode, i uint, steps int32, row []float32) uint {
	for ; steps != 0; steps-- {
		nd := &nodes[i]
		v := row[nd.feature]
		i = uint(nd.left) + b2u(v >= nd.threshold)
		if v != v {
			i = uint(nd.aux)
		}
	}
	return i
}

// walkToLeaf returns the leaf that row, where a value may be missing,
// reaches from node i, stopping there.
func walkToLeaf(nodes []flatNode, i uint, row []float32) uint {
	for {
		nd := &nodes[i]
		if uint(nd.left) == i {
			return i
		}
		v := row[nd.feature]
		i = uint(nd.left) + b2u(v >= nd.threshold)
		if v != v {
			i = uint(nd.aux)
		}
	}
}

// b2u returns 1 for true and 0 for false, which the compiler turns into a
// flag read (SETcc) rather than a branch.
func b2u(b bool) uint {
	var u uint
	if b {
		u = 1
	}
	return u
}
