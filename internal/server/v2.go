package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/modelwatch/modelwatch/internal/model"
	"github.com/modelwatch/modelwatch/internal/repository"
	"github.com/modelwatch/modelwatch/internal/version"
)

// Repository is the model control that the Open Inference Protocol's
// repository extension and readiness use.
type Repository interface {
	Index() []repository.Status
	Load(ctx context.Context, name string) error
	Unload(name string) error
	Ready() bool
}

// v2Routes are the Open Inference Protocol (KServe v2) REST endpoints.
func (s *Server) v2Routes() []route {
	get := func(h http.HandlerFunc) map[string]http.HandlerFunc {
		return map[string]http.HandlerFunc{http.MethodGet: h, http.MethodHead: h}
	}
	post := func(h http.HandlerFunc) map[string]http.HandlerFunc {
		return map[string]http.HandlerFunc{http.MethodPost: h}
	}
	rs := []route{
		{pattern: "/v2", methods: get(s.api(s.v2Server, false))},
		{pattern: "/v2/health/live", methods: get(s.api(s.v2Live, false))},
		{pattern: "/v2/health/ready", methods: get(s.api(s.v2Ready, false))},
		{pattern: "/v2/models/{model}", methods: get(s.api(s.v2Metadata, false))},
		{pattern: "/v2/models/{model}/versions/{version}", methods: get(s.api(s.v2Metadata, false))},
		{pattern: "/v2/models/{model}/ready", methods: get(s.api(s.v2ModelReady, false))},
		{pattern: "/v2/models/{model}/versions/{version}/ready", methods: get(s.api(s.v2ModelReady, false))},
		{pattern: "/v2/models/{model}/infer", inference: true, access: accessInference, methods: post(s.api(s.v2Infer, true))},
		{pattern: "/v2/models/{model}/versions/{version}/infer", inference: true, access: accessInference, methods: post(s.api(s.v2Infer, true))},
		// The index is read-only and says what /ready says: names, versions,
		// states and reasons, no paths.
		{pattern: "/v2/repository/index", methods: post(s.api(s.v2Index, false))},
		{pattern: "/v2/repository/models/{model}/load", access: accessControl, methods: post(s.api(s.v2Load, false))},
		{pattern: "/v2/repository/models/{model}/unload", access: accessControl, methods: post(s.api(s.v2Unload, false))},
	}
	for i := range rs {
		rs[i].endpoint = rs[i].pattern
	}
	return rs
}

func (s *Server) v2Server(http.ResponseWriter, *http.Request) (any, *apiError) {
	ext := []string{}
	if s.opts.Repository != nil {
		ext = append(ext, "model_repository")
	}
	return map[string]any{"name": "modelwatch", "version": version.Get().Version, "extensions": ext}, nil
}

func (s *Server) v2Live(http.ResponseWriter, *http.Request) (any, *apiError) {
	return map[string]bool{"live": true}, nil
}

func (s *Server) v2Ready(http.ResponseWriter, *http.Request) (any, *apiError) {
	if !s.isReady() {
		return statusResult{status: http.StatusServiceUnavailable, body: map[string]bool{"ready": false}}, nil
	}
	return map[string]bool{"ready": true}, nil
}

type v2TensorMeta struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

func tensorMeta(specs []model.TensorSpec) []v2TensorMeta {
	out := make([]v2TensorMeta, len(specs))
	for i, t := range specs {
		out[i] = v2TensorMeta{Name: t.Name, Datatype: string(t.DataType), Shape: t.Shape}
	}
	return out
}

// platforms names each runtime the way KServe and Triton clients expect.
var platforms = map[string]string{"xgboost": "xgboost_json", "lightgbm": "lightgbm_txt", "onnx": "onnxruntime_onnx"}

func (s *Server) v2Metadata(_ http.ResponseWriter, r *http.Request) (any, *apiError) {
	name, ver := r.PathValue("model"), r.PathValue("version")
	m, err := s.models.Resolve(name, ver)
	if err != nil {
		return nil, fromModelError(err)
	}
	meta := m.Metadata()
	platform := platforms[meta.Type]
	if platform == "" {
		platform = meta.Type
	}
	out := map[string]any{
		"name":     meta.Name,
		"versions": s.models.Versions(meta.Name),
		"platform": platform,
		"inputs":   tensorMeta(meta.InputTensors),
		"outputs":  tensorMeta(meta.OutputTensors),
	}
	if ver != "" {
		out["versions"] = []string{meta.Version}
	}
	params := map[string]any{"version": meta.Version}
	if len(meta.Classes) > 0 {
		params["classes"] = meta.Classes
	}
	if len(meta.Features) > 0 {
		params["features"] = meta.Features
	}
	if c := categoricalInfo(&meta); c != nil {
		params["categorical"] = c
	}
	out["parameters"] = params
	return out, nil
}

func (s *Server) v2ModelReady(_ http.ResponseWriter, r *http.Request) (any, *apiError) {
	m, err := s.models.Resolve(r.PathValue("model"), r.PathValue("version"))
	if err != nil {
		return nil, fromModelError(err)
	}
	meta := m.Metadata()
	return map[string]any{"name": meta.Name, "version": meta.Version, "ready": true}, nil
}

func (s *Server) v2Index(w http.ResponseWriter, r *http.Request) (any, *apiError) {
	if s.opts.Repository == nil {
		return nil, newError(errNotFound, "this server has no model repository")
	}
	var req struct {
		Ready bool `json:"ready"`
	}
	if aerr := s.decodeOptional(w, r, &req); aerr != nil {
		return nil, aerr
	}
	out := []repository.Status{}
	for _, st := range s.opts.Repository.Index() {
		if !req.Ready || st.State == repository.Ready {
			out = append(out, st)
		}
	}
	return out, nil
}

// v2Control runs a repository extension call: the body may be empty or
// carry parameters, which are accepted and ignored.
func (s *Server) v2Control(w http.ResponseWriter, r *http.Request, call func(name string) *apiError) (any, *apiError) {
	if s.opts.Repository == nil {
		return nil, newError(errNotFound, "this server has no model repository")
	}
	var req struct {
		Parameters map[string]any `json:"parameters"`
	}
	if aerr := s.decodeOptional(w, r, &req); aerr != nil {
		return nil, aerr
	}
	if aerr := call(r.PathValue("model")); aerr != nil {
		return nil, aerr
	}
	return map[string]any{}, nil
}

func (s *Server) v2Load(w http.ResponseWriter, r *http.Request) (any, *apiError) {
	return s.v2Control(w, r, func(name string) *apiError {
		switch err := s.opts.Repository.Load(r.Context(), name); {
		case errors.Is(err, repository.ErrNotFound):
			return newError(errModelNotFound, "no model of that name in the repository")
		case err != nil:
			return newError(errLoadFailed, "%v", err)
		}
		return nil
	})
}

func (s *Server) v2Unload(w http.ResponseWriter, r *http.Request) (any, *apiError) {
	return s.v2Control(w, r, func(name string) *apiError {
		switch err := s.opts.Repository.Unload(name); {
		case errors.Is(err, repository.ErrNotFound):
			return newError(errModelNotFound, "no model of that name is loaded")
		case err != nil:
			return newError(errInternal, "%v", err)
		}
		return nil
	})
}

// decodeOptional reads a small JSON body that may be empty.
func (s *Server) decodeOptional(w http.ResponseWriter, r *http.Request, v any) *apiError {
	if err := checkJSONContent(r); err != nil {
		return err
	}
	body, charged, aerr := s.readBody(r)
	if aerr != nil {
		return aerr
	}
	defer s.bodyDone(charged)
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	if err := strictDecode(body, v); err != nil {
		return newError(errInvalidRequest, "invalid request body: %s", trimJSONPrefix(err.Error()))
	}
	return nil
}

// v2InferRequest is the body of POST .../infer.
// Its lists are bounded while decoding (boundedList).
type v2InferRequest struct {
	ID         string                               `json:"id"`
	Parameters json.RawMessage                      `json:"parameters"`
	Inputs     boundedList[v2Input, maxInputs]      `json:"inputs"`
	Outputs    boundedList[v2Requested, maxOutputs] `json:"outputs"`
}

type v2Input struct {
	Name       string                      `json:"name"`
	Shape      boundedList[int64, maxDims] `json:"shape"`
	Datatype   string                      `json:"datatype"`
	Parameters json.RawMessage             `json:"parameters"`
	Data       json.RawMessage             `json:"data"`
}

type v2Requested struct {
	Name       string          `json:"name"`
	Parameters json.RawMessage `json:"parameters"`
}

type v2Output struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
	Data     any     `json:"data"`
}

type v2InferResponse struct {
	ModelName    string     `json:"model_name"`
	ModelVersion string     `json:"model_version"`
	ID           string     `json:"id,omitempty"`
	Outputs      []v2Output `json:"outputs"`
}

// maxTensorElements bounds the elements of one tensor, whatever its shape says.
const maxTensorElements = 1 << 24

// v2Infer serves POST /v2/models/{model}[/versions/{version}]/infer.
func (s *Server) v2Infer(w http.ResponseWriter, r *http.Request) (any, *apiError) {
	if r.Header.Get("Inference-Header-Content-Length") != "" {
		return nil, newError(errMediaType, "the binary tensor data extension is not supported; send tensors as JSON")
	}
	if err := checkJSONContent(r); err != nil {
		return nil, err
	}
	// As /predict: the body first, then an in-flight place.
	if aerr := s.full(); aerr != nil {
		return nil, aerr
	}
	body, charged, aerr := s.readBody(r)
	if aerr != nil {
		return nil, aerr
	}
	defer s.bodyDone(charged)
	if aerr := s.admit(); aerr != nil {
		return nil, aerr
	}
	defer s.leave()
	t0 := s.opts.Now()
	var req v2InferRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, jsonError(err, body)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, newError(errInvalidJSON, "invalid JSON: data after the request object")
	}
	if len(req.ID) > 256 {
		return nil, newError(errInvalidRequest, `"id" is longer than 256 bytes`)
	}
	v, aerr := s.acquire(r.PathValue("model"), r.PathValue("version"))
	if aerr != nil {
		return nil, aerr
	}
	defer v.release()
	out, aerr := s.v2Run(r.Context(), v, &req, t0)
	if aerr != nil {
		aerr.model = v.meta.Name
		return nil, aerr
	}
	resp, err := json.Marshal(v2InferResponse{ModelName: v.meta.Name, ModelVersion: v.meta.Version, ID: req.ID, Outputs: out})
	if err != nil {
		return nil, &apiError{typ: errModelFailed, msg: "the model's outputs cannot be encoded as JSON", model: v.meta.Name}
	}
	v.series.InputSize.Observe(float64(len(body)))
	v.series.OutputSize.Observe(float64(len(resp) + 1))
	return json.RawMessage(resp), nil
}

// v2Run validates the request's tensors against the model and runs it.
func (s *Server) v2Run(ctx context.Context, v *view, req *v2InferRequest, t0 time.Time) ([]v2Output, *apiError) {
	meta := &v.meta
	if len(req.Inputs) == 0 {
		return nil, newError(errEmptyBatch, `"inputs" has no tensors`)
	}
	var wanted []string
	for _, o := range req.Outputs {
		if !slices.ContainsFunc(meta.OutputTensors, func(t model.TensorSpec) bool { return t.Name == o.Name }) {
			return nil, newError(errInvalidRequest, "the model has no output %q; it has %s", o.Name, specNames(meta.OutputTensors))
		}
		if slices.Contains(wanted, o.Name) {
			return nil, newError(errInvalidRequest, "output %q is requested twice", o.Name)
		}
		wanted = append(wanted, o.Name)
	}
	tm, isTensorModel := v.model.(model.TensorModel)
	if !isTensorModel && byFeature(meta, req.Inputs) {
		batch, aerr := s.featureColumns(v, req.Inputs)
		if aerr != nil {
			return nil, aerr
		}
		out, aerr := s.infer(ctx, v, batch, t0)
		if aerr != nil {
			return nil, aerr
		}
		return selectOutputs(rowOutputs(meta, out), wanted)
	}
	inputs := make([]model.Tensor, 0, len(req.Inputs))
	for i, in := range req.Inputs {
		spec := slices.IndexFunc(meta.InputTensors, func(t model.TensorSpec) bool { return t.Name == in.Name })
		if spec < 0 {
			return nil, newError(errInvalidRequest, "inputs[%d]: the model has no input %q; it has %s", i, in.Name, specNames(meta.InputTensors))
		}
		if slices.ContainsFunc(inputs, func(t model.Tensor) bool { return t.Name == in.Name }) {
			return nil, newError(errInvalidRequest, "input %q is given twice", in.Name)
		}
		t, aerr := decodeTensor(in.Name, in.Datatype, in.Shape, in.Data, meta.InputTensors[spec], isTensorModel, s.maxRows(v))
		if aerr != nil {
			return nil, aerr
		}
		inputs = append(inputs, t)
	}
	if len(inputs) != len(meta.InputTensors) {
		return nil, newError(errInvalidRequest, "the model takes %d inputs (%s), the request has %d", len(meta.InputTensors), specNames(meta.InputTensors), len(inputs))
	}
	rows := int(inputs[0].Shape[0])
	for _, t := range inputs {
		if len(t.Shape) == 0 || int(t.Shape[0]) != rows {
			return nil, newError(errShapeMismatch, "inputs disagree on the batch size (first dimension)")
		}
	}
	switch limit := s.maxRows(v); {
	case rows == 0:
		return nil, newError(errEmptyBatch, "the batch has no rows")
	case rows > limit:
		return nil, newError(errBatchTooLarge, "the batch has %d rows, over the limit of %d", rows, limit)
	}

	if isTensorModel {
		out, aerr := s.run(ctx, v, rows, t0, func(ctx context.Context) (outcome, []float64, error) {
			ts, err := safeInfer(ctx, tm, inputs, nil)
			if err != nil {
				return outcome{}, nil, err
			}
			var pred []float64
			if i := slices.IndexFunc(ts, func(t model.Tensor) bool { return t.Name == meta.PredictionOutput }); i >= 0 {
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

	// A model of rows: one input of shape [rows, features].
	t := inputs[0]
	if len(t.Shape) != 2 || int(t.Shape[1]) != len(meta.Features) {
		return nil, newError(errShapeMismatch, "input %s has shape %v; the model takes [rows, %d]", t.Name, t.Shape, len(meta.Features))
	}
	var vals []float64
	if strs, ok := t.Data.([]string); ok {
		// BYTES: category names and decimal numbers.
		vals = make([]float64, len(strs))
		idx := s.categories.get(meta)
		for i, str := range strs {
			col := i % len(meta.Features)
			x, why := idx.element(meta, col, str)
			if why != "" {
				return nil, newError(errInvalidInput, "input %s: value %d (%s) %s", t.Name, i, meta.Features[col], why)
			}
			vals[i] = x
		}
	} else {
		var err error
		if vals, err = t.Float64s(); err != nil {
			return nil, newError(errInvalidInput, "%v", err)
		}
	}
	// The checks /predict makes: an FP64 tensor may carry values an FP32
	// input cannot hold.
	if i, why := checkValues(meta, vals); why != "" {
		return nil, newError(errInvalidInput, "input %s: value %d (%s) %s", t.Name, i, meta.Features[i%len(meta.Features)], why)
	}
	batch := model.Batch{Rows: rows, Cols: len(meta.Features), Values: vals}
	out, aerr := s.infer(ctx, v, batch, t0)
	if aerr != nil {
		return nil, aerr
	}
	return selectOutputs(rowOutputs(meta, out), wanted)
}

// byFeature reports whether a request to a model of rows sends one tensor
// per feature, as MLServer's pandas codec does: its first input is named
// after a feature rather than after the model's input tensor.
func byFeature(meta *model.Metadata, inputs boundedList[v2Input, maxInputs]) bool {
	name := inputs[0].Name
	return slices.Contains(meta.Features, name) && !slices.ContainsFunc(meta.InputTensors, func(t model.TensorSpec) bool { return t.Name == name })
}

// featureColumns reads the inputs of a request that sends one tensor per
// feature, each named after its feature, of shape [rows] or [rows, 1], of
// any numeric datatype or BYTES (category names and decimal numbers, as in
// the one tensor of rows), into a batch of rows.
func (s *Server) featureColumns(v *view, inputs boundedList[v2Input, maxInputs]) (model.Batch, *apiError) {
	meta := &v.meta
	nf := len(meta.Features)
	cols := make([]model.Tensor, nf)
	for i, in := range inputs {
		col := slices.Index(meta.Features, in.Name)
		switch {
		case col < 0:
			return model.Batch{}, newError(errInvalidRequest, "inputs[%d]: the model has no feature %q; send one tensor per feature: %s", i, in.Name, strings.Join(meta.Features, ", "))
		case cols[col].Shape != nil:
			return model.Batch{}, newError(errInvalidRequest, "input %q is given twice", in.Name)
		}
		spec := model.TensorSpec{Name: in.Name, DataType: model.FP64, Shape: []int64{-1}}
		if len(in.Shape) == 2 {
			spec.Shape = []int64{-1, 1}
		}
		t, aerr := decodeTensor(in.Name, in.Datatype, in.Shape, in.Data, spec, false, s.maxRows(v))
		if aerr != nil {
			return model.Batch{}, aerr
		}
		cols[col] = t
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

// rowOutputs turns a model of rows' result into its output tensors: class
// probabilities and labels for a classifier, predictions for a regressor.
func rowOutputs(meta *model.Metadata, out outcome) []model.Tensor {
	res := out.result
	main := model.Tensor{Name: meta.PredictionOutput, DataType: model.FP32, Shape: []int64{int64(res.Rows), int64(res.Cols)}}
	if predictionType(meta) == model.FP64 {
		// A runtime that computes in double precision (LightGBM) declares
		// FP64 and answers it unrounded.
		main.DataType, main.Data = model.FP64, res.Values
	} else {
		vals := make([]float32, len(res.Values))
		for i, x := range res.Values {
			vals[i] = float32(x)
		}
		main.Data = vals
	}
	if !meta.IsClassifier() {
		return []model.Tensor{main}
	}
	labels := make([]string, res.Rows)
	for i, c := range out.class {
		labels[i] = meta.Classes[c]
	}
	ts := []model.Tensor{main}
	for _, spec := range meta.OutputTensors {
		if spec.DataType == model.BYTES {
			ts = append(ts, model.Tensor{Name: spec.Name, DataType: model.BYTES, Shape: []int64{int64(res.Rows)}, Data: labels})
		}
	}
	return ts
}

// predictionType is the datatype the model declares for its prediction
// output, FP32 unless it says otherwise.
func predictionType(meta *model.Metadata) model.DataType {
	for _, spec := range meta.OutputTensors {
		if spec.Name == meta.PredictionOutput {
			return spec.DataType
		}
	}
	return model.FP32
}

func selectOutputs(ts []model.Tensor, wanted []string) ([]v2Output, *apiError) {
	var out []v2Output
	for _, t := range ts {
		if len(wanted) > 0 && !slices.Contains(wanted, t.Name) {
			continue
		}
		if !finite(t.Data) {
			return nil, newError(errModelFailed, "output %s holds a value that is not a finite number", t.Name)
		}
		out = append(out, v2Output{Name: t.Name, Datatype: string(t.DataType), Shape: t.Shape, Data: t.Data})
	}
	return out, nil
}

func finite(data any) bool {
	switch d := data.(type) {
	case []float32:
		for _, x := range d {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				return false
			}
		}
	case []float64:
		for _, x := range d {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return false
			}
		}
	}
	return true
}

func safeInfer(ctx context.Context, m model.TensorModel, ins []model.Tensor, outs []string) (ts []model.Tensor, err error) {
	defer func() {
		if v := recover(); v != nil {
			ts, err = nil, &model.PanicError{Value: v}
		}
	}()
	return m.Infer(ctx, ins, outs)
}

func specNames(specs []model.TensorSpec) string {
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	return strings.Join(names, ", ")
}

// decodeTensor checks an input's datatype and shape against the model's,
// and decodes its data. A tensor model (strict) takes its own datatypes; a
// model of rows takes any numeric type, and BYTES (strings: category names
// and decimal numbers, which the caller converts). A batch of more than
// maxRows rows is refused before its data is decoded.
func decodeTensor(name, datatype string, shape []int64, data json.RawMessage, spec model.TensorSpec, strict bool, maxRows int) (model.Tensor, *apiError) {
	dt := model.DataType(datatype)
	switch dt {
	case model.BOOL, model.INT32, model.INT64, model.FP32, model.FP64:
	case model.BYTES:
		if strict {
			return model.Tensor{}, newError(errInvalidInput, "input %s is BYTES; the model takes %s (BYTES is for models of rows)", name, spec.DataType)
		}
	default:
		return model.Tensor{}, newError(errInvalidRequest, "input %s: datatype %q is not one of BOOL, INT32, INT64, FP32, FP64, BYTES", name, datatype)
	}
	if strict && dt != spec.DataType {
		return model.Tensor{}, newError(errInvalidInput, "input %s is %s; the model takes %s", name, dt, spec.DataType)
	}
	if shape == nil {
		return model.Tensor{}, newError(errInvalidRequest, "input %s has no shape", name)
	}
	if len(shape) != len(spec.Shape) {
		return model.Tensor{}, newError(errShapeMismatch, "input %s has shape %v; the model takes %s", name, shape, shapeString(spec.Shape))
	}
	if len(shape) > 0 && shape[0] > int64(maxRows) {
		return model.Tensor{}, newError(errBatchTooLarge, "the batch has %d rows, over the limit of %d", shape[0], maxRows)
	}
	n := int64(1)
	for i, d := range shape {
		if d < 0 || (spec.Shape[i] >= 0 && d != spec.Shape[i]) {
			return model.Tensor{}, newError(errShapeMismatch, "input %s has shape %v; the model takes %s", name, shape, shapeString(spec.Shape))
		}
		n *= d
		if n > maxTensorElements {
			return model.Tensor{}, newError(errBatchTooLarge, "input %s has more than %d elements", name, maxTensorElements)
		}
	}
	if len(data) == 0 {
		return model.Tensor{}, newError(errInvalidRequest, "input %s has no data", name)
	}
	values, count, err := decodeData(data, dt, int(n))
	if err != nil {
		typ := errInvalidRequest
		switch {
		case errors.As(err, new(*valueError)):
			typ = errInvalidInput
		case count > int(n):
			// Well-formed data that does not fit the shape, as with too few.
			typ = errShapeMismatch
		}
		return model.Tensor{}, newError(typ, "input %s: %v", name, err)
	}
	if count != int(n) {
		return model.Tensor{}, newError(errShapeMismatch, "input %s has %d values; shape %v needs %d", name, count, shape, n)
	}
	return model.Tensor{Name: name, DataType: dt, Shape: shape, Data: values}, nil
}

func shapeString(s []int64) string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = strconv.FormatInt(d, 10)
	}
	return "[" + strings.Join(parts, ", ") + "] (-1: any size)"
}

// valueError is a tensor element that is a valid JSON number but not one the
// tensor's datatype can hold: the request is well-formed, the input is not
// (invalid_input, 422, as /predict answers).
type valueError struct{ msg string }

func (e *valueError) Error() string { return e.msg }

// decodeData flattens a tensor's data, nested or flat, into a slice of the
// datatype's Go type. It stops at limit+1 elements, so a body cannot make it
// allocate more than the shape allows.
func decodeData(raw []byte, dt model.DataType, limit int) (any, int, error) {
	p := scanner{b: raw}
	var (
		bools []bool
		strs  []string
		i32   []int32
		i64   []int64
		f32   []float32
		f64   []float64
	)
	count := 0
	var walk func(depth int) error
	walk = func(depth int) error {
		p.space()
		if p.consume('[') {
			if depth > 32 {
				return errors.New("data is nested too deeply")
			}
			p.space()
			if p.consume(']') {
				return nil
			}
			for {
				if err := walk(depth + 1); err != nil {
					return err
				}
				p.space()
				if p.consume(']') {
					return nil
				}
				if !p.consume(',') {
					return errors.New("data is not a list")
				}
			}
		}
		if count >= limit {
			count++
			return errors.New("data has more values than the shape")
		}
		count++
		switch dt {
		case model.BOOL:
			switch {
			case p.literal("true"):
				bools = append(bools, true)
			case p.literal("false"):
				bools = append(bools, false)
			default:
				return p.typeError(fmt.Sprintf("value %d", count-1), "true or false")
			}
			return nil
		case model.BYTES:
			str, ok := "", p.peek() == '"'
			if ok {
				str, ok = p.string()
			}
			if !ok {
				return p.typeError(fmt.Sprintf("value %d", count-1), "a string")
			}
			strs = append(strs, str)
			return nil
		case model.INT32, model.INT64:
			tok, ok := p.token()
			if !ok {
				return p.typeError(fmt.Sprintf("value %d", count-1), "an integer")
			}
			bits := 64
			if dt == model.INT32 {
				bits = 32
			}
			x, err := strconv.ParseInt(unsafe.String(&tok[0], len(tok)), 10, bits)
			if err != nil {
				if _, ferr := strconv.ParseFloat(unsafe.String(&tok[0], len(tok)), 64); ferr == nil || errors.Is(ferr, strconv.ErrRange) {
					// A JSON number, but not one the datatype holds.
					return &valueError{fmt.Sprintf("value %d (%s) is not a %d-bit integer", count-1, tok, bits)}
				}
				return fmt.Errorf("value %d (%s) is not a number", count-1, tok)
			}
			if dt == model.INT32 {
				i32 = append(i32, int32(x))
			} else {
				i64 = append(i64, x)
			}
			return nil
		}
		tok, ok := p.token()
		if !ok {
			return p.typeError(fmt.Sprintf("value %d", count-1), "a number")
		}
		bits := 64
		if dt == model.FP32 {
			bits = 32
		}
		x, err := strconv.ParseFloat(unsafe.String(&tok[0], len(tok)), bits)
		if err == nil && math.IsInf(x, 0) || errors.Is(err, strconv.ErrRange) {
			// A JSON number, but too large for the datatype.
			return &valueError{fmt.Sprintf("value %d (%s) is not a finite %d-bit number", count-1, tok, bits)}
		}
		if err != nil {
			return fmt.Errorf("value %d (%s) is not a number", count-1, tok)
		}
		if dt == model.FP32 {
			f32 = append(f32, float32(x))
		} else {
			f64 = append(f64, x)
		}
		return nil
	}
	if err := walk(0); err != nil {
		return nil, count, err
	}
	switch dt {
	case model.BOOL:
		return bools, count, nil
	case model.BYTES:
		return strs, count, nil
	case model.INT32:
		return i32, count, nil
	case model.INT64:
		return i64, count, nil
	case model.FP32:
		return f32, count, nil
	}
	return f64, count, nil
}
