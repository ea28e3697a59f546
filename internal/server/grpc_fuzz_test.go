package server

import (
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/modelwatch/modelwatch/internal/grpc/inferencepb"
	"github.com/modelwatch/modelwatch/internal/grpc/rawtensor"
	"github.com/modelwatch/modelwatch/internal/metrics"
	"github.com/modelwatch/modelwatch/internal/model"
	"github.com/modelwatch/modelwatch/internal/model/modeltest"
)

// FuzzDecodeGRPC feeds arbitrary ModelInfer messages to the gRPC decoder
// path, typed contents and raw, for a model of rows (with categories) and a
// tensor model: it must answer every message without panicking, with a
// client error when it refuses one, and every tensor the core's checks then
// accept holds as many elements as its shape says.
func FuzzDecodeGRPC(f *testing.F) {
	raw, _ := rawtensor.EncodeRaw(model.Tensor{DataType: model.FP32, Shape: []int64{1, 6}, Data: []float32{1, 2, 3, 4, 5, 6}})
	for _, seed := range []*inferencepb.ModelInferRequest{
		{Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{{Name: "input", Datatype: "FP32", Shape: []int64{1, 6},
			Contents: &inferencepb.InferTensorContents{Fp32Contents: []float32{1, 2, 3, 4, 5, 6}}}}},
		{Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{{Name: "input", Datatype: "FP32", Shape: []int64{1, 6}}}, RawInputContents: [][]byte{raw}},
		{Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{{Name: "input", Datatype: "BYTES", Shape: []int64{1, 6},
			Contents: &inferencepb.InferTensorContents{BytesContents: [][]byte{[]byte("1.5"), []byte("b"), []byte("0"), []byte("zz"), []byte("-2e3"), []byte("c")}}}}},
		{Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{
			{Name: "numeric", Datatype: "FP32", Shape: []int64{1, 2}, Contents: &inferencepb.InferTensorContents{Fp32Contents: []float32{1, 2}}},
			{Name: "category", Datatype: "INT64", Shape: []int64{1}, Contents: &inferencepb.InferTensorContents{Int64Contents: []int64{3}}}},
			Outputs: []*inferencepb.ModelInferRequest_InferRequestedOutputTensor{{Name: "scores"}}},
		{Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{
			{Name: "f0", Datatype: "BOOL", Shape: []int64{2}, Contents: &inferencepb.InferTensorContents{BoolContents: []bool{true, false}}},
			{Name: "f1", Datatype: "INT32", Shape: []int64{2, 1}, Contents: &inferencepb.InferTensorContents{IntContents: []int32{1, 2}}}}},
		{Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{{Name: "input", Datatype: "FP32", Shape: []int64{9999999999, 6}}}},
	} {
		b, err := proto.Marshal(seed)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	s := New(Options{Models: model.NewRegistry("fuzz"), Metrics: metrics.New(prometheus.NewRegistry()), MetricsHandler: http.NotFoundHandler(), MaxBatchRows: 1 << 20})
	rows := fuzzCategoricalMeta(6)
	rows.InputTensors = []model.TensorSpec{{Name: "input", DataType: model.FP32, Shape: []int64{-1, 6}}}
	views := []*view{{model: &modeltest.Model{Meta: rows}, meta: rows}, {model: scorer(), meta: scorer().Meta}}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req inferencepb.ModelInferRequest
		if proto.Unmarshal(body, &req) != nil {
			return
		}
		for _, v := range views {
			treq, aerr := s.grpcDecode(v, &req)
			if aerr != nil {
				if errorStatus[aerr.typ] < 400 || errorStatus[aerr.typ] >= 500 {
					t.Fatalf("error %+v", aerr)
				}
				continue
			}
			_, isTensorModel := v.model.(model.TensorModel)
			feature := !isTensorModel && byFeature(&v.meta, treq.inputs[0].Name)
			for i, in := range treq.inputs {
				spec, aerr := inputSpec(&v.meta, feature, i, in.Name, in.Shape, treq.inputs[:i])
				if aerr != nil {
					t.Fatalf("grpcDecode accepted input %d that inputSpec refuses: %v", i, aerr)
				}
				if checkTensor(in, spec, isTensorModel, s.maxRows(v)) != nil {
					continue
				}
				if in.DataLen() != in.Len() {
					t.Fatalf("tensor of shape %v holds %d values", in.Shape, in.DataLen())
				}
				if _, ok := in.Data.([]string); ok && isTensorModel {
					t.Fatal("a tensor model was given BYTES")
				}
			}
		}
	})
}
