package rawtensor

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"testing"

	"github.com/modelwatch/modelwatch/internal/model"
)

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   model.Tensor
		raw  []byte
	}{
		{"bool", model.Tensor{DataType: model.BOOL, Shape: []int64{1, 3}, Data: []bool{true, false, true}},
			[]byte{1, 0, 1}},
		{"int32", model.Tensor{DataType: model.INT32, Shape: []int64{2}, Data: []int32{1, -2}},
			[]byte{1, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff}},
		{"int64", model.Tensor{DataType: model.INT64, Shape: []int64{1}, Data: []int64{-1 << 40}},
			[]byte{0, 0, 0, 0, 0, 0xff, 0xff, 0xff}},
		{"fp32", model.Tensor{DataType: model.FP32, Shape: []int64{2, 1}, Data: []float32{1, -0.5}},
			[]byte{0, 0, 0x80, 0x3f, 0, 0, 0, 0xbf}},
		{"fp64", model.Tensor{DataType: model.FP64, Shape: []int64{1, 1}, Data: []float64{2}},
			[]byte{0, 0, 0, 0, 0, 0, 0, 0x40}},
		{"bytes", model.Tensor{DataType: model.BYTES, Shape: []int64{3}, Data: []string{"ab", "", "é"}},
			[]byte{2, 0, 0, 0, 'a', 'b', 0, 0, 0, 0, 2, 0, 0, 0, 0xc3, 0xa9}},
		{"scalar", model.Tensor{DataType: model.INT32, Shape: []int64{}, Data: []int32{7}},
			[]byte{7, 0, 0, 0}},
		{"empty batch", model.Tensor{DataType: model.FP32, Shape: []int64{0, 4}, Data: []float32{}},
			[]byte{}},
		{"empty bytes batch", model.Tensor{DataType: model.BYTES, Shape: []int64{0}, Data: []string{}},
			[]byte{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := EncodeRaw(tt.in)
			if err != nil {
				t.Fatalf("EncodeRaw: %v", err)
			}
			if !bytes.Equal(raw, tt.raw) {
				t.Fatalf("EncodeRaw = %v, want %v", raw, tt.raw)
			}
			got, err := DecodeRaw(string(tt.in.DataType), tt.in.Shape, raw)
			if err != nil {
				t.Fatalf("DecodeRaw: %v", err)
			}
			if !reflect.DeepEqual(got, tt.in) {
				t.Fatalf("DecodeRaw = %#v, want %#v", got, tt.in)
			}
		})
	}
}

func TestDecodeRawNonFinite(t *testing.T) {
	in := model.Tensor{DataType: model.FP64, Shape: []int64{3}, Data: []float64{math.NaN(), math.Inf(1), math.Inf(-1)}}
	raw, err := EncodeRaw(in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeRaw("FP64", in.Shape, raw)
	if err != nil {
		t.Fatalf("DecodeRaw: %v (non-finite values are the caller's to refuse)", err)
	}
	d := got.Data.([]float64)
	if !math.IsNaN(d[0]) || !math.IsInf(d[1], 1) || !math.IsInf(d[2], -1) {
		t.Fatalf("DecodeRaw = %v", d)
	}
}

func TestDecodeRawErrors(t *testing.T) {
	le32 := func(n uint32) []byte { return []byte{byte(n), byte(n >> 8), byte(n >> 16), byte(n >> 24)} }
	tests := []struct {
		name     string
		datatype string
		shape    []int64
		raw      []byte
		want     error
	}{
		{"unknown datatype", "FP16", []int64{1}, []byte{0, 0}, ErrDatatype},
		{"lowercase datatype", "fp32", []int64{1}, []byte{0, 0, 0, 0}, ErrDatatype},
		{"empty datatype", "", []int64{1}, []byte{0}, ErrDatatype},
		{"negative dimension", "FP32", []int64{-1, 2}, nil, ErrShape},
		{"overflowing shape", "FP32", []int64{math.MaxInt64, 2}, nil, ErrShape},
		{"overflowing bytes shape", "BYTES", []int64{1 << 32, 1 << 32}, nil, ErrShape},
		{"too few bytes", "FP32", []int64{2}, make([]byte, 7), ErrSize},
		{"too many bytes", "INT64", []int64{1}, make([]byte, 16), ErrSize},
		{"partial element", "INT32", []int64{1}, make([]byte, 5), ErrSize},
		{"contents for an empty tensor", "FP64", []int64{0}, make([]byte, 8), ErrSize},
		{"bool byte 2", "BOOL", []int64{2}, []byte{1, 2}, ErrValue},
		{"bytes: huge shape, small contents", "BYTES", []int64{1 << 40}, le32(0), ErrSize},
		{"bytes: truncated prefix", "BYTES", []int64{2}, append(le32(0), 0, 0, 0, 0, 0), ErrSize},
		{"bytes: length past the end", "BYTES", []int64{1}, append(le32(3), 'a', 'b'), ErrSize},
		{"bytes: length near 4 GiB", "BYTES", []int64{1}, append(le32(math.MaxUint32), 'a'), ErrSize},
		{"bytes: left over", "BYTES", []int64{1}, append(le32(1), 'a', 'b'), ErrSize},
		{"bytes: too few elements", "BYTES", []int64{3}, append(le32(0), le32(0)...), ErrSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeRaw(tt.datatype, tt.shape, tt.raw)
			if !errors.Is(err, tt.want) {
				t.Fatalf("DecodeRaw = %#v, %v; want an error wrapping %v", got, err, tt.want)
			}
		})
	}
}

func TestEncodeRawErrors(t *testing.T) {
	tests := []struct {
		name string
		in   model.Tensor
		want error
	}{
		{"data of another type", model.Tensor{DataType: model.FP32, Shape: []int64{1}, Data: []float64{1}}, ErrDatatype},
		{"no data", model.Tensor{DataType: model.INT32, Shape: []int64{1}}, ErrDatatype},
		{"unknown datatype", model.Tensor{DataType: "FP16", Shape: []int64{1}, Data: []float32{1}}, ErrDatatype},
		{"fewer elements than the shape", model.Tensor{DataType: model.INT64, Shape: []int64{2, 2}, Data: []int64{1, 2, 3}}, ErrSize},
		{"more elements than the shape", model.Tensor{DataType: model.BYTES, Shape: []int64{1}, Data: []string{"a", "b"}}, ErrSize},
		{"negative dimension", model.Tensor{DataType: model.BOOL, Shape: []int64{-1}, Data: []bool{true}}, ErrShape},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := EncodeRaw(tt.in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("EncodeRaw = %v, %v; want an error wrapping %v", got, err, tt.want)
			}
		})
	}
}

// FuzzDecodeRaw checks that DecodeRaw neither panics nor allocates beyond its
// input on any contents and shape, and that whatever it accepts encodes back
// to the same bytes.
func FuzzDecodeRaw(f *testing.F) {
	f.Add("FP32", uint8(2), int64(1), int64(2), int64(0), []byte{0, 0, 0x80, 0x3f, 0, 0, 0, 0xbf})
	f.Add("BYTES", uint8(1), int64(2), int64(0), int64(0), []byte{1, 0, 0, 0, 'a', 0, 0, 0, 0})
	f.Add("BOOL", uint8(1), int64(3), int64(0), int64(0), []byte{1, 0, 1})
	f.Add("INT64", uint8(3), int64(1), int64(1), int64(1), []byte{1, 2, 3, 4, 5, 6, 7, 8})
	f.Add("INT32", uint8(0), int64(0), int64(0), int64(0), []byte{1, 2, 3, 4})
	f.Add("FP64", uint8(2), int64(0), int64(math.MaxInt64), int64(0), []byte{})
	f.Add("BYTES", uint8(2), int64(1<<32), int64(1<<32), int64(0), []byte{0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, datatype string, rank uint8, d0, d1, d2 int64, raw []byte) {
		shape := []int64{d0, d1, d2}[:rank%4]
		got, err := DecodeRaw(datatype, shape, raw)
		if err != nil {
			if !errors.Is(err, ErrDatatype) && !errors.Is(err, ErrShape) && !errors.Is(err, ErrSize) && !errors.Is(err, ErrValue) {
				t.Fatalf("DecodeRaw: error %v wraps none of the package's errors", err)
			}
			return
		}
		if n := got.DataLen(); n < 0 || n != got.Len() {
			t.Fatalf("DecodeRaw = %#v: %d elements for shape %v", got, n, got.Shape)
		}
		back, err := EncodeRaw(got)
		if err != nil {
			t.Fatalf("EncodeRaw of a decoded tensor: %v", err)
		}
		if !bytes.Equal(back, raw) {
			t.Fatalf("round trip: %v encodes back to %v", raw, back)
		}
	})
}

func BenchmarkDecodeRawFP32(b *testing.B) {
	in := model.Tensor{DataType: model.FP32, Shape: []int64{1024, 30}, Data: make([]float32, 1024*30)}
	raw, err := EncodeRaw(in)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := DecodeRaw("FP32", in.Shape, raw); err != nil {
			b.Fatal(err)
		}
	}
}
