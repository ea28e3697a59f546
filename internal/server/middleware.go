package server

import (
	"context"
	"net/http"
	"runtime/debug"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/modelwatch/modelwatch/internal/metrics"
)

type requestInfoKey struct{}

// requestInfo is what the middleware knows of a request.
type requestInfo struct {
	id    string
	start time.Time
	// span is the request's server span; nil when it has none (tracing
	// off, or a route without spans).
	span trace.Span
}

func requestInfoFrom(ctx context.Context) requestInfo {
	info, _ := ctx.Value(requestInfoKey{}).(requestInfo)
	return info
}

// methodLabel maps a request method to a closed set of label values.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return "OTHER"
}

// validRequestID reports whether a client's X-Request-ID may be used as the
// request's id: 1 to 64 characters from letters, digits and "._:-".
func validRequestID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

// statusWriter records the status a handler writes.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// instrument gives a request its id, turns a panic into a 500, and counts
// the request in http_requests_total and http_request_duration_seconds under
// the route's endpoint label. With traced and tracing on, the request has a
// server span from its start to its end (tracing.go).
func (s *Server) instrument(endpoint string, traced bool, next http.Handler) http.Handler {
	// Series are resolved on first use and kept, so the request path does no
	// label hashing; methods and statuses are closed sets, so this is bounded.
	type key struct {
		method string
		status int
	}
	var counters, durations sync.Map // key -> prometheus.Counter, string -> *metrics.SampledObserver
	var names *spanNames
	if traced = traced && s.tracer != nil; traced {
		names = newSpanNames(endpoint)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info := requestInfo{id: r.Header.Get("X-Request-ID"), start: s.opts.Now()}
		if !validRequestID(info.id) {
			info.id = s.opts.NewRequestID()
		}
		w.Header().Set("X-Request-ID", info.id)
		ctx := r.Context()
		if traced {
			ctx, info.span = s.startSpan(w, r, endpoint, names.of(r.Method), info.start, info.id)
		}
		r = r.WithContext(context.WithValue(ctx, requestInfoKey{}, info))
		sw := &statusWriter{ResponseWriter: w}
		method := methodLabel(r.Method)
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.ErrorContext(r.Context(), "handler panicked", "request_id", info.id, "endpoint", endpoint, "panic", v, "stack", string(debug.Stack()))
				if sw.status == 0 {
					s.writeError(sw, r, newError(errInternal, "internal error"), false)
				}
			}
			status := sw.status
			if status == 0 {
				status = http.StatusOK
			}
			c, ok := counters.Load(key{method, status})
			if !ok {
				c, _ = counters.LoadOrStore(key{method, status}, s.metrics.HTTPRequests.WithLabelValues(method, endpoint, metrics.StatusLabel(status)))
			}
			c.(prometheus.Counter).Inc()
			d, ok := durations.Load(method)
			if !ok {
				d, _ = durations.LoadOrStore(method, metrics.NewSampledObserver(s.metrics.HTTPDuration.WithLabelValues(method, endpoint)))
			}
			end := s.opts.Now()
			observeTraced(d.(*metrics.SampledObserver), end.Sub(info.start).Seconds(), info, end)
			if info.span != nil {
				endSpan(info.span, status, end)
			}
		}()
		next.ServeHTTP(sw, r)
	})
}
