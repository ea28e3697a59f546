package ubjson

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// cat joins byte fragments: markers written as strings, payloads as big-endian bytes.
func cat(parts ...any) []byte {
	var b []byte
	for _, p := range parts {
		switch v := p.(type) {
		case string:
			b = append(b, v...)
		case []byte:
			b = append(b, v...)
		case byte:
			b = append(b, v)
		case int:
			b = append(b, byte(v))
		default:
			panic("cat: unsupported part")
		}
	}
	return b
}

func TestToJSON(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"null", cat("Z"), `null`},
		{"true", cat("T"), `true`},
		{"false", cat("F"), `false`},
		{"no-ops around a value", cat("NNTN"), `true`},
		{"int8 negative", cat("i", 0x80), `-128`},
		{"int8 positive", cat("i", 0x7f), `127`},
		{"uint8", cat("U", 0xff), `255`},
		{"int16", cat("I", 0x80, 0x00), `-32768`},
		{"int16 positive", cat("I", 0x01, 0x02), `258`},
		{"int32", cat("l", 0x80, 0, 0, 0), `-2147483648`},
		{"int32 positive", cat("l", 0x01, 0x02, 0x03, 0x04), `16909060`},
		{"int64 min", cat("L", 0x80, 0, 0, 0, 0, 0, 0, 0), `-9223372036854775808`},
		{"int64 max", cat("L", 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), `9223372036854775807`},
		{"float32 half", cat("d", 0x3f, 0x00, 0x00, 0x00), `0.5`},
		{"float32 shortest digits", cat("d", 0x3d, 0xcc, 0xcc, 0xcd), `0.1`},
		{"float32 small", cat("d", 0x00, 0x00, 0x00, 0x01), `1e-45`},
		{"float32 negative zero", cat("d", 0x80, 0, 0, 0), `-0`},
		{"float32 NaN", cat("d", 0x7f, 0xc0, 0, 0), `NaN`},
		{"float32 +Inf", cat("d", 0x7f, 0x80, 0, 0), `Infinity`},
		{"float32 -Inf", cat("d", 0xff, 0x80, 0, 0), `-Infinity`},
		{"float64 tenth", cat("D", 0x3f, 0xb9, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a), `0.1`},
		{"float64 large", cat("D", 0x7f, 0xef, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), `1.7976931348623157e+308`},
		{"float64 -Inf", cat("D", 0xff, 0xf0, 0, 0, 0, 0, 0, 0), `-Infinity`},
		{"char", cat("C", "a"), `"a"`},
		{"char quote", cat("C", `"`), `"\""`},
		{"high precision", cat("H", "i", 6, "-1.5e3"), `-1.5e3`},
		{"string", cat("S", "i", 3, "abc"), `"abc"`},
		{"string with escapes", cat("S", "i", 7, "a\"\\\n\r\t\x01"), `"a\"\\\n\r\t\u0001"`},
		{"string UTF-8", cat("S", "U", 3, "é€"[:2], "x"), `"éx"`},
		{"string invalid UTF-8", cat("S", "U", 2, 0xff, "x"), "\"\ufffdx\""},
		{"string length int64", cat("S", "L", 0, 0, 0, 0, 0, 0, 0, 2, "hi"), `"hi"`},
		{"empty string", cat("S", "U", 0), `""`},
		{"array", cat("[", "i", 1, "S", "U", 1, "x", "Z", "]"), `[1,"x",null]`},
		{"array with no-ops", cat("[", "N", "i", 1, "N", "T", "N", "]"), `[1,true]`},
		{"empty array", cat("[", "]"), `[]`},
		{"counted array", cat("[", "#", "L", 0, 0, 0, 0, 0, 0, 0, 2, "T", "F"), `[true,false]`},
		{"counted empty array", cat("[", "#", "U", 0), `[]`},
		{"typed float32 array", cat("[$d#L", 0, 0, 0, 0, 0, 0, 0, 2, 0x3f, 0x80, 0, 0, 0xc0, 0x00, 0, 0), `[1,-2]`},
		{"typed float64 array", cat("[$D#i", 1, 0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18), `[3.141592653589793]`},
		{"typed uint8 array", cat("[$U#i", 3, 0, 128, 255), `[0,128,255]`},
		{"typed int8 array", cat("[$i#i", 2, 0xff, 0x01), `[-1,1]`},
		{"typed int16 array", cat("[$I#i", 1, 0xff, 0xfe), `[-2]`},
		{"typed int32 array", cat("[$l#L", 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 1, 0, 0xff, 0xff, 0xff, 0xff), `[256,-1]`},
		{"typed int64 array", cat("[$L#i", 1, 0, 0, 0, 1, 0, 0, 0, 0), `[4294967296]`},
		{"typed string array", cat("[$S#i", 2, "i", 1, "a", "i", 0), `["a",""]`},
		{"typed char array", cat("[$C#i", 2, "ab"), `["a","b"]`},
		{"typed null array", cat("[$Z#i", 3), `[null,null,null]`},
		{"typed null array as long as the input", cat("[$Z#i", 6), `[null,null,null,null,null,null]`},
		{"typed true array", cat("[$T#i", 2), `[true,true]`},
		{"typed empty array", cat("[$d#i", 0), `[]`},
		{"typed array of arrays", cat("[$[#i", 2, "]", "#i", 1, "T"), `[[],[true]]`},
		{"object", cat("{", "L", 0, 0, 0, 0, 0, 0, 0, 1, "a", "i", 1, "i", 1, "b", "[", "]", "}"), `{"a":1,"b":[]}`},
		{"object with no-ops", cat("{", "N", "i", 1, "a", "N", "T", "N", "}"), `{"a":true}`},
		{"empty object", cat("{", "}"), `{}`},
		{"object key escaped", cat("{", "U", 2, "\"\x7f", "Z", "}"), `{"\"` + "\x7f" + `":null}`},
		{"counted object", cat("{#i", 2, "i", 1, "a", "T", "i", 1, "b", "F"), `{"a":true,"b":false}`},
		{"typed object", cat("{$U#i", 2, "i", 1, "a", 7, "i", 1, "b", 8), `{"a":7,"b":8}`},
		{"typed null object", cat("{$Z#i", 1, "i", 1, "a"), `{"a":null}`},
		{"nested", cat("{", "i", 1, "x", "{", "i", 1, "y", "[$d#i", 1, 0x3f, 0, 0, 0, "}", "}"), `{"x":{"y":[0.5]}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ToJSON(tt.in)
			if err != nil {
				t.Fatalf("ToJSON(% x): %v", tt.in, err)
			}
			if string(got) != tt.want {
				t.Errorf("ToJSON(% x) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestToJSONErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "unexpected end of input"},
		{"only no-ops", cat("NNN"), "unexpected end of input"},
		{"unknown marker", cat("x"), `unknown marker 'x'`},
		{"trailing data", cat("TT"), "data after the end of the document"},
		{"truncated int16", cat("I", 1), "unexpected end of input: 2 bytes needed, 1 left"},
		{"truncated float64", cat("D", 0, 0, 0), "unexpected end of input: 8 bytes needed, 3 left"},
		{"truncated string", cat("S", "i", 5, "abc"), "unexpected end of input: 5 bytes needed, 3 left"},
		{"negative string length", cat("S", "i", 0xff), "negative length -1"},
		{"string length not integer", cat("S", "d", 0, 0, 0, 0), `length must be an integer, found marker 'd'`},
		{"huge string length", cat("S", "L", 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), "length 9223372036854775807 exceeds the input size 10"},
		{"null array longer than the input", cat("[$Z#l", 0, 0, 0, 10), "length 10 exceeds the input size 9"},
		{"char not ASCII", cat("C", 0xc3), "char 0xc3 is not ASCII"},
		{"high precision not a number", cat("H", "i", 3, "1.e"), `high-precision number "1.e" is not a JSON number`},
		{"high precision leading zero", cat("H", "i", 2, "01"), `is not a JSON number`},
		{"unterminated array", cat("[", "T"), "unexpected end of input"},
		{"unterminated object", cat("{", "i", 1, "a", "T"), "unexpected end of input"},
		{"object key without length", cat("{", "S", "i", 1, "a", "T", "}"), `object key must start with an integer length, found marker 'S'`},
		{"object key without value", cat("{", "i", 1, "a", "}"), `unknown marker '}'`},
		{"array closed by brace", cat("[", "T", "}"), `unknown marker '}'`},
		{"count beyond input", cat("[#L", 0, 0, 0, 0, 0, 0x10, 0, 0, "T"), "length 1048576 exceeds the input size 12"},
		{"typed count beyond input", cat("[$d#l", 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0), "count 3 exceeds what the 8 bytes left can hold"},
		{"typed object count beyond input", cat("{$Z#i", 3, "i", 1, "a"), "count 3 exceeds what the 3 bytes left can hold"},
		{"counted array short", cat("[#i", 2, "T"), "count 2 exceeds what the 1 bytes left can hold"},
		{"typed without count", cat("[$d", 0x3f, 0, 0, 0, "]"), "typed container without a count"},
		{"typed no-op", cat("[$N#i", 1), `invalid container type 'N'`},
		{"typed unknown", cat("[$x#i", 1), `invalid container type 'x'`},
		{"negative count", cat("[#i", 0xfe), "negative length -2"},
		{"nested null arrays beyond output bound", cat("[$[#i", 4, bytes.Repeat(cat("$Z#U", 22), 4)), "JSON output exceeds 8 times the input size"},
		{"too deep", bytes.Repeat([]byte("["), maxDepth+1), "nesting deeper than 1000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ToJSON(tt.in)
			if err == nil {
				t.Fatalf("ToJSON(% x) = %s, want an error containing %q", tt.in, got, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ToJSON(% x) error = %q, want it to contain %q", tt.in, err, tt.want)
			}
			if got != nil {
				t.Errorf("ToJSON(% x) returned output %q with its error", tt.in, got)
			}
		})
	}
}

func TestDepthLimitIsInclusive(t *testing.T) {
	in := append(bytes.Repeat([]byte("["), maxDepth), bytes.Repeat([]byte("]"), maxDepth)...)
	got, err := ToJSON(in)
	if err != nil {
		t.Fatalf("ToJSON of %d nested arrays: %v", maxDepth, err)
	}
	if !bytes.Equal(got, in) {
		t.Errorf("ToJSON of %d nested arrays changed them", maxDepth)
	}
}

func TestFloat32RoundTrip(t *testing.T) {
	for _, bits := range []uint32{0x00000001, 0x007fffff, 0x00800000, 0x3eaaaaab, 0x3f7fffff, 0x4b000001, 0x7f7fffff, 0xbf8ccccd} {
		in := cat("d", byte(bits>>24), byte(bits>>16), byte(bits>>8), byte(bits))
		got, err := ToJSON(in)
		if err != nil {
			t.Fatalf("ToJSON(% x): %v", in, err)
		}
		f, err := strconv.ParseFloat(string(got), 32)
		if err != nil {
			t.Fatalf("ParseFloat(%s): %v", got, err)
		}
		if back := math.Float32bits(float32(f)); back != bits {
			t.Errorf("float32 %#08x written as %s, which parses to %#08x", bits, got, back)
		}
	}
}

func TestIs(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"{L\x00\x00\x00\x00\x00\x00\x00\x07learner", true},
		{"{i\x01a", true},
		{"{U\x01a", true},
		{"{I\x00\x01a", true},
		{"{l\x00\x00\x00\x01a", true},
		{"{$Z#i\x01", true},
		{"{#i\x00", true},
		{`{"learner": {}}`, false},
		{"{\n  \"learner\"", false},
		{"{ }", false},
		{"{}", false},
		{"{", false},
		{"", false},
		{"[$d#L", false},
		{"\xef\xbb\xbf{", false},
	}
	for _, tt := range tests {
		if got := Is([]byte(tt.in)); got != tt.want {
			t.Errorf("Is(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// TestXGBoostModels checks that each model.ubj XGBoost wrote transcodes to the document its model.json holds.
func TestXGBoostModels(t *testing.T) {
	ubjs, err := filepath.Glob(filepath.Join("testdata", "*.ubj"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ubjs) < 4 {
		t.Fatalf("found %d .ubj files in testdata, want the 4 that generate.py writes", len(ubjs))
	}
	for _, path := range ubjs {
		name := strings.TrimSuffix(filepath.Base(path), ".ubj")
		t.Run(name, func(t *testing.T) {
			ubj, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			text, err := os.ReadFile(strings.TrimSuffix(path, ".ubj") + ".json")
			if err != nil {
				t.Fatal(err)
			}
			if !Is(ubj) {
				t.Errorf("Is(%s) = false", path)
			}
			if Is(text) {
				t.Errorf("Is(%s.json) = true", name)
			}
			got, err := ToJSON(ubj)
			if err != nil {
				t.Fatalf("ToJSON(%s): %v", path, err)
			}
			if !json.Valid(got) {
				t.Fatalf("ToJSON(%s) is not valid JSON", path)
			}
			equalDocuments(t, "$", decode(t, got), decode(t, text))
		})
	}
}

func decode(t *testing.T, data []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decoding JSON: %v", err)
	}
	return v
}

// equalDocuments reports every difference between two decoded documents. Integers must be equal; other
// numbers must be equal at float32 precision, the precision XGBoost keeps its floats in.
func equalDocuments(t *testing.T, path string, got, want any) {
	t.Helper()
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			t.Errorf("%s: got %T, want an object", path, got)
			return
		}
		if len(g) != len(w) {
			t.Errorf("%s: got %d keys, want %d", path, len(g), len(w))
		}
		for k, wv := range w {
			gv, ok := g[k]
			if !ok {
				t.Errorf("%s: key %q missing", path, k)
				continue
			}
			equalDocuments(t, path+"."+k, gv, wv)
		}
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			t.Errorf("%s: got %T of length %d, want an array of length %d", path, got, len(g), len(w))
			return
		}
		for i := range w {
			equalDocuments(t, path+"["+strconv.Itoa(i)+"]", g[i], w[i])
		}
	case json.Number:
		g, ok := got.(json.Number)
		if !ok {
			t.Errorf("%s: got %T %v, want number %s", path, got, got, w)
			return
		}
		gi, gerr := g.Int64()
		wi, werr := w.Int64()
		if gerr == nil && werr == nil {
			if gi != wi {
				t.Errorf("%s: got integer %d, want %d", path, gi, wi)
			}
			return
		}
		gf, gerr := strconv.ParseFloat(string(g), 32)
		wf, werr := strconv.ParseFloat(string(w), 32)
		if gerr != nil || werr != nil {
			t.Errorf("%s: numbers %s and %s do not parse: %v, %v", path, g, w, gerr, werr)
			return
		}
		if math.Float32bits(float32(gf)) != math.Float32bits(float32(wf)) {
			t.Errorf("%s: got %s, want %s (as float32: %v, %v)", path, g, w, float32(gf), float32(wf))
		}
	default:
		if got != want {
			t.Errorf("%s: got %#v, want %#v", path, got, want)
		}
	}
}
