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

func (s *Server) v2Server(*http.Request) (any, *apiError) {
	ext := []string{}
	if s.opts.Repository != nil {
		ext = append(ext, "model_repository")
	}
	return map[string]any{"name": "modelwatch", "version": version.Get().Version, "extensions": ext}, nil
}

func (s *Server) v2Live(*http.Request) (any, *apiError) {
	return map[string]bool{"live": true}, nil
}

func (s *Server) v2Ready(*http.Request) (any, *apiError) {
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

func (s *Server) v2Metadata(r *http.Request) (any, *apiError) {
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

func (s *Server) v2ModelReady(r *http.Request) (any, *apiError) {
	m, err := s.models.Resolve(r.PathValue("model"), r.PathValue("version"))
	if err != nil {
		return nil, fromModelError(err)
	}
	meta := m.Metadata()
	return map[string]any{"name": meta.Name, "version": meta.Version, "ready": true}, nil
}

func (s *Server) v2Index(r *http.Request) (any, *apiError) {
	if s.opts.Repository == nil {
		return nil, newError(errNotFound, "this server has no model repository")
	}
	var req struct {
		Ready bool `json:"ready"`
	}
	if aerr := s.decodeOptional(r, &req); aerr != nil {
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
func (s *Server) v2Control(r *http.Request, call func(name string) *apiError) (any, *apiError) {
	if s.opts.Repository == nil {
		return nil, newError(errNotFound, "this server has no model repository")
	}
	var req struct {
		Parameters map[string]any `json:"parameters"`
	}
	if aerr := s.decodeOptional(r, &req); aerr != nil {
		return nil, aerr
	}
	if aerr := call(r.PathValue("model")); aerr != nil {
		return nil, aerr
	}
	return map[string]any{}, nil
}

func (s *Server) v2Load(r *http.Request) (any, *apiError) {
	return s.v2Control(r, func(name string) *apiError {
		switch err := s.opts.Repository.Load(r.Context(), name); {
		case errors.Is(err, repository.ErrNotFound):
			return newError(errModelNotFound, "no model of that name in the repository")
		case err != nil:
			return wrapError(errLoadFailed, err, "%v", err)
		}
		return nil
	})
}

func (s *Server) v2Unload(r *http.Request) (any, *apiError) {
	return s.v2Control(r, func(name string) *apiError {
		switch err := s.opts.Repository.Unload(name); {
		case errors.Is(err, repository.ErrNotFound):
			return newError(errModelNotFound, "no model of that name is loaded")
		case err != nil:
			return wrapError(errInternal, err, "%v", err)
		}
		return nil
	})
}

// decodeOptional reads a small JSON body that may be empty.
func (s *Server) decodeOptional(r *http.Request, v any) *apiError {
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
func (s *Server) v2Infer(r *http.Request) (any, *apiError) {
	if r.Header.Get("Inference-Header-Content-Length") != "" {
		return nil, newError(errMediaType, "the binary tensor data extension is not supported; send tensors as JSON")
	}
	body, done, aerr := s.admitInference(r)
	if aerr != nil {
		return nil, aerr
	}
	defer done()
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

// v2Run decodes the request's tensors, checking each against the model
// before it decodes its data (so that a body cannot make it allocate more
// than the model's shapes allow), and runs them through the inference core.
func (s *Server) v2Run(ctx context.Context, v *view, req *v2InferRequest, t0 time.Time) ([]v2Output, *apiError) {
	treq, aerr := s.v2Decode(v, req)
	if aerr != nil {
		return nil, aerr
	}
	ts, aerr := s.inferTensors(ctx, v, treq, t0)
	if aerr != nil {
		return nil, aerr
	}
	out := make([]v2Output, len(ts))
	for i, t := range ts {
		out[i] = v2Output{Name: t.Name, Datatype: string(t.DataType), Shape: t.Shape, Data: t.Data}
	}
	return out, nil
}

// v2Decode decodes a REST request's inputs into tensors. It makes the checks
// the core makes, in the same order, before it decodes each input's data.
func (s *Server) v2Decode(v *view, req *v2InferRequest) (tensorRequest, *apiError) {
	meta := &v.meta
	if len(req.Inputs) == 0 {
		return tensorRequest{}, newError(errEmptyBatch, `"inputs" has no tensors`)
	}
	treq := tensorRequest{inputs: make([]model.Tensor, 0, len(req.Inputs))}
	for _, o := range req.Outputs {
		treq.outputs = append(treq.outputs, o.Name)
	}
	if _, aerr := checkOutputs(meta, treq.outputs); aerr != nil {
		return tensorRequest{}, aerr
	}
	_, isTensorModel := v.model.(model.TensorModel)
	feature := !isTensorModel && byFeature(meta, req.Inputs[0].Name)
	for i, in := range req.Inputs {
		spec, aerr := inputSpec(meta, feature, i, in.Name, in.Shape, treq.inputs)
		if aerr != nil {
			return tensorRequest{}, aerr
		}
		t, aerr := decodeTensor(in.Name, in.Datatype, in.Shape, in.Data, spec, isTensorModel, s.maxRows(v))
		if aerr != nil {
			return tensorRequest{}, aerr
		}
		treq.inputs = append(treq.inputs, t)
	}
	return treq, nil
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
	n, aerr := checkSpec(name, datatype, shape, spec, strict, maxRows)
	if aerr != nil {
		return model.Tensor{}, aerr
	}
	dt := model.DataType(datatype)
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
	switch dt {
	case model.BOOL:
		return decodeValues(raw, limit, boolValue)
	case model.BYTES:
		return decodeValues(raw, limit, stringValue)
	case model.INT32:
		return decodeValues(raw, limit, intValue[int32](32))
	case model.INT64:
		return decodeValues(raw, limit, intValue[int64](64))
	case model.FP32:
		return decodeValues(raw, limit, floatValue[float32](32))
	}
	return decodeValues(raw, limit, floatValue[float64](64))
}

// decodeValues walks raw's lists, nested at most 32 deep, and decodes each
// value with value (given the value's index) into one flat slice.
func decodeValues[T any](raw []byte, limit int, value func(p *scanner, i int) (T, error)) (any, int, error) {
	p := scanner{b: raw}
	var out []T
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
		count++
		if count > limit {
			return errors.New("data has more values than the shape")
		}
		v, err := value(&p, count-1)
		if err != nil {
			return err
		}
		out = append(out, v)
		return nil
	}
	if err := walk(0); err != nil {
		return nil, count, err
	}
	return out, count, nil
}

func boolValue(p *scanner, i int) (bool, error) {
	switch {
	case p.literal("true"):
		return true, nil
	case p.literal("false"):
		return false, nil
	}
	return false, p.typeError(fmt.Sprintf("value %d", i), "true or false")
}

func stringValue(p *scanner, i int) (string, error) {
	if p.peek() == '"' {
		if str, ok := p.string(); ok {
			return str, nil
		}
	}
	return "", p.typeError(fmt.Sprintf("value %d", i), "a string")
}

// intValue decodes an integer of bits bits: a JSON number it cannot hold is
// a value error (invalid input), anything else not a number.
func intValue[T int32 | int64](bits int) func(p *scanner, i int) (T, error) {
	return func(p *scanner, i int) (T, error) {
		tok, ok := p.token()
		if !ok {
			return 0, p.typeError(fmt.Sprintf("value %d", i), "an integer")
		}
		x, err := strconv.ParseInt(unsafe.String(&tok[0], len(tok)), 10, bits)
		if err != nil {
			if _, ferr := strconv.ParseFloat(unsafe.String(&tok[0], len(tok)), 64); ferr == nil || errors.Is(ferr, strconv.ErrRange) {
				// A JSON number, but not one the datatype holds.
				return 0, &valueError{fmt.Sprintf("value %d (%s) is not a %d-bit integer", i, tok, bits)}
			}
			return 0, fmt.Errorf("value %d (%s) is not a number", i, tok)
		}
		return T(x), nil
	}
}

// floatValue decodes a number of bits bits: one too large for it is a
// value error (invalid input).
func floatValue[T float32 | float64](bits int) func(p *scanner, i int) (T, error) {
	return func(p *scanner, i int) (T, error) {
		tok, ok := p.token()
		if !ok {
			return 0, p.typeError(fmt.Sprintf("value %d", i), "a number")
		}
		x, err := strconv.ParseFloat(unsafe.String(&tok[0], len(tok)), bits)
		if err == nil && math.IsInf(x, 0) || errors.Is(err, strconv.ErrRange) {
			// A JSON number, but too large for the datatype.
			return 0, &valueError{fmt.Sprintf("value %d (%s) is not a finite %d-bit number", i, tok, bits)}
		}
		if err != nil {
			return 0, fmt.Errorf("value %d (%s) is not a number", i, tok)
		}
		return T(x), nil
	}
}
