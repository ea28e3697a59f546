package server

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// listLimit gives a boundedList its bound, what its elements are called,
// and the list's field name.
type listLimit interface {
	limit() (n int, what, field string)
}

// boundedList is a JSON list that encoding/json decodes one element at a
// time, refusing more than its limit (batch_too_large) before decoding them:
// a body of "[{}, {}, ...]" cannot make it build millions of structs from a
// few megabytes.
type boundedList[T any, L listLimit] []T

// UnmarshalJSON implements json.Unmarshaler.
func (b *boundedList[T, L]) UnmarshalJSON(raw []byte) error {
	var l L
	limit, what, field := l.limit()
	return decodeList(raw, field, func(dec *json.Decoder) error {
		if len(*b) == limit {
			return &decodeError{typ: errBatchTooLarge, msg: fmt.Sprintf("more than %d %s", limit, what)}
		}
		var v T
		if err := dec.Decode(&v); err != nil {
			return err
		}
		*b = append(*b, v)
		return nil
	}, func() { *b = nil })
}

// decodeList walks a JSON list (or null), calling each for every element
// with the decoder positioned at it, and null for null. Unknown fields in
// the elements are errors, as at the top level. field names the list in
// errors.
func decodeList(raw []byte, field string, each func(*json.Decoder) error, null func()) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok == nil {
		null()
		return nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return &decodeError{typ: errInvalidRequest, msg: fmt.Sprintf("%s must be a list", field)}
	}
	for dec.More() {
		if err := each(dec); err != nil {
			return err
		}
	}
	return nil
}

type (
	maxInputs  struct{} // input tensors of one inference request
	maxOutputs struct{} // outputs one inference request asks for
	maxDims    struct{} // dimensions of a shape
	maxLabels  struct{} // labels of one prediction
)

func (maxInputs) limit() (int, string, string)  { return 64, "tensors", `"inputs"` }
func (maxOutputs) limit() (int, string, string) { return 64, "outputs", `"outputs"` }
func (maxDims) limit() (int, string, string)    { return 32, "dimensions in a shape", `"shape"` }
func (maxLabels) limit() (int, string, string)  { return 1 << 16, "labels", `"labels"` }
