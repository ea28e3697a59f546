package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/modelwatch/modelwatch/internal/grpc/inferencepb"
	"github.com/modelwatch/modelwatch/internal/grpc/rawtensor"
	mwmodel "github.com/modelwatch/modelwatch/internal/model"
	"github.com/modelwatch/modelwatch/internal/testenv"
)

// dialGRPC connects to the process's gRPC listener.
func dialGRPC(t *testing.T, p *process, opts ...grpc.DialOption) inferencepb.GRPCInferenceServiceClient {
	t.Helper()
	if p.addrs["grpc"] == "" {
		t.Fatalf("no gRPC listener logged:\n%s", p.logs)
	}
	if len(opts) == 0 {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	conn, err := grpc.NewClient(p.addrs["grpc"], opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return inferencepb.NewGRPCInferenceServiceClient(conn)
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// counters parses /metrics into "name{labels}" -> value for counters and
// histogram counts only: what one request moves by an exact amount.
func counters(t *testing.T, p *process) map[string]float64 {
	t.Helper()
	_, text, _ := get(t, http.DefaultClient, p.url("/metrics"))
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			key := "{" + strings.Join(ls, ",") + "}"
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[name+key] = m.GetCounter().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[name+"_count"+key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

// fraudRows are the rows of TestServeOverTCP: fraud, then safe.
var fraudRows = []float32{950.0, 2, 8, 120.5, 11, 12, 25.0, 14, 0, 1.5, 2, 900}

func fraudRequest(raw bool) *inferencepb.ModelInferRequest {
	in := &inferencepb.ModelInferRequest_InferInputTensor{Name: "input", Datatype: "FP32", Shape: []int64{2, 6}}
	req := &inferencepb.ModelInferRequest{ModelName: "fraud_model", Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{in}}
	if raw {
		b, _ := rawtensor.EncodeRaw(mwmodel.Tensor{DataType: mwmodel.FP32, Shape: in.Shape, Data: fraudRows})
		req.RawInputContents = [][]byte{b}
	} else {
		in.Contents = &inferencepb.InferTensorContents{Fp32Contents: fraudRows}
	}
	return req
}

// answer reads a ModelInfer answer's probabilities and labels, typed or raw.
func answer(t *testing.T, resp *inferencepb.ModelInferResponse) ([]float32, []string) {
	t.Helper()
	var probs []float32
	var labels []string
	for i, o := range resp.GetOutputs() {
		var tn mwmodel.Tensor
		if raws := resp.GetRawOutputContents(); len(raws) > 0 {
			var err error
			if tn, err = rawtensor.DecodeRaw(o.GetDatatype(), o.GetShape(), raws[i]); err != nil {
				t.Fatal(err)
			}
		} else if o.GetDatatype() == "BYTES" {
			var ss []string
			for _, b := range o.GetContents().GetBytesContents() {
				ss = append(ss, string(b))
			}
			tn.Data = ss
		} else {
			tn.Data = o.GetContents().GetFp32Contents()
		}
		switch o.GetName() {
		case "probabilities":
			probs = tn.Data.([]float32)
		case "label":
			labels = tn.Data.([]string)
		}
	}
	return probs, labels
}

// TestGRPCOverTCP drives every method of the service on the real binary,
// and checks that the same request over gRPC and over REST answers the
// same predictions and moves every model_* series by the same amount.
func TestGRPCOverTCP(t *testing.T) {
	p := start(t, 2, "--max-batch-rows", "8", "--max-body-bytes", "4096")
	c := dialGRPC(t, p)
	ctx := testCtx(t)

	if r, err := c.ServerLive(ctx, &inferencepb.ServerLiveRequest{}); err != nil || !r.GetLive() {
		t.Fatalf("ServerLive: %v %v", r, err)
	}
	if r, err := c.ServerReady(ctx, &inferencepb.ServerReadyRequest{}); err != nil || !r.GetReady() {
		t.Fatalf("ServerReady: %v %v", r, err)
	}
	if r, err := c.ServerMetadata(ctx, &inferencepb.ServerMetadataRequest{}); err != nil || r.GetName() != "modelwatch" || strings.Join(r.GetExtensions(), ",") != "model_repository" {
		t.Errorf("ServerMetadata: %v %v", r, err)
	}
	md, err := c.ModelMetadata(ctx, &inferencepb.ModelMetadataRequest{Name: "fraud_model"})
	if err != nil || md.GetPlatform() != "xgboost_json" || len(md.GetInputs()) != 1 || md.GetInputs()[0].GetName() != "input" ||
		md.GetInputs()[0].GetDatatype() != "FP32" || fmt.Sprint(md.GetInputs()[0].GetShape()) != "[-1 6]" || fmt.Sprint(md.GetVersions()) != "[v1]" {
		t.Errorf("ModelMetadata: %v %v", md, err)
	}
	if r, err := c.ModelReady(ctx, &inferencepb.ModelReadyRequest{Name: "fraud_model", Version: "v1"}); err != nil || !r.GetReady() {
		t.Errorf("ModelReady: %v %v", r, err)
	}
	if _, err := c.ModelReady(ctx, &inferencepb.ModelReadyRequest{Name: "nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("ModelReady of an unknown model: %v", err)
	}
	if r, err := c.RepositoryIndex(ctx, &inferencepb.RepositoryIndexRequest{}); err != nil || len(r.GetModels()) != 1 || r.GetModels()[0].GetState() != "READY" {
		t.Errorf("RepositoryIndex: %v %v", r, err)
	}
	// No token file: the control plane is closed over gRPC.
	if _, err := c.RepositoryModelLoad(ctx, &inferencepb.RepositoryModelLoadRequest{ModelName: "fraud_model"}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("RepositoryModelLoad without a token file: %v", err)
	}
	if _, err := c.RepositoryModelUnload(ctx, &inferencepb.RepositoryModelUnloadRequest{ModelName: "fraud_model"}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("RepositoryModelUnload without a token file: %v", err)
	}

	// The same two rows over REST, typed gRPC and raw gRPC.
	restBody := `{"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 6], "data": [` + strings.Trim(fraudRow, "[]") + `, ` + strings.Trim(safeRow, "[]") + `]}]}`
	m0 := counters(t, p)
	var rest v2Out
	if code := postJSON(t, p.url("/v2/models/fraud_model/infer"), restBody, &rest); code != 200 {
		t.Fatalf("REST infer: %d", code)
	}
	m1 := counters(t, p)
	var header metadata.MD
	resp, err := c.ModelInfer(metadata.AppendToOutgoingContext(ctx, "x-request-id", "grpc-e2e-1"), fraudRequest(false), grpc.Header(&header))
	if err != nil {
		t.Fatalf("ModelInfer: %v", err)
	}
	m2 := counters(t, p)
	if got := header.Get("x-request-id"); len(got) != 1 || got[0] != "grpc-e2e-1" {
		t.Errorf("x-request-id = %q", got)
	}
	probs, labels := answer(t, resp)
	if strings.Join(labels, ",") != "fraud,safe" {
		t.Errorf("labels %v, want fraud,safe", labels)
	}
	var restProbs []float32
	json.Unmarshal(rest.Outputs[0].Data, &restProbs)
	if fmt.Sprint(probs) != fmt.Sprint(restProbs) {
		t.Errorf("gRPC probabilities %v, REST %v", probs, restProbs)
	}
	moved := 0
	for k, v := range m2 {
		// The prediction log writes in the background, in batches of its own.
		if !strings.HasPrefix(k, "model_") || strings.HasPrefix(k, "model_prediction_log_") {
			continue
		}
		if d1, d2 := m1[k]-m0[k], v-m1[k]; d1 != d2 {
			t.Errorf("%s moved %g over REST, %g over gRPC", k, d1, d2)
		} else if d1 != 0 {
			moved++
		}
	}
	if moved < 5 {
		t.Errorf("only %d model_* series moved", moved)
	}
	if got := m2[`grpc_server_handled_total{grpc_code="OK",grpc_method="ModelInfer",grpc_service="inference.GRPCInferenceService",grpc_type="unary"}`]; got != 1 {
		t.Errorf("grpc_server_handled_total ModelInfer OK = %g, want 1", got)
	}
	rawResp, err := c.ModelInfer(ctx, fraudRequest(true))
	if err != nil {
		t.Fatalf("ModelInfer raw: %v", err)
	}
	if len(rawResp.GetRawOutputContents()) != 2 {
		t.Fatalf("a raw request answered without raw_output_contents: %v", rawResp)
	}
	rawProbs, rawLabels := answer(t, rawResp)
	if fmt.Sprint(rawProbs) != fmt.Sprint(probs) || fmt.Sprint(rawLabels) != fmt.Sprint(labels) {
		t.Errorf("raw %v %v, typed %v %v", rawProbs, rawLabels, probs, labels)
	}
	// Only the outputs asked for.
	only := fraudRequest(false)
	only.Outputs = []*inferencepb.ModelInferRequest_InferRequestedOutputTensor{{Name: "label"}}
	if r, err := c.ModelInfer(ctx, only); err != nil || len(r.GetOutputs()) != 1 || r.GetOutputs()[0].GetName() != "label" {
		t.Errorf("outputs [label]: %v %v", r, err)
	}
	// Every numeric datatype, and BYTES, typed: the same prediction.
	for _, dt := range []string{"FP64", "INT32", "INT64", "BOOL", "BYTES"} {
		in := &inferencepb.ModelInferRequest_InferInputTensor{Name: "input", Datatype: dt, Shape: []int64{1, 6}, Contents: &inferencepb.InferTensorContents{}}
		row := []int64{950, 2, 8, 120, 11, 12}
		if dt == "BOOL" {
			row = []int64{1, 0, 1, 1, 0, 1}
		}
		for _, x := range row {
			switch dt {
			case "FP64":
				in.Contents.Fp64Contents = append(in.Contents.Fp64Contents, float64(x))
			case "INT32":
				in.Contents.IntContents = append(in.Contents.IntContents, int32(x))
			case "INT64":
				in.Contents.Int64Contents = append(in.Contents.Int64Contents, x)
			case "BOOL":
				in.Contents.BoolContents = append(in.Contents.BoolContents, x == 1)
			case "BYTES":
				in.Contents.BytesContents = append(in.Contents.BytesContents, []byte(fmt.Sprint(x)))
			}
		}
		r, err := c.ModelInfer(ctx, &inferencepb.ModelInferRequest{ModelName: "fraud_model", Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{in}})
		if err != nil {
			t.Errorf("%s: %v", dt, err)
			continue
		}
		got, _ := answer(t, r)
		var want v2Out
		vals, _ := json.Marshal(row)
		if dt == "BOOL" {
			vals = []byte("[true, false, true, true, false, true]")
		}
		if dt == "BYTES" {
			vals = []byte(`["950", "2", "8", "120", "11", "12"]`)
		}
		if code := postJSON(t, p.url("/v2/models/fraud_model/infer"), fmt.Sprintf(`{"inputs": [{"name": "input", "datatype": %q, "shape": [1, 6], "data": %s}]}`, dt, vals), &want); code != 200 {
			t.Errorf("%s over REST: %d", dt, code)
			continue
		}
		var wantProbs []float32
		json.Unmarshal(want.Outputs[0].Data, &wantProbs)
		if fmt.Sprint(got) != fmt.Sprint(wantProbs) {
			t.Errorf("%s: gRPC %v, REST %v", dt, got, wantProbs)
		}
	}

	// Errors: the code, and the same error_type counted as over REST.
	before := counters(t, p)
	nine := fraudRequest(false)
	nine.Inputs[0].Shape = []int64{9, 6}
	nine.Inputs[0].Contents.Fp32Contents = make([]float32, 54)
	narrow := fraudRequest(false)
	narrow.Inputs[0].Shape = []int64{2, 5}
	huge := fraudRequest(false)
	huge.Inputs[0].Contents.Fp32Contents = make([]float32, 2000)
	for _, tc := range []struct {
		req  *inferencepb.ModelInferRequest
		code codes.Code
	}{
		{&inferencepb.ModelInferRequest{ModelName: "nope", Inputs: fraudRequest(false).Inputs}, codes.NotFound},
		{&inferencepb.ModelInferRequest{ModelName: "fraud_model", ModelVersion: "v9", Inputs: fraudRequest(false).Inputs}, codes.NotFound},
		{narrow, codes.InvalidArgument},
		{nine, codes.InvalidArgument},
		{&inferencepb.ModelInferRequest{ModelName: "fraud_model"}, codes.InvalidArgument},
		{huge, codes.ResourceExhausted},
	} {
		if _, err := c.ModelInfer(ctx, tc.req); status.Code(err) != tc.code {
			t.Errorf("ModelInfer %v: %v, want %s", tc.req.GetInputs(), err, tc.code)
		}
	}
	after := counters(t, p)
	for k, want := range map[string]float64{
		`model_prediction_errors_total{error_type="model_not_found",model_name=""}`:                                                                       1,
		`model_prediction_errors_total{error_type="version_not_found",model_name="fraud_model"}`:                                                          1,
		`model_prediction_errors_total{error_type="shape_mismatch",model_name="fraud_model"}`:                                                             1,
		`model_prediction_errors_total{error_type="batch_too_large",model_name="fraud_model"}`:                                                            1,
		`model_prediction_errors_total{error_type="empty_batch",model_name="fraud_model"}`:                                                                1,
		`grpc_server_handled_total{grpc_code="InvalidArgument",grpc_method="ModelInfer",grpc_service="inference.GRPCInferenceService",grpc_type="unary"}`: 3,
		`grpc_server_handled_total{grpc_code="NotFound",grpc_method="ModelInfer",grpc_service="inference.GRPCInferenceService",grpc_type="unary"}`:        2,
	} {
		if got := after[k] - before[k]; got != want {
			t.Errorf("%s moved %g, want %g", k, got, want)
		}
	}
}

// TestGRPCTokensAndTLS: --inference-auth applies to ModelInfer, the
// repository extension takes an admin token, and the listener speaks TLS
// with --tls-cert-file.
func TestGRPCTokensAndTLS(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := selfSigned(t)
	os.WriteFile(filepath.Join(dir, "cert.pem"), certPEM, 0o600)
	os.WriteFile(filepath.Join(dir, "key.pem"), keyPEM, 0o600)
	const admin, inference = "admin-token-for-grpc-0123456789", "inference-token-for-grpc-0123"
	os.WriteFile(filepath.Join(dir, "tokens"), []byte(admin+" admin\n"+inference+" inference\n"), 0o600)
	api, grpcAddr := testenv.FreePort(t), testenv.FreePort(t)
	testenv.Start(t, binary, "serve", "--listen-address", api, "--grpc-listen-address", grpcAddr,
		"--token-file", filepath.Join(dir, "tokens"), "--inference-auth",
		"--tls-cert-file", filepath.Join(dir, "cert.pem"), "--tls-key-file", filepath.Join(dir, "key.pem"))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	p := &process{addrs: map[string]string{"grpc": grpcAddr}, logs: &logBuffer{}}
	c := dialGRPC(t, p, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool})))
	ctx := testCtx(t)
	testenv.WaitFor(t, "gRPC ServerReady over TLS", 30*time.Second, func() (bool, string) {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		r, err := c.ServerReady(cctx, &inferencepb.ServerReadyRequest{})
		return err == nil && r.GetReady(), fmt.Sprint(err)
	})
	bearer := func(tok string) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	}

	if r, err := c.ServerLive(ctx, &inferencepb.ServerLiveRequest{}); err != nil || !r.GetLive() {
		t.Fatalf("ServerLive over TLS: %v %v", r, err)
	}
	plain := dialGRPC(t, p)
	if _, err := plain.ServerLive(ctx, &inferencepb.ServerLiveRequest{}); err == nil {
		t.Error("a plaintext call to the TLS listener succeeded")
	}
	if _, err := c.ModelInfer(ctx, fraudRequest(false)); status.Code(err) != codes.Unauthenticated {
		t.Errorf("ModelInfer without a token: %v", err)
	}
	if _, err := c.ModelInfer(bearer(inference), fraudRequest(true)); err != nil {
		t.Errorf("ModelInfer with an inference token: %v", err)
	}
	if _, err := c.RepositoryModelLoad(bearer(inference), &inferencepb.RepositoryModelLoadRequest{ModelName: "fraud_model"}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("load with an inference token: %v", err)
	}
	if _, err := c.RepositoryModelUnload(ctx, &inferencepb.RepositoryModelUnloadRequest{ModelName: "fraud_model"}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("unload without a token: %v", err)
	}
	if _, err := c.RepositoryModelLoad(bearer(admin), &inferencepb.RepositoryModelLoadRequest{ModelName: "fraud_model"}); err != nil {
		t.Errorf("load with an admin token: %v", err)
	}
}

// grpcTool finds a tool `make grpc-tools` builds: a missing one fails the
// test under CI=true and skips it elsewhere.
func grpcTool(t *testing.T, env, name string) string {
	t.Helper()
	path := os.Getenv(env)
	if path == "" {
		path = name
	}
	if found, err := exec.LookPath(path); err == nil {
		return found
	}
	msg := fmt.Sprintf("%s not found (%s=%q, PATH searched): build it with `make grpc-tools`", name, env, os.Getenv(env))
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// TestGRPCTools: grpcurl lists the service through reflection and calls
// ModelInfer; grpc-health-probe passes, and fails once the server drains.
func TestGRPCTools(t *testing.T) {
	grpcurl := grpcTool(t, "MODELWATCH_TEST_GRPCURL", "grpcurl")
	probe := grpcTool(t, "MODELWATCH_TEST_GRPC_HEALTH_PROBE", "grpc-health-probe")
	p := start(t, 2, "--shutdown-delay", "4s")
	addr := p.addrs["grpc"]
	run := func(name string, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var out bytes.Buffer
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	if out, err := run(grpcurl, "-plaintext", addr, "list"); err != nil || !strings.Contains(out, "inference.GRPCInferenceService") || !strings.Contains(out, "grpc.health.v1.Health") {
		t.Errorf("grpcurl list: %v\n%s", err, out)
	}
	out, err := run(grpcurl, "-plaintext", "-d", `{"model_name": "fraud_model", "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 6], "contents": {"fp32_contents": `+fraudRow+`}}]}`,
		addr, "inference.GRPCInferenceService/ModelInfer")
	if err != nil || !strings.Contains(out, `"ZnJhdWQ="`) { // "fraud", base64 in grpcurl's JSON
		t.Errorf("grpcurl ModelInfer: %v\n%s", err, out)
	}
	if out, err := run(probe, "-addr", addr); err != nil || !strings.Contains(out, "SERVING") {
		t.Errorf("grpc-health-probe: %v\n%s", err, out)
	}
	if out, err := run(probe, "-addr", addr, "-service", "inference.GRPCInferenceService"); err != nil {
		t.Errorf("grpc-health-probe -service inference.GRPCInferenceService: %v\n%s", err, out)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.waitLog(t, "/ready answers 503")
	if out, err := run(probe, "-addr", addr); err == nil || !strings.Contains(out, "NOT_SERVING") {
		t.Errorf("grpc-health-probe while draining: %v\n%s", err, out)
	}
	// Calls are still answered during the delay.
	c := dialGRPC(t, p)
	if _, err := c.ModelInfer(testCtx(t), fraudRequest(true)); err != nil {
		t.Errorf("ModelInfer during the shutdown delay: %v", err)
	}
	p.waitCleanExit(t)
}

// TestGRPCTensorModel: an ONNX model of two inputs, FP32 and INT64, typed
// and raw, answers what PyTorch computed.
func TestGRPCTensorModel(t *testing.T) {
	lib := onnxLibrary(t)
	dir := t.TempDir()
	copyFile(t, "../../internal/model/onnx/testdata/two_inputs.onnx", filepath.Join(dir, "two/1/model.onnx"))
	p := start(t, 2, "--model-repository", dir, "--onnxruntime-library", lib)
	c := dialGRPC(t, p)
	ctx := testCtx(t)
	for _, e := range readExpected(t, "two_inputs") {
		var num []float32
		var cat []int64
		for _, x := range flatten(e.Inputs["numeric"]) {
			num = append(num, float32(x))
		}
		for _, x := range flatten(e.Inputs["category"]) {
			cat = append(cat, int64(x))
		}
		n := int64(e.Batch)
		for _, raw := range []bool{false, true} {
			req := &inferencepb.ModelInferRequest{ModelName: "two", ModelVersion: "1", Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{
				{Name: "numeric", Datatype: "FP32", Shape: []int64{n, 3}}, {Name: "category", Datatype: "INT64", Shape: []int64{n}}}}
			if raw {
				a, _ := rawtensor.EncodeRaw(mwmodel.Tensor{DataType: mwmodel.FP32, Shape: []int64{n, 3}, Data: num})
				b, _ := rawtensor.EncodeRaw(mwmodel.Tensor{DataType: mwmodel.INT64, Shape: []int64{n}, Data: cat})
				req.RawInputContents = [][]byte{a, b}
			} else {
				req.Inputs[0].Contents = &inferencepb.InferTensorContents{Fp32Contents: num}
				req.Inputs[1].Contents = &inferencepb.InferTensorContents{Int64Contents: cat}
			}
			resp, err := c.ModelInfer(ctx, req)
			if err != nil {
				t.Fatalf("batch %d raw=%v: %v", n, raw, err)
			}
			var got []float64
			for i, o := range resp.GetOutputs() {
				if o.GetName() != "score" {
					continue
				}
				var tn mwmodel.Tensor
				if raw {
					tn, _ = rawtensor.DecodeRaw(o.GetDatatype(), o.GetShape(), resp.GetRawOutputContents()[i])
				} else {
					tn = mwmodel.Tensor{DataType: mwmodel.DataType(o.GetDatatype()), Data: o.GetContents().GetFp32Contents()}
				}
				got, _ = tn.Float64s()
			}
			if d := maxAbsDiff(got, flatten(e.Outputs["score"])); d > 1e-5 {
				t.Errorf("batch %d raw=%v: differs from PyTorch by %g", n, raw, d)
			}
		}
	}
	// A datatype the model does not take.
	bad := &inferencepb.ModelInferRequest{ModelName: "two", Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{
		{Name: "numeric", Datatype: "FP64", Shape: []int64{1, 3}, Contents: &inferencepb.InferTensorContents{Fp64Contents: []float64{1, 2, 3}}},
		{Name: "category", Datatype: "INT64", Shape: []int64{1}, Contents: &inferencepb.InferTensorContents{Int64Contents: []int64{1}}}}}
	if _, err := c.ModelInfer(ctx, bad); status.Code(err) != codes.InvalidArgument {
		t.Errorf("FP64 for an FP32 input: %v", err)
	}
}

// TestGRPCOffFromTheEnvironment: MODELWATCH_GRPC_LISTEN_ADDRESS=off turns
// the gRPC listener off (an empty variable reads as unset).
func TestGRPCOffFromTheEnvironment(t *testing.T) {
	t.Setenv("MODELWATCH_GRPC_LISTEN_ADDRESS", "off")
	addr := testenv.FreePort(t)
	p := testenv.Start(t, binary, "serve", "--listen-address", addr, "--log-format", "json")
	testenv.WaitHTTP(t, "http://"+addr+"/ready", p)
	if logs := p.Log.String(); strings.Contains(logs, `"role":"grpc"`) || !strings.Contains(logs, `"role":"api"`) {
		t.Errorf("MODELWATCH_GRPC_LISTEN_ADDRESS=off: want the API listener and no gRPC one:\n%s", logs)
	}
}
