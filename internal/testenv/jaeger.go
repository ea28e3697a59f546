package testenv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// JaegerVersion is the Jaeger module version `make jaeger` builds (Jaeger
// v2.13.0, an OpenTelemetry Collector distribution).
const JaegerVersion = "v1.76.0"

// Jaeger is a Jaeger v2 all-in-one made by StartJaeger: OTLP receivers
// over gRPC and HTTP and the query service, each on a free port of
// 127.0.0.1, keeping traces in memory (a restart forgets them).
type Jaeger struct {
	t                        testing.TB
	bin, config              string
	grpcAddr, httpAddr, addr string // OTLP gRPC, OTLP HTTP, query HTTP
	proc                     *Proc
}

// StartJaeger starts a Jaeger for the test and stops it in t.Cleanup. It
// runs the binary MODELWATCH_TEST_JAEGER names (`make jaeger` builds it and
// the Makefile sets the variable), else .cache/jaeger/<version>/jaeger of
// the module: without one the test is skipped, except under CI=true, where
// it fails.
func StartJaeger(t testing.TB) *Jaeger {
	t.Helper()
	j := &Jaeger{t: t, bin: JaegerBinary(t), grpcAddr: FreePort(t), httpAddr: FreePort(t), addr: FreePort(t)}
	j.config = filepath.Join(t.TempDir(), "jaeger.yaml")
	if err := os.WriteFile(j.config, []byte(j.configText(FreePort(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if j.proc != nil {
			j.proc.Stop()
		}
	})
	j.Start()
	return j
}

// JaegerBinary returns the path of the Jaeger binary StartJaeger runs.
// Without one the test is skipped, except under CI=true, where it fails.
func JaegerBinary(t testing.TB) string {
	t.Helper()
	bin := jaegerBin()
	if bin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("Jaeger is not built (make jaeger; MODELWATCH_TEST_JAEGER names the binary); CI must have it")
		}
		t.Skip("Jaeger not built: run make jaeger (or set MODELWATCH_TEST_JAEGER to a jaeger v2 binary)")
	}
	return bin
}

// jaegerBin returns the Jaeger binary to run, or "" when there is none.
func jaegerBin() string {
	if p := os.Getenv("MODELWATCH_TEST_JAEGER"); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
		return ""
	}
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for ; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(dir, ".cache", "jaeger", JaegerVersion, "jaeger")
			if _, err := os.Stat(p); err == nil {
				return p
			}
			return ""
		}
		if dir == filepath.Dir(dir) {
			return ""
		}
	}
}

// configText is an all-in-one configuration with every listener on a port
// of its own on 127.0.0.1, and no internal telemetry endpoint.
func (j *Jaeger) configText(queryGRPC string) string {
	return fmt.Sprintf(`service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 10000
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: %s
    grpc:
      endpoint: %s
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
      http:
        endpoint: %s
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`, j.addr, queryGRPC, j.grpcAddr, j.httpAddr)
}

// Start starts Jaeger (again, after Stop) on its ports and waits until the
// query API answers and both OTLP receivers take connections.
func (j *Jaeger) Start() {
	j.t.Helper()
	j.proc = Start(j.t, j.bin, "--config", j.config)
	deadline := time.Now().Add(60 * time.Second)
	for {
		if j.ready() {
			return
		}
		if j.proc.Cmd.ProcessState != nil || time.Now().After(deadline) {
			j.t.Fatalf("Jaeger did not start within 60s:\n%s", j.proc.Log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (j *Jaeger) ready() bool {
	resp, err := http.Get(j.QueryURL() + "/api/services")
	if err != nil {
		return false
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false
	}
	for _, a := range []string{j.grpcAddr, j.httpAddr} {
		c, err := net.DialTimeout("tcp", a, time.Second)
		if err != nil {
			return false
		}
		c.Close()
	}
	return true
}

// Stop kills Jaeger, as a crash or a lost network would: exports to it
// fail until Start.
func (j *Jaeger) Stop() {
	j.t.Helper()
	j.proc.Stop()
}

// Log returns what Jaeger has written to its standard output and error.
func (j *Jaeger) Log() string { return j.proc.Log.String() }

// OTLPGRPCEndpoint returns the OTLP gRPC receiver's host:port, for
// OTEL_EXPORTER_OTLP_ENDPOINT with OTEL_EXPORTER_OTLP_INSECURE=true, or as
// http://host:port.
func (j *Jaeger) OTLPGRPCEndpoint() string { return j.grpcAddr }

// OTLPHTTPEndpoint returns the OTLP HTTP receiver's base URL
// (http://host:port), for OTEL_EXPORTER_OTLP_ENDPOINT; the exporter appends
// /v1/traces.
func (j *Jaeger) OTLPHTTPEndpoint() string { return "http://" + j.httpAddr }

// QueryURL returns the query service's base URL (the UI and its HTTP JSON
// API under /api).
func (j *Jaeger) QueryURL() string { return "http://" + j.addr }

// ErrTraceNotFound is Trace's error for a trace Jaeger does not have (yet:
// spans arrive asynchronously).
var ErrTraceNotFound = errors.New("trace not found")

// JaegerTrace is a trace as Jaeger's query API (/api/traces/{id}) returns
// it, with ids normalised to the W3C form (32 and 16 lower-case hex digits).
type JaegerTrace struct {
	TraceID   string                   `json:"traceID"`
	Spans     []JaegerSpan             `json:"spans"`
	Processes map[string]JaegerProcess `json:"processes"`
}

// JaegerSpan is one span of a JaegerTrace. OpenTelemetry attributes are
// tags, and so are its kind (span.kind) and status (otel.status_code).
type JaegerSpan struct {
	TraceID       string      `json:"traceID"`
	SpanID        string      `json:"spanID"`
	OperationName string      `json:"operationName"`
	References    []JaegerRef `json:"references"`
	StartTime     uint64      `json:"startTime"` // µs since the epoch
	Duration      uint64      `json:"duration"`  // µs
	Tags          []JaegerTag `json:"tags"`
	ProcessID     string      `json:"processID"`
}

// JaegerRef is a span's reference to another: refType CHILD_OF for its
// parent.
type JaegerRef struct {
	RefType string `json:"refType"`
	TraceID string `json:"traceID"`
	SpanID  string `json:"spanID"`
}

// JaegerTag is an attribute: numbers come as float64 (JSON), booleans as
// bool.
type JaegerTag struct {
	Key   string `json:"key"`
	Type  string `json:"type"`
	Value any    `json:"value"`
}

// JaegerProcess is the resource of a trace's spans: service.name and the
// other resource attributes as tags.
type JaegerProcess struct {
	ServiceName string      `json:"serviceName"`
	Tags        []JaegerTag `json:"tags"`
}

// ParentSpanID returns the id of the span's parent, "" for a root span.
func (s JaegerSpan) ParentSpanID() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

// Tag returns the value of the span's tag key, and whether it has one.
func (s JaegerSpan) Tag(key string) (any, bool) { return findTag(s.Tags, key) }

// Tag returns the value of the process's tag key, and whether it has one.
func (p JaegerProcess) Tag(key string) (any, bool) { return findTag(p.Tags, key) }

func findTag(tags []JaegerTag, key string) (any, bool) {
	for _, t := range tags {
		if t.Key == key {
			return t.Value, true
		}
	}
	return nil, false
}

// Span returns the span of the trace named name, or false.
func (tr *JaegerTrace) Span(name string) (JaegerSpan, bool) {
	for _, s := range tr.Spans {
		if s.OperationName == name {
			return s, true
		}
	}
	return JaegerSpan{}, false
}

// Trace reads a trace from the query API. It returns ErrTraceNotFound when
// Jaeger has no span of it, and an error for anything else that goes wrong.
func (j *Jaeger) Trace(ctx context.Context, traceID string) (*JaegerTrace, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.QueryURL()+"/api/traces/"+traceID, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusNotFound {
		return nil, fmt.Errorf("%s: %w", traceID, ErrTraceNotFound)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /api/traces/%s: %s: %s", traceID, resp.Status, body)
	}
	var r struct {
		Data   []JaegerTrace `json:"data"`
		Errors []struct {
			Msg string `json:"msg"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("GET /api/traces/%s: %w: %s", traceID, err, body)
	}
	if len(r.Errors) > 0 {
		return nil, fmt.Errorf("GET /api/traces/%s: %s", traceID, r.Errors[0].Msg)
	}
	if len(r.Data) == 0 {
		return nil, fmt.Errorf("%s: %w", traceID, ErrTraceNotFound)
	}
	tr := &r.Data[0]
	tr.TraceID = padHex(tr.TraceID, 32)
	for i := range tr.Spans {
		s := &tr.Spans[i]
		s.TraceID, s.SpanID = padHex(s.TraceID, 32), padHex(s.SpanID, 16)
		for k := range s.References {
			s.References[k].TraceID = padHex(s.References[k].TraceID, 32)
			s.References[k].SpanID = padHex(s.References[k].SpanID, 16)
		}
	}
	return tr, nil
}

// WaitTrace polls Trace until the trace has at least spans spans or ctx
// ends, and returns the last answer's error then.
func (j *Jaeger) WaitTrace(ctx context.Context, traceID string, spans int) (*JaegerTrace, error) {
	for {
		tr, err := j.Trace(ctx, traceID)
		if err == nil && len(tr.Spans) >= spans {
			return tr, nil
		}
		if err == nil {
			err = fmt.Errorf("trace %s has %d spans, want %d", traceID, len(tr.Spans), spans)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (%v)", err, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// padHex restores the leading zeros Jaeger's ids can lose.
func padHex(id string, n int) string {
	id = strings.ToLower(id)
	if len(id) < n {
		id = strings.Repeat("0", n-len(id)) + id
	}
	return id
}
