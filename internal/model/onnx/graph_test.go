package onnx

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

func readTestGraph(t *testing.T, name string) ([]byte, *graph) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name+".onnx"))
	if err != nil {
		t.Fatal(err)
	}
	g, err := readGraph(data)
	if err != nil {
		t.Fatal(err)
	}
	return data, g
}

// TestReadGraphClassLabels reads the class labels of skl2onnx's layouts:
// a ZipMap's, and a classifier's through the Normalizer skl2onnx puts
// after a multinomial LinearClassifier.
func TestReadGraphClassLabels(t *testing.T) {
	_, g := readTestGraph(t, "sklearn_forest_multi_int")
	l, err := g.zipMapLabels("output_probability")
	if err != nil || !slices.Equal(l.ints, []int64{10, 20, 30}) || l.strings != nil {
		t.Errorf("ZipMap labels %+v, %v", l, err)
	}
	if _, err := g.zipMapLabels("output_label"); err == nil {
		t.Error("the label tensor passed for a ZipMap")
	}

	_, g = readTestGraph(t, "sklearn_logreg_multi_str")
	l, err = g.zipMapLabels("output_probability")
	if err != nil || !slices.Equal(l.strings, []string{"bird", "cat", "dog"}) || l.ints != nil {
		t.Errorf("ZipMap labels %+v, %v", l, err)
	}
	if l, ok := g.classifierLabels("probabilities"); !ok || !slices.Equal(l.names(), []string{"bird", "cat", "dog"}) {
		t.Errorf("classifier labels through Normalizer: %+v %v", l, ok)
	}

	_, g = readTestGraph(t, "sklearn_forest_multi_int_nozipmap")
	if l, ok := g.classifierLabels("probabilities"); !ok || !slices.Equal(l.names(), []string{"10", "20", "30"}) {
		t.Errorf("classifier labels: %+v %v", l, ok)
	}
	if _, ok := g.classifierLabels("label"); ok {
		t.Error("the label output passed for probabilities")
	}
	_, g = readTestGraph(t, "mlp_classifier")
	if _, ok := g.classifierLabels("probabilities"); ok {
		t.Error("a softmax passed for a classifier node")
	}
}

// TestZipMapLabelsRefuses checks each reason a sequence of maps is refused.
func TestZipMapLabelsRefuses(t *testing.T) {
	zipType := func(key, value int32) valueType {
		return valueType{kind: kindSequence, inner: &valueType{kind: kindMap, key: key, inner: &valueType{kind: kindTensor, elem: value}}}
	}
	zipNode := func(l classLabels) node {
		return node{opType: "ZipMap", domain: mlDomain, inputs: []string{"p"}, outputs: []string{"z"}, labels: l}
	}
	classifier := node{opType: "LinearClassifier", domain: mlDomain, inputs: []string{"X"}, outputs: []string{"label", "p"}, labels: classLabels{ints: []int64{0, 1}}}
	for _, tc := range []struct {
		name  string
		typ   valueType
		nodes []node
		want  string
	}{
		{"sequence of tensors", valueType{kind: kindSequence, inner: &valueType{kind: kindTensor, elem: onnxFloat}},
			[]node{zipNode(classLabels{ints: []int64{0, 1}})}, "only a sequence of maps from class labels"},
		{"double values", zipType(onnxInt64, 11), []node{zipNode(classLabels{ints: []int64{0, 1}})}, "only a sequence of maps from class labels"},
		{"a map", valueType{kind: kindMap, key: onnxInt64, inner: &valueType{kind: kindTensor, elem: onnxFloat}},
			[]node{zipNode(classLabels{ints: []int64{0, 1}})}, "only a sequence of maps from class labels"},
		{"no producer", zipType(onnxInt64, onnxFloat), nil, "served only as the output of an ai.onnx.ml ZipMap node"},
		{"another producer", zipType(onnxInt64, onnxFloat), []node{{opType: "Identity", inputs: []string{"p"}, outputs: []string{"z"}}},
			"served only as the output of an ai.onnx.ml ZipMap node"},
		{"both labels", zipType(onnxInt64, onnxFloat), []node{zipNode(classLabels{ints: []int64{0}, strings: []string{"a"}})}, "exactly one of"},
		{"no labels", zipType(onnxInt64, onnxFloat), []node{zipNode(classLabels{ints: []int64{}})}, "has no class labels"},
		{"key type", zipType(onnxString, onnxFloat), []node{zipNode(classLabels{ints: []int64{0, 1}})}, "key type does not match"},
		{"duplicates", zipType(onnxString, onnxFloat), []node{zipNode(classLabels{strings: []string{"a", "a"}})}, `"a" appears twice`},
		{"classifier disagrees", zipType(onnxInt64, onnxFloat), []node{classifier, zipNode(classLabels{ints: []int64{0, 1, 2}})},
			"the ZipMap node has 3 class labels, its classifier 2"},
	} {
		g := &graph{nodes: tc.nodes, outputs: map[string]valueType{"z": tc.typ}, producers: map[string]int{}}
		for i, n := range g.nodes {
			for _, o := range n.outputs {
				g.producers[o] = i
			}
		}
		if _, err := g.zipMapLabels("z"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestDenseZipMaps checks the rewritten graph: the ZipMap became an
// Identity from its probabilities, the output a float tensor, and nothing
// else changed.
func TestDenseZipMaps(t *testing.T) {
	data, before := readTestGraph(t, "sklearn_logreg_multi_str")
	out, err := denseZipMaps(data, []string{"output_probability"})
	if err != nil {
		t.Fatal(err)
	}
	after, err := readGraph(out)
	if err != nil {
		t.Fatal(err)
	}
	if got := after.outputs["output_probability"]; got.kind != kindTensor || got.elem != onnxFloat {
		t.Errorf("output type %+v", got)
	}
	n := after.producer("output_probability")
	if n == nil || n.opType != "Identity" || n.domain != "" || !slices.Equal(n.inputs, []string{"probabilities"}) {
		t.Errorf("producer %+v", n)
	}
	if len(after.nodes) != len(before.nodes) || after.outputs["output_label"] != before.outputs["output_label"] {
		t.Errorf("other nodes or outputs changed: %d nodes, was %d", len(after.nodes), len(before.nodes))
	}
	for i := range before.nodes {
		if before.nodes[i].opType != "ZipMap" && !slices.Equal(before.nodes[i].outputs, after.nodes[i].outputs) {
			t.Errorf("node %d changed", i)
		}
	}
}

// FuzzReadGraph feeds arbitrary bytes to the graph reader and the ZipMap
// rewrite: neither may panic, and the rewrite of a readable graph reads.
func FuzzReadGraph(f *testing.F) {
	paths, _ := filepath.Glob("testdata/*.onnx")
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := readGraph(data)
		if err != nil {
			return
		}
		var zipped []string
		for name := range g.outputs {
			if _, err := g.zipMapLabels(name); err == nil {
				zipped = append(zipped, name)
			}
			g.classifierLabels(name)
		}
		out, err := denseZipMaps(data, zipped)
		if err != nil {
			return
		}
		if _, err := readGraph(out); err != nil {
			t.Errorf("the rewritten model does not read: %v", err)
		}
	})
}

// TestDenseZipMapsImportsDefaultOpset checks that a model of ai.onnx.ml
// operators only gets the default-domain opset its new Identity node needs
// to be valid ONNX, and that a model importing one keeps its own.
func TestDenseZipMapsImportsDefaultOpset(t *testing.T) {
	for _, tc := range []struct {
		name string
		want []string
	}{
		{"sklearn_logreg_binary_int_mlonly", []string{"ai.onnx.ml 3", " 13"}},
		{"sklearn_logreg_binary_int", []string{" 15", "ai.onnx.ml 3"}},
	} {
		data, _ := readTestGraph(t, tc.name)
		out, err := denseZipMaps(data, []string{"output_probability"})
		if err != nil {
			t.Fatal(err)
		}
		var opsets []string
		err = fields(out, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
			if num != modelOpsetImport {
				return nil
			}
			var domain string
			var version uint64
			err := fields(v, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
				switch num {
				case opsetDomain:
					domain = string(v)
				case opsetVersion:
					version = x
				}
				return nil
			})
			opsets = append(opsets, fmt.Sprintf("%s %d", domain, version))
			return err
		})
		if err != nil || !slices.Equal(opsets, tc.want) {
			t.Errorf("%s: opsets %q, want %q (%v)", tc.name, opsets, tc.want, err)
		}
	}
}
