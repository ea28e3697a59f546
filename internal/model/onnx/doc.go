// Package onnx serves ONNX models through ONNX Runtime
// (github.com/yalue/onnxruntime_go), loaded from a shared library at run
// time. Input and output names, element types and shapes come from the
// model's own metadata. The package needs cgo: built without it, Init
// reports ErrNotBuiltIn and the server says ONNX is not built in.
//
// Classifiers converted from scikit-learn by skl2onnx serve with their own
// class labels, read from the model's graph. The probabilities skl2onnx
// zips into a sequence of maps by default (a ZipMap node) are served as an
// FP32 tensor [batch, classes] under the ZipMap output's name (usually
// output_probability), one column per class label in the ZipMap's order;
// string labels are BYTES tensors.
package onnx

import "errors"

// Type is the runtime name reported in model metadata.
const Type = "onnx"

// File is the file name of an ONNX model in a model version directory.
const File = "model.onnx"

// LibraryEnv is the environment variable that tools without flags (tests,
// benchmarks) read for the path of libonnxruntime.so.
const LibraryEnv = "MODELWATCH_ONNXRUNTIME_LIBRARY"

var (
	// ErrNotBuiltIn means the binary was built without cgo.
	ErrNotBuiltIn = errors.New("ONNX Runtime support is not built in (built with CGO_ENABLED=0)")
	// ErrNoLibrary means no ONNX Runtime shared library was named or found.
	ErrNoLibrary = errors.New("ONNX Runtime library not available")
)
