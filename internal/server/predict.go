package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"time"

	"math"
	"mime"
	"net/http"
	"strings"

	"github.com/modelwatch/modelwatch/internal/metrics"
	"github.com/modelwatch/modelwatch/internal/model"
)

// view is a model a request holds, with what the request path needs of it.
type view struct {
	model   model.Model
	meta    model.Metadata
	series  *metrics.ModelSeries
	release func()
}

// acquire finds the model a request names and holds it until the view's
// release is called. The error's model label is set only when the name is
// that of a loaded model.
func (s *Server) acquire(name, version string) (*view, *apiError) {
	m, release, err := s.models.Acquire(name, version)
	if err != nil && !s.ready.Load() && (errors.Is(err, model.ErrModelNotFound) || errors.Is(err, model.ErrVersionNotFound)) {
		// Starting: the model may be one still loading. A load balancer
		// that sent the request before /ready said so retries elsewhere.
		e := newError(errUnavailable, "the server is starting and its models are still loading; retry shortly")
		e.retryAfter = 1
		return nil, e
	}
	if err != nil {
		e := fromModelError(err)
		if errors.Is(err, model.ErrVersionNotFound) {
			if name == "" {
				name = s.models.DefaultModel()
			}
			e.model = name
		}
		return nil, e
	}
	meta := m.Metadata()
	return &view{model: m, meta: meta, series: s.metrics.Series(meta), release: release}, nil
}

// checkJSONContent accepts application/json, any +json type, and a missing
// Content-Type.
func checkJSONContent(r *http.Request) *apiError {
	ct := r.Header.Get("Content-Type")
	if ct == "" || ct == "application/json" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json")) {
		return nil
	}
	return newError(errMediaType, "Content-Type must be application/json (with curl: -H 'Content-Type: application/json')")
}

// readBody reads the request body, bounded by MaxBodyBytes, into a buffer
// that grows as its bytes arrive (doubling from 4 KiB), so that a client
// that announces a large body and sends little holds little memory. The
// buffer counts against MaxBodyMemory until the caller calls
// s.bodyDone(charged), which it must do once it no longer uses the body; on
// an error nothing is charged.
func (s *Server) readBody(r *http.Request) (body []byte, charged int64, aerr *apiError) {
	limit := s.opts.MaxBodyBytes
	if r.ContentLength > limit {
		return nil, 0, newError(errBodyTooLarge, "the request body is over the limit of %d bytes", limit)
	}
	// Read up to the announced length, or one byte past the limit to tell
	// an unannounced body that is too large.
	end := limit + 1
	if r.ContentLength >= 0 {
		end = r.ContentLength
	}
	var buf []byte
	var err *apiError
	if buf, err = s.growBody(buf, min(end, 4<<10)); err != nil {
		return nil, 0, err
	}
	for int64(len(buf)) < end {
		if len(buf) == cap(buf) {
			if buf, err = s.growBody(buf, min(end, 2*int64(cap(buf)))); err != nil {
				return nil, 0, err
			}
		}
		n, rerr := r.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			err = newError(errCanceled, "reading the request body failed: %v", rerr)
			break
		}
	}
	switch {
	case err != nil:
	case int64(len(buf)) > limit:
		err = newError(errBodyTooLarge, "the request body is over the limit of %d bytes", limit)
	case r.ContentLength >= 0 && int64(len(buf)) < r.ContentLength:
		err = newError(errCanceled, "reading the request body failed: %v", io.ErrUnexpectedEOF)
	}
	if err != nil {
		s.bodyDone(int64(cap(buf)))
		return nil, 0, err
	}
	return buf, int64(cap(buf)), nil
}

// growBody moves a body's bytes to a buffer of capacity to, charging the
// difference to the body memory. On refusal it drops the body and releases
// its whole charge.
func (s *Server) growBody(buf []byte, to int64) ([]byte, *apiError) {
	delta := to - int64(cap(buf))
	if s.bodyBytes.Add(delta) > s.opts.MaxBodyMemory {
		s.bodyBytes.Add(-delta)
		s.bodyDone(int64(cap(buf)))
		e := newError(errOverloaded, "the server holds its limit of %d bytes of request bodies; retry shortly", s.opts.MaxBodyMemory)
		e.statusCode, e.retryAfter = http.StatusServiceUnavailable, 1
		return nil, e
	}
	next := make([]byte, len(buf), to)
	copy(next, buf)
	return next, nil
}

// bodyDone releases the memory readBody charged for a body.
func (s *Server) bodyDone(charged int64) { s.bodyBytes.Add(-charged) }

// predict serves POST /predict.
func (s *Server) predict(r *http.Request) (any, *apiError) {
	body, done, aerr := s.admitInference(r)
	if aerr != nil {
		return nil, aerr
	}
	defer done()
	t0 := s.opts.Now()
	req := predictRequest{Inputs: rows{maxRows: s.opts.MaxBatchRows, maxValues: s.opts.MaxBatchRows * max(1, s.models.MaxFeatures())}}
	if err := decodePredict(body, &req); err != nil {
		return nil, err
	}
	v, aerr := s.acquire(req.ModelName, req.ModelVersion)
	if aerr != nil {
		return nil, aerr
	}
	defer v.release()
	batch, aerr := s.validate(v, &req.Inputs)
	if aerr != nil {
		aerr.model = v.meta.Name
		return nil, aerr
	}
	out, aerr := s.infer(r.Context(), v, batch, t0)
	if aerr != nil {
		aerr.model = v.meta.Name
		return nil, aerr
	}
	info := requestInfoFrom(r.Context())
	resp := appendPredictResponse(make([]byte, 0, 256+64*batch.Rows), v, info.id, out, s.opts.Now().Sub(info.start))
	v.series.InputSize.Observe(float64(len(body)))
	v.series.OutputSize.Observe(float64(len(resp) + 1))
	return json.RawMessage(resp), nil
}

// admitInference takes an inference request's JSON body and then an
// in-flight place; done gives both back. The body is read before the
// request takes a place: a slow client holds memory it sends (bounded by
// MaxBodyMemory), never a place others wait for. With every place taken,
// it is refused before reading.
func (s *Server) admitInference(r *http.Request) (body []byte, done func(), aerr *apiError) {
	if err := checkJSONContent(r); err != nil {
		return nil, nil, err
	}
	if aerr := s.full(); aerr != nil {
		return nil, nil, aerr
	}
	body, charged, aerr := s.readBody(r)
	if aerr != nil {
		return nil, nil, aerr
	}
	if aerr := s.admit(); aerr != nil {
		s.bodyDone(charged)
		return nil, nil, aerr
	}
	return body, func() {
		s.leave()
		s.bodyDone(charged)
	}, nil
}

// validate checks decoded rows against the model's metadata and returns them
// as a batch.
func (s *Server) validate(v *view, in *rows) (model.Batch, *apiError) {
	meta := &v.meta
	switch limit := s.maxRows(v); {
	case in.n == 0:
		return model.Batch{}, newError(errEmptyBatch, `"inputs" has no rows`)
	case in.n > limit:
		return model.Batch{}, newError(errBatchTooLarge, "the batch has %d rows, over the limit of %d", in.n, limit)
	case in.ragged >= 0:
		return model.Batch{}, newError(errShapeMismatch, "rows differ in length: row %d has %d values, row 0 has %d", in.ragged, in.raggedLen, in.cols)
	case len(meta.Features) == 0:
		return model.Batch{}, newError(errInvalidInput, "model %s %s takes tensors, not rows: call POST /v2/models/%s/versions/%s/infer", meta.Name, meta.Version, meta.Name, meta.Version)
	case len(in.values) != in.n*in.cols:
		// The decoder keeps exactly n rows of cols values; anything else is
		// a bug, and must never reach a batcher that merges requests.
		return model.Batch{}, newError(errInternal, "the decoded batch has %d values for %d rows of %d", len(in.values), in.n, in.cols)
	case in.cols != len(meta.Features):
		return model.Batch{}, newError(errShapeMismatch, "rows have %d values; model %s %s takes %d features: %s",
			in.cols, meta.Name, meta.Version, len(meta.Features), strings.Join(meta.Features, ", "))
	}
	// Category names become codes with the model's categories.
	if names := in.stringCells(); len(names) > 0 {
		if i, why := s.categories.get(meta).resolveNames(meta, in.values, in.cols, names); why != "" {
			return model.Batch{}, newError(errInvalidInput, "inputs[%d][%d] (%s) %s", i/in.cols, i%in.cols, meta.Features[i%in.cols], why)
		}
	}
	// Values are checked against the input's element type here, before a
	// batcher can merge them with other requests' rows: a value the model
	// cannot take fails this request alone, as invalid input, never as a
	// model error.
	if i, why := checkValues(meta, in.values); why != "" {
		return model.Batch{}, newError(errInvalidInput, "inputs[%d][%d] (%s) %s", i/in.cols, i%in.cols, meta.Features[i%in.cols], why)
	}
	return model.Batch{Rows: in.n, Cols: in.cols, Values: in.values}, nil
}

// checkValues checks the values of rows for a model against its input's
// element type. It returns the index of the first value it cannot take, and
// why; "" when all can be taken.
func checkValues(meta *model.Metadata, values []float64) (int, string) {
	dt := model.FP64
	if len(meta.InputTensors) > 0 {
		dt = meta.InputTensors[0].DataType
	}
	for i, x := range values {
		switch {
		case math.IsInf(x, 0):
			return i, "is too large to be a float64"
		case math.IsNaN(x):
			if !meta.AcceptsMissing {
				return i, "is null, and model " + meta.Name + " takes no missing values"
			}
		case dt == model.FP32 && math.Abs(x) > math.MaxFloat32:
			return i, "is too large for the model's 32-bit float input"
		case dt == model.INT64 && (x != math.Trunc(x) || math.Abs(x) > 1<<53):
			return i, "must be a whole number of at most 2^53 for the model's 64-bit integer input"
		case dt == model.INT32 && (x != math.Trunc(x) || x > math.MaxInt32 || x < math.MinInt32):
			return i, "must be a whole number for the model's 32-bit integer input"
		case dt == model.BOOL && x != 0 && x != 1:
			return i, "must be 0 or 1 for the model's boolean input"
		}
	}
	return 0, ""
}

// maxRows is the most rows one request to the model may carry.
func (s *Server) maxRows(v *view) int {
	if m := v.meta.MaxBatchRows; m > 0 && m < s.opts.MaxBatchRows {
		return m
	}
	return s.opts.MaxBatchRows
}

// outcome is a successful inference.
type outcome struct {
	result model.Result
	// tensors holds a tensor model's outputs (Open Inference Protocol).
	tensors []model.Tensor
	// class and confidence of each row of a classifier.
	class      []int
	confidence []float64
	// pred holds the prediction output's values, rows x outputs.
	pred []float64
}

// infer runs a validated batch through the model's Predict. t0 is when
// preprocessing began.
func (s *Server) infer(ctx context.Context, v *view, batch model.Batch, t0 time.Time) (outcome, *apiError) {
	out, aerr := s.run(ctx, v, batch.Rows, t0, func(ctx context.Context) (outcome, []float64, error) {
		res, err := model.SafePredict(ctx, v.model, batch)
		return outcome{result: res}, res.Values, err
	})
	if aerr != nil {
		return out, aerr
	}
	if s.opts.Drift != nil {
		s.opts.Drift.Observe(v.meta.Name, v.meta.Version, batch, out.class, out.result)
	}
	s.logRows(ctx, v, batch.Rows, &out, batchRow(batch))
	return out, nil
}

// run is the one inference path of every API: it runs the model through
// call, within the request timeout, and observes the request into the
// catalogue. call returns the outcome and the values of the prediction
// output (rows x v.meta.Outputs), which class metrics read.
func (s *Server) run(ctx context.Context, v *view, rows int, t0 time.Time, call func(context.Context) (outcome, []float64, error)) (outcome, *apiError) {
	ser := v.series
	info := requestInfoFrom(ctx)
	spanModel(info, v, rows)
	ser.Active.Inc()
	defer ser.Active.Dec()
	t1 := s.opts.Now()

	var timing model.Timing
	ctx, cancel := withLazyDeadline(model.WithTiming(ctx, &timing), time.Now().Add(s.opts.RequestTimeout))
	out, pred, err := call(ctx)
	cancel()
	t2 := s.opts.Now()
	if err != nil {
		if !errors.Is(err, model.ErrInvalidInput) && !errors.Is(err, model.ErrOverloaded) { // not the model's fault
			ser.Error.Inc()
		}
		var pe *model.PanicError
		if errors.As(err, &pe) && pe.FirstReport() {
			s.log.ErrorContext(ctx, "model panicked", "request_id", info.id, "model", v.meta.Name, "version", v.meta.Version, "panic", pe.Value, "stack", string(pe.Stack))
		}
		return outcome{}, fromModelError(err)
	}
	for _, x := range pred {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			ser.Error.Inc()
			return outcome{}, newError(errModelFailed, "the model produced a value that is not a finite number")
		}
	}
	if k := len(v.meta.Classes); k > 0 && len(pred) == rows*k {
		out.class = make([]int, rows)
		out.confidence = make([]float64, rows)
		counts := make([]int, k)
		for i := 0; i < rows; i++ {
			row := pred[i*k : (i+1)*k]
			best := 0
			for j, p := range row {
				if p > row[best] {
					best = j
				}
			}
			out.class[i], out.confidence[i] = best, row[best]
			counts[best]++
			ser.Confidence.Observe(row[best])
		}
		for j, n := range counts {
			if n > 0 {
				ser.Classes[j].Add(float64(n))
			}
		}
	}
	if out.class != nil && s.opts.Feedback != nil {
		s.opts.Feedback.Record(info.id, v.meta.Name, v.meta.Version, v.meta.Classes, out.class)
	}
	out.pred = pred
	t3 := s.opts.Now()

	ser.Success.Inc()
	ser.Predictions.Add(float64(rows))
	infer := t2.Sub(t1)
	if b, ok := v.model.(interface{ Batched() bool }); ok && b.Batched() {
		// The batcher observes model_batch_size per executed batch, and the
		// time the request waited for its batch is the queue stage.
		ser.QueueStage().Observe(timing.Queue.Seconds())
		infer -= timing.Queue
	} else {
		ser.BatchSize.Observe(float64(rows))
	}
	// Exemplars go on the request-level latency only: each costs more than
	// the observation itself, and a stage's request is the same request.
	ser.Stages[metrics.StagePreprocess].Observe(t1.Sub(t0).Seconds())
	ser.Stages[metrics.StageInfer].Observe(infer.Seconds())
	ser.Stages[metrics.StagePostprocess].Observe(t3.Sub(t2).Seconds())
	s.observeRun(ctx, info, v, t0, t1, t2, t3, timing.Queue)
	return out, nil
}

// appendPredictResponse writes the /predict answer:
//
//	{"model_name": ..., "model_version": ..., "request_id": ...,
//	 "prediction": ..., "confidence": ...,          (single-row requests)
//	 "predictions": [{"class": ..., "confidence": ..., "probabilities": {...}} | {"value": ...}],
//	 "latency_ms": ...}
func appendPredictResponse(b []byte, v *view, requestID string, out outcome, latency time.Duration) []byte {
	meta := &v.meta
	res := out.result
	b = append(b, `{"model_name":`...)
	b = appendString(b, meta.Name)
	b = append(b, `,"model_version":`...)
	b = appendString(b, meta.Version)
	b = append(b, `,"request_id":`...)
	b = appendString(b, requestID)
	if res.Rows == 1 {
		if meta.IsClassifier() {
			b = append(b, `,"prediction":`...)
			b = appendString(b, meta.Classes[out.class[0]])
			b = append(b, `,"confidence":`...)
			b = appendFloat(b, out.confidence[0])
		} else {
			b = append(b, `,"prediction":`...)
			b = appendValue(b, res.Row(0))
		}
	}
	b = append(b, `,"predictions":[`...)
	for i := 0; i < res.Rows; i++ {
		if i > 0 {
			b = append(b, ',')
		}
		row := res.Row(i)
		if !meta.IsClassifier() {
			b = append(b, `{"value":`...)
			b = appendValue(b, row)
			b = append(b, '}')
			continue
		}
		b = append(b, `{"class":`...)
		b = appendString(b, meta.Classes[out.class[i]])
		b = append(b, `,"confidence":`...)
		b = appendFloat(b, out.confidence[i])
		b = append(b, `,"probabilities":{`...)
		for j, p := range row {
			if j > 0 {
				b = append(b, ',')
			}
			b = appendString(b, meta.Classes[j])
			b = append(b, ':')
			b = appendFloat(b, p)
		}
		b = append(b, "}}"...)
	}
	b = append(b, `],"latency_ms":`...)
	b = appendFloat(b, math.Round(latency.Seconds()*1e6)/1e3)
	return append(b, '}')
}

// appendValue writes a regressor's row: a number, or a list for several targets.
func appendValue(b []byte, row []float64) []byte {
	if len(row) == 1 {
		return appendFloat(b, row[0])
	}
	b = append(b, '[')
	for j, x := range row {
		if j > 0 {
			b = append(b, ',')
		}
		b = appendFloat(b, x)
	}
	return append(b, ']')
}
