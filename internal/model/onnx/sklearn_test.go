//go:build cgo

package onnx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/modelwatch/modelwatch/internal/model"
)

// sklearnExpected is what testdata/sklearn_models.py writes: scikit-learn's
// own classes_, predict and predict_proba for the same inputs.
type sklearnExpected struct {
	Classes           []string `json:"classes"`
	LabelOutput       string   `json:"label_output"`
	ProbabilityOutput string   `json:"probability_output"`
	Cases             []struct {
		Batch   int                        `json:"batch"`
		Inputs  map[string]json.RawMessage `json:"inputs"`
		Outputs map[string]json.RawMessage `json:"outputs"`
	} `json:"cases"`
}

func readSklearn(t *testing.T, name string) sklearnExpected {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var e sklearnExpected
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatal(err)
	}
	return e
}

// labelStrings formats a label tensor's elements, or JSON labels, as text.
func labelStrings(t *testing.T, data any) []string {
	t.Helper()
	var out []string
	switch d := data.(type) {
	case []string:
		return d
	case []int64:
		for _, v := range d {
			out = append(out, fmt.Sprint(v))
		}
	case json.RawMessage:
		var vals []any
		if err := json.Unmarshal(d, &vals); err != nil {
			t.Fatal(err)
		}
		for _, v := range vals {
			out = append(out, fmt.Sprint(v))
		}
	default:
		t.Fatalf("labels of type %T", data)
	}
	return out
}

// TestScikitLearnClassifiers loads classifiers written the way skl2onnx
// writes them (with ZipMap and with zipmap=False; integer and string
// labels; binary and multi-class) and checks the label and probability
// tensors (what the Open Inference Protocol answers) and Predict (what
// /predict answers) against scikit-learn's predict and predict_proba.
func TestScikitLearnClassifiers(t *testing.T) {
	const tolerance = 1e-5
	for _, tc := range []struct {
		name, outputs string
	}{
		{"sklearn_logreg_binary_int", "output_label INT64 [-1]; output_probability FP32 [-1 2]"},
		{"sklearn_logreg_binary_int_mlonly", "output_label INT64 [-1]; output_probability FP32 [-1 2]"},
		{"sklearn_logreg_multi_str", "output_label BYTES [-1]; output_probability FP32 [-1 3]"},
		{"sklearn_logreg_binary_str_nozipmap", "label BYTES [-1]; probabilities FP32 [-1 2]"},
		{"sklearn_tree_binary_str", "output_label BYTES [-1]; output_probability FP32 [-1 2]"},
		{"sklearn_forest_multi_int", "output_label INT64 [-1]; output_probability FP32 [-1 3]"},
		{"sklearn_forest_multi_int_nozipmap", "label INT64 [-1]; probabilities FP32 [-1 3]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := loadFixture(t, tc.name, model.Metadata{})
			want := readSklearn(t, tc.name)
			meta := m.Metadata()
			if !slices.Equal(meta.Classes, want.Classes) || meta.Outputs != len(want.Classes) {
				t.Errorf("classes %q (%d outputs), want %q", meta.Classes, meta.Outputs, want.Classes)
			}
			if meta.PredictionOutput != want.ProbabilityOutput {
				t.Errorf("prediction output %s, want %s", meta.PredictionOutput, want.ProbabilityOutput)
			}
			if got := specs(meta.OutputTensors); got != tc.outputs {
				t.Errorf("output tensors %s, want %s", got, tc.outputs)
			}
			if got := specs(meta.InputTensors); got != "X FP32 [-1 4]" || strings.Join(meta.Features, ",") != "f0,f1,f2,f3" {
				t.Errorf("inputs %s, features %q", got, meta.Features)
			}
			for _, c := range want.Cases {
				x := tensorOf(t, "X", model.FP32, c.Inputs["X"])
				outs, err := m.Infer(context.Background(), []model.Tensor{x}, nil)
				if err != nil {
					t.Fatalf("batch %d: %v", c.Batch, err)
				}
				if len(outs) != 2 || outs[0].Name != want.LabelOutput || outs[1].Name != want.ProbabilityOutput {
					t.Fatalf("batch %d: outputs %+v", c.Batch, outs)
				}
				label, probs := outs[0], outs[1]
				if label.DataLen() != c.Batch || !slices.Equal(label.Shape, []int64{int64(c.Batch)}) {
					t.Errorf("batch %d: label shape %v with %d values", c.Batch, label.Shape, label.DataLen())
				}
				if got, exp := labelStrings(t, label.Data), labelStrings(t, c.Outputs[want.LabelOutput]); !slices.Equal(got, exp) {
					t.Errorf("batch %d: labels %q, scikit-learn predicts %q", c.Batch, got, exp)
				}
				if probs.DataLen() != probs.Len() || !slices.Equal(probs.Shape, []int64{int64(c.Batch), int64(len(want.Classes))}) {
					t.Errorf("batch %d: probabilities of shape %v", c.Batch, probs.Shape)
				}
				if d := maxDiff(t, probs, c.Outputs[want.ProbabilityOutput]); d > tolerance {
					t.Errorf("batch %d: probabilities differ from predict_proba by %g", c.Batch, d)
				}

				vals, shape := flat(t, c.Inputs["X"])
				res, err := model.SafePredict(context.Background(), m, model.Batch{Rows: int(shape[0]), Cols: int(shape[1]), Values: vals})
				if err != nil {
					t.Fatalf("Predict batch %d: %v", c.Batch, err)
				}
				got := model.Tensor{Name: "predict", DataType: model.FP64, Shape: []int64{int64(res.Rows), int64(res.Cols)}, Data: res.Values}
				if d := maxDiff(t, got, c.Outputs[want.ProbabilityOutput]); d > tolerance {
					t.Errorf("Predict batch %d: probabilities differ from predict_proba by %g", c.Batch, d)
				}
				// The most probable class is scikit-learn's prediction.
				exp := labelStrings(t, c.Outputs[want.LabelOutput])
				for i := range res.Rows {
					row := res.Row(i)
					if best := meta.Classes[slices.Index(row, slices.Max(row))]; best != exp[i] {
						t.Errorf("Predict batch %d row %d: most probable class %s, scikit-learn predicts %s", c.Batch, i, best, exp[i])
					}
				}
			}
		})
	}
}

// TestScikitLearnClassNames checks that class names from the configuration
// replace the model's labels, in the model's order, and must be as many.
func TestScikitLearnClassNames(t *testing.T) {
	m := loadFixture(t, "sklearn_forest_multi_int", model.Metadata{Classes: []string{"low", "mid", "high"}})
	if got := m.Metadata().Classes; !slices.Equal(got, []string{"low", "mid", "high"}) {
		t.Errorf("classes %q", got)
	}
	if err := Init(library(t)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		classes []string
		want    string
	}{
		{"sklearn_forest_multi_int", []string{"a", "b"}, "configuration names 2 classes, but output output_probability has 3 (10, 20, 30)"},
		{"sklearn_forest_multi_int_nozipmap", []string{"a", "b"}, "configuration names 2 classes, but output probabilities has 3 (10, 20, 30)"},
	} {
		data, err := os.ReadFile(filepath.Join("testdata", tc.name+".onnx"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = Load(data, model.Metadata{Name: tc.name, Version: "1", Classes: tc.classes})
		if !errors.Is(err, model.ErrInvalidModel) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s with classes %q: %v, want %q", tc.name, tc.classes, err, tc.want)
		}
	}
}

// TestLoadRefusesUnservableOutputs checks that sequence and map outputs
// other than a well-formed ZipMap are refused at load, with the reason.
func TestLoadRefusesUnservableOutputs(t *testing.T) {
	if err := Init(library(t)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, want string }{
		{"bad_sequence_of_tensors", "output parts: only a sequence of maps from class labels (int64 or string) to float, as ZipMap writes, is served among non-tensor outputs"},
		{"bad_zipmap_string_keys", "not a usable ONNX model: Error creating temporary session: Type Error: Type (seq(map(string,tensor(float)))) of output arg (zipped) of node () does not match expected type (seq(map(int64,tensor(float))))"},
		{"bad_zipmap_duplicate_labels", `output zipped: the ZipMap node's class labels: "1" appears twice`},
	} {
		data, err := os.ReadFile(filepath.Join("testdata", tc.name+".onnx"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = Load(data, model.Metadata{Name: tc.name, Version: "1"})
		if !errors.Is(err, model.ErrInvalidModel) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

func BenchmarkPredictZipMap(b *testing.B) {
	for _, name := range []string{"sklearn_forest_multi_int", "sklearn_forest_multi_int_nozipmap"} {
		m := loadFixture(b, name, model.Metadata{})
		for _, rows := range []int{1, 64} {
			in := model.Batch{Rows: rows, Cols: 4, Values: make([]float64, rows*4)}
			b.Run(fmt.Sprintf("%s/rows=%d", name, rows), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := m.Predict(context.Background(), in); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// TestZipMapWidthCheckedAtRun checks that a ZipMap whose columns do not
// match its labels, which the graph alone cannot show, fails each run with
// the shapes rather than answering a tensor of the wrong width.
func TestZipMapWidthCheckedAtRun(t *testing.T) {
	m := loadFixture(t, "bad_zipmap_width", model.Metadata{})
	if got := specs(m.Metadata().OutputTensors); got != "zipped FP32 [-1 3]" {
		t.Errorf("outputs %s", got)
	}
	in := model.Tensor{Name: "X", DataType: model.FP32, Shape: []int64{1, 4}, Data: []float32{1, 2, 3, 4}}
	_, err := m.Infer(context.Background(), []model.Tensor{in}, nil)
	if want := "output zipped has shape [1 4], the model declares [-1 3]"; err == nil || err.Error() != want {
		t.Errorf("Infer: %v, want %q", err, want)
	}
}
