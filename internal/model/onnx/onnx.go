//go:build cgo

package onnx

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"slices"
	"strings"
	"sync"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/modelwatch/modelwatch/internal/model"
)

// BuiltIn reports whether this binary can serve ONNX models.
const BuiltIn = true

var (
	envMu   sync.Mutex
	envPath string
)

// Init loads ONNX Runtime from the shared library at path and creates its
// environment, once per process; later calls with the same path do nothing.
// It returns an error wrapping ErrNoLibrary when path is empty or missing.
func Init(path string) error {
	envMu.Lock()
	defer envMu.Unlock()
	if envPath != "" {
		if path != envPath {
			return fmt.Errorf("ONNX Runtime already loaded from %s", envPath)
		}
		return nil
	}
	if path == "" {
		return fmt.Errorf("%w: name libonnxruntime.so with --onnxruntime-library or %s", ErrNoLibrary, LibraryEnv)
	}
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("%w: %v", ErrNoLibrary, err)
	}
	ort.SetSharedLibraryPath(path)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return fmt.Errorf("initialise ONNX Runtime from %s: %w", path, err)
	}
	envPath = path
	return nil
}

// Version returns the version of the loaded ONNX Runtime, or "" before Init.
func Version() string {
	envMu.Lock()
	defer envMu.Unlock()
	if envPath == "" {
		return ""
	}
	return ort.GetVersion()
}

// Runtime describes this package to a model loader. Init must have
// succeeded first; otherwise every load fails with its reason.
var Runtime = model.Runtime{Type: Type, File: File, Load: func(data []byte, meta model.Metadata) (model.Model, error) {
	return Load(data, meta)
}}

// Model is a loaded ONNX model; it is safe for concurrent use.
type Model struct {
	meta    model.Metadata
	session *ort.DynamicAdvancedSession
	inputs  []model.TensorSpec
	outputs []model.TensorSpec
	// probs is the index of the output that Predict answers with: class
	// probabilities for a classifier, predictions for a regressor.
	probs int
}

var _ model.TensorModel = (*Model)(nil)

var elementTypes = map[ort.TensorElementDataType]model.DataType{
	ort.TensorElementDataTypeFloat:  model.FP32,
	ort.TensorElementDataTypeDouble: model.FP64,
	ort.TensorElementDataTypeInt64:  model.INT64,
	ort.TensorElementDataTypeInt32:  model.INT32,
	ort.TensorElementDataTypeBool:   model.BOOL,
	ort.TensorElementDataTypeString: model.BYTES,
}

// Load reads an ONNX model. meta supplies the name and version and,
// optionally, feature names (for a model with one input of rows) and class
// names (for a classifier, whose probability output must then have one
// column per class).
//
// A classifier converted by skl2onnx knows its classes: they come from its
// ZipMap output or, with zipmap=False, from the ai.onnx.ml classifier node
// whose probabilities an output carries. A ZipMap output (a sequence of
// maps from class label to probability) becomes an FP32 tensor [batch,
// classes] of the same name, its columns in the order of the ZipMap's
// class labels: Load replaces the ZipMap node with an Identity of its
// input before ONNX Runtime sees the model. Class names in meta replace
// the model's labels, in the model's order, and must be as many. A STRING
// output (string class labels) is a BYTES tensor. Any other sequence or
// map output is refused.
//
// Errors wrap model.ErrInvalidModel, or ErrNoLibrary before Init.
func Load(data []byte, meta model.Metadata) (*Model, error) {
	envMu.Lock()
	ready := envPath != ""
	envMu.Unlock()
	if !ready {
		return nil, fmt.Errorf("%w: load %s/%s with --onnxruntime-library set", ErrNoLibrary, meta.Name, meta.Version)
	}
	m, err := load(data, meta)
	if err != nil {
		return nil, fmt.Errorf("%w: onnx: %v", model.ErrInvalidModel, err)
	}
	return m, nil
}

func load(data []byte, meta model.Metadata) (*Model, error) {
	ins, outs, err := ort.GetInputOutputInfoWithONNXData(data)
	if err != nil {
		return nil, fmt.Errorf("not a usable ONNX model: %v", err)
	}
	g, err := readGraph(data)
	if err != nil {
		return nil, err
	}
	m := &Model{probs: -1}
	// zipped holds the class labels of each output that is a ZipMap's.
	zipped := map[string]classLabels{}
	for _, in := range ins {
		spec, err := tensorSpec(in)
		if err != nil {
			return nil, fmt.Errorf("input %s: %v", in.Name, err)
		}
		m.inputs = append(m.inputs, spec)
	}
	for _, out := range outs {
		switch out.OrtValueType {
		case ort.ONNXTypeTensor:
			spec, err := tensorSpec(out)
			if err != nil {
				// Outputs of other element types are not served.
				continue
			}
			m.outputs = append(m.outputs, spec)
		case ort.ONNXTypeSequence, ort.ONNXTypeMap:
			labels, err := g.zipMapLabels(out.Name)
			if err != nil {
				return nil, fmt.Errorf("output %s: %v", out.Name, err)
			}
			spec := model.TensorSpec{Name: out.Name, DataType: model.FP32, Shape: []int64{-1, int64(labels.len())}}
			m.outputs, zipped[out.Name] = append(m.outputs, spec), labels
		}
	}
	if len(zipped) > 0 {
		if data, err = denseZipMaps(data, slices.Collect(maps.Keys(zipped))); err != nil {
			return nil, err
		}
	}
	if len(m.inputs) == 0 || len(m.outputs) == 0 {
		return nil, errors.New("the model has no tensor input or output of a supported type (BOOL, INT32, INT64, FP32, FP64, STRING)")
	}

	// A model with one numeric input of rows takes /predict's rows.
	if len(m.inputs) == 1 && len(m.inputs[0].Shape) == 2 && m.inputs[0].Shape[1] > 0 && m.inputs[0].DataType != model.BYTES {
		n := int(m.inputs[0].Shape[1])
		switch {
		case len(meta.Features) == 0:
			meta.Features = make([]string, n)
			for i := range meta.Features {
				meta.Features[i] = fmt.Sprintf("f%d", i)
			}
		case len(meta.Features) != n:
			return nil, fmt.Errorf("configuration names %d features, input %s has %d", len(meta.Features), m.inputs[0].Name, n)
		}
	} else {
		meta.Features = nil
	}

	if err := m.modelClasses(g, zipped, &meta); err != nil {
		return nil, err
	}

	// The output Predict answers with: class probabilities for a classifier,
	// the first floating-point output for a regressor.
	for i, o := range m.outputs {
		if o.DataType != model.FP32 && o.DataType != model.FP64 {
			continue
		}
		if meta.PredictionOutput != "" && o.Name != meta.PredictionOutput {
			continue
		}
		width := int64(1)
		if len(o.Shape) == 2 {
			width = o.Shape[1]
		} else if len(o.Shape) != 1 {
			continue
		}
		if meta.IsClassifier() && width != int64(len(meta.Classes)) {
			continue
		}
		if width < 1 {
			continue
		}
		m.probs, meta.Outputs = i, int(width)
		break
	}
	if m.probs >= 0 {
		meta.PredictionOutput = m.outputs[m.probs].Name
	} else {
		if meta.PredictionOutput != "" {
			return nil, fmt.Errorf("prediction_output %s is not a floating-point output of shape [batch] or [batch, n] (with one column per class for a classifier)", meta.PredictionOutput)
		}
		if meta.IsClassifier() {
			return nil, fmt.Errorf("configuration names %d classes, but no floating-point output has %d columns", len(meta.Classes), len(meta.Classes))
		}
		if meta.Features != nil {
			return nil, errors.New("no floating-point output of shape [batch] or [batch, n] to answer /predict with")
		}
	}

	opts, err := ort.NewSessionOptions()
	if err != nil {
		return nil, err
	}
	defer opts.Destroy()
	// One thread per request: a server runs many requests at once, and
	// intra-op threads would compete with each other for the same cores.
	if err := opts.SetIntraOpNumThreads(1); err != nil {
		return nil, err
	}
	if err := opts.SetInterOpNumThreads(1); err != nil {
		return nil, err
	}
	names := func(specs []model.TensorSpec) []string {
		out := make([]string, len(specs))
		for i, s := range specs {
			out[i] = s.Name
		}
		return out
	}
	m.session, err = ort.NewDynamicAdvancedSessionWithONNXData(data, names(m.inputs), names(m.outputs), opts)
	if err != nil {
		return nil, fmt.Errorf("create session: %v", err)
	}
	meta.Type = Type
	meta.AcceptsMissing = false
	meta.InputTensors, meta.OutputTensors = slices.Clone(m.inputs), slices.Clone(m.outputs)
	m.meta = meta
	return m, nil
}

// modelClasses finds the class labels the model itself carries, on its
// first output that is a ZipMap or the probabilities of an ai.onnx.ml
// classifier (only the output meta.PredictionOutput names, if it names
// one). It makes that output the prediction output and names the classes
// after the labels unless meta names them already.
func (m *Model) modelClasses(g *graph, zipped map[string]classLabels, meta *model.Metadata) error {
	for i, o := range m.outputs {
		if meta.PredictionOutput != "" && o.Name != meta.PredictionOutput {
			continue
		}
		labels, ok := zipped[o.Name]
		switch {
		case ok:
		case (o.DataType == model.FP32 || o.DataType == model.FP64) && len(o.Shape) == 2:
			l, ok := g.classifierLabels(o.Name)
			if !ok {
				continue
			}
			if o.Shape[1] >= 0 && o.Shape[1] != int64(l.len()) {
				return fmt.Errorf("output %s has %d columns, but its classifier has %d class labels", o.Name, o.Shape[1], l.len())
			}
			m.outputs[i].Shape[1] = int64(l.len())
			labels = l
		default:
			continue
		}
		switch {
		case len(meta.Classes) == 0:
			meta.Classes = labels.names()
		case len(meta.Classes) != labels.len():
			return fmt.Errorf("configuration names %d classes, but output %s has %d (%s)",
				len(meta.Classes), o.Name, labels.len(), strings.Join(labels.names(), ", "))
		}
		meta.PredictionOutput = o.Name
		return nil
	}
	return nil
}

func tensorSpec(info ort.InputOutputInfo) (model.TensorSpec, error) {
	if info.OrtValueType != ort.ONNXTypeTensor {
		return model.TensorSpec{}, fmt.Errorf("is a %v, not a tensor", info.OrtValueType)
	}
	dt, ok := elementTypes[info.DataType]
	if !ok {
		return model.TensorSpec{}, fmt.Errorf("element type %v is not supported", info.DataType)
	}
	shape := make([]int64, len(info.Dimensions))
	for i, d := range info.Dimensions {
		shape[i] = d
		if d <= 0 {
			shape[i] = -1
		}
	}
	return model.TensorSpec{Name: info.Name, DataType: dt, Shape: shape}, nil
}

// Metadata implements model.Model.
func (m *Model) Metadata() model.Metadata { return m.meta }

// Close implements model.Model.
func (m *Model) Close() error { return m.session.Destroy() }

// Predict implements model.Model for a model with one input of rows: the
// rows become that input, converted to its element type, and the answer is
// the output chosen at load time.
func (m *Model) Predict(ctx context.Context, in model.Batch) (model.Result, error) {
	if m.meta.Features == nil || m.probs < 0 {
		return model.Result{}, fmt.Errorf("%w: model %s takes tensors, not rows; use the Open Inference Protocol", model.ErrInvalidInput, m.meta.Name)
	}
	spec := m.inputs[0]
	t := model.Tensor{Name: spec.Name, DataType: spec.DataType, Shape: []int64{int64(in.Rows), int64(in.Cols)}}
	var err error
	if t.Data, err = fromFloat64(in.Values, spec.DataType); err != nil {
		return model.Result{}, err
	}
	outs, err := m.run(ctx, []model.Tensor{t})
	if err != nil {
		return model.Result{}, err
	}
	vals, err := outs[m.probs].Float64s()
	if err != nil {
		return model.Result{}, err
	}
	if len(vals) != in.Rows*m.meta.Outputs {
		return model.Result{}, fmt.Errorf("output %s has %d values for %d rows of %d", outs[m.probs].Name, len(vals), in.Rows, m.meta.Outputs)
	}
	return model.Result{Rows: in.Rows, Cols: m.meta.Outputs, Values: vals}, nil
}

// Infer implements model.TensorModel.
func (m *Model) Infer(ctx context.Context, inputs []model.Tensor, outputs []string) ([]model.Tensor, error) {
	ordered := make([]model.Tensor, len(m.inputs))
	for i, spec := range m.inputs {
		j := slices.IndexFunc(inputs, func(t model.Tensor) bool { return t.Name == spec.Name })
		if j < 0 {
			return nil, fmt.Errorf("%w: input %s is missing", model.ErrInvalidInput, spec.Name)
		}
		ordered[i] = inputs[j]
	}
	all, err := m.run(ctx, ordered)
	if err != nil || len(outputs) == 0 {
		return all, err
	}
	var out []model.Tensor
	for _, name := range outputs {
		j := slices.IndexFunc(all, func(t model.Tensor) bool { return t.Name == name })
		if j < 0 {
			return nil, fmt.Errorf("%w: the model has no output %s", model.ErrInvalidInput, name)
		}
		out = append(out, all[j])
	}
	return out, nil
}

// run evaluates the session on tensors in the model's input order and
// returns every output. A context that ends stops ONNX Runtime mid-run.
func (m *Model) run(ctx context.Context, inputs []model.Tensor) ([]model.Tensor, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	values := make([]ort.Value, len(inputs))
	defer func() {
		for _, v := range values {
			if v != nil {
				v.Destroy()
			}
		}
	}()
	for i, t := range inputs {
		v, err := newValue(t)
		if err != nil {
			return nil, err
		}
		values[i] = v
	}
	runOpts, err := ort.NewRunOptions()
	if err != nil {
		return nil, err
	}
	defer runOpts.Destroy()
	stop := context.AfterFunc(ctx, func() { runOpts.Terminate() })
	defer stop()

	outs := make([]ort.Value, len(m.outputs))
	defer func() {
		for _, v := range outs {
			if v != nil {
				v.Destroy()
			}
		}
	}()
	if err := m.session.RunWithOptions(values, outs, runOpts); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("onnx runtime: %w", err)
	}
	result := make([]model.Tensor, len(outs))
	for i, v := range outs {
		t, err := toTensor(m.outputs[i], v)
		if err != nil {
			return nil, err
		}
		result[i] = t
	}
	return result, nil
}

func newValue(t model.Tensor) (ort.Value, error) {
	shape := ort.NewShape(t.Shape...)
	switch d := t.Data.(type) {
	case []float32:
		return ort.NewTensor(shape, slices.Clone(d))
	case []float64:
		return ort.NewTensor(shape, slices.Clone(d))
	case []int64:
		return ort.NewTensor(shape, slices.Clone(d))
	case []int32:
		return ort.NewTensor(shape, slices.Clone(d))
	case []bool:
		return ort.NewTensor(shape, slices.Clone(d))
	case []string:
		s, err := ort.NewStringTensor(shape)
		if err != nil {
			return nil, err
		}
		if err := s.SetContents(d); err != nil {
			s.Destroy()
			return nil, err
		}
		return s, nil
	}
	return nil, fmt.Errorf("%w: tensor %s of type %T", model.ErrInvalidInput, t.Name, t.Data)
}

// toTensor copies an output's value, which must have the spec's shape where
// the spec fixes a dimension.
func toTensor(spec model.TensorSpec, v ort.Value) (model.Tensor, error) {
	t := model.Tensor{Name: spec.Name, DataType: spec.DataType, Shape: slices.Clone([]int64(v.GetShape()))}
	if !fits(t.Shape, spec.Shape) {
		return model.Tensor{}, fmt.Errorf("output %s has shape %v, the model declares %v", spec.Name, t.Shape, spec.Shape)
	}
	switch x := v.(type) {
	case *ort.Tensor[float32]:
		t.Data = slices.Clone(x.GetData())
	case *ort.Tensor[float64]:
		t.Data = slices.Clone(x.GetData())
	case *ort.Tensor[int64]:
		t.Data = slices.Clone(x.GetData())
	case *ort.Tensor[int32]:
		t.Data = slices.Clone(x.GetData())
	case *ort.Tensor[bool]:
		t.Data = slices.Clone(x.GetData())
	case *ort.StringTensor:
		s, err := x.GetContents()
		if err != nil {
			return model.Tensor{}, fmt.Errorf("output %s: %w", spec.Name, err)
		}
		t.Data = s
	default:
		return model.Tensor{}, fmt.Errorf("output %s: unsupported value %T", spec.Name, v)
	}
	return t, nil
}

// fits reports whether shape has the rank of spec and its size in every
// dimension spec fixes (not -1).
func fits(shape, spec []int64) bool {
	if len(shape) != len(spec) {
		return false
	}
	for i, d := range spec {
		if d >= 0 && shape[i] != d {
			return false
		}
	}
	return true
}

// fromFloat64 converts /predict's numbers to an input's element type. An
// integer or boolean input takes only whole numbers (0 and 1 for booleans).
func fromFloat64(vals []float64, dt model.DataType) (any, error) {
	whole := func(i int, v float64) error {
		if v != math.Trunc(v) || math.Abs(v) > 1<<53 {
			return fmt.Errorf("%w: value %d (%v) must be a whole number for a %s input", model.ErrInvalidInput, i, v, dt)
		}
		return nil
	}
	switch dt {
	case model.FP32:
		out := make([]float32, len(vals))
		for i, v := range vals {
			if math.Abs(v) > math.MaxFloat32 {
				return nil, fmt.Errorf("%w: value %d (%v) is too large for a %s input", model.ErrInvalidInput, i, v, dt)
			}
			out[i] = float32(v)
		}
		return out, nil
	case model.FP64:
		return vals, nil
	case model.INT64:
		out := make([]int64, len(vals))
		for i, v := range vals {
			if err := whole(i, v); err != nil {
				return nil, err
			}
			out[i] = int64(v)
		}
		return out, nil
	case model.INT32:
		out := make([]int32, len(vals))
		for i, v := range vals {
			if err := whole(i, v); err != nil || v > math.MaxInt32 || v < math.MinInt32 {
				return nil, fmt.Errorf("%w: value %d (%v) must be a 32-bit whole number", model.ErrInvalidInput, i, v)
			}
			out[i] = int32(v)
		}
		return out, nil
	case model.BOOL:
		out := make([]bool, len(vals))
		for i, v := range vals {
			if v != 0 && v != 1 {
				return nil, fmt.Errorf("%w: value %d (%v) must be 0 or 1 for a BOOL input", model.ErrInvalidInput, i, v)
			}
			out[i] = v == 1
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: input type %s", model.ErrInvalidInput, dt)
}
