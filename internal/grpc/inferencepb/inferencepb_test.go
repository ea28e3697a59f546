package inferencepb_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/modelwatch/modelwatch/internal/grpc/inferencepb"
)

var update = flag.Bool("update", false, "rewrite testdata/wire.golden from the generated descriptors")

// live is the smallest GRPCInferenceServiceServer: ServerLive answers true,
// every other method is Unimplemented.
type live struct {
	inferencepb.UnimplementedGRPCInferenceServiceServer
}

func (live) ServerLive(context.Context, *inferencepb.ServerLiveRequest) (*inferencepb.ServerLiveResponse, error) {
	return &inferencepb.ServerLiveResponse{Live: true}, nil
}

// serve starts a gRPC server with live and reflection on a loopback port and
// returns its address; the server stops when the test ends.
func serve(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	inferencepb.RegisterGRPCInferenceServiceServer(s, live{})
	reflection.Register(s)
	done := make(chan error, 1)
	go func() { done <- s.Serve(lis) }()
	t.Cleanup(func() {
		s.Stop()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return lis.Addr().String()
}

func TestGeneratedClient(t *testing.T) {
	addr := serve(t)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := inferencepb.NewGRPCInferenceServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	res, err := c.ServerLive(ctx, &inferencepb.ServerLiveRequest{})
	if err != nil {
		t.Fatalf("ServerLive: %v", err)
	}
	if !res.GetLive() {
		t.Fatalf("ServerLive = %v, want live", res)
	}
	_, err = c.ServerReady(ctx, &inferencepb.ServerReadyRequest{})
	if got := status.Code(err); got != codes.Unimplemented {
		t.Fatalf("ServerReady: %v, want Unimplemented from the embedded default", err)
	}
}

// TestGrpcurl calls the service as a user would, with grpcurl and no .proto:
// the server's reflection describes it.
func TestGrpcurl(t *testing.T) {
	grpcurl := tool(t, "MODELWATCH_TEST_GRPCURL", "grpcurl")
	addr := serve(t)
	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, grpcurl, append([]string{"-plaintext"}, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("grpcurl %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return string(out)
	}

	if out := run(addr, "list"); !strings.Contains(out, "inference.GRPCInferenceService\n") {
		t.Errorf("grpcurl list:\n%s\nwant inference.GRPCInferenceService", out)
	}
	out := run(addr, "list", "inference.GRPCInferenceService")
	var want []string // grpcurl lists the methods sorted
	for _, m := range inferencepb.GRPCInferenceService_ServiceDesc.Methods {
		want = append(want, "inference.GRPCInferenceService."+m.MethodName+"\n")
	}
	slices.Sort(want)
	if w := strings.Join(want, ""); out != w {
		t.Errorf("grpcurl list inference.GRPCInferenceService:\n%s\nwant\n%s", out, w)
	}
	if out := run("-d", "{}", addr, "inference.GRPCInferenceService/ServerLive"); strings.Join(strings.Fields(out), " ") != `{ "live": true }` {
		t.Errorf("grpcurl ServerLive = %q, want {\"live\": true}", out)
	}
}

// TestWireContract pins what makes KServe's and Triton's clients work with
// ours: the service's full method names and every message's fields, numbers
// and types. A change here is a change to the protocol, never a refactoring.
func TestWireContract(t *testing.T) {
	var b strings.Builder
	fd := inferencepb.File_inference_v2_grpc_predict_v2_proto
	fmt.Fprintf(&b, "package %s\n", fd.Package())
	svcs := fd.Services()
	for i := range svcs.Len() {
		s := svcs.Get(i)
		ms := s.Methods()
		for j := range ms.Len() {
			m := ms.Get(j)
			fmt.Fprintf(&b, "rpc /%s/%s(%s) returns (%s)\n", s.FullName(), m.Name(), m.Input().FullName(), m.Output().FullName())
		}
	}
	var messages func(protoreflect.MessageDescriptors)
	messages = func(mds protoreflect.MessageDescriptors) {
		for i := range mds.Len() {
			md := mds.Get(i)
			if md.IsMapEntry() {
				continue
			}
			fmt.Fprintf(&b, "message %s\n", md.FullName())
			fs := md.Fields()
			for j := range fs.Len() {
				f := fs.Get(j)
				typ := f.Kind().String()
				switch {
				case f.IsMap():
					typ = fmt.Sprintf("map<%s, %s>", f.MapKey().Kind(), valueType(f.MapValue()))
				case f.Message() != nil:
					typ = string(f.Message().FullName())
				}
				if f.Cardinality() == protoreflect.Repeated && !f.IsMap() {
					typ = "repeated " + typ
				}
				oneof := ""
				if o := f.ContainingOneof(); o != nil {
					oneof = " (oneof " + string(o.Name()) + ")"
				}
				fmt.Fprintf(&b, "  %d %s %s%s\n", f.Number(), f.Name(), typ, oneof)
			}
			messages(md.Messages())
		}
	}
	messages(fd.Messages())

	golden := filepath.Join("testdata", "wire.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if b.String() != string(want) {
		t.Errorf("the generated service differs from %s (run go test -update only for a deliberate protocol change):\n%s", golden, b.String())
	}
}

func valueType(f protoreflect.FieldDescriptor) string {
	if f.Message() != nil {
		return string(f.Message().FullName())
	}
	return f.Kind().String()
}

// tool returns the path of a command-line tool: the file the environment
// variable names (as the Makefile sets it), else the command on PATH. Where
// it is missing the test fails under CI=true and is skipped otherwise.
func tool(t *testing.T, env, name string) string {
	t.Helper()
	path := os.Getenv(env)
	if path == "" {
		path = name
	}
	found, err := exec.LookPath(path)
	if err == nil {
		return found
	}
	msg := fmt.Sprintf("%s not found (%s=%q, PATH searched): build it with `make grpc-tools`", name, env, os.Getenv(env))
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}
