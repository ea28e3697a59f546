package server

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/modelwatch/modelwatch/internal/model"
)

// This file is the protocol-neutral inference core of the Open Inference
// Protocol: a request's input tensors, already decoded by a protocol (JSON
// over REST, protobuf over gRPC), are checked against the model's metadata,
// run, and observed into the metric catalogue, drift, feedback and the
// prediction log exactly once, whichever protocol brought them.

// tensorRequest is an inference request whose inputs a protocol has decoded.
type tensorRequest struct {
	// inputs are the request's tensors, in the order it sent them. Each has
	// the datatype, shape and data the request gave; the core checks them
	// against the model.
	inputs []model.Tensor
	// outputs names the outputs to answer; none answers every output.
	outputs []string
}

// checkOutputs checks the requested output names against the model's
// outputs, and returns them.
func checkOutputs(meta *model.Metadata, names []string) ([]string, *apiError) {
	var wanted []string
	for _, name := range names {
		if !slices.ContainsFunc(meta.OutputTensors, func(t model.TensorSpec) bool { return t.Name == name }) {
			return nil, newError(errInvalidRequest, "the model has no output %q; it has %s", name, specNames(meta.OutputTensors))
		}
		if slices.Contains(wanted, name) {
			return nil, newError(errInvalidRequest, "output %q is requested twice", name)
		}
		wanted = append(wanted, name)
	}
	return wanted, nil
}

// inferTensors is the inference core: it checks req's tensors against the
// model v holds and runs them, a model of rows through checkValues (and its
// categories) and infer, a tensor model through run, so that the model_*
// series, exemplars, drift, feedback and the prediction log see every
// request once. It returns the requested outputs (every output when none
// is named), or an error of the closed error table. t0 is when the request's
// preprocessing began.
func (s *Server) inferTensors(ctx context.Context, v *view, req tensorRequest, t0 time.Time) ([]model.Tensor, *apiError) {
	meta := &v.meta
	if len(req.inputs) == 0 {
		return nil, newError(errEmptyBatch, `"inputs" has no tensors`)
	}
	wanted, aerr := checkOutputs(meta, req.outputs)
	if aerr != nil {
		return nil, aerr
	}
	tm, isTensorModel := v.model.(model.TensorModel)
	feature := !isTensorModel && byFeature(meta, req.inputs[0].Name)
	for i, in := range req.inputs {
		spec, aerr := inputSpec(meta, feature, i, in.Name, in.Shape, req.inputs[:i])
		if aerr != nil {
			return nil, aerr
		}
		if aerr := checkTensor(in, spec, isTensorModel, s.maxRows(v)); aerr != nil {
			return nil, aerr
		}
	}
	if feature {
		batch, aerr := s.featureColumns(v, req.inputs)
		if aerr != nil {
			return nil, aerr
		}
		return s.inferRows(ctx, v, batch, t0, wanted)
	}
	rows, aerr := s.batchRows(v, req.inputs)
	if aerr != nil {
		return nil, aerr
	}
	if isTensorModel {
		return s.inferTensorModel(ctx, v, tm, req.inputs, rows, t0, wanted)
	}
	batch, aerr := s.rowsTensor(v, req.inputs[0], rows)
	if aerr != nil {
		return nil, aerr
	}
	return s.inferRows(ctx, v, batch, t0, wanted)
}

// batchRows checks that a request gives each of the model's inputs, all with
// the same number of rows (their first dimension), within the row limit,
// and returns it.
func (s *Server) batchRows(v *view, inputs []model.Tensor) (int, *apiError) {
	meta := &v.meta
	if len(inputs) != len(meta.InputTensors) {
		return 0, newError(errInvalidRequest, "the model takes %d inputs (%s), the request has %d", len(meta.InputTensors), specNames(meta.InputTensors), len(inputs))
	}
	rows := int(inputs[0].Shape[0])
	for _, t := range inputs {
		if len(t.Shape) == 0 || int(t.Shape[0]) != rows {
			return 0, newError(errShapeMismatch, "inputs disagree on the batch size (first dimension)")
		}
	}
	switch limit := s.maxRows(v); {
	case rows == 0:
		return 0, newError(errEmptyBatch, "the batch has no rows")
	case rows > limit:
		return 0, newError(errBatchTooLarge, "the batch has %d rows, over the limit of %d", rows, limit)
	}
	return rows, nil
}

// inferTensorModel runs a tensor model (ONNX) on its inputs.
func (s *Server) inferTensorModel(ctx context.Context, v *view, tm model.TensorModel, inputs []model.Tensor, rows int, t0 time.Time, wanted []string) ([]model.Tensor, *apiError) {
	// JSON cannot carry NaN or infinities; raw and typed protobuf contents
	// can, and a tensor model is given none.
	for _, t := range inputs {
		if i := t.NonFinite(); i >= 0 {
			return nil, newError(errInvalidInput, "input %s: value %d is not a finite number", t.Name, i)
		}
	}
	out, aerr := s.run(ctx, v, rows, t0, func(ctx context.Context) (outcome, []float64, error) {
		ts, err := model.SafeInfer(ctx, tm, inputs, nil)
		if err != nil {
			return outcome{}, nil, err
		}
		var pred []float64
		if i := slices.IndexFunc(ts, func(t model.Tensor) bool { return t.Name == v.meta.PredictionOutput }); i >= 0 {
			pred, _ = ts[i].Float64s()
		}
		return outcome{tensors: ts}, pred, nil
	})
	if aerr != nil {
		return nil, aerr
	}
	s.logRows(ctx, v, rows, &out, tensorRow(inputs, rows))
	return selectOutputs(out.tensors, wanted)
}

// rowsTensor reads the one input of a model of rows, of shape [rows,
// features], into a batch, with the checks /predict makes: category names
// and decimal numbers in BYTES, and values the model's input type can hold
// (an FP64 tensor may carry values an FP32 input cannot).
func (s *Server) rowsTensor(v *view, t model.Tensor, rows int) (model.Batch, *apiError) {
	meta := &v.meta
	if len(t.Shape) != 2 || int(t.Shape[1]) != len(meta.Features) {
		return model.Batch{}, newError(errShapeMismatch, "input %s has shape %v; the model takes [rows, %d]", t.Name, t.Shape, len(meta.Features))
	}
	var vals []float64
	if strs, ok := t.Data.([]string); ok {
		vals = make([]float64, len(strs))
		idx := s.categories.get(meta)
		for i, str := range strs {
			col := i % len(meta.Features)
			x, why := idx.element(meta, col, str)
			if why != "" {
				return model.Batch{}, newError(errInvalidInput, "input %s: value %d (%s) %s", t.Name, i, meta.Features[col], why)
			}
			vals[i] = x
		}
	} else {
		var err error
		if vals, err = t.Float64s(); err != nil {
			return model.Batch{}, newError(errInvalidInput, "%v", err)
		}
	}
	if i, why := checkValues(meta, vals); why != "" {
		return model.Batch{}, newError(errInvalidInput, "input %s: value %d (%s) %s", t.Name, i, meta.Features[i%len(meta.Features)], why)
	}
	return model.Batch{Rows: rows, Cols: len(meta.Features), Values: vals}, nil
}

// inferRows runs a model of rows on a batch and answers its output tensors.
func (s *Server) inferRows(ctx context.Context, v *view, batch model.Batch, t0 time.Time, wanted []string) ([]model.Tensor, *apiError) {
	out, aerr := s.infer(ctx, v, batch, t0)
	if aerr != nil {
		return nil, aerr
	}
	return selectOutputs(v.meta.RowOutputs(out.result, out.class), wanted)
}

// byFeature reports whether a request to a model of rows sends one tensor
// per feature, as MLServer's pandas codec does: its first input (named
// first) is named after a feature rather than after the model's input
// tensor.
func byFeature(meta *model.Metadata, first string) bool {
	return slices.Contains(meta.Features, first) && !slices.ContainsFunc(meta.InputTensors, func(t model.TensorSpec) bool { return t.Name == first })
}

// featureSpec is what one tensor of a request that sends a tensor per
// feature may be: [rows] or [rows, 1], of any numeric datatype or BYTES.
func featureSpec(name string, shape []int64) model.TensorSpec {
	spec := model.TensorSpec{Name: name, DataType: model.FP64, Shape: []int64{-1}}
	if len(shape) == 2 {
		spec.Shape = []int64{-1, 1}
	}
	return spec
}

// inputSpec returns the spec the i-th input of a request, named name, is
// checked against: the model's input tensor of that name or, for a request
// that sends a tensor per feature (feature), its feature's column. seen are
// the inputs before it.
func inputSpec(meta *model.Metadata, feature bool, i int, name string, shape []int64, seen []model.Tensor) (model.TensorSpec, *apiError) {
	if feature {
		if !slices.Contains(meta.Features, name) {
			return model.TensorSpec{}, newError(errInvalidRequest, "inputs[%d]: the model has no feature %q; send one tensor per feature: %s", i, name, strings.Join(meta.Features, ", "))
		}
	} else if !slices.ContainsFunc(meta.InputTensors, func(t model.TensorSpec) bool { return t.Name == name }) {
		return model.TensorSpec{}, newError(errInvalidRequest, "inputs[%d]: the model has no input %q; it has %s", i, name, specNames(meta.InputTensors))
	}
	if slices.ContainsFunc(seen, func(t model.Tensor) bool { return t.Name == name }) {
		return model.TensorSpec{}, newError(errInvalidRequest, "input %q is given twice", name)
	}
	if feature {
		return featureSpec(name, shape), nil
	}
	return meta.InputTensors[slices.IndexFunc(meta.InputTensors, func(t model.TensorSpec) bool { return t.Name == name })], nil
}

// featureColumns gathers the inputs of a request that sends one tensor per
// feature, each named after its feature and checked by inputSpec and
// checkTensor, of shape [rows] or [rows, 1], of any numeric datatype or
// BYTES (category names and decimal numbers, as in the one tensor of rows),
// into a batch of rows.
func (s *Server) featureColumns(v *view, inputs []model.Tensor) (model.Batch, *apiError) {
	meta := &v.meta
	nf := len(meta.Features)
	cols := make([]model.Tensor, nf)
	for _, in := range inputs {
		cols[slices.Index(meta.Features, in.Name)] = in
	}
	for col, t := range cols {
		if t.Shape == nil {
			return model.Batch{}, newError(errInvalidRequest, "the request sends one tensor per feature but none for %s; the model takes %s", meta.Features[col], strings.Join(meta.Features, ", "))
		}
	}
	rows := int(cols[0].Shape[0])
	for _, t := range cols {
		if int(t.Shape[0]) != rows {
			return model.Batch{}, newError(errShapeMismatch, "inputs disagree on the batch size (first dimension)")
		}
	}
	if rows == 0 {
		return model.Batch{}, newError(errEmptyBatch, "the batch has no rows")
	}
	vals := make([]float64, rows*nf)
	idx := s.categories.get(meta)
	for col, t := range cols {
		if strs, ok := t.Data.([]string); ok {
			for r, str := range strs {
				x, why := idx.element(meta, col, str)
				if why != "" {
					return model.Batch{}, newError(errInvalidInput, "input %s: value %d %s", t.Name, r, why)
				}
				vals[r*nf+col] = x
			}
			continue
		}
		xs, err := t.Float64s()
		if err != nil {
			return model.Batch{}, newError(errInvalidInput, "%v", err)
		}
		for r, x := range xs {
			vals[r*nf+col] = x
		}
	}
	if i, why := checkValues(meta, vals); why != "" {
		return model.Batch{}, newError(errInvalidInput, "input %s: value %d %s", meta.Features[i%nf], i/nf, why)
	}
	return model.Batch{Rows: rows, Cols: nf, Values: vals}, nil
}

// checkTensor checks a decoded tensor against the model's spec, as
// decodeTensor does before it decodes (checkSpec), and that its data holds
// the elements its shape calls for.
func checkTensor(t model.Tensor, spec model.TensorSpec, strict bool, maxRows int) *apiError {
	n, aerr := checkSpec(t.Name, string(t.DataType), t.Shape, spec, strict, maxRows)
	if aerr != nil {
		return aerr
	}
	switch got := t.DataLen(); {
	case got < 0:
		return newError(errInvalidRequest, "input %s: the data is not of datatype %s", t.Name, t.DataType)
	case int64(got) != n:
		return newError(errShapeMismatch, "input %s has %d values; shape %v needs %d", t.Name, got, t.Shape, n)
	}
	return nil
}

// checkSpec checks an input's datatype and shape against the model's spec,
// and returns the number of elements the shape calls for. A tensor model
// (strict) takes its own datatypes; a model of rows takes any numeric type,
// and BYTES. A batch of more than maxRows rows is refused.
func checkSpec(name, datatype string, shape []int64, spec model.TensorSpec, strict bool, maxRows int) (int64, *apiError) {
	dt := model.DataType(datatype)
	switch dt {
	case model.BOOL, model.INT32, model.INT64, model.FP32, model.FP64:
	case model.BYTES:
		if strict {
			return 0, newError(errInvalidInput, "input %s is BYTES; the model takes %s (BYTES is for models of rows)", name, spec.DataType)
		}
	default:
		return 0, newError(errInvalidRequest, "input %s: datatype %q is not one of BOOL, INT32, INT64, FP32, FP64, BYTES", name, datatype)
	}
	if strict && dt != spec.DataType {
		return 0, newError(errInvalidInput, "input %s is %s; the model takes %s", name, dt, spec.DataType)
	}
	if shape == nil {
		return 0, newError(errInvalidRequest, "input %s has no shape", name)
	}
	if len(shape) != len(spec.Shape) {
		return 0, newError(errShapeMismatch, "input %s has shape %v; the model takes %s", name, shape, shapeString(spec.Shape))
	}
	if len(shape) > 0 && shape[0] > int64(maxRows) {
		return 0, newError(errBatchTooLarge, "the batch has %d rows, over the limit of %d", shape[0], maxRows)
	}
	n := int64(1)
	for i, d := range shape {
		if d < 0 || (spec.Shape[i] >= 0 && d != spec.Shape[i]) {
			return 0, newError(errShapeMismatch, "input %s has shape %v; the model takes %s", name, shape, shapeString(spec.Shape))
		}
		n *= d
		if n > maxTensorElements {
			return 0, newError(errBatchTooLarge, "input %s has more than %d elements", name, maxTensorElements)
		}
	}
	return n, nil
}

// selectOutputs returns the outputs wanted names (all when none), refusing
// any that holds a value that is not a finite number.
func selectOutputs(ts []model.Tensor, wanted []string) ([]model.Tensor, *apiError) {
	var out []model.Tensor
	for _, t := range ts {
		if len(wanted) > 0 && !slices.Contains(wanted, t.Name) {
			continue
		}
		if t.NonFinite() >= 0 {
			return nil, newError(errModelFailed, "output %s holds a value that is not a finite number", t.Name)
		}
		out = append(out, t)
	}
	return out, nil
}
