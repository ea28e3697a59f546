package server

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/modelwatch/modelwatch/internal/metrics"
	"github.com/modelwatch/modelwatch/internal/tracing"
	"github.com/modelwatch/modelwatch/internal/version"
)

// Spans. Inference requests and POST /feedback get a server span each,
// started and ended by instrument with the times it already reads; run adds
// child spans for the stages it already times. With tracing off (no
// TracerProvider, or OpenTelemetry's no-op one) s.tracer is nil and none of
// this runs: the request path costs one nil check.

// tracerName is the instrumentation scope of the server's spans.
const tracerName = "github.com/modelwatch/modelwatch/internal/server"

// Exemplar labels beside metrics.ExemplarLabel (request_id).
const (
	exemplarTraceID = "trace_id"
	exemplarSpanID  = "span_id"
)

// maxExemplarRunes is OpenMetrics' limit on an exemplar's label names and
// values together.
const maxExemplarRunes = 128

// maxRequestIDWithSpan is the longest request id whose exemplar can carry
// trace_id and span_id too: 128 - len("request_id") - len("trace_id") - 32
// - len("span_id") - 16 = 55. A longer one (a client's X-Request-ID may have
// 64 characters) keeps trace_id and drops span_id, 114 at most; the trace
// is what an exemplar links to.
const maxRequestIDWithSpan = maxExemplarRunes - len(metrics.ExemplarLabel) - len(exemplarTraceID) - 32 - len(exemplarSpanID) - 16

// initTracing sets the server's tracer from its options: none with tracing
// off.
func (s *Server) initTracing() {
	tp := s.opts.TracerProvider
	if tp == nil {
		return
	}
	if _, off := tp.(noop.TracerProvider); off {
		return
	}
	s.tracer = tp.Tracer(tracerName, trace.WithInstrumentationVersion(version.Version))
	s.propagator = s.opts.Propagator
	if s.propagator == nil {
		s.propagator = propagation.TraceContext{}
	}
}

// spanNames are the names of a route's server spans, by methodIndex, made
// once so that starting a span builds no string: "POST /predict", as
// OpenTelemetry's HTTP conventions name a span by its method and route, and
// "HTTP /predict" for a method outside the closed set.
type spanNames [8]string

var spanMethods = [8]string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions, "HTTP"}

func newSpanNames(route string) *spanNames {
	var n spanNames
	for i, m := range spanMethods {
		n[i] = m + " " + route
	}
	return &n
}

// of returns the span name for a request method.
func (n *spanNames) of(method string) string {
	switch method {
	case http.MethodGet:
		return n[0]
	case http.MethodHead:
		return n[1]
	case http.MethodPost:
		return n[2]
	case http.MethodPut:
		return n[3]
	case http.MethodPatch:
		return n[4]
	case http.MethodDelete:
		return n[5]
	case http.MethodOptions:
		return n[6]
	}
	return n[7]
}

// traceHeaders is an http.Header as the propagator reads it: the W3C
// headers by their canonical keys, which http.Header.Get would compute
// (and allocate) at every request.
type traceHeaders http.Header

var _ propagation.TextMapCarrier = traceHeaders(nil)

func (h traceHeaders) Get(key string) string {
	switch key {
	case "traceparent":
		key = "Traceparent"
	case "tracestate":
		key = "Tracestate"
	case "baggage":
		key = "Baggage"
	default:
		return http.Header(h).Get(key)
	}
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (h traceHeaders) Set(key, value string) { http.Header(h).Set(key, value) }

func (h traceHeaders) Keys() []string { return propagation.HeaderCarrier(h).Keys() }

// callerContext returns ctx with the caller's trace context and baggage, as
// the request's headers carry them; ctx itself when they carry none, the
// usual case, which then costs two map lookups.
func (s *Server) callerContext(ctx context.Context, h http.Header) context.Context {
	if len(h["Traceparent"]) == 0 && len(h["Baggage"]) == 0 {
		return ctx
	}
	return s.propagator.Extract(ctx, traceHeaders(h))
}

// serverKind is the option of every request's span, made once.
var serverKind = trace.WithSpanKind(trace.SpanKindServer)

// startSpan starts the server span of a request on route: it continues the
// trace of the caller's traceparent and tracestate (the propagator's
// headers) or starts one, at start. A span that records gets the request's
// attributes and its traceparent goes back in the answer's headers.
//
// The attributes are set after the sampler's decision rather than given to
// it: the samplers OTEL_TRACES_SAMPLER offers (always_on, always_off,
// traceidratio and their parentbased_ forms) never read them, and a
// request that is not sampled then costs no attribute at all.
//
// A new trace that a Presampler (a trace id ratio sampler) leaves out
// starts no span at all: the span is nil.
func (s *Server) startSpan(w http.ResponseWriter, r *http.Request, route, name string, start time.Time, requestID string) (context.Context, trace.Span) {
	ctx := s.callerContext(r.Context(), r.Header)
	if p := s.opts.Presampler; p != nil && ctx == r.Context() {
		tid, sampled := p.Draw()
		if !sampled {
			return ctx, nil
		}
		ctx = tracing.WithTraceID(ctx, tid)
	}
	ctx, span := s.tracer.Start(ctx, name, serverKind, trace.WithTimestamp(start))
	if !span.IsRecording() {
		return ctx, span
	}
	method := semconv.HTTPRequestMethodKey.String(r.Method)
	if methodLabel(r.Method) == "OTHER" {
		method = semconv.HTTPRequestMethodOther
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	attrs := make([]attribute.KeyValue, 0, 10)
	attrs = append(attrs, method, semconv.URLPath(r.URL.Path), semconv.HTTPRoute(route), semconv.URLScheme(scheme))
	if host, port, err := net.SplitHostPort(r.Host); err == nil {
		attrs = append(attrs, semconv.ServerAddress(host))
		if p, err := strconv.Atoi(port); err == nil {
			attrs = append(attrs, semconv.ServerPort(p))
		}
	} else if r.Host != "" {
		attrs = append(attrs, semconv.ServerAddress(r.Host))
	}
	if ua := r.UserAgent(); ua != "" {
		attrs = append(attrs, semconv.UserAgentOriginal(ua))
	}
	if method == semconv.HTTPRequestMethodOther {
		attrs = append(attrs, semconv.HTTPRequestMethodOriginal(r.Method))
	}
	attrs = append(attrs, tracing.RequestIDKey.String(requestID))
	span.SetAttributes(attrs...)
	propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(w.Header()))
	return ctx, span
}

// endSpan ends a request's span at end with the answer's status: an error
// for a 5xx answer (a 4xx is the client's, and leaves a server span's status
// unset, as the conventions say).
func endSpan(span trace.Span, status int, end time.Time) {
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(semconv.HTTPResponseStatusCode(status))
	if status >= 500 {
		span.SetStatus(codes.Error, http.StatusText(status))
	}
	span.End(trace.WithTimestamp(end))
}

// spanError records a request's error on its span: error.type and
// modelwatch.error_type are the closed error_type, and the model when the
// error names a loaded one.
func spanError(span trace.Span, err *apiError) {
	if span == nil || !span.IsRecording() {
		return
	}
	span.SetAttributes(semconv.ErrorTypeKey.String(string(err.typ)), tracing.ErrorTypeKey.String(string(err.typ)))
	if err.model != "" {
		span.SetAttributes(tracing.ModelNameKey.String(err.model))
	}
	if err.status() >= 500 || err.status() == 0 {
		span.SetStatus(codes.Error, err.msg)
	}
}

// spanModel records the model and batch size of an inference on its
// request's span.
func spanModel(info requestInfo, v *view, rows int) {
	if info.span == nil || !info.span.IsRecording() {
		return
	}
	info.span.SetAttributes(tracing.ModelNameKey.String(v.meta.Name), tracing.ModelVersionKey.String(v.meta.Version),
		tracing.RowsKey.Int(rows))
}

// observeRun records an inference's stages as child spans of its request's
// span, with the times run measured (t0 preprocessing began, t1 the model
// was called, t2 it answered, t3 postprocessing ended; a batched model's
// request waited queue of t1..t2 for its batch), and its latency, t0..t3,
// in model_prediction_duration_seconds with an exemplar that names the
// trace when the request is sampled.
func (s *Server) observeRun(ctx context.Context, info requestInfo, v *view, t0, t1, t2, t3 time.Time, queue time.Duration) {
	if info.span != nil && info.span.IsRecording() {
		stage := func(name string, from, to time.Time) {
			_, span := s.tracer.Start(ctx, name, trace.WithTimestamp(from))
			span.End(trace.WithTimestamp(to))
		}
		stage(metrics.StagePreprocess, t0, t1)
		ti := t1
		if b, ok := v.model.(interface{ Batched() bool }); ok && b.Batched() {
			ti = t1.Add(queue)
			stage(metrics.StageQueue, t1, ti)
		}
		stage(metrics.StageInfer, ti, t2)
		stage(metrics.StagePostprocess, t2, t3)
	}
	observeTraced(v.series.PredictionDuration, t3.Sub(t0).Seconds(), info, t3)
}

// observeTraced observes v at now into o, with an exemplar as o's sampling
// allows: the request id, and the trace and span ids when the request's
// span is sampled.
func observeTraced(o *metrics.SampledObserver, v float64, info requestInfo, now time.Time) {
	if info.span == nil || info.id == "" || !info.span.SpanContext().IsSampled() {
		o.ObserveAt(v, info.id, now)
		return
	}
	if !o.Sample(v, now) {
		o.Observe(v)
		return
	}
	o.ObserveWithExemplar(v, exemplarLabels(info.id, info.span.SpanContext()))
}

// exemplarLabels are the exemplar labels of a sampled request: request_id,
// trace_id, and span_id when the request id leaves room for it within
// OpenMetrics' 128 characters (maxRequestIDWithSpan).
func exemplarLabels(requestID string, sc trace.SpanContext) prometheus.Labels {
	l := prometheus.Labels{metrics.ExemplarLabel: requestID, exemplarTraceID: sc.TraceID().String()}
	if len(requestID) <= maxRequestIDWithSpan {
		l[exemplarSpanID] = sc.SpanID().String()
	}
	return l
}
