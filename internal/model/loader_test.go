package model_test

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/modelwatch/modelwatch/internal/model"
)

func TestParseConfig(t *testing.T) {
	c, err := model.ParseConfig(strings.NewReader(`# a comment
description: churn
classes: [stays, churns]
features:
  - tenure
  - spend
default_version: "2"
version_policy: {specific: ["1", "2"]}
max_batch_size: 64
dynamic_batching: {max_batch_size: 32, max_queue_delay: 5ms, queue_capacity: 512, workers: 2}
prediction_output: probabilities
`))
	if err != nil {
		t.Fatal(err)
	}
	want := model.Config{
		Description: "churn", Classes: []string{"stays", "churns"}, Features: []string{"tenure", "spend"},
		DefaultVersion: "2", VersionPolicy: model.VersionPolicy{Specific: []string{"1", "2"}}, MaxBatchSize: 64,
		DynamicBatching:  &model.DynamicBatching{MaxBatchSize: 32, MaxQueueDelay: 5 * time.Millisecond, QueueCapacity: 512, Workers: 2},
		PredictionOutput: "probabilities",
	}
	if !reflect.DeepEqual(c, want) || *c.DynamicBatching != *want.DynamicBatching {
		t.Errorf("config\n%+v\nwant\n%+v", c, want)
	}
	for _, empty := range []string{"", "# only a comment\n", "~\n", "---\n"} {
		c, err := model.ParseConfig(strings.NewReader(empty))
		if err != nil || c.Description != "" || c.Classes != nil || c.DynamicBatching != nil {
			t.Errorf("%q: %+v, %v; want the zero config", empty, c, err)
		}
	}
}

// laughs is a "billion laughs" document: each level aliases the one before
// nine times, so that the last expands to 9^levels strings.
func laughs(levels int) string {
	var b strings.Builder
	b.WriteString("description: &l0 lol\nfeatures: &l1 [*l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0]\n")
	for i := 2; i <= levels; i++ {
		fmt.Fprintf(&b, "classes: &l%d [", i)
		for j := range 9 {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*l%d", i-1)
		}
		b.WriteString("]\n")
	}
	return b.String()
}

func TestParseConfigRefuses(t *testing.T) {
	many := func(n int, format string) string {
		var b strings.Builder
		for i := range n {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, format, i)
		}
		return b.String()
	}
	for _, tc := range []struct {
		name, doc, want string
	}{
		{"unknown key", "descripton: typo\n", `line 1: unknown key "descripton"`},
		{"unknown nested key", "version_policy: {lates: 2}\n", `line 1: unknown key "lates"`},
		{"repeated key", "classes: [a, b]\nclasses: [c, d]\n", `line 2: key "classes" repeated (first at line 1)`},
		{"repeated key bomb", "version_policy: {" + strings.Repeat("a: 1, ", 4000) + "}\n", "line 1: a mapping of 4000 keys, more than 64"},
		{"repeated nested key", "dynamic_batching: {workers: 1, workers: 2}\n", `line 1: key "workers" repeated (first at line 1)`},
		{"alias", "description: &d text\nprediction_output: *d\n", "line 2: aliases (*d) are not allowed"},
		{"billion laughs", laughs(9), "line 2: aliases (*l0) are not allowed"},
		{"merge key", "version_policy: {<<: {all: true}}\n", `line 1: unknown key "<<"`},
		{"key not a name", "? [a, b]\n: 1\n", "line 1: a key must be a plain name"},
		{"null entry", "features: [a, ~, b]\n", "line 1: an empty entry in a list"},
		{"empty block entry", "classes:\n  - a\n  -\n", "line 3: an empty entry in a list"},
		{"not a mapping", "just text\n", "cannot unmarshal !!str `just text` into model.Config"},
		{"deep nesting", "features: " + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + "\n", "exceeded max depth of 10000"},
		{"not yaml", "classes: [a\n", "did not find expected ',' or ']'"},
		{"oversize", "description: " + strings.Repeat("x", model.MaxConfigBytes) + "\n", "larger than 1048576 bytes"},
		{"repeated class", "classes: [a, a]\n", `empty, overlong or repeated name "a"`},
		{"empty feature", "features: [a, '']\n", `empty, overlong or repeated name ""`},
		{"overlong feature", "features: [" + strings.Repeat("f", 129) + "]\n", `empty, overlong or repeated name "` + strings.Repeat("f", 128) + `..."`},
		{"too many classes", "classes: [" + many(model.MaxConfigClasses+1, "c%d") + "]\n", "10001 classes, more than 10000"},
		{"too many specific versions", "version_policy: {specific: [" + many(model.MaxConfigSpecific+1, "%d") + "]}\n", "version_policy: 10001 specific versions, more than 10000"},
		{"specific version not a name", "version_policy: {specific: [a/1]}\n", `version_policy: specific: invalid model: name "a/1" has a character`},
		{"two policies", "version_policy: {latest: 2, all: true}\n", "version_policy takes one of latest"},
		{"default version not a name", "default_version: a/b\n", `default_version: invalid model: name "a/b" has a character`},
		{"queue capacity", "dynamic_batching: {queue_capacity: 100000000000}\n", "queue_capacity at most 1048576"},
		{"negative workers", "dynamic_batching: {workers: -1}\n", "sizes must not be negative"},
		{"long delay", "dynamic_batching: {max_queue_delay: 2s}\n", "max_queue_delay at most 1s"},
		{"negative max batch", "max_batch_size: -1\n", "max_batch_size must not be negative"},
		{"wrong type", "classes: 7\n", "cannot unmarshal !!int `7` into []string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := model.ParseConfig(strings.NewReader(tc.doc))
			if !errors.Is(err, model.ErrInvalidModel) || !strings.HasPrefix(err.Error(), "invalid model: config.yaml: ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want ErrInvalidModel saying %q", err, tc.want)
			}
		})
	}
}

// TestParseConfigAllocations: the files that make a YAML decoder allocate
// without bound are refused having allocated little. Before the checks,
// the 20 KB file of repeated keys made the decoder allocate 1.3 GB.
func TestParseConfigAllocations(t *testing.T) {
	for _, tc := range []struct {
		name string
		doc  string
		max  uint64
	}{
		{"repeated keys", "version_policy: {" + strings.Repeat("a: 1, ", 4000) + "}\n", 8 << 20},
		{"billion laughs", laughs(9), 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := model.ParseConfig(strings.NewReader(tc.doc))
			runtime.ReadMemStats(&after)
			if err == nil {
				t.Fatal("accepted")
			}
			if got := after.TotalAlloc - before.TotalAlloc; got > tc.max {
				t.Errorf("allocated %d bytes refusing a %d-byte file, want at most %d", got, len(tc.doc), tc.max)
			}
		})
	}
}

// endless is a reader that never ends.
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = '#'
	}
	return len(p), nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestParseConfigReadsAtMostTheBound(t *testing.T) {
	r := &countingReader{r: endless{}}
	_, err := model.ParseConfig(r)
	if err == nil || !strings.Contains(err.Error(), "larger than 1048576 bytes") {
		t.Errorf("endless file: %v", err)
	}
	if r.n != model.MaxConfigBytes+1 {
		t.Errorf("read %d bytes of an endless file, want %d", r.n, model.MaxConfigBytes+1)
	}
}

func TestReadConfig(t *testing.T) {
	fsys := fstest.MapFS{
		"m/config.yaml":   {Data: []byte("classes: [no, yes]\n")},
		"big/config.yaml": {Data: []byte(strings.Repeat("#", model.MaxConfigBytes+100))},
	}
	c, data, err := model.ReadConfig(fsys, "m/config.yaml")
	if err != nil || !slices.Equal(c.Classes, []string{"no", "yes"}) || string(data) != "classes: [no, yes]\n" {
		t.Errorf("ReadConfig: %+v, %q, %v", c, data, err)
	}
	if _, _, err := model.ReadConfig(fsys, "none/config.yaml"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want fs.ErrNotExist", err)
	}
	_, data, err = model.ReadConfig(fsys, "big/config.yaml")
	if !errors.Is(err, model.ErrInvalidModel) || len(data) != model.MaxConfigBytes+1 {
		t.Errorf("oversize file: read %d bytes, %v", len(data), err)
	}
}

func TestVersionPolicySpecific(t *testing.T) {
	p := model.VersionPolicy{Specific: []string{"3", "1", "9"}}
	if got := p.Select([]string{"10", "3", "2", "1"}); !slices.Equal(got, []string{"1", "3"}) {
		t.Errorf("Select %v, want [1 3]", got)
	}
}

// BenchmarkParseConfigLargest parses the densest files of MaxConfigBytes:
// their cost bounds what a hostile config.yaml makes the server allocate.
func BenchmarkParseConfigLargest(b *testing.B) {
	for _, bc := range []struct{ name, doc string }{
		{"flow sequence", "features: [" + strings.Repeat("a,", model.MaxConfigBytes/2)},
		{"flow mapping", "features: {" + strings.Repeat("? ,", model.MaxConfigBytes/3)},
		{"block sequence", "features:\n" + strings.Repeat("-\n", model.MaxConfigBytes/2)},
	} {
		doc := bc.doc[:model.MaxConfigBytes]
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := model.ParseConfig(strings.NewReader(doc)); err == nil {
					b.Fatal("accepted")
				}
			}
		})
	}
}

func TestSafeLoadTurnsAPanicIntoAnError(t *testing.T) {
	rt := model.Runtime{Type: "faulty", File: "model.bin", Load: func([]byte, model.Metadata) (model.Model, error) {
		var nodes []int
		return nil, fmt.Errorf("node %d", nodes[3])
	}}
	fsys := fstest.MapFS{"m/1/model.bin": {Data: []byte("x")}}
	loaded, _, err := model.LoadDir(fsys, "m", []model.Runtime{rt})
	if err != nil || len(loaded) != 1 {
		t.Fatalf("LoadDir: %v, %v", loaded, err)
	}
	if got := loaded[0].Err; !errors.Is(got, model.ErrInvalidModel) || !strings.Contains(got.Error(), "faulty runtime panicked reading the file: runtime error: index out of range [3] with length 0") {
		t.Errorf("err = %v", got)
	}
}
