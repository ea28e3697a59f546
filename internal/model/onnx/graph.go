package onnx

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
)

// graph holds what serving needs from an ONNX model's graph that ONNX
// Runtime's API does not report: the nodes with their class labels, and the
// type of every graph output. It is read straight from the protobuf bytes
// of the ModelProto (onnx/onnx.proto), skipping everything else.
type graph struct {
	nodes   []node
	outputs map[string]valueType
	// producers maps a value's name to the index in nodes of the node
	// that writes it.
	producers map[string]int
}

// node is one NodeProto, reduced to its wiring and its class labels.
type node struct {
	opType, domain  string
	inputs, outputs []string
	// labels holds the classlabels_int64s, classlabels_ints or
	// classlabels_strings attribute, when the node has one.
	labels classLabels
}

// classLabels are the class labels of a classifier or ZipMap node, either
// integers or strings.
type classLabels struct {
	ints    []int64
	strings []string
}

// names returns the labels as strings, integers in decimal.
func (c classLabels) names() []string {
	if c.strings != nil {
		return c.strings
	}
	out := make([]string, len(c.ints))
	for i, v := range c.ints {
		out[i] = strconv.FormatInt(v, 10)
	}
	return out
}

func (c classLabels) len() int { return len(c.ints) + len(c.strings) }

// valueType is a TypeProto, reduced to what a ZipMap output needs: the
// kind of value, a tensor's element type, a sequence's element and a map's
// key and value types.
type valueType struct {
	kind  valueKind
	elem  int32      // tensor element type (TensorProto.DataType)
	key   int32      // map key type (TensorProto.DataType)
	inner *valueType // sequence element or map value
}

type valueKind int

const (
	kindOther valueKind = iota
	kindTensor
	kindSequence
	kindMap
)

// TensorProto.DataType values the graph reader checks.
const (
	onnxFloat  = 1
	onnxInt64  = 7
	onnxString = 8
)

// Field numbers in onnx/onnx.proto.
const (
	modelGraph = 7 // ModelProto.graph

	graphNode   = 1  // GraphProto.node
	graphOutput = 12 // GraphProto.output

	nodeInput     = 1 // NodeProto.input
	nodeOutput    = 2 // NodeProto.output
	nodeOpType    = 4 // NodeProto.op_type
	nodeAttribute = 5 // NodeProto.attribute
	nodeDomain    = 7 // NodeProto.domain

	attrName    = 1 // AttributeProto.name
	attrInts    = 8 // AttributeProto.ints
	attrStrings = 9 // AttributeProto.strings

	valueInfoName = 1 // ValueInfoProto.name
	valueInfoType = 2 // ValueInfoProto.type

	typeTensor   = 1 // TypeProto.tensor_type
	typeSequence = 4 // TypeProto.sequence_type
	typeMap      = 5 // TypeProto.map_type

	tensorElemType = 1 // TypeProto.Tensor.elem_type
	sequenceElem   = 1 // TypeProto.Sequence.elem_type
	mapKey         = 1 // TypeProto.Map.key_type
	mapValue       = 2 // TypeProto.Map.value_type
)

// maxTypeDepth bounds the nesting of TypeProtos the reader follows; a
// ZipMap's sequence of maps of tensors needs three.
const maxTypeDepth = 8

// fields calls fn for each field of the protobuf message b, with the bytes
// of a length-delimited field or the value of a varint; other wire types
// are skipped. It stops at the first error.
func fields(b []byte, fn func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var v []byte
		var x uint64
		switch typ {
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		case protowire.VarintType:
			x, n = protowire.ConsumeVarint(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if err := fn(num, typ, v, x); err != nil {
			return err
		}
	}
	return nil
}

// readGraph reads the graph of a serialised ModelProto.
func readGraph(model []byte) (*graph, error) {
	g := &graph{outputs: map[string]valueType{}}
	var found bool
	err := fields(model, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if num != modelGraph || typ != protowire.BytesType {
			return nil
		}
		found = true
		return fields(v, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
			if typ != protowire.BytesType {
				return nil
			}
			switch num {
			case graphNode:
				n, err := readNode(v)
				if err != nil {
					return err
				}
				g.nodes = append(g.nodes, n)
			case graphOutput:
				return g.readOutput(v)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read the graph: %w", err)
	}
	if !found {
		return nil, errors.New("read the graph: the model has no graph")
	}
	g.producers = make(map[string]int, len(g.nodes))
	for i, n := range g.nodes {
		for _, out := range n.outputs {
			g.producers[out] = i
		}
	}
	return g, nil
}

func readNode(b []byte) (node, error) {
	var n node
	err := fields(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case nodeInput:
			n.inputs = append(n.inputs, string(v))
		case nodeOutput:
			n.outputs = append(n.outputs, string(v))
		case nodeOpType:
			n.opType = string(v)
		case nodeDomain:
			n.domain = string(v)
		case nodeAttribute:
			return n.readAttribute(v)
		}
		return nil
	})
	return n, err
}

// readAttribute keeps the attribute if it holds class labels. It reads
// the name first, so that the large attributes of a tree ensemble are
// skipped rather than decoded.
func (n *node) readAttribute(b []byte) error {
	var name string
	err := fields(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if num == attrName && typ == protowire.BytesType {
			name = string(v)
		}
		return nil
	})
	if err != nil {
		return err
	}
	switch name {
	case "classlabels_int64s", "classlabels_ints":
		n.labels.ints = []int64{}
	case "classlabels_strings":
		n.labels.strings = []string{}
	default:
		return nil
	}
	return fields(b, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		switch {
		case n.labels.ints != nil && num == attrInts && typ == protowire.VarintType:
			n.labels.ints = append(n.labels.ints, int64(x))
		case n.labels.ints != nil && num == attrInts && typ == protowire.BytesType: // packed
			for len(v) > 0 {
				x, k := protowire.ConsumeVarint(v)
				if k < 0 {
					return protowire.ParseError(k)
				}
				n.labels.ints, v = append(n.labels.ints, int64(x)), v[k:]
			}
		case n.labels.strings != nil && num == attrStrings && typ == protowire.BytesType:
			n.labels.strings = append(n.labels.strings, string(v))
		}
		return nil
	})
}

func (g *graph) readOutput(b []byte) error {
	var name string
	var t valueType
	err := fields(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case valueInfoName:
			name = string(v)
		case valueInfoType:
			var err error
			t, err = readType(v, 0)
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	g.outputs[name] = t
	return nil
}

func readType(b []byte, depth int) (valueType, error) {
	if depth > maxTypeDepth {
		return valueType{}, fmt.Errorf("types nested deeper than %d", maxTypeDepth)
	}
	var t valueType
	err := fields(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if typ != protowire.BytesType {
			return nil
		}
		var err error
		switch num {
		case typeTensor:
			t = valueType{kind: kindTensor}
			err = fields(v, func(num protowire.Number, typ protowire.Type, _ []byte, x uint64) error {
				if num == tensorElemType && typ == protowire.VarintType {
					t.elem = int32(x)
				}
				return nil
			})
		case typeSequence:
			t = valueType{kind: kindSequence}
			err = fields(v, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
				if num == sequenceElem && typ == protowire.BytesType {
					inner, err := readType(v, depth+1)
					t.inner = &inner
					return err
				}
				return nil
			})
		case typeMap:
			t = valueType{kind: kindMap}
			err = fields(v, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
				switch {
				case num == mapKey && typ == protowire.VarintType:
					t.key = int32(x)
				case num == mapValue && typ == protowire.BytesType:
					inner, err := readType(v, depth+1)
					t.inner = &inner
					return err
				}
				return nil
			})
		}
		return err
	})
	return t, err
}

// producer returns the node that writes the value called name, or nil.
func (g *graph) producer(name string) *node {
	i, ok := g.producers[name]
	if !ok {
		return nil
	}
	return &g.nodes[i]
}

const mlDomain = "ai.onnx.ml"

// zipMapLabels checks that the graph output called name is a sequence of
// maps written by an ai.onnx.ml ZipMap node, seq(map(int64, float)) or
// seq(map(string, float)) as the node's class labels say, and returns those
// labels in the order of the node's input columns.
func (g *graph) zipMapLabels(name string) (classLabels, error) {
	t := g.outputs[name]
	var key int32
	switch {
	case t.kind == kindSequence && t.inner != nil && t.inner.kind == kindMap && t.inner.inner != nil &&
		t.inner.inner.kind == kindTensor && t.inner.inner.elem == onnxFloat:
		key = t.inner.key
	default:
		return classLabels{}, errors.New("only a sequence of maps from class labels (int64 or string) to float, as ZipMap writes, is served among non-tensor outputs")
	}
	n := g.producer(name)
	if n == nil || n.opType != "ZipMap" || n.domain != mlDomain {
		return classLabels{}, errors.New("a sequence of maps is served only as the output of an ai.onnx.ml ZipMap node")
	}
	l := n.labels
	switch {
	case (l.ints == nil) == (l.strings == nil):
		return classLabels{}, errors.New("the ZipMap node must have exactly one of classlabels_int64s and classlabels_strings")
	case l.len() == 0:
		return classLabels{}, errors.New("the ZipMap node has no class labels")
	case key == onnxInt64 && l.ints == nil, key == onnxString && l.strings == nil, key != onnxInt64 && key != onnxString:
		return classLabels{}, errors.New("the map's key type does not match the ZipMap node's class labels")
	}
	if err := distinct(l.names()); err != nil {
		return classLabels{}, fmt.Errorf("the ZipMap node's class labels: %w", err)
	}
	if len(n.inputs) != 1 {
		return classLabels{}, fmt.Errorf("the ZipMap node has %d inputs", len(n.inputs))
	}
	if c, ok := g.classifierLabels(n.inputs[0]); ok && c.len() != l.len() {
		return classLabels{}, fmt.Errorf("the ZipMap node has %d class labels, its classifier %d", l.len(), c.len())
	}
	return l, nil
}

// passThrough lists the operators skl2onnx may put between a classifier's
// probabilities and the graph output; they keep the columns in order.
var passThrough = map[string]bool{"Identity": true, "Cast": true, "Normalizer": true}

// classifierLabels returns the class labels of the ai.onnx.ml classifier
// node (LinearClassifier, TreeEnsembleClassifier, SVMClassifier, ...) whose
// probabilities or scores, its second output, become the graph output
// called name, possibly through Identity, Cast or Normalizer nodes. It
// returns false when there is none.
func (g *graph) classifierLabels(name string) (classLabels, bool) {
	for range len(g.nodes) {
		n := g.producer(name)
		switch {
		case n == nil:
			return classLabels{}, false
		case n.domain == mlDomain && strings.HasSuffix(n.opType, "Classifier"):
			if len(n.outputs) < 2 || n.outputs[1] != name || n.labels.len() == 0 || (n.labels.ints != nil && n.labels.strings != nil) {
				return classLabels{}, false
			}
			if distinct(n.labels.names()) != nil {
				return classLabels{}, false
			}
			return n.labels, true
		case passThrough[n.opType] && len(n.inputs) == 1:
			name = n.inputs[0]
		default:
			return classLabels{}, false
		}
	}
	return classLabels{}, false
}

func distinct(names []string) error {
	seen := make(map[string]bool, len(names))
	for _, s := range names {
		if seen[s] {
			return fmt.Errorf("%q appears twice", s)
		}
		seen[s] = true
	}
	return nil
}

// Field numbers used by denseZipMaps, in onnx/onnx.proto.
const (
	modelOpsetImport = 8  // ModelProto.opset_import
	graphValueInfo   = 13 // GraphProto.value_info
	opsetDomain      = 1  // OperatorSetIdProto.domain
	opsetVersion     = 2  // OperatorSetIdProto.version
)

// identityOpset is the default-domain opset denseZipMaps imports for its
// Identity nodes when the model imports none.
const identityOpset = 13

// denseZipMaps rewrites a serialised ModelProto so that each ai.onnx.ml
// ZipMap node writing one of the graph outputs named in zipped becomes an
// Identity node: the output is then the float tensor [batch, classes] the
// ZipMap would have zipped with its class labels, columns in the labels'
// order. ONNX Runtime hands a sequence of maps back as one value per row
// and per map (several cgo calls each), which costs far more than the
// model itself; a tensor comes back in one piece.
func denseZipMaps(model []byte, zipped []string) ([]byte, error) {
	var defaultOpset bool
	out, err := edit(model, func(num protowire.Number, v []byte) ([]byte, bool, error) {
		switch num {
		case modelOpsetImport:
			var domain string
			err := fields(v, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
				if num == opsetDomain && typ == protowire.BytesType {
					domain = string(v)
				}
				return nil
			})
			defaultOpset = defaultOpset || domain == "" || domain == "ai.onnx"
			return v, true, err
		case modelGraph:
			g, err := edit(v, func(num protowire.Number, v []byte) ([]byte, bool, error) {
				switch num {
				case graphNode:
					n, err := readNode(v)
					if err != nil || n.opType != "ZipMap" || n.domain != mlDomain || len(n.outputs) != 1 || !slices.Contains(zipped, n.outputs[0]) {
						return v, true, err
					}
					if len(n.inputs) != 1 {
						return nil, false, fmt.Errorf("the ZipMap node writing %s has %d inputs", n.outputs[0], len(n.inputs))
					}
					var id []byte
					id = protowire.AppendTag(id, nodeInput, protowire.BytesType)
					id = protowire.AppendString(id, n.inputs[0])
					id = protowire.AppendTag(id, nodeOutput, protowire.BytesType)
					id = protowire.AppendString(id, n.outputs[0])
					id = protowire.AppendTag(id, nodeOpType, protowire.BytesType)
					id = protowire.AppendString(id, "Identity")
					return id, true, nil
				case graphOutput, graphValueInfo:
					name, err := infoName(v)
					if err != nil || !slices.Contains(zipped, name) {
						return v, true, err
					}
					if num == graphValueInfo {
						return nil, false, nil
					}
					var tensor, typ, info []byte
					tensor = protowire.AppendTag(tensor, tensorElemType, protowire.VarintType)
					tensor = protowire.AppendVarint(tensor, onnxFloat)
					typ = protowire.AppendTag(typ, typeTensor, protowire.BytesType)
					typ = protowire.AppendBytes(typ, tensor)
					info = protowire.AppendTag(info, valueInfoName, protowire.BytesType)
					info = protowire.AppendString(info, name)
					info = protowire.AppendTag(info, valueInfoType, protowire.BytesType)
					info = protowire.AppendBytes(info, typ)
					return info, true, nil
				}
				return v, true, nil
			})
			return g, true, err
		}
		return v, true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("rewrite the ZipMap outputs: %w", err)
	}
	if !defaultOpset {
		var opset []byte
		opset = protowire.AppendTag(opset, opsetVersion, protowire.VarintType)
		opset = protowire.AppendVarint(opset, identityOpset)
		out = protowire.AppendTag(out, modelOpsetImport, protowire.BytesType)
		out = protowire.AppendBytes(out, opset)
	}
	return out, nil
}

// edit copies the protobuf message b field by field, passing the contents
// of each length-delimited field to fn, which returns the field's new
// contents and whether to keep the field at all.
func edit(b []byte, fn func(num protowire.Number, v []byte) ([]byte, bool, error)) ([]byte, error) {
	out := make([]byte, 0, len(b)+64)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return nil, protowire.ParseError(m)
		}
		field := b[:n+m]
		b = b[n+m:]
		if typ != protowire.BytesType {
			out = append(out, field...)
			continue
		}
		v, _ := protowire.ConsumeBytes(field[n:])
		nv, keep, err := fn(num, v)
		if err != nil {
			return nil, err
		}
		if keep {
			out = protowire.AppendTag(out, num, protowire.BytesType)
			out = protowire.AppendBytes(out, nv)
		}
	}
	return out, nil
}

func infoName(b []byte) (string, error) {
	var name string
	err := fields(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if num == valueInfoName && typ == protowire.BytesType {
			name = string(v)
		}
		return nil
	})
	return name, err
}
