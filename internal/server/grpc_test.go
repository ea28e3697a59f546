package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	otelcodes "go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/modelwatch/modelwatch/internal/grpc/inferencepb"
	"github.com/modelwatch/modelwatch/internal/grpc/rawtensor"
	"github.com/modelwatch/modelwatch/internal/model"
	"github.com/modelwatch/modelwatch/internal/model/modeltest"
)

// grpcHarness serves the harness's Server over gRPC on a loopback port.
type grpcHarness struct {
	*harness
	g      *GRPC
	client inferencepb.GRPCInferenceServiceClient
	health healthpb.HealthClient
}

func newGRPCHarness(t *testing.T, mutate func(*Options)) *grpcHarness {
	t.Helper()
	h, _ := newV2Harness(t)
	if mutate != nil {
		// Rebuild the server with the options changed, on the same models.
		opts := h.srv.opts
		mutate(&opts)
		h.srv = New(opts)
		h.srv.SetReady(true)
	}
	return serveGRPC(t, h)
}

// serveGRPC serves h's Server over gRPC on a loopback port until the test
// ends.
func serveGRPC(t *testing.T, h *harness) *grpcHarness {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := h.srv.NewGRPC(GRPCOptions{Registerer: h.reg})
	done := make(chan error, 1)
	go func() { done <- g.Serve(ln) }()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		g.Stop(ctx)
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &grpcHarness{harness: h, g: g, client: inferencepb.NewGRPCInferenceServiceClient(conn), health: healthpb.NewHealthClient(conn)}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// errorType returns the error type a gRPC error carries in its ErrorInfo.
func grpcErrorType(err error) string {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetMetadata()["error_type"]
		}
	}
	return ""
}

func fp32Input(name string, shape []int64, vals ...float32) *inferencepb.ModelInferRequest_InferInputTensor {
	return &inferencepb.ModelInferRequest_InferInputTensor{Name: name, Datatype: "FP32", Shape: shape,
		Contents: &inferencepb.InferTensorContents{Fp32Contents: vals}}
}

func TestGRPCEveryErrorTypeHasACode(t *testing.T) {
	for _, typ := range errorTypes() {
		if _, ok := grpcCodes[typ]; !ok {
			t.Errorf("error type %s has no gRPC code", typ)
		}
	}
	if len(grpcCodes) != len(errorStatus) {
		t.Errorf("grpcCodes has %d entries, the error table %d", len(grpcCodes), len(errorStatus))
	}
}

func TestGRPCInferAndMetadata(t *testing.T) {
	g := newGRPCHarness(t, nil)
	ctx := ctxT(t)
	if r, err := g.client.ServerLive(ctx, &inferencepb.ServerLiveRequest{}); err != nil || !r.GetLive() {
		t.Fatalf("ServerLive: %v %v", r, err)
	}
	if r, err := g.client.ServerReady(ctx, &inferencepb.ServerReadyRequest{}); err != nil || !r.GetReady() {
		t.Fatalf("ServerReady: %v %v", r, err)
	}
	if r, err := g.client.ServerMetadata(ctx, &inferencepb.ServerMetadataRequest{}); err != nil || r.GetName() != "modelwatch" || !slices.Equal(r.GetExtensions(), []string{"model_repository"}) {
		t.Fatalf("ServerMetadata: %v %v", r, err)
	}
	md, err := g.client.ModelMetadata(ctx, &inferencepb.ModelMetadataRequest{Name: "scorer", Version: "3"})
	if err != nil || md.GetPlatform() != "onnxruntime_onnx" || len(md.GetInputs()) != 2 || md.GetInputs()[1].GetDatatype() != "INT64" {
		t.Fatalf("ModelMetadata: %v %v", md, err)
	}
	if _, err := g.client.ModelReady(ctx, &inferencepb.ModelReadyRequest{Name: "nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("ModelReady of an unknown model: %v", err)
	}
	if r, err := g.client.RepositoryIndex(ctx, &inferencepb.RepositoryIndexRequest{Ready: true}); err != nil || len(r.GetModels()) != 1 {
		t.Errorf("RepositoryIndex ready: %v %v", r, err)
	}

	// A tensor model, typed and raw.
	req := &inferencepb.ModelInferRequest{ModelName: "scorer", Id: "abc", Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{
		fp32Input("numeric", []int64{2, 2}, 0.5, 0.5, -3, 0),
		{Name: "category", Datatype: "INT64", Shape: []int64{2}, Contents: &inferencepb.InferTensorContents{Int64Contents: []int64{1, 2}}},
	}}
	var header metadata.MD
	resp, err := g.client.ModelInfer(metadata.AppendToOutgoingContext(ctx, "x-request-id", "grpc-1"), req, grpc.Header(&header))
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetId() != "abc" || resp.GetModelVersion() != "3" || len(resp.GetOutputs()) != 2 || len(resp.GetRawOutputContents()) != 0 {
		t.Fatalf("typed answer %v", resp)
	}
	if got := header.Get("x-request-id"); !slices.Equal(got, []string{"grpc-1"}) {
		t.Errorf("x-request-id header %q", got)
	}
	if got := resp.GetOutputs()[1].GetContents().GetInt64Contents(); !slices.Equal(got, []int64{1, 2}) {
		t.Errorf("count = %v", got)
	}
	typed := resp.GetOutputs()[0].GetContents().GetFp32Contents()

	raw := proto.Clone(req).(*inferencepb.ModelInferRequest)
	for _, in := range raw.Inputs {
		in.Contents = nil
	}
	nb, _ := rawtensor.EncodeRaw(model.Tensor{DataType: model.FP32, Shape: []int64{2, 2}, Data: []float32{0.5, 0.5, -3, 0}})
	cb, _ := rawtensor.EncodeRaw(model.Tensor{DataType: model.INT64, Shape: []int64{2}, Data: []int64{1, 2}})
	raw.RawInputContents = [][]byte{nb, cb}
	raw.Outputs = []*inferencepb.ModelInferRequest_InferRequestedOutputTensor{{Name: "scores"}}
	resp, err = g.client.ModelInfer(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetOutputs()) != 1 || len(resp.GetRawOutputContents()) != 1 || resp.GetOutputs()[0].GetContents() != nil {
		t.Fatalf("raw answer %v", resp)
	}
	out, err := rawtensor.DecodeRaw("FP32", resp.GetOutputs()[0].GetShape(), resp.GetRawOutputContents()[0])
	if err != nil || !slices.Equal(out.Data.([]float32), typed) {
		t.Errorf("raw scores %v %v, typed %v", out.Data, err, typed)
	}

	// A model of rows takes every numeric datatype and BYTES, typed or raw,
	// and answers the same probabilities for the same values.
	row := []float64{950, 2, 8, 120, 11, 12}
	var want []float32
	for _, dt := range []model.DataType{model.FP32, model.FP64, model.INT32, model.INT64, model.BYTES} {
		tn := model.Tensor{DataType: dt, Shape: []int64{1, 6}}
		switch dt {
		case model.FP32:
			tn.Data = []float32{950, 2, 8, 120, 11, 12}
		case model.FP64:
			tn.Data = row
		case model.INT32:
			tn.Data = []int32{950, 2, 8, 120, 11, 12}
		case model.INT64:
			tn.Data = []int64{950, 2, 8, 120, 11, 12}
		case model.BYTES:
			tn.Data = []string{"950", "2", "8", "120", "11", "12"}
		}
		for _, asRaw := range []bool{false, true} {
			in := &inferencepb.ModelInferRequest_InferInputTensor{Name: "input", Datatype: string(dt), Shape: tn.Shape}
			req := &inferencepb.ModelInferRequest{ModelName: "fraud_model", Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{in}}
			if asRaw {
				b, err := rawtensor.EncodeRaw(tn)
				if err != nil {
					t.Fatal(err)
				}
				req.RawInputContents = [][]byte{b}
			} else {
				in.Contents = contentsOf(tn)
			}
			resp, err := g.client.ModelInfer(ctx, req)
			if err != nil {
				t.Fatalf("%s raw=%v: %v", dt, asRaw, err)
			}
			var probs []float32
			var label string
			if asRaw {
				p, _ := rawtensor.DecodeRaw("FP32", resp.Outputs[0].Shape, resp.RawOutputContents[0])
				l, _ := rawtensor.DecodeRaw("BYTES", resp.Outputs[1].Shape, resp.RawOutputContents[1])
				probs, label = p.Data.([]float32), l.Data.([]string)[0]
			} else {
				probs, label = resp.Outputs[0].Contents.Fp32Contents, string(resp.Outputs[1].Contents.BytesContents[0])
			}
			if want == nil {
				want = probs
			}
			if !slices.Equal(probs, want) || label != "fraud" {
				t.Errorf("%s raw=%v: %v %q, want %v fraud", dt, asRaw, probs, label, want)
			}
		}
	}
	// BOOL, one tensor per feature (MLServer's pandas codec).
	var cols []*inferencepb.ModelInferRequest_InferInputTensor
	feats := []string{"amount", "hour_of_day", "merchant_category", "distance_from_home_km", "transactions_last_24h", "card_age_days"}
	for _, f := range feats {
		cols = append(cols, &inferencepb.ModelInferRequest_InferInputTensor{Name: f, Datatype: "BOOL", Shape: []int64{2},
			Contents: &inferencepb.InferTensorContents{BoolContents: []bool{true, false}}})
	}
	if resp, err := g.client.ModelInfer(ctx, &inferencepb.ModelInferRequest{ModelName: "fraud_model", Inputs: cols}); err != nil || resp.Outputs[0].Shape[0] != 2 {
		t.Errorf("BOOL per feature: %v %v", resp, err)
	}
}

// contentsOf writes a tensor as typed contents, as the server answers them.
func contentsOf(t model.Tensor) *inferencepb.InferTensorContents {
	c, _ := encodeContents(t)
	return c
}

func TestGRPCErrors(t *testing.T) {
	g := newGRPCHarness(t, nil)
	ctx := ctxT(t)
	type inputs = []*inferencepb.ModelInferRequest_InferInputTensor
	good := func() *inferencepb.ModelInferRequest_InferInputTensor {
		return fp32Input("input", []int64{1, 6}, 1, 2, 3, 4, 5, 6)
	}
	rawFP32 := func(vals ...float32) []byte {
		b, _ := rawtensor.EncodeRaw(model.Tensor{DataType: model.FP32, Shape: []int64{int64(len(vals))}, Data: vals})
		return b
	}
	for _, tc := range []struct {
		name  string
		req   *inferencepb.ModelInferRequest
		code  codes.Code
		typ   string
		model string
	}{
		{"unknown model", &inferencepb.ModelInferRequest{ModelName: "nope", Inputs: inputs{good()}}, codes.NotFound, "model_not_found", ""},
		{"unknown version", &inferencepb.ModelInferRequest{ModelName: "fraud_model", ModelVersion: "v9", Inputs: inputs{good()}}, codes.NotFound, "version_not_found", "fraud_model"},
		{"no inputs", &inferencepb.ModelInferRequest{ModelName: "fraud_model"}, codes.InvalidArgument, "empty_batch", "fraud_model"},
		{"unknown input", &inferencepb.ModelInferRequest{ModelName: "scorer", Inputs: inputs{fp32Input("x", []int64{1, 2}, 1, 2)}}, codes.InvalidArgument, "invalid_request", "scorer"},
		{"unknown output", &inferencepb.ModelInferRequest{ModelName: "fraud_model", Inputs: inputs{good()},
			Outputs: []*inferencepb.ModelInferRequest_InferRequestedOutputTensor{{Name: "nope"}}}, codes.InvalidArgument, "invalid_request", "fraud_model"},
		{"unsupported datatype", &inferencepb.ModelInferRequest{ModelName: "fraud_model", Inputs: inputs{{Name: "input", Datatype: "UINT8", Shape: []int64{1, 6},
			Contents: &inferencepb.InferTensorContents{UintContents: []uint32{1, 2, 3, 4, 5, 6}}}}}, codes.InvalidArgument, "invalid_request", "fraud_model"},
		{"contents of another datatype", &inferencepb.ModelInferRequest{ModelName: "fraud_model", Inputs: inputs{{Name: "input", Datatype: "FP32", Shape: []int64{1, 6},
			Contents: &inferencepb.InferTensorContents{IntContents: []int32{1, 2, 3, 4, 5, 6}}}}}, codes.InvalidArgument, "invalid_request", "fraud_model"},
		{"no contents", &inferencepb.ModelInferRequest{ModelName: "fraud_model", Inputs: inputs{{Name: "input", Datatype: "FP32", Shape: []int64{1, 6}}}}, codes.InvalidArgument, "invalid_request", "fraud_model"},
		{"wrong width", &inferencepb.ModelInferRequest{ModelName: "fraud_model", Inputs: inputs{fp32Input("input", []int64{1, 5}, 1, 2, 3, 4, 5)}}, codes.InvalidArgument, "shape_mismatch", "fraud_model"},
		{"too few values", &inferencepb.ModelInferRequest{ModelName: "fraud_model", Inputs: inputs{fp32Input("input", []int64{2, 6}, 1, 2, 3, 4, 5, 6)}}, codes.InvalidArgument, "shape_mismatch", "fraud_model"},
		{"no rows", &inferencepb.ModelInferRequest{ModelName: "fraud_model", Inputs: inputs{{Name: "input", Datatype: "FP32", Shape: []int64{0, 6}}}, RawInputContents: [][]byte{{}}}, codes.InvalidArgument, "empty_batch", "fraud_model"},
		{"too many rows", &inferencepb.ModelInferRequest{ModelName: "fraud_model", Inputs: inputs{fp32Input("input", []int64{17, 6}, make([]float32, 17*6)...)}}, codes.InvalidArgument, "batch_too_large", "fraud_model"},
		{"infinity", &inferencepb.ModelInferRequest{ModelName: "fraud_model", Inputs: inputs{fp32Input("input", []int64{1, 6}, float32(math.Inf(1)), 2, 3, 4, 5, 6)}}, codes.InvalidArgument, "invalid_input", "fraud_model"},
		{"beyond float32", &inferencepb.ModelInferRequest{ModelName: "fraud_model", Inputs: inputs{{Name: "input", Datatype: "FP64", Shape: []int64{1, 6},
			Contents: &inferencepb.InferTensorContents{Fp64Contents: []float64{1e39, 2, 3, 4, 5, 6}}}}}, codes.InvalidArgument, "invalid_input", "fraud_model"},
		{"NaN to a tensor model", &inferencepb.ModelInferRequest{ModelName: "scorer", Inputs: inputs{fp32Input("numeric", []int64{1, 2}, float32(math.NaN()), 1),
			{Name: "category", Datatype: "INT64", Shape: []int64{1}, Contents: &inferencepb.InferTensorContents{Int64Contents: []int64{1}}}}}, codes.InvalidArgument, "invalid_input", "scorer"},
		{"BYTES to a tensor model", &inferencepb.ModelInferRequest{ModelName: "scorer", Inputs: inputs{{Name: "numeric", Datatype: "BYTES", Shape: []int64{1, 2},
			Contents: &inferencepb.InferTensorContents{BytesContents: [][]byte{[]byte("1"), []byte("2")}}}}}, codes.InvalidArgument, "invalid_input", "scorer"},
		{"raw and contents", &inferencepb.ModelInferRequest{ModelName: "fraud_model", Inputs: inputs{good()}, RawInputContents: [][]byte{rawFP32(1, 2, 3, 4, 5, 6)}}, codes.InvalidArgument, "invalid_request", "fraud_model"},
		{"raw for some inputs", &inferencepb.ModelInferRequest{ModelName: "fraud_model", Inputs: inputs{{Name: "input", Datatype: "FP32", Shape: []int64{1, 6}}},
			RawInputContents: [][]byte{rawFP32(1, 2, 3, 4, 5, 6), {}}}, codes.InvalidArgument, "invalid_request", "fraud_model"},
		{"raw of the wrong size", &inferencepb.ModelInferRequest{ModelName: "fraud_model", Inputs: inputs{{Name: "input", Datatype: "FP32", Shape: []int64{1, 6}}},
			RawInputContents: [][]byte{rawFP32(1, 2, 3)}}, codes.InvalidArgument, "shape_mismatch", "fraud_model"},
		{"raw BOOL not 0 or 1", &inferencepb.ModelInferRequest{ModelName: "fraud_model", Inputs: inputs{{Name: "input", Datatype: "BOOL", Shape: []int64{1, 6}}},
			RawInputContents: [][]byte{{0, 1, 2, 0, 1, 0}}}, codes.InvalidArgument, "invalid_input", "fraud_model"},
		{"long id", &inferencepb.ModelInferRequest{ModelName: "fraud_model", Id: strings.Repeat("x", 257), Inputs: inputs{good()}}, codes.InvalidArgument, "invalid_request", ""},
		{"model panics", &inferencepb.ModelInferRequest{ModelName: "faulty", Inputs: inputs{fp32Input("x", []int64{1}, -1), fp32Input("y", []int64{1}, 0)}}, codes.Internal, "internal", "faulty"},
		{"timeout", &inferencepb.ModelInferRequest{ModelName: "slow", Inputs: inputs{fp32Input("x", []int64{1}, 1), fp32Input("y", []int64{1}, 0)}}, codes.DeadlineExceeded, "timeout", "slow"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := fmt.Sprintf(`model_prediction_errors_total{error_type=%q,model_name=%q}`, tc.typ, tc.model)
			before := g.snapshot()[key]
			_, err := g.client.ModelInfer(ctx, tc.req)
			if status.Code(err) != tc.code || grpcErrorType(err) != tc.typ {
				t.Fatalf("%v (%s), want %s %s", err, grpcErrorType(err), tc.code, tc.typ)
			}
			if got := g.snapshot()[key] - before; got != 1 {
				t.Errorf("%s went up by %g, want 1", key, got)
			}
		})
	}

	// A model that fails: INTERNAL, model_error.
	failing := &modeltest.Model{Meta: model.Metadata{Name: "failing", Version: "1", Type: "fake", Features: []string{"x", "y"}, Outputs: 1},
		PredictFunc: func(context.Context, model.Batch) (model.Result, error) {
			return model.Result{}, errors.New("out of cheese")
		}}
	g.srv.models.Add(failing)
	g.met.ModelLoaded(failing.Meta, time.Millisecond)
	_, err := g.client.ModelInfer(ctx, &inferencepb.ModelInferRequest{ModelName: "failing", Inputs: inputs{fp32Input("x", []int64{1}, 1), fp32Input("y", []int64{1}, 0)}})
	if status.Code(err) != codes.Internal || grpcErrorType(err) != "model_error" {
		t.Errorf("a failing model: %v", err)
	}

	// The client goes away while the model runs: counted as canceled.
	cctx, ccancel := context.WithCancel(ctx)
	time.AfterFunc(50*time.Millisecond, ccancel)
	canceled := `model_prediction_errors_total{error_type="canceled",model_name="slow"}`
	before := g.snapshot()[canceled]
	if _, err := g.client.ModelInfer(cctx, &inferencepb.ModelInferRequest{ModelName: "slow", Inputs: inputs{fp32Input("x", []int64{1}, 1), fp32Input("y", []int64{1}, 0)}}); status.Code(err) != codes.Canceled {
		t.Errorf("canceled: %v", err)
	}
	testenvWait(t, func() bool { return g.snapshot()[canceled] == before+1 })

	// Starting, models still loading: UNAVAILABLE, with a RetryInfo.
	g.srv.SetReady(false)
	_, err = g.client.ModelInfer(ctx, &inferencepb.ModelInferRequest{ModelName: "not_yet", Inputs: inputs{good()}})
	g.srv.SetReady(true)
	if status.Code(err) != codes.Unavailable || grpcErrorType(err) != "unavailable" || !hasRetryInfo(err) {
		t.Errorf("starting: %v", err)
	}

	// Over the message limit (MaxBodyBytes, 4096 here): grpc-go refuses it
	// before any handler runs.
	big := fp32Input("input", []int64{200, 6}, make([]float32, 1200)...)
	if _, err := g.client.ModelInfer(ctx, &inferencepb.ModelInferRequest{ModelName: "fraud_model", Inputs: inputs{big}}); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a message over the limit: %v", err)
	}

	// The client's deadline reaches the model.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := g.client.ModelInfer(short, &inferencepb.ModelInferRequest{ModelName: "slow", Inputs: inputs{fp32Input("x", []int64{1}, 1), fp32Input("y", []int64{1}, 0)}}); status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("client deadline: %v", err)
	}

	// Every in-flight place taken: RESOURCE_EXHAUSTED, overloaded, with a
	// RetryInfo.
	for range cap(g.srv.inFlight) {
		g.srv.inFlight <- struct{}{}
	}
	_, err = g.client.ModelInfer(ctx, &inferencepb.ModelInferRequest{ModelName: "fraud_model", Inputs: inputs{good()}})
	for range cap(g.srv.inFlight) {
		<-g.srv.inFlight
	}
	if status.Code(err) != codes.ResourceExhausted || grpcErrorType(err) != "overloaded" || !hasRetryInfo(err) {
		t.Errorf("overloaded: %v", err)
	}
}

// hasRetryInfo reports whether a gRPC error carries a google.rpc.RetryInfo.
func hasRetryInfo(err error) bool {
	for _, d := range status.Convert(err).Details() {
		if _, ok := d.(*errdetails.RetryInfo); ok {
			return true
		}
	}
	return false
}

// testenvWait waits up to 5 s for ok.
func testenvWait(t *testing.T, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
	}
}

// TestGRPCAndRESTObserveTheSame: the same request over gRPC and over REST
// answers the same outputs and moves every model_* series by the same
// amount (the harness's clock makes durations exact); only the sums of the
// message sizes differ, protobuf being smaller than JSON.
func TestGRPCAndRESTObserveTheSame(t *testing.T) {
	g := newGRPCHarness(t, nil)
	ctx := ctxT(t)
	for _, tc := range []struct {
		model, body string
		req         *inferencepb.ModelInferRequest
	}{
		{"fraud_model", `{"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 6], "data": [950, 2, 8, 120.5, 11, 12, 25, 14, 0, 1.5, 2, 900]}]}`,
			&inferencepb.ModelInferRequest{ModelName: "fraud_model", Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{fp32Input("input", []int64{2, 6}, 950, 2, 8, 120.5, 11, 12, 25, 14, 0, 1.5, 2, 900)}}},
		{"scorer", `{"inputs": [{"name": "numeric", "datatype": "FP32", "shape": [1, 2], "data": [0.5, 1]}, {"name": "category", "datatype": "INT64", "shape": [1], "data": [2]}]}`,
			&inferencepb.ModelInferRequest{ModelName: "scorer", Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{fp32Input("numeric", []int64{1, 2}, 0.5, 1),
				{Name: "category", Datatype: "INT64", Shape: []int64{1}, Contents: &inferencepb.InferTensorContents{Int64Contents: []int64{2}}}}}},
		{"fraud_model", `{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 5], "data": [1, 2, 3, 4, 5]}]}`,
			&inferencepb.ModelInferRequest{ModelName: "fraud_model", Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{fp32Input("input", []int64{1, 5}, 1, 2, 3, 4, 5)}}},
	} {
		s0 := g.snapshot()
		rec := g.do("POST", "/v2/models/"+tc.model+"/infer", "application/json", tc.body)
		s1 := g.snapshot()
		resp, err := g.client.ModelInfer(ctx, tc.req)
		s2 := g.snapshot()
		if rec.Code == 200 {
			var r struct {
				Outputs []struct{ Data json.RawMessage }
			}
			json.Unmarshal(rec.Body.Bytes(), &r)
			if err != nil || len(r.Outputs) != len(resp.GetOutputs()) {
				t.Fatalf("%s: REST %s, gRPC %v %v", tc.model, rec.Body, resp, err)
			}
			for i, o := range resp.Outputs {
				var got any = o.Contents.Fp32Contents
				switch o.Datatype {
				case "INT64":
					got = o.Contents.Int64Contents
				case "BYTES":
					var ss []string
					for _, b := range o.Contents.BytesContents {
						ss = append(ss, string(b))
					}
					got = ss
				}
				if js, _ := json.Marshal(got); string(js) != string(r.Outputs[i].Data) {
					t.Errorf("%s output %s: gRPC %s, REST %s", tc.model, o.Name, js, r.Outputs[i].Data)
				}
			}
		} else if err == nil {
			t.Fatalf("%s: REST %d, gRPC OK", tc.model, rec.Code)
		}
		compared := 0
		for k, v2 := range s2 {
			if !strings.HasPrefix(k, "model_") || strings.Contains(k, "size_bytes_sum") {
				continue
			}
			rest, overGRPC := s1[k]-s0[k], v2-s1[k]
			if math.Abs(rest-overGRPC) > 1e-9 {
				t.Errorf("%s: %s moved %g over REST, %g over gRPC", tc.model, k, rest, overGRPC)
			}
			if rest != 0 {
				compared++
			}
		}
		if compared == 0 {
			t.Errorf("%s: no model_* series moved", tc.model)
		}
	}
}

func TestGRPCHealthAndDrain(t *testing.T) {
	g := newGRPCHarness(t, nil)
	ctx := ctxT(t)
	check := func(service string) healthpb.HealthCheckResponse_ServingStatus {
		r, err := g.health.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetStatus()
	}
	if check("") != healthpb.HealthCheckResponse_SERVING || check(inferenceService) != healthpb.HealthCheckResponse_SERVING {
		t.Fatal("not SERVING when ready")
	}
	g.srv.SetReady(false)
	if check("") != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Error("SERVING while not ready")
	}
	g.srv.SetReady(true)
	g.g.Drain()
	if check("") != healthpb.HealthCheckResponse_NOT_SERVING || check(inferenceService) != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Error("SERVING while draining")
	}
	if check(livenessService) != healthpb.HealthCheckResponse_SERVING {
		t.Error("liveness not SERVING while draining")
	}
	if r, _ := g.client.ServerReady(ctx, &inferencepb.ServerReadyRequest{}); r.GetReady() {
		t.Error("ServerReady while draining")
	}
	// Inference goes on while draining.
	if _, err := g.client.ModelInfer(ctx, &inferencepb.ModelInferRequest{ModelName: "fraud_model",
		Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{fp32Input("input", []int64{1, 6}, 1, 2, 3, 4, 5, 6)}}); err != nil {
		t.Errorf("ModelInfer while draining: %v", err)
	}
}

func TestGRPCAccess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	writeTokens(t, path, adminToken+" admin\n"+inferenceToken+"\n")
	tokens, err := LoadTokens(path, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	g := newGRPCHarness(t, func(o *Options) { o.Tokens = tokens; o.InferenceAuth = true })
	ctx := ctxT(t)
	bearer := func(tok string) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	}
	req := &inferencepb.ModelInferRequest{ModelName: "fraud_model", Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{fp32Input("input", []int64{1, 6}, 1, 2, 3, 4, 5, 6)}}
	for _, tc := range []struct {
		ctx  context.Context
		code codes.Code
	}{
		{ctx, codes.Unauthenticated},
		{bearer("not-a-token-of-the-file"), codes.Unauthenticated},
		{bearer(inferenceToken), codes.OK},
		{bearer(adminToken), codes.OK},
	} {
		if _, err := g.client.ModelInfer(tc.ctx, req); status.Code(err) != tc.code {
			t.Errorf("ModelInfer: %v, want %s", err, tc.code)
		}
	}
	for _, tc := range []struct {
		ctx  context.Context
		code codes.Code
	}{
		{ctx, codes.Unauthenticated},
		{bearer(inferenceToken), codes.PermissionDenied},
		{bearer(adminToken), codes.OK},
	} {
		if _, err := g.client.RepositoryModelLoad(tc.ctx, &inferencepb.RepositoryModelLoadRequest{ModelName: "fraud_model"}); status.Code(err) != tc.code {
			t.Errorf("RepositoryModelLoad: %v, want %s", err, tc.code)
		}
		if _, err := g.client.RepositoryModelUnload(tc.ctx, &inferencepb.RepositoryModelUnloadRequest{ModelName: "fraud_model"}); status.Code(err) != tc.code {
			t.Errorf("RepositoryModelUnload: %v, want %s", err, tc.code)
		}
	}
	admin := bearer(adminToken)
	if _, err := g.client.RepositoryModelLoad(admin, &inferencepb.RepositoryModelLoadRequest{ModelName: "broken"}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("load of a broken model: %v", err)
	}
	if _, err := g.client.RepositoryModelUnload(admin, &inferencepb.RepositoryModelUnloadRequest{ModelName: "nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("unload of an unknown model: %v", err)
	}
	snap := g.snapshot()
	// Refusals are counted as HTTP's are, and are not prediction errors.
	if got := testutil.ToFloat64(g.srv.access.AuthRefused.WithLabelValues("missing")); got != 3 {
		t.Errorf(`refused{reason="missing"} = %g, want 3`, got)
	}
	for k, v := range snap {
		if strings.HasPrefix(k, "model_prediction_errors_total") && v != 0 {
			t.Errorf("%s = %g", k, v)
		}
	}

	// Without a token file, the control plane is closed over gRPC.
	open := newGRPCHarness(t, nil)
	if _, err := open.client.RepositoryModelLoad(ctx, &inferencepb.RepositoryModelLoadRequest{ModelName: "fraud_model"}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("load without a token file: %v", err)
	}
}

// TestGRPCStopEndsHealthWatches: a client watching health sees NOT_SERVING
// when the server drains, and its stream does not hold the graceful stop.
func TestGRPCStopEndsHealthWatches(t *testing.T) {
	g := newGRPCHarness(t, nil)
	ctx := ctxT(t)
	w, err := g.health.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := w.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first status %v %v", r, err)
	}
	g.g.Drain()
	if r, err := w.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("status after Drain %v %v", r, err)
	}
	stopCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	t0 := time.Now()
	if err := g.g.Stop(stopCtx); err != nil || time.Since(t0) > 2*time.Second {
		t.Errorf("Stop with a Watch open: %v after %s", err, time.Since(t0))
	}
}

// TestGRPCSpans: with tracing on, a ModelInfer call has a server span that
// continues the caller's trace from its traceparent metadata, with the
// request's model, rows and stages as over HTTP, its traceparent in the
// answer's header metadata, and an error's type and code.
func TestGRPCSpans(t *testing.T) {
	h, exp := newTracedHarness(t, sdktrace.AlwaysSample(), nil)
	g := serveGRPC(t, h)
	ctx := metadata.AppendToOutgoingContext(ctxT(t), "traceparent", "00-"+callerTrace+"-"+callerSpan+"-01", "x-request-id", "traced-1")
	var header metadata.MD
	if _, err := g.client.ModelInfer(ctx, &inferencepb.ModelInferRequest{ModelName: "fraud_model",
		Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{fp32Input("input", []int64{2, 6}, make([]float32, 12)...)}}, grpc.Header(&header)); err != nil {
		t.Fatal(err)
	}
	spans := spansByName(t, exp.GetSpans())
	root, ok := spans["inference.GRPCInferenceService/ModelInfer"]
	if !ok {
		t.Fatalf("no ModelInfer span in %v", names(exp.GetSpans()))
	}
	a := attrs(root)
	if root.Parent.TraceID().String() != callerTrace || root.Parent.SpanID().String() != callerSpan ||
		a["rpc.system"] != "grpc" || a["rpc.method"] != "ModelInfer" || a["modelwatch.request_id"] != "traced-1" ||
		a["modelwatch.model.name"] != "fraud_model" || a["rpc.grpc.status_code"] != "0" {
		t.Errorf("ModelInfer span: parent %v, attributes %v", root.Parent, a)
	}
	for _, stage := range []string{"preprocess", "infer", "postprocess"} {
		if sp, ok := spans[stage]; !ok || sp.Parent.SpanID() != root.SpanContext.SpanID() {
			t.Errorf("stage %s: %+v", stage, sp.Parent)
		}
	}
	if tp := header.Get("traceparent"); len(tp) != 1 || !strings.Contains(tp[0], callerTrace) {
		t.Errorf("traceparent header %q", tp)
	}

	exp.Reset()
	_, err := g.client.ModelInfer(ctxT(t), &inferencepb.ModelInferRequest{ModelName: "fraud_model",
		Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{fp32Input("input", []int64{1, 5}, 1, 2, 3, 4, 5)}})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatal(err)
	}
	failed := spansByName(t, exp.GetSpans())["inference.GRPCInferenceService/ModelInfer"]
	if a := attrs(failed); a["error.type"] != "shape_mismatch" || a["rpc.grpc.status_code"] != "3" || failed.Status.Code != otelcodes.Unset {
		t.Errorf("failed call's span: %v, status %v", a, failed.Status)
	}
}
