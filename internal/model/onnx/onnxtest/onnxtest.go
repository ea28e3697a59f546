// Package onnxtest finds ONNX Runtime's shared library for tests.
package onnxtest

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// LibraryEnv names the library's path, as for the server.
const LibraryEnv = "MODELWATCH_ONNXRUNTIME_LIBRARY"

// Library returns the path of libonnxruntime.so: $MODELWATCH_ONNXRUNTIME_LIBRARY,
// or what scripts/fetch-onnxruntime.sh put in the repository's .cache/. When
// there is none, the test fails under CI=true and is skipped elsewhere.
func Library(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(LibraryEnv); p != "" {
		return p
	}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "../../../..")
	if m, _ := filepath.Glob(filepath.Join(root, ".cache/onnxruntime/*/libonnxruntime.so.1")); len(m) > 0 {
		return m[len(m)-1]
	}
	const how = "no ONNX Runtime library: run scripts/fetch-onnxruntime.sh or set " + LibraryEnv
	if os.Getenv("CI") == "true" {
		t.Fatal(how)
	}
	t.Skip(how)
	return ""
}
