package ubjson

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// FuzzToJSON checks that no input panics, that the output stays within its size bound, and that it is valid
// JSON whenever it holds no non-finite float token (NaN and Infinity are not JSON).
func FuzzToJSON(f *testing.F) {
	paths, err := filepath.Glob(filepath.Join("testdata", "*.ubj"))
	if err != nil {
		f.Fatal(err)
	}
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, seed := range [][]byte{
		cat("{", "L", 0, 0, 0, 0, 0, 0, 0, 1, "a", "[$d#L", 0, 0, 0, 0, 0, 0, 0, 1, 0x3f, 0, 0, 0, "}"),
		cat("[$Z#L", 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
		cat("[#L", 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
		cat("[$[#i", 4, "$T#l", 0x7f, 0xff, 0xff, 0xff),
		cat("{$Z#i", 2, "i", 1, "a", "i", 1, "b"),
		cat("S", "L", 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
		cat("[", "d", 0x7f, 0xc0, 0, 0, "D", 0xff, 0xf0, 0, 0, 0, 0, 0, 0, "]"),
		cat("H", "i", 4, "1e10"),
		cat("[[[[[[[[NNNN]]]]]]]]"),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		out, nonFinite, err := transcode(data)
		if err != nil {
			if out != nil {
				t.Fatalf("output %q returned with error %v", out, err)
			}
			return
		}
		if limit := maxExpansion*len(data) + expansionSlack; len(out) > limit {
			t.Fatalf("%d bytes of input became %d bytes of JSON, more than %d", len(data), len(out), limit)
		}
		if !nonFinite && !json.Valid(out) {
			t.Fatalf("ToJSON(% x) = %q, not valid JSON", data, out)
		}
		if got, err := ToJSON(data); err != nil || string(got) != string(out) {
			t.Fatalf("ToJSON and transcode disagree: %q, %v", got, err)
		}
	})
}
