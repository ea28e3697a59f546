package server

import (
	"context"
	"errors"
	"net"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/modelwatch/modelwatch/internal/grpc/inferencepb"
	"github.com/modelwatch/modelwatch/internal/grpc/rawtensor"
	"github.com/modelwatch/modelwatch/internal/model"
	"github.com/modelwatch/modelwatch/internal/repository"
	"github.com/modelwatch/modelwatch/internal/tracing"
	"github.com/modelwatch/modelwatch/internal/version"
)

// The gRPC front-end lives in package server, beside the REST one, because
// it shares everything below the protocol with it: the inference core
// (core.go), the in-flight limit, the error table, the access decisions and
// the counters of refused credentials. A package of its own would need most
// of those exported for it alone.

// inferenceService is the service name of the Open Inference Protocol,
// which the health service also answers for.
const inferenceService = "inference.GRPCInferenceService"

// livenessService is the grpc.health.v1 service a liveness probe asks for:
// SERVING while the process serves, even while it starts or drains.
const livenessService = "liveness"

// GRPCOptions configures the gRPC front-end.
type GRPCOptions struct {
	// Registerer receives the request-level metrics (grpc_server_*); nil
	// leaves them unregistered.
	Registerer prometheus.Registerer
	// Certificate, if set, makes the server speak TLS with it.
	Certificate *Certificate
}

// GRPC serves the Open Inference Protocol's gRPC service
// (inference.GRPCInferenceService with the repository extension),
// grpc.health.v1 and server reflection over the Server's inference core.
type GRPC struct {
	inferencepb.UnimplementedGRPCInferenceServiceServer
	s      *Server
	srv    *grpc.Server
	health *healthService
}

// NewGRPC returns the gRPC front-end of s. A message is bounded by
// s's MaxBodyBytes, as a REST body is; ModelInfer shares s's in-flight limit
// and request timeout.
func (s *Server) NewGRPC(opts GRPCOptions) *GRPC {
	met := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(
		grpcprom.WithHistogramBuckets([]float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}),
	))
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(met)
	}
	sopts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(int(s.opts.MaxBodyBytes)),
		// grpc-go reads a message before the handler can refuse it: a
		// connection carries at most as many calls at once as the server
		// takes in flight.
		grpc.MaxConcurrentStreams(uint32(s.opts.MaxInFlight)),
		// A pool of goroutines serves the streams, rather than one new
		// goroutine (and its stack growth) per call.
		grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0))),
		grpc.ChainUnaryInterceptor(
			met.UnaryServerInterceptor(),
			recovery.UnaryServerInterceptor(recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
				s.log.ErrorContext(ctx, "gRPC handler panicked", "panic", p, "stack", string(debug.Stack()))
				return status.Error(codes.Internal, "internal error")
			})),
		),
		grpc.ChainStreamInterceptor(met.StreamServerInterceptor()),
	}
	if opts.Certificate != nil {
		sopts = append(sopts, grpc.Creds(credentials.NewTLS(opts.Certificate.TLSConfig())))
	}
	g := &GRPC{s: s, srv: grpc.NewServer(sopts...), health: newHealthService(s)}
	inferencepb.RegisterGRPCInferenceServiceServer(g.srv, g)
	healthpb.RegisterHealthServer(g.srv, g.health)
	reflection.Register(g.srv)
	met.InitializeMetrics(g.srv)
	return g
}

// Serve serves gRPC on ln until Stop. It returns nil after Stop.
func (g *GRPC) Serve(ln net.Listener) error {
	done := make(chan struct{})
	defer close(done)
	go g.health.watch(done)
	err := g.srv.Serve(ln)
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

// Drain makes the health service answer NOT_SERVING from now on, whatever
// readiness says, so that clients and load balancers that watch it go
// elsewhere; calls are still served until Stop.
func (g *GRPC) Drain() { g.health.drain() }

// Stop stops the server: it lets the calls in progress finish until ctx
// ends, then closes every connection. It returns ctx's error when calls
// were cut off.
func (g *GRPC) Stop(ctx context.Context) error {
	g.health.drain()
	g.health.stop()
	done := make(chan struct{})
	go func() { g.srv.GracefulStop(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		g.srv.Stop()
		<-done
		return ctx.Err()
	}
}

// healthService is grpc.health.v1's standard server, kept saying what
// /ready says: SERVING for "" and the inference service when the server
// takes traffic, NOT_SERVING otherwise and from Drain on; and SERVING for
// "liveness" always, as /health.
type healthService struct {
	*health.Server
	s        *Server
	draining atomic.Bool
	mu       sync.Mutex // orders updates
	// stopping is canceled when the server stops, ending the Watch
	// streams, which would otherwise hold a graceful stop until its
	// timeout.
	stopping context.Context
	stop     context.CancelFunc
}

func newHealthService(s *Server) *healthService {
	h := &healthService{Server: health.NewServer(), s: s}
	h.stopping, h.stop = context.WithCancel(context.Background())
	h.update()
	return h
}

// Watch streams the service's status, as the standard server does, until
// the client goes or the server stops.
func (h *healthService) Watch(req *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	defer context.AfterFunc(h.stopping, cancel)()
	return h.Server.Watch(req, watchStream{stream, ctx})
}

// watchStream is a Watch stream whose context also ends when the server
// stops.
type watchStream struct {
	healthpb.Health_WatchServer
	ctx context.Context
}

func (w watchStream) Context() context.Context { return w.ctx }

// update sets the served status from readiness.
func (h *healthService) update() {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if !h.draining.Load() && h.s.isReady() {
		st = healthpb.HealthCheckResponse_SERVING
	}
	h.Server.SetServingStatus("", st)
	h.Server.SetServingStatus(inferenceService, st)
	// "liveness" is SERVING while the process serves gRPC, ready or not,
	// for a liveness probe (Kubernetes' gRPC probes name a service).
	h.Server.SetServingStatus(livenessService, healthpb.HealthCheckResponse_SERVING)
}

func (h *healthService) drain() {
	h.draining.Store(true)
	h.update()
}

// Check answers from readiness at the time of the call.
func (h *healthService) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	h.update()
	return h.Server.Check(ctx, req)
}

// watch keeps the status that Watch streams up to date, once a second,
// until done is closed.
func (h *healthService) watch(done <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			h.update()
		}
	}
}

// grpcCodes is the one table from error type to gRPC status code; see
// docs/GRPC.md.
var grpcCodes = map[errorType]codes.Code{
	errInvalidJSON:      codes.InvalidArgument,
	errInvalidRequest:   codes.InvalidArgument,
	errInvalidInput:     codes.InvalidArgument,
	errShapeMismatch:    codes.InvalidArgument,
	errEmptyBatch:       codes.InvalidArgument,
	errBatchTooLarge:    codes.InvalidArgument,
	errBodyTooLarge:     codes.ResourceExhausted,
	errMediaType:        codes.InvalidArgument,
	errModelNotFound:    codes.NotFound,
	errVersionNotFound:  codes.NotFound,
	errMethodNotAllowed: codes.Unimplemented,
	errNotFound:         codes.NotFound,
	errLoadFailed:       codes.FailedPrecondition,
	errUnknownRequest:   codes.NotFound,
	errUnavailable:      codes.Unavailable,
	errUnauthorized:     codes.Unauthenticated,
	errForbidden:        codes.PermissionDenied,
	errTimeout:          codes.DeadlineExceeded,
	errOverloaded:       codes.ResourceExhausted,
	errCanceled:         codes.Canceled,
	errModelFailed:      codes.Internal,
	errInternal:         codes.Internal,
}

// grpcError turns an error of the table into a gRPC status: its code, its
// message, and the error type as an ErrorInfo reason (upper case: OVERLOADED,
// SHAPE_MISMATCH, ...), with a RetryInfo when the client may retry.
func grpcError(e *apiError) error {
	st := status.New(grpcCode(e), e.msg)
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{
		Reason: strings.ToUpper(string(e.typ)), Domain: "modelwatch",
		Metadata: map[string]string{"error_type": string(e.typ)},
	}}
	if e.retryAfter > 0 {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(time.Duration(e.retryAfter) * time.Second)})
	}
	if withDetails, err := st.WithDetails(details...); err == nil {
		st = withDetails
	}
	return st.Err()
}

// grpcCode is the status code of an error of the table.
func grpcCode(e *apiError) codes.Code {
	if code, ok := grpcCodes[e.typ]; ok {
		return code
	}
	return codes.Internal
}

// authorizeGRPC decides whether a call may use what needs a, from its
// "authorization: Bearer TOKEN" metadata, as authorize does for HTTP; the
// gRPC listener is never the admin listener. A refusal is counted in
// modelwatch_http_auth_refused_total.
func (s *Server) authorizeGRPC(ctx context.Context, a access) *apiError {
	aerr, why := s.decideGRPC(ctx, a)
	if aerr != nil {
		s.access.AuthRefused.WithLabelValues(string(why)).Inc()
	}
	return aerr
}

func (s *Server) decideGRPC(ctx context.Context, a access) (*apiError, refusal) {
	tokens := s.opts.Tokens
	switch {
	case a == accessOpen:
		return nil, ""
	case a == accessInference && !s.opts.InferenceAuth:
		return nil, ""
	case tokens == nil:
		return newError(errForbidden, "the control plane is served over gRPC only to an admin token of --token-file"), refusedForbidden
	}
	tok := ""
	if v := metadata.ValueFromIncomingContext(ctx, "authorization"); len(v) > 0 && len(v[0]) >= 7 && strings.EqualFold(v[0][:7], "bearer ") {
		tok = strings.TrimSpace(v[0][7:])
	}
	return checkBearer(ctx, tokens, tok, a, "method", "metadata authorization: Bearer TOKEN")
}

// ServerLive implements inferencepb.GRPCInferenceServiceServer.
func (g *GRPC) ServerLive(context.Context, *inferencepb.ServerLiveRequest) (*inferencepb.ServerLiveResponse, error) {
	return &inferencepb.ServerLiveResponse{Live: true}, nil
}

// ServerReady answers what /v2/health/ready answers.
func (g *GRPC) ServerReady(context.Context, *inferencepb.ServerReadyRequest) (*inferencepb.ServerReadyResponse, error) {
	return &inferencepb.ServerReadyResponse{Ready: g.s.isReady() && !g.health.draining.Load()}, nil
}

// ModelReady answers ready for a loaded model and version, and NOT_FOUND
// for others, as GET /v2/models/{model}/ready answers 404.
func (g *GRPC) ModelReady(_ context.Context, req *inferencepb.ModelReadyRequest) (*inferencepb.ModelReadyResponse, error) {
	if _, err := g.s.models.Resolve(req.GetName(), req.GetVersion()); err != nil {
		return nil, grpcError(fromModelError(err))
	}
	return &inferencepb.ModelReadyResponse{Ready: true}, nil
}

// ServerMetadata answers what GET /v2 answers.
func (g *GRPC) ServerMetadata(context.Context, *inferencepb.ServerMetadataRequest) (*inferencepb.ServerMetadataResponse, error) {
	ext := []string{}
	if g.s.opts.Repository != nil {
		ext = append(ext, "model_repository")
	}
	return &inferencepb.ServerMetadataResponse{Name: "modelwatch", Version: version.Get().Version, Extensions: ext}, nil
}

// ModelMetadata answers what GET /v2/models/{model}[/versions/{version}]
// answers, less its parameters, which the message has no field for.
func (g *GRPC) ModelMetadata(_ context.Context, req *inferencepb.ModelMetadataRequest) (*inferencepb.ModelMetadataResponse, error) {
	m, err := g.s.models.Resolve(req.GetName(), req.GetVersion())
	if err != nil {
		return nil, grpcError(fromModelError(err))
	}
	meta := m.Metadata()
	platform := platforms[meta.Type]
	if platform == "" {
		platform = meta.Type
	}
	out := &inferencepb.ModelMetadataResponse{Name: meta.Name, Versions: g.s.models.Versions(meta.Name), Platform: platform}
	if req.GetVersion() != "" {
		out.Versions = []string{meta.Version}
	}
	for _, t := range meta.InputTensors {
		out.Inputs = append(out.Inputs, &inferencepb.ModelMetadataResponse_TensorMetadata{Name: t.Name, Datatype: string(t.DataType), Shape: t.Shape})
	}
	for _, t := range meta.OutputTensors {
		out.Outputs = append(out.Outputs, &inferencepb.ModelMetadataResponse_TensorMetadata{Name: t.Name, Datatype: string(t.DataType), Shape: t.Shape})
	}
	return out, nil
}

// RepositoryIndex answers what POST /v2/repository/index answers.
func (g *GRPC) RepositoryIndex(_ context.Context, req *inferencepb.RepositoryIndexRequest) (*inferencepb.RepositoryIndexResponse, error) {
	repo := g.s.opts.Repository
	if repo == nil {
		return nil, grpcError(newError(errNotFound, "this server has no model repository"))
	}
	out := &inferencepb.RepositoryIndexResponse{}
	for _, st := range repo.Index() {
		if !req.GetReady() || st.State == repository.Ready {
			out.Models = append(out.Models, &inferencepb.RepositoryIndexResponse_ModelIndex{Name: st.Name, Version: st.Version, State: string(st.State), Reason: st.Reason})
		}
	}
	return out, nil
}

// RepositoryModelLoad loads a model of the repository, for an admin token
// only, as POST /v2/repository/models/{model}/load. Its parameters are
// accepted and ignored.
func (g *GRPC) RepositoryModelLoad(ctx context.Context, req *inferencepb.RepositoryModelLoadRequest) (*inferencepb.RepositoryModelLoadResponse, error) {
	if aerr := g.control(ctx); aerr != nil {
		return nil, grpcError(aerr)
	}
	switch err := g.s.opts.Repository.Load(ctx, req.GetModelName()); {
	case errors.Is(err, repository.ErrNotFound):
		return nil, grpcError(newError(errModelNotFound, "no model of that name in the repository"))
	case err != nil:
		return nil, grpcError(wrapError(errLoadFailed, err, "%v", err))
	}
	return &inferencepb.RepositoryModelLoadResponse{}, nil
}

// RepositoryModelUnload unloads a model, for an admin token only, as POST
// /v2/repository/models/{model}/unload.
func (g *GRPC) RepositoryModelUnload(ctx context.Context, req *inferencepb.RepositoryModelUnloadRequest) (*inferencepb.RepositoryModelUnloadResponse, error) {
	if aerr := g.control(ctx); aerr != nil {
		return nil, grpcError(aerr)
	}
	switch err := g.s.opts.Repository.Unload(req.GetModelName()); {
	case errors.Is(err, repository.ErrNotFound):
		return nil, grpcError(newError(errModelNotFound, "no model of that name is loaded"))
	case err != nil:
		return nil, grpcError(wrapError(errInternal, err, "%v", err))
	}
	return &inferencepb.RepositoryModelUnloadResponse{}, nil
}

// control checks a control-plane call's credential, then that there is a
// repository to control.
func (g *GRPC) control(ctx context.Context) *apiError {
	if aerr := g.s.authorizeGRPC(ctx, accessControl); aerr != nil {
		return aerr
	}
	if g.s.opts.Repository == nil {
		return newError(errNotFound, "this server has no model repository")
	}
	return nil
}

// ModelInfer runs a model over the inference core, as POST
// /v2/models/{model}/infer does: typed contents or raw_input_contents in,
// typed contents out, or raw_output_contents when the request sent raw
// inputs (as Triton answers). Request and output parameters are accepted and
// ignored. The request id is the x-request-id metadata when it is valid,
// else a new one; it is sent back as x-request-id header metadata, for
// POST /feedback. Errors are counted in model_prediction_errors_total as
// REST's are.
func (g *GRPC) ModelInfer(ctx context.Context, req *inferencepb.ModelInferRequest) (*inferencepb.ModelInferResponse, error) {
	s := g.s
	info := requestInfo{start: s.opts.Now()}
	// ValueFromIncomingContext copies one value, where FromIncomingContext
	// would copy every header.
	if v := metadata.ValueFromIncomingContext(ctx, "x-request-id"); len(v) > 0 && validRequestID(v[0]) {
		info.id = v[0]
	}
	if info.id == "" {
		info.id = s.opts.NewRequestID()
	}
	header := metadata.Pairs("x-request-id", info.id)
	if s.tracer != nil {
		ctx, info.span = s.startGRPCSpan(ctx, "ModelInfer", info.start, info.id, header)
	}
	grpc.SetHeader(ctx, header)
	ctx = context.WithValue(ctx, requestInfoKey{}, info)
	resp, aerr := g.modelInfer(ctx, req)
	if info.span != nil {
		code := codes.OK
		if aerr != nil {
			spanError(info.span, aerr)
			code = grpcCode(aerr)
		}
		endGRPCSpan(info.span, code, s.opts.Now())
	}
	if aerr != nil {
		return nil, grpcError(aerr)
	}
	return resp, nil
}

// modelInfer authorizes and runs a ModelInfer call, counting its errors
// (not its refused credentials) in model_prediction_errors_total.
func (g *GRPC) modelInfer(ctx context.Context, req *inferencepb.ModelInferRequest) (*inferencepb.ModelInferResponse, *apiError) {
	s := g.s
	info := requestInfoFrom(ctx)
	if aerr := s.authorizeGRPC(ctx, accessInference); aerr != nil {
		return nil, aerr
	}
	resp, aerr := g.infer(ctx, req)
	if aerr != nil {
		s.metrics.PredictionErrors.WithLabelValues(aerr.model, string(aerr.typ)).Inc()
		if errorStatus[aerr.typ] >= 500 {
			s.log.Error("request failed", "request_id", info.id, "protocol", "grpc", "error_type", aerr.typ, "model", aerr.model, "err", aerr.msg)
		} else {
			s.log.Debug("request rejected", "request_id", info.id, "protocol", "grpc", "error_type", aerr.typ, "model", aerr.model, "err", aerr.msg)
		}
		return nil, aerr
	}
	return resp, nil
}

func (g *GRPC) infer(ctx context.Context, req *inferencepb.ModelInferRequest) (*inferencepb.ModelInferResponse, *apiError) {
	s := g.s
	if aerr := s.admit(); aerr != nil {
		return nil, aerr
	}
	defer s.leave()
	t0 := s.opts.Now()
	if len(req.GetId()) > 256 {
		return nil, newError(errInvalidRequest, `"id" is longer than 256 bytes`)
	}
	v, aerr := s.acquire(req.GetModelName(), req.GetModelVersion())
	if aerr != nil {
		return nil, aerr
	}
	defer v.release()
	treq, aerr := s.grpcDecode(v, req)
	if aerr == nil {
		var ts []model.Tensor
		if ts, aerr = s.inferTensors(ctx, v, treq, t0); aerr == nil {
			resp, aerr := grpcEncode(v, req, ts)
			if aerr == nil {
				v.series.InputSize.Observe(float64(proto.Size(req)))
				v.series.OutputSize.Observe(float64(proto.Size(resp)))
				return resp, nil
			}
		}
	}
	aerr.model = v.meta.Name
	return nil, aerr
}

// grpcDecode decodes a ModelInfer request's inputs into tensors, making the
// checks the core makes, in the same order, before it decodes each input's
// data, as v2Decode does for REST.
func (s *Server) grpcDecode(v *view, req *inferencepb.ModelInferRequest) (tensorRequest, *apiError) {
	meta := &v.meta
	ins, raw := req.GetInputs(), req.GetRawInputContents()
	if len(ins) == 0 {
		return tensorRequest{}, newError(errEmptyBatch, `"inputs" has no tensors`)
	}
	if len(raw) > 0 && len(raw) != len(ins) {
		return tensorRequest{}, newError(errInvalidRequest, "raw_input_contents has %d entries for %d inputs; send one per input, or none", len(raw), len(ins))
	}
	treq := tensorRequest{inputs: make([]model.Tensor, 0, len(ins))}
	for _, o := range req.GetOutputs() {
		treq.outputs = append(treq.outputs, o.GetName())
	}
	if _, aerr := checkOutputs(meta, treq.outputs); aerr != nil {
		return tensorRequest{}, aerr
	}
	_, isTensorModel := v.model.(model.TensorModel)
	feature := !isTensorModel && byFeature(meta, ins[0].GetName())
	for i, in := range ins {
		name, shape := in.GetName(), in.GetShape()
		if shape == nil {
			// A shape of no dimensions is not one any model takes; proto3
			// cannot tell it from a missing one.
			shape = []int64{}
		}
		spec, aerr := inputSpec(meta, feature, i, name, shape, treq.inputs)
		if aerr != nil {
			return tensorRequest{}, aerr
		}
		if _, aerr := checkSpec(name, in.GetDatatype(), shape, spec, isTensorModel, s.maxRows(v)); aerr != nil {
			return tensorRequest{}, aerr
		}
		var t model.Tensor
		if len(raw) > 0 {
			if in.GetContents() != nil {
				return tensorRequest{}, newError(errInvalidRequest, "input %s has contents as well as raw_input_contents; send one or the other", name)
			}
			var err error
			if t, err = rawtensor.DecodeRaw(in.GetDatatype(), shape, raw[i]); err != nil {
				typ := errShapeMismatch
				switch {
				case errors.Is(err, rawtensor.ErrDatatype):
					typ = errInvalidRequest
				case errors.Is(err, rawtensor.ErrValue):
					typ = errInvalidInput
				}
				return tensorRequest{}, newError(typ, "input %s: raw_input_contents[%d]: %v", name, i, err)
			}
		} else {
			var aerr *apiError
			if t, aerr = typedContents(name, in.GetDatatype(), shape, in.GetContents()); aerr != nil {
				return tensorRequest{}, aerr
			}
		}
		t.Name = name
		treq.inputs = append(treq.inputs, t)
	}
	return treq, nil
}

// typedContents reads an input's typed contents: the one field of
// InferTensorContents that its datatype takes.
func typedContents(name, datatype string, shape []int64, c *inferencepb.InferTensorContents) (model.Tensor, *apiError) {
	t := model.Tensor{Name: name, DataType: model.DataType(datatype), Shape: shape}
	if c == nil {
		return t, newError(errInvalidRequest, "input %s has no data (contents or raw_input_contents)", name)
	}
	set := map[string]int{
		"bool_contents": len(c.BoolContents), "int_contents": len(c.IntContents), "int64_contents": len(c.Int64Contents),
		"uint_contents": len(c.UintContents), "uint64_contents": len(c.Uint64Contents), "fp32_contents": len(c.Fp32Contents),
		"fp64_contents": len(c.Fp64Contents), "bytes_contents": len(c.BytesContents),
	}
	field := ""
	switch t.DataType {
	case model.BOOL:
		field, t.Data = "bool_contents", c.BoolContents
	case model.INT32:
		field, t.Data = "int_contents", c.IntContents
	case model.INT64:
		field, t.Data = "int64_contents", c.Int64Contents
	case model.FP32:
		field, t.Data = "fp32_contents", c.Fp32Contents
	case model.FP64:
		field, t.Data = "fp64_contents", c.Fp64Contents
	case model.BYTES:
		field = "bytes_contents"
		strs := make([]string, len(c.BytesContents))
		for i, b := range c.BytesContents {
			strs[i] = string(b)
		}
		t.Data = strs
	}
	for f, n := range set {
		if f != field && n > 0 {
			return t, newError(errInvalidRequest, "input %s is %s, which takes %s; the request sets %s", name, datatype, field, f)
		}
	}
	// The slices the generated code holds are nil when empty; the core
	// counts elements by the data's type.
	switch d := t.Data.(type) {
	case []bool:
		if d == nil {
			t.Data = []bool{}
		}
	case []int32:
		if d == nil {
			t.Data = []int32{}
		}
	case []int64:
		if d == nil {
			t.Data = []int64{}
		}
	case []float32:
		if d == nil {
			t.Data = []float32{}
		}
	case []float64:
		if d == nil {
			t.Data = []float64{}
		}
	}
	return t, nil
}

// grpcEncode writes the core's output tensors into a ModelInfer response:
// as raw_output_contents when the request sent raw_input_contents, else as
// typed contents.
func grpcEncode(v *view, req *inferencepb.ModelInferRequest, ts []model.Tensor) (*inferencepb.ModelInferResponse, *apiError) {
	resp := &inferencepb.ModelInferResponse{ModelName: v.meta.Name, ModelVersion: v.meta.Version, Id: req.GetId(),
		Outputs: make([]*inferencepb.ModelInferResponse_InferOutputTensor, len(ts))}
	raw := len(req.GetRawInputContents()) > 0
	if raw {
		resp.RawOutputContents = make([][]byte, len(ts))
	}
	for i, t := range ts {
		out := &inferencepb.ModelInferResponse_InferOutputTensor{Name: t.Name, Datatype: string(t.DataType), Shape: t.Shape}
		resp.Outputs[i] = out
		if raw {
			b, err := rawtensor.EncodeRaw(t)
			if err != nil {
				return nil, newError(errModelFailed, "output %s cannot be encoded: %v", t.Name, err)
			}
			resp.RawOutputContents[i] = b
			continue
		}
		c, ok := encodeContents(t)
		if !ok {
			return nil, newError(errModelFailed, "output %s holds data of type %T", t.Name, t.Data)
		}
		out.Contents = c
	}
	return resp, nil
}

// encodeContents writes a tensor's data as the protocol's typed contents;
// false for data of a type the protocol has no contents for.
func encodeContents(t model.Tensor) (*inferencepb.InferTensorContents, bool) {
	c := &inferencepb.InferTensorContents{}
	switch d := t.Data.(type) {
	case []bool:
		c.BoolContents = d
	case []int32:
		c.IntContents = d
	case []int64:
		c.Int64Contents = d
	case []float32:
		c.Fp32Contents = d
	case []float64:
		c.Fp64Contents = d
	case []string:
		c.BytesContents = make([][]byte, len(d))
		for j, s := range d {
			c.BytesContents[j] = []byte(s)
		}
	default:
		return nil, false
	}
	return c, true
}

var _ inferencepb.GRPCInferenceServiceServer = (*GRPC)(nil)

// startGRPCSpan starts the server span of a gRPC call of the inference
// service, as startSpan does for HTTP: it continues the caller's trace from
// the call's traceparent and tracestate metadata, or starts one, at start;
// a span that records gets the call's attributes (OpenTelemetry's RPC
// conventions) and its traceparent goes back in header.
func (s *Server) startGRPCSpan(ctx context.Context, method string, start time.Time, requestID string, header metadata.MD) (context.Context, trace.Span) {
	if md, ok := metadata.FromIncomingContext(ctx); ok && (len(md["traceparent"]) > 0 || len(md["baggage"]) > 0) {
		ctx = s.propagator.Extract(ctx, metadataCarrier(md))
	}
	ctx, span := s.tracer.Start(ctx, inferenceService+"/"+method, serverKind, trace.WithTimestamp(start))
	if !span.IsRecording() {
		return ctx, span
	}
	span.SetAttributes(attribute.String("rpc.system", "grpc"), attribute.String("rpc.service", inferenceService),
		attribute.String("rpc.method", method), tracing.RequestIDKey.String(requestID))
	propagation.TraceContext{}.Inject(ctx, metadataCarrier(header))
	return ctx, span
}

// endGRPCSpan ends a call's span at end with its status code: an error for
// the codes OpenTelemetry's conventions count as the server's (a client's
// error leaves a server span's status unset).
func endGRPCSpan(span trace.Span, code codes.Code, end time.Time) {
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(attribute.Int("rpc.grpc.status_code", int(code)))
	switch code {
	case codes.Unknown, codes.DeadlineExceeded, codes.Unimplemented, codes.Internal, codes.Unavailable, codes.DataLoss:
		span.SetStatus(otelcodes.Error, code.String())
	}
	span.End(trace.WithTimestamp(end))
}

// metadataCarrier is gRPC metadata as OpenTelemetry's propagators read and
// write it.
type metadataCarrier metadata.MD

var _ propagation.TextMapCarrier = metadataCarrier(nil)

func (m metadataCarrier) Get(key string) string {
	if v := metadata.MD(m).Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (m metadataCarrier) Set(key, value string) { metadata.MD(m).Set(key, value) }

func (m metadataCarrier) Keys() []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}
