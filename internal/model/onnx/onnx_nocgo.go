//go:build !cgo

package onnx

import (
	"github.com/modelwatch/modelwatch/internal/model"
)

// BuiltIn reports whether this binary can serve ONNX models.
const BuiltIn = false

// Init reports that ONNX Runtime is not built in.
func Init(string) error { return ErrNotBuiltIn }

// Version returns "": no ONNX Runtime is built in.
func Version() string { return "" }

// Runtime fails every load: ONNX Runtime is not built in.
var Runtime = model.Runtime{Type: Type, File: File, Load: func([]byte, model.Metadata) (model.Model, error) {
	return nil, ErrNotBuiltIn
}}
