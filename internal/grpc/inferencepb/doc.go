// Package inferencepb is the Go code generated from
// api/inference/v2/grpc_predict_v2.proto: the messages, client and server
// interfaces of the Open Inference Protocol's gRPC service,
// inference.GRPCInferenceService, wire-compatible with KServe's and Triton's.
// Regenerate it with `make proto`; `make proto-check` fails when the
// checked-in files differ from what the .proto generates.
package inferencepb
