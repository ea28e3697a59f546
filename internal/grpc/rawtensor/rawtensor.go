// Package rawtensor converts tensors to and from the Open Inference
// Protocol's raw contents (raw_input_contents and raw_output_contents over
// gRPC): elements in row-major order, little-endian, without padding, and each
// BYTES element as a 4-byte little-endian length followed by its bytes.
package rawtensor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/modelwatch/modelwatch/internal/model"
)

// Errors DecodeRaw and EncodeRaw wrap, for callers to branch on.
var (
	// ErrDatatype means the datatype is not one of BOOL, INT32, INT64, FP32,
	// FP64 and BYTES, or the tensor's data does not match its datatype.
	ErrDatatype = errors.New("unsupported datatype")
	// ErrShape means a dimension is negative, or the element count overflows.
	ErrShape = errors.New("invalid shape")
	// ErrSize means the contents do not hold what the shape calls for: a
	// length that is not the element count times the element size, or for
	// BYTES a truncated length prefix or element, or bytes left over.
	ErrSize = errors.New("contents do not match the shape")
	// ErrValue means an element is not a value of its datatype: a BOOL byte
	// other than 0 or 1.
	ErrValue = errors.New("invalid element")
)

// elementSize is the size in bytes of one element of a fixed-size datatype,
// or 0 for BYTES and unknown datatypes.
func elementSize(dt model.DataType) int {
	switch dt {
	case model.BOOL:
		return 1
	case model.INT32, model.FP32:
		return 4
	case model.INT64, model.FP64:
		return 8
	}
	return 0
}

// elements returns the number of elements shape calls for. It fails with
// ErrShape for a negative dimension or a count that does not fit in an int.
// A dimension of 0 makes the count 0 whatever the others are.
func elements(shape []int64) (int, error) {
	n := int64(1)
	zero := false
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("%w: dimension %d in %v", ErrShape, d, shape)
		}
		if d == 0 {
			zero = true
		}
	}
	if zero {
		return 0, nil
	}
	for _, d := range shape {
		if n > math.MaxInt/d {
			return 0, fmt.Errorf("%w: %v has too many elements", ErrShape, shape)
		}
		n *= d
	}
	return int(n), nil
}

// DecodeRaw decodes the raw contents b of a tensor of the given datatype and
// shape. The returned tensor has no name, a copy of shape, and Data of the Go
// type model.Tensor documents for the datatype. It allocates no more than b's
// length calls for, whatever the shape says. Errors wrap ErrDatatype,
// ErrShape, ErrSize or ErrValue. Values are not otherwise checked: NaN and
// infinities decode as they are, for the caller to refuse.
func DecodeRaw(datatype string, shape []int64, b []byte) (model.Tensor, error) {
	dt := model.DataType(datatype)
	n, err := elements(shape)
	if err != nil {
		return model.Tensor{}, err
	}
	t := model.Tensor{DataType: dt, Shape: slices.Clone(shape)}
	if dt == model.BYTES {
		t.Data, err = decodeBytes(b, n)
		if err != nil {
			return model.Tensor{}, err
		}
		return t, nil
	}
	size := elementSize(dt)
	if size == 0 {
		return model.Tensor{}, fmt.Errorf("%w: %q", ErrDatatype, datatype)
	}
	if len(b)%size != 0 || len(b)/size != n {
		return model.Tensor{}, fmt.Errorf("%w: %d bytes of %s for shape %v, which needs %d elements of %d bytes", ErrSize, len(b), dt, shape, n, size)
	}
	switch dt {
	case model.BOOL:
		d := make([]bool, n)
		for i, c := range b {
			switch c {
			case 0:
			case 1:
				d[i] = true
			default:
				return model.Tensor{}, fmt.Errorf("%w: BOOL element %d is byte %d, not 0 or 1", ErrValue, i, c)
			}
		}
		t.Data = d
	case model.INT32:
		d := make([]int32, n)
		for i := range d {
			d[i] = int32(binary.LittleEndian.Uint32(b[4*i:]))
		}
		t.Data = d
	case model.INT64:
		d := make([]int64, n)
		for i := range d {
			d[i] = int64(binary.LittleEndian.Uint64(b[8*i:]))
		}
		t.Data = d
	case model.FP32:
		d := make([]float32, n)
		for i := range d {
			d[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
		t.Data = d
	case model.FP64:
		d := make([]float64, n)
		for i := range d {
			d[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
		}
		t.Data = d
	}
	return t, nil
}

// decodeBytes decodes n length-prefixed elements that fill b exactly.
func decodeBytes(b []byte, n int) ([]string, error) {
	// Every element takes at least its 4-byte prefix: a shape that calls for
	// more elements than that cannot be satisfied, and is refused before
	// anything is allocated for it.
	if n > len(b)/4 {
		return nil, fmt.Errorf("%w: %d bytes cannot hold %d BYTES elements", ErrSize, len(b), n)
	}
	d := make([]string, n)
	off := 0
	for i := range d {
		if len(b)-off < 4 {
			return nil, fmt.Errorf("%w: BYTES element %d has a truncated length", ErrSize, i)
		}
		l := binary.LittleEndian.Uint32(b[off:])
		off += 4
		if uint64(l) > uint64(len(b)-off) {
			return nil, fmt.Errorf("%w: BYTES element %d has length %d, past the end of the contents", ErrSize, i, l)
		}
		d[i] = string(b[off : off+int(l)])
		off += int(l)
	}
	if off != len(b) {
		return nil, fmt.Errorf("%w: %d bytes left over after %d BYTES elements", ErrSize, len(b)-off, n)
	}
	return d, nil
}

// EncodeRaw encodes t's data as raw contents. It fails, with an error
// wrapping ErrDatatype, when t's Data does not match its DataType, with one
// wrapping ErrShape or ErrSize when the shape is invalid or calls for a
// different number of elements than Data has, and with one wrapping ErrSize
// for a BYTES element longer than a 4-byte length can say.
func EncodeRaw(t model.Tensor) ([]byte, error) {
	have := t.DataLen()
	if have < 0 {
		return nil, fmt.Errorf("%w: tensor %s of %s holds %T", ErrDatatype, t.Name, t.DataType, t.Data)
	}
	want, err := elements(t.Shape)
	if err != nil {
		return nil, fmt.Errorf("tensor %s: %w", t.Name, err)
	}
	if have != want {
		return nil, fmt.Errorf("%w: tensor %s has %d elements; shape %v needs %d", ErrSize, t.Name, have, t.Shape, want)
	}
	switch d := t.Data.(type) {
	case []bool:
		b := make([]byte, len(d))
		for i, v := range d {
			if v {
				b[i] = 1
			}
		}
		return b, nil
	case []int32:
		b := make([]byte, 0, 4*len(d))
		for _, v := range d {
			b = binary.LittleEndian.AppendUint32(b, uint32(v))
		}
		return b, nil
	case []int64:
		b := make([]byte, 0, 8*len(d))
		for _, v := range d {
			b = binary.LittleEndian.AppendUint64(b, uint64(v))
		}
		return b, nil
	case []float32:
		b := make([]byte, 0, 4*len(d))
		for _, v := range d {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
		}
		return b, nil
	case []float64:
		b := make([]byte, 0, 8*len(d))
		for _, v := range d {
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
		}
		return b, nil
	case []string:
		size := 0
		for i, v := range d {
			if uint64(len(v)) > math.MaxUint32 {
				return nil, fmt.Errorf("%w: tensor %s element %d is %d bytes, over a 4-byte length", ErrSize, t.Name, i, len(v))
			}
			size += 4 + len(v)
		}
		b := make([]byte, 0, size)
		for _, v := range d {
			b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
			b = append(b, v...)
		}
		return b, nil
	}
	// DataLen accepted a type that the switch does not know.
	return nil, fmt.Errorf("%w: tensor %s of %s holds %T", ErrDatatype, t.Name, t.DataType, t.Data)
}
