// Package server is modelwatch's HTTP interface: the routes, the simple
// /predict API, health and readiness, and the middleware that observes every
// request into the metric catalogue. Errors map to HTTP status and to the
// error_type label in one table (errors.go).
package server

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/modelwatch/modelwatch/internal/drift"
	"github.com/modelwatch/modelwatch/internal/feedback"
	"github.com/modelwatch/modelwatch/internal/metrics"
	"github.com/modelwatch/modelwatch/internal/model"
	"github.com/modelwatch/modelwatch/internal/predlog"
	"github.com/modelwatch/modelwatch/internal/tracing"
	"github.com/modelwatch/modelwatch/internal/version"
)

// Options configures a Server. Zero values take the defaults noted.
type Options struct {
	// Models resolves requests to models. Required.
	Models *model.Registry
	// Metrics is the catalogue the server observes into. Required.
	Metrics *metrics.Metrics
	// MetricsHandler serves GET /metrics. Required.
	MetricsHandler http.Handler
	// Repository serves the Open Inference Protocol's repository extension
	// and joins in readiness; nil for none.
	Repository Repository
	// Drift, if set, counts the inputs and predictions of models with a
	// training profile.
	Drift *drift.Monitor
	// Feedback, if set, keeps classifier predictions for POST /feedback,
	// and counts labels.
	Feedback *feedback.Store
	// PredictionLog, if set, logs every prediction (of the requests its
	// sample admits), and POST /feedback finds predictions there, whichever
	// replica made them; Feedback then only counts.
	PredictionLog *predlog.Log
	// EnablePprof serves Go's profiler under /debug/pprof/.
	EnablePprof bool
	// SeparateMetrics leaves /metrics out of the API's routes, for a server
	// that serves MetricsRoutes on a listener of its own.
	SeparateMetrics bool
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
	// MaxBodyBytes bounds a request body (default 8 MiB).
	MaxBodyBytes int64
	// MaxBodyMemory bounds the memory of all request bodies being read or
	// served at once (default 256 MiB, and never below MaxBodyBytes); past
	// it, requests are refused with 503 and Retry-After. Bodies are read
	// into buffers that grow as their bytes arrive, so a client that
	// announces a large body and sends little holds little.
	MaxBodyMemory int64
	// MaxBatchRows bounds the rows of one inference request (default 1024).
	MaxBatchRows int
	// RequestTimeout bounds the inference of one request (default 10s).
	RequestTimeout time.Duration
	// MaxInFlight bounds the inference requests in progress at once (default
	// 1024); past it, requests are refused with 503 and Retry-After.
	MaxInFlight int
	// Now is the clock that times requests (default time.Now). Tests inject
	// a clock so that observed durations are exact.
	Now func() time.Time
	// Gatherer is the registry the status page reads its numbers from; nil
	// turns /status.json off.
	Gatherer prometheus.Gatherer
	// Info is added to the service information that GET / answers.
	Info map[string]any
	// NewRequestID makes the id of a request that brings no valid
	// X-Request-ID header (default: 24 random base32 characters).
	NewRequestID func() string
	// Tokens, if set, are the bearer tokens that open the control plane
	// (scope admin) and, with InferenceAuth, the inference API.
	Tokens *Tokens
	// InferenceAuth makes /predict, the v2 infer endpoints and /feedback
	// answer 401 without a token of Tokens. It needs Tokens.
	InferenceAuth bool
	// AdminListener says that AdminRoutes is served on a listener of its
	// own, so that a control request refused on the API listener is told
	// where to go.
	AdminListener bool
	// Access counts the requests refused for their credentials (default:
	// unregistered metrics).
	Access *AccessMetrics
	// MaxStatusRequests bounds the GET /status.json requests served at once
	// (default 8); concurrent ones share one computation, and more get 503
	// with Retry-After.
	MaxStatusRequests int
	// TracerProvider, if set and not OpenTelemetry's no-op provider, gives
	// a span to each inference request and POST /feedback, with child
	// spans for the inference's stages (docs/TRACING.md); nil or no-op:
	// tracing off, at no cost to the request path.
	// Presampler, with a trace id ratio sampler, decides the sampling of a
	// request without trace context before a span is started, so that an
	// unsampled request costs no span (tracing.Config.Presampler). The
	// TracerProvider must take its trace ids from tracing.IDGenerator.
	Presampler     *tracing.Presampler
	TracerProvider trace.TracerProvider
	// Propagator reads a caller's trace context from the request headers
	// (default: W3C Trace Context; cmd passes tracing.Propagator()).
	Propagator propagation.TextMapPropagator
}

// MaxBodyBytesLimit is the largest MaxBodyBytes there may be: 1 GiB.
const MaxBodyBytesLimit = 1 << 30

// Server is the HTTP server's handler. It is safe for concurrent use.
type Server struct {
	opts Options
	// endpoints are the API's endpoints, from its route table, for GET /.
	endpoints []string
	models    *model.Registry
	metrics   *metrics.Metrics
	log       *slog.Logger
	handler   http.Handler
	ready     atomic.Bool
	// inFlight holds a token per inference request in progress.
	inFlight chan struct{}
	// bodyBytes is the memory of the request bodies held at the moment.
	bodyBytes atomic.Int64
	sampler   sampler
	started   time.Time
	// categories holds each loaded model version's category codes by name.
	categories categoryCache
	access     *AccessMetrics
	// statusFlight shares one /status.json computation among the requests
	// that arrive while it runs.
	statusFlight flight
	// tracer makes the spans of requests; nil with tracing off.
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator
}

// New returns a Server; it is not ready (GET /ready answers 503) until
// SetReady(true).
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 8 << 20
	}
	opts.MaxBodyBytes = min(opts.MaxBodyBytes, MaxBodyBytesLimit)
	if opts.MaxBodyMemory <= 0 {
		opts.MaxBodyMemory = 256 << 20
	}
	opts.MaxBodyMemory = max(opts.MaxBodyMemory, opts.MaxBodyBytes)
	if opts.MaxBatchRows <= 0 {
		opts.MaxBatchRows = 1024
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 10 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = 1024
	}
	if opts.NewRequestID == nil {
		opts.NewRequestID = requestIDs()
	}
	if opts.Access == nil {
		opts.Access = NewAccessMetrics(nil)
	}
	if opts.MaxStatusRequests <= 0 {
		opts.MaxStatusRequests = 8
	}
	s := &Server{
		opts:     opts,
		models:   opts.Models,
		metrics:  opts.Metrics,
		log:      opts.Logger.With("component", "server"),
		started:  opts.Now(),
		inFlight: make(chan struct{}, opts.MaxInFlight),
		access:   opts.Access,
	}
	s.statusFlight.max = opts.MaxStatusRequests
	s.initTracing()
	// Rates on the status page start from zero at start.
	s.sampler.snaps = []snapshot{{at: s.started, vals: map[string]float64{}}}
	s.handler = s.routes()
	return s
}

// requestIDs returns a generator of request ids: 24 base32 characters
// (120 bits) from crypto/rand, so that ids are unique across replicas and
// cannot be guessed: POST /feedback takes any id, and a guessable one would
// let a client label other clients' predictions. It costs about 60 ns.
func requestIDs() func() string {
	return func() string {
		var raw [15]byte
		rand.Read(raw[:])
		var out [24]byte
		base32.StdEncoding.Encode(out[:], raw[:])
		return string(out[:])
	}
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// SetReady sets what GET /ready reports: whether every model meant to be
// loaded is loaded and the server is not shutting down.
func (s *Server) SetReady(ready bool) { s.ready.Store(ready) }

// route is one path of the API: its ServeMux pattern, the endpoint label it
// is counted under, and a handler per method.
type route struct {
	pattern, endpoint string
	methods           map[string]http.HandlerFunc
	// inference routes count their errors in model_prediction_errors_total.
	inference bool
	// access is the credential the route needs.
	access access
	// traced routes get a span per request, as inference routes do.
	traced bool
}

func (s *Server) routes() http.Handler {
	getHead := func(h http.HandlerFunc) map[string]http.HandlerFunc {
		return map[string]http.HandlerFunc{http.MethodGet: h, http.MethodHead: h}
	}
	table := []route{
		{pattern: "/predict", endpoint: "/predict", inference: true, access: accessInference,
			methods: map[string]http.HandlerFunc{http.MethodPost: s.api(s.predict, true)}},
		{pattern: "/feedback", endpoint: "/feedback", access: accessInference, traced: true,
			methods: map[string]http.HandlerFunc{http.MethodPost: s.api(s.feedback, false)}},
		{pattern: "/health", endpoint: "/health", methods: getHead(s.api(s.health, false))},
		{pattern: "/ready", endpoint: "/ready", methods: getHead(s.api(s.readiness, false))},
		{pattern: "/{$}", endpoint: "/", methods: getHead(s.root)},
		{pattern: "/status.json", endpoint: "/status.json", methods: getHead(s.api(s.sharedStatus, false))},
		{pattern: "/static/", endpoint: "/static/", methods: getHead(s.page)},
	}
	table = append(table, s.v2Routes()...)
	if !s.opts.SeparateMetrics {
		table = append(table, s.metricsRoute())
	}
	s.endpoints = endpointList(table)
	table = append(table, s.pprofRoutes()...)
	return s.mux(table, false)
}

// endpointList names the API's endpoints for GET /, from its route table:
// "METHOD /path" for each method but HEAD, in the table's order.
func endpointList(table []route) []string {
	var out []string
	for _, rt := range table {
		if rt.endpoint == "/static/" {
			continue // the status page's files
		}
		methods := make([]string, 0, len(rt.methods))
		for m := range rt.methods {
			if m != http.MethodHead {
				methods = append(methods, m)
			}
		}
		slices.Sort(methods)
		for _, m := range methods {
			out = append(out, m+" "+rt.endpoint)
		}
	}
	return out
}

// pprofRoutes serves Go's profiler when EnablePprof is on: the control
// plane, since a profile costs CPU and reveals the program.
func (s *Server) pprofRoutes() []route {
	if !s.opts.EnablePprof {
		return nil
	}
	var table []route
	for _, pattern := range []string{"/debug/pprof/", "/debug/pprof/profile", "/debug/pprof/trace", "/debug/pprof/symbol", "/debug/pprof/cmdline"} {
		h := map[string]http.HandlerFunc{
			"/debug/pprof/": pprof.Index, "/debug/pprof/profile": pprof.Profile, "/debug/pprof/trace": pprof.Trace,
			"/debug/pprof/symbol": pprof.Symbol, "/debug/pprof/cmdline": pprof.Cmdline,
		}[pattern]
		table = append(table, route{pattern: pattern, endpoint: pattern, access: accessControl,
			methods: map[string]http.HandlerFunc{http.MethodGet: h, http.MethodPost: h}})
	}
	return table
}

// AdminRoutes returns the handler of the admin listener
// (--admin-listen-address): the control plane (repository load and unload,
// and /debug/pprof/ with EnablePprof), the repository index and /health.
// Without Tokens it serves the control plane to any client that reaches
// it; with Tokens, to admin tokens only.
func (s *Server) AdminRoutes() http.Handler {
	table := []route{{pattern: "/health", endpoint: "/health", methods: map[string]http.HandlerFunc{
		http.MethodGet: s.api(s.health, false), http.MethodHead: s.api(s.health, false)}}}
	for _, rt := range s.v2Routes() {
		if rt.access == accessControl || rt.pattern == "/v2/repository/index" {
			table = append(table, rt)
		}
	}
	table = append(table, s.pprofRoutes()...)
	return s.mux(table, true)
}

func (s *Server) metricsRoute() route {
	return route{pattern: "/metrics", endpoint: "/metrics", methods: map[string]http.HandlerFunc{
		http.MethodGet: s.opts.MetricsHandler.ServeHTTP, http.MethodHead: s.opts.MetricsHandler.ServeHTTP,
	}}
}

// MetricsRoutes returns the handler of a listener that serves only /metrics.
func (s *Server) MetricsRoutes() http.Handler { return s.mux([]route{s.metricsRoute()}, false) }

// mux routes the table, answering 404 for any other path; adminListener
// says whether it serves the admin listener.
func (s *Server) mux(table []route, adminListener bool) http.Handler {
	other := route{pattern: "/", endpoint: "other"}
	table = append(table, other)
	mux := http.NewServeMux()
	notFound := s.instrument(other.endpoint, false, s.dispatch(other))
	for _, rt := range table {
		mux.Handle(rt.pattern, s.instrument(rt.endpoint, rt.inference || rt.traced, s.guard(rt.access, adminListener, s.dispatch(rt))))
		if root := strings.TrimSuffix(rt.pattern, "/"); root != rt.pattern && root != "" {
			// ServeMux would redirect "/static" to "/static/".
			mux.Handle(root, notFound)
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// ServeMux would answer these itself, in plain text and uncounted:
		// a redirect for a path with "//", "." or ".." segments, and 404 for
		// CONNECT. They get the JSON 404 of any unknown path instead.
		if r.Method == http.MethodConnect || !cleanPath(r.URL.Path) {
			notFound.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// cleanPath reports whether p is an absolute path with no empty, "." or
// ".." segments (a final "/" allowed).
func cleanPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	c := path.Clean(p)
	return c == p || (c != "/" && c+"/" == p)
}

// dispatch picks the route's handler for the request's method, answering
// 404 for a route with no methods and 405 for a method the route lacks.
func (s *Server) dispatch(rt route) http.HandlerFunc {
	allow := ""
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete} {
		if rt.methods[m] != nil {
			if allow != "" {
				allow += ", "
			}
			allow += m
		}
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if rt.methods == nil {
			s.writeError(w, r, newError(errNotFound, "no such endpoint; see GET / for the API"), false)
			return
		}
		h := rt.methods[r.Method]
		if h == nil {
			w.Header().Set("Allow", allow)
			s.writeError(w, r, newError(errMethodNotAllowed, "method %s is not allowed here; allowed: %s", methodLabel(r.Method), allow), rt.inference)
			return
		}
		h(w, r)
	}
}

// admit takes an in-flight token, or refuses the request at once when the
// server is at its limit. The caller gives it back with leave.
func (s *Server) admit() *apiError {
	select {
	case s.inFlight <- struct{}{}:
		return nil
	default:
		return s.overloaded()
	}
}

// leave gives back the in-flight place admit gave.
func (s *Server) leave() { <-s.inFlight }

// full refuses a request at once when every in-flight place is taken, so
// that it does not read a body only to be refused; admit still decides.
func (s *Server) full() *apiError {
	if len(s.inFlight) == cap(s.inFlight) {
		return s.overloaded()
	}
	return nil
}

func (s *Server) overloaded() *apiError {
	e := newError(errOverloaded, "the server is at its limit of %d requests in flight; retry shortly", cap(s.inFlight))
	e.statusCode, e.retryAfter = http.StatusServiceUnavailable, 1
	return e
}

// apiFunc handles a request and returns what to answer: a value to encode
// as JSON, a json.RawMessage to send as it is, or an error.
type apiFunc func(r *http.Request) (any, *apiError)

// api adapts an apiFunc to a handler: the one place responses and errors
// are written.
func (s *Server) api(f apiFunc, inference bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		result, err := f(r)
		if err != nil {
			s.writeError(w, r, err, inference)
			return
		}
		status := http.StatusOK
		if sr, ok := result.(statusResult); ok {
			status, result = sr.status, sr.body
		}
		body, ok := result.(json.RawMessage)
		if !ok {
			var merr error
			if body, merr = json.Marshal(result); merr != nil {
				s.writeError(w, r, newError(errInternal, "encoding the response failed"), inference)
				s.log.Error("encode response", "err", merr)
				return
			}
		}
		writeJSON(w, status, body)
	}
}

// statusResult answers with a status other than 200.
type statusResult struct {
	status int
	body   any
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}

// errorBody is the JSON of every error answer. "error" is the field the Open
// Inference Protocol specifies.
type errorBody struct {
	Error     string `json:"error"`
	ErrorType string `json:"error_type"`
	RequestID string `json:"request_id,omitempty"`
}

// writeError answers with err and, for inference routes, counts it.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err *apiError, inference bool) {
	if inference {
		s.metrics.PredictionErrors.WithLabelValues(err.model, string(err.typ)).Inc()
	}
	info := requestInfoFrom(r.Context())
	spanError(info.span, err)
	body, _ := json.Marshal(errorBody{Error: err.msg, ErrorType: string(err.typ), RequestID: info.id})
	if err.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(err.retryAfter))
	}
	status := err.status()
	if status == 0 {
		status = http.StatusInternalServerError
	}
	attrs := []any{"request_id", info.id, "error_type", err.typ, "model", err.model, "err", err.msg}
	if err.cause != nil {
		attrs = append(attrs, "cause", err.cause)
	}
	if status >= 500 {
		s.log.ErrorContext(r.Context(), "request failed", attrs...)
	} else {
		s.log.DebugContext(r.Context(), "request rejected", attrs...)
	}
	writeJSON(w, status, body)
}

// root answers GET /: the status page for a browser, service information as
// JSON otherwise.
func (s *Server) root(w http.ResponseWriter, r *http.Request) {
	if wantsHTML(r) {
		page, _ := web.ReadFile("web/index.html")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		w.Write(page)
		return
	}
	s.api(s.info, false)(w, r)
}

// isReady reports whether the server takes traffic.
func (s *Server) isReady() bool {
	return s.ready.Load() && (s.opts.Repository == nil || s.opts.Repository.Ready())
}

// health answers liveness: the process is up and serving HTTP.
func (s *Server) health(*http.Request) (any, *apiError) {
	return map[string]any{"status": "healthy", "models_loaded": s.models.Len()}, nil
}

type modelState struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Type    string `json:"type"`
	State   string `json:"state"`
	Reason  string `json:"reason,omitempty"`
}

// readiness answers 200 when the server takes traffic: every model meant to
// be loaded is loaded and it is not shutting down.
func (s *Server) readiness(*http.Request) (any, *apiError) {
	models := []modelState{}
	if s.opts.Repository != nil {
		for _, st := range s.opts.Repository.Index() {
			models = append(models, modelState{Name: st.Name, Version: st.Version, Type: st.Type, State: string(st.State), Reason: st.Reason})
		}
	} else {
		for _, m := range s.models.Models() {
			models = append(models, modelState{Name: m.Name, Version: m.Version, Type: m.Type, State: "READY"})
		}
	}
	ready := s.isReady()
	body := map[string]any{"ready": ready, "models": models}
	if !ready {
		return statusResult{status: http.StatusServiceUnavailable, body: body}, nil
	}
	return body, nil
}

type modelInfo struct {
	Name        string   `json:"name"`
	Version     string   `json:"version"`
	Type        string   `json:"type"`
	Description string   `json:"description,omitempty"`
	Features    []string `json:"features"`
	Classes     []string `json:"classes,omitempty"`
	// Categorical maps each categorical feature to its category names in
	// code order (null when the model knows codes only).
	Categorical map[string][]string `json:"categorical,omitempty"`
}

// info answers GET / with what the service is and serves.
func (s *Server) info(*http.Request) (any, *apiError) {
	var models []modelInfo
	for _, m := range s.models.Models() {
		models = append(models, modelInfo{Name: m.Name, Version: m.Version, Type: m.Type,
			Description: m.Description, Features: m.Features, Classes: m.Classes, Categorical: categoricalInfo(&m)})
	}
	out := map[string]any{
		"service":        "modelwatch",
		"build":          version.Get(),
		"uptime_seconds": s.opts.Now().Sub(s.started).Seconds(),
		"default_model":  s.models.DefaultModel(),
		"models":         models,
		"endpoints":      s.endpoints,
	}
	for k, v := range s.opts.Info {
		out[k] = v
	}
	return out, nil
}
