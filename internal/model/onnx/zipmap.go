//go:build cgo

package onnx

import (
	"errors"
	"fmt"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/modelwatch/modelwatch/internal/model"
)

// zipMap presents the output of an ai.onnx.ml ZipMap node, one map from
// class label to probability per row, as a dense FP32 tensor [rows,
// classes] whose columns follow the node's class labels.
type zipMap struct {
	labels classLabels
	// ints or strings, as the labels are, maps a label to its column.
	ints    map[int64]int
	strings map[string]int
}

func newZipMap(labels classLabels) *zipMap {
	z := &zipMap{labels: labels}
	if labels.strings != nil {
		z.strings = make(map[string]int, len(labels.strings))
		for i, s := range labels.strings {
			z.strings[s] = i
		}
	} else {
		z.ints = make(map[int64]int, len(labels.ints))
		for i, v := range labels.ints {
			z.ints[v] = i
		}
	}
	return z
}

// dense turns the sequence of maps ONNX Runtime returned for the output
// called name into a tensor. Every map must hold exactly the node's labels.
func (z *zipMap) dense(name string, v ort.Value) (model.Tensor, error) {
	seq, ok := v.(*ort.Sequence)
	if !ok {
		return model.Tensor{}, fmt.Errorf("output %s: ONNX Runtime returned %T, not a sequence of maps", name, v)
	}
	rows, err := seq.GetValues()
	if err != nil {
		return model.Tensor{}, fmt.Errorf("output %s: %w", name, err)
	}
	n := z.labels.len()
	data := make([]float32, len(rows)*n)
	for r, row := range rows {
		if err := z.row(row, data[r*n:(r+1)*n]); err != nil {
			return model.Tensor{}, fmt.Errorf("output %s row %d: %w", name, r, err)
		}
	}
	return model.Tensor{Name: name, DataType: model.FP32, Shape: []int64{int64(len(rows)), int64(n)}, Data: data}, nil
}

// row writes one map's probabilities into out, one column per label.
func (z *zipMap) row(v ort.Value, out []float32) error {
	m, ok := v.(*ort.Map)
	if !ok {
		return fmt.Errorf("an element is a %T, not a map", v)
	}
	keys, values, err := m.GetKeysAndValues()
	if err != nil {
		return err
	}
	probs, ok := values.(*ort.Tensor[float32])
	if !ok {
		return fmt.Errorf("map values are %T, not float", values)
	}
	p := probs.GetData()
	if len(p) != len(out) {
		return fmt.Errorf("the map has %d entries for %d class labels", len(p), len(out))
	}
	var col func(i int) (int, bool)
	switch k := keys.(type) {
	case *ort.Tensor[int64]:
		ks := k.GetData()
		if z.ints == nil {
			return errors.New("int64 keys where the class labels are strings")
		}
		if len(ks) != len(p) {
			return fmt.Errorf("%d keys for %d values", len(ks), len(p))
		}
		col = func(i int) (int, bool) { c, ok := z.ints[ks[i]]; return c, ok }
	case *ort.StringTensor:
		ks, err := k.GetContents()
		if err != nil {
			return err
		}
		if z.strings == nil {
			return errors.New("string keys where the class labels are integers")
		}
		if len(ks) != len(p) {
			return fmt.Errorf("%d keys for %d values", len(ks), len(p))
		}
		col = func(i int) (int, bool) { c, ok := z.strings[ks[i]]; return c, ok }
	default:
		return fmt.Errorf("map keys are %T", keys)
	}
	// The keys of a map are distinct, and there are as many as labels:
	// when each is a label, each column is written once.
	for i, x := range p {
		c, ok := col(i)
		if !ok {
			return fmt.Errorf("key %d is not a class label", i)
		}
		out[c] = x
	}
	return nil
}
