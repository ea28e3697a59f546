package model

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"reflect"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is what a model directory's optional config.yaml says about the
// model that its files cannot say.
type Config struct {
	// Description is free text for people.
	Description string `yaml:"description"`
	// Classes names the classes of a classifier in the order of its outputs.
	Classes []string `yaml:"classes"`
	// Features names the input features; it overrides names in the model file.
	Features []string `yaml:"features"`
	// DefaultVersion is the version a request that names none gets; empty
	// means the latest.
	DefaultVersion string `yaml:"default_version"`
	// VersionPolicy says which versions of the model are served.
	VersionPolicy VersionPolicy `yaml:"version_policy"`
	// MaxBatchSize bounds the rows of one request to this model; 0 leaves
	// the server's limit.
	MaxBatchSize int `yaml:"max_batch_size"`
	// DynamicBatching, when set, merges concurrent requests to the model.
	DynamicBatching *DynamicBatching `yaml:"dynamic_batching"`
	// PredictionOutput names the output tensor that /predict answers with
	// and that class metrics read; by default the first floating-point
	// output of the right width.
	PredictionOutput string `yaml:"prediction_output"`
}

// DynamicBatching configures the merging of concurrent requests into
// batches. Zero values take the batcher's defaults.
type DynamicBatching struct {
	MaxBatchSize  int           `yaml:"max_batch_size"`
	MaxQueueDelay time.Duration `yaml:"max_queue_delay"`
	QueueCapacity int           `yaml:"queue_capacity"`
	Workers       int           `yaml:"workers"`
}

// VersionPolicy says which versions of a model are served: the Latest N
// (by CompareVersions order), All, or the Specific ones listed. The zero
// policy serves the latest version only.
type VersionPolicy struct {
	Latest   int      `yaml:"latest"`
	All      bool     `yaml:"all"`
	Specific []string `yaml:"specific"`
}

// Select returns the versions the policy serves out of available.
func (p VersionPolicy) Select(available []string) []string {
	vs := slices.Clone(available)
	slices.SortFunc(vs, CompareVersions)
	switch {
	case p.All:
		return vs
	case len(p.Specific) > 0:
		want := make(map[string]bool, len(p.Specific))
		for _, v := range p.Specific {
			want[v] = true
		}
		return slices.DeleteFunc(vs, func(v string) bool { return !want[v] })
	}
	n := max(p.Latest, 1)
	if len(vs) > n {
		vs = vs[len(vs)-n:]
	}
	return vs
}

func (p VersionPolicy) validate() error {
	set := 0
	if p.Latest != 0 {
		set++
	}
	if p.All {
		set++
	}
	if len(p.Specific) > 0 {
		set++
	}
	if set > 1 || p.Latest < 0 {
		return errors.New("version_policy takes one of latest: N (N >= 1), all: true, specific: [versions]")
	}
	if len(p.Specific) > MaxConfigSpecific {
		return fmt.Errorf("version_policy: %d specific versions, more than %d", len(p.Specific), MaxConfigSpecific)
	}
	for _, v := range p.Specific {
		if err := ValidName(v); err != nil {
			return fmt.Errorf("version_policy: specific: %w", err)
		}
	}
	return nil
}

// Metadata returns what the configuration says of a model version, for a
// runtime's LoadFunc to complete.
func (c Config) Metadata(name, version, typ string) Metadata {
	return Metadata{
		Name: name, Version: version, Type: typ, Description: c.Description,
		Features: slices.Clone(c.Features), Classes: slices.Clone(c.Classes),
		PredictionOutput: c.PredictionOutput, MaxBatchRows: c.MaxBatchSize,
	}
}

// Bounds on a config.yaml. It is untrusted input: a file dropped into the
// repository must not make the server allocate without limit.
const (
	// MaxConfigBytes bounds the size of a config.yaml. The YAML library
	// parses the whole file into a tree of nodes before anything can be
	// checked; the densest files of this size (flow collections of
	// one-character entries) make that parse allocate about 150 MB and take
	// one to two seconds (BenchmarkParseConfigLargest).
	MaxConfigBytes = 1 << 20
	// MaxConfigClasses bounds the classes a config.yaml may name, as the
	// runtimes bound the classes of a model file.
	MaxConfigClasses = MaxClasses
	// MaxConfigSpecific bounds the versions version_policy.specific lists.
	MaxConfigSpecific = 10_000
	// MaxQueueCapacity bounds dynamic_batching.queue_capacity, whose queue
	// is allocated when the model loads.
	MaxQueueCapacity = 1 << 20
	// maxMappingKeys bounds the keys of one mapping. The YAML decoder
	// compares every key with every other, so a mapping of thousands of
	// repeated keys would cost seconds and gigabytes; no mapping of a
	// config.yaml has more than eight legitimate keys.
	maxMappingKeys = 64
)

// ReadConfig reads and parses the config.yaml at file in fsys, reading at
// most MaxConfigBytes+1 bytes of it. It returns the bytes read, for a caller
// that fingerprints the file. The error wraps fs.ErrNotExist when there is
// no such file, and ErrInvalidModel when the file cannot be used.
func ReadConfig(fsys fs.FS, file string) (Config, []byte, error) {
	f, err := fsys.Open(file)
	if err != nil {
		return Config{}, nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxConfigBytes+1))
	if err != nil {
		return Config{}, nil, fmt.Errorf("read config.yaml: %w", err)
	}
	c, err := ParseConfig(bytes.NewReader(data))
	return c, data, err
}

// ParseConfig reads a model's config.yaml. Unknown keys are an error, so a
// misspelt setting is not silently ignored. A file over MaxConfigBytes, a
// mapping with a repeated key, and aliases (*name) are refused before the
// settings are decoded: they are how a small YAML file makes a decoder
// allocate without bound. Every error wraps ErrInvalidModel and says what
// is wrong, with its line where there is one.
func ParseConfig(r io.Reader) (Config, error) {
	invalid := func(format string, args ...any) (Config, error) {
		return Config{}, fmt.Errorf("%w: config.yaml: %s", ErrInvalidModel, fmt.Sprintf(format, args...))
	}
	data, err := io.ReadAll(io.LimitReader(r, MaxConfigBytes+1))
	if err != nil {
		return invalid("%v", err)
	}
	if len(data) > MaxConfigBytes {
		return invalid("larger than %d bytes", MaxConfigBytes)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return invalid("%v", err)
	}
	var c Config
	if len(doc.Content) > 0 {
		root := doc.Content[0]
		if err := checkNodes(root, reflect.TypeFor[Config]()); err != nil {
			return invalid("%v", err)
		}
		if err := root.Decode(&c); err != nil {
			return invalid("%v", err)
		}
	}
	if err := c.VersionPolicy.validate(); err != nil {
		return invalid("%v", err)
	}
	if b := c.DynamicBatching; b != nil && (b.MaxBatchSize < 0 || b.MaxQueueDelay < 0 || b.MaxQueueDelay > time.Second || b.QueueCapacity < 0 || b.QueueCapacity > MaxQueueCapacity || b.Workers < 0 || b.Workers > 256) {
		return invalid("dynamic_batching: sizes must not be negative, max_queue_delay at most 1s, queue_capacity at most %d, workers at most 256", MaxQueueCapacity)
	}
	if c.MaxBatchSize < 0 {
		return invalid("max_batch_size must not be negative")
	}
	if len(c.Classes) > MaxConfigClasses {
		return invalid("%d classes, more than %d", len(c.Classes), MaxConfigClasses)
	}
	for _, names := range [][]string{c.Classes, c.Features} {
		seen := make(map[string]bool, len(names))
		for _, n := range names {
			if n == "" || len(n) > 128 || seen[n] {
				return invalid("empty, overlong or repeated name %q", truncate(n, 128))
			}
			seen[n] = true
		}
	}
	if c.DefaultVersion != "" {
		if err := ValidName(c.DefaultVersion); err != nil {
			return invalid("default_version: %v", err)
		}
	}
	return c, nil
}

// truncate shortens s to at most n bytes for an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// checkNodes walks a parsed config.yaml, refusing aliases, mappings with
// more than maxMappingKeys keys or with a repeated key, keys that t, the
// struct the mapping decodes into, has no field for, and null list entries. It does in one pass
// what the YAML decoder would do in time quadratic in a mapping's keys.
func checkNodes(n *yaml.Node, t reflect.Type) error {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch n.Kind {
	case yaml.AliasNode:
		return fmt.Errorf("line %d: aliases (*%s) are not allowed", n.Line, truncate(n.Value, 64))
	case yaml.MappingNode:
		if len(n.Content) > 2*maxMappingKeys {
			return fmt.Errorf("line %d: a mapping of %d keys, more than %d", n.Line, len(n.Content)/2, maxMappingKeys)
		}
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: a key must be a plain name", k.Line)
			}
			if line, ok := seen[k.Value]; ok {
				return fmt.Errorf("line %d: key %q repeated (first at line %d)", k.Line, truncate(k.Value, 64), line)
			}
			seen[k.Value] = k.Line
			var ft reflect.Type
			if t != nil && t.Kind() == reflect.Struct {
				f, ok := yamlField(t, k.Value)
				if !ok {
					return fmt.Errorf("line %d: unknown key %q", k.Line, truncate(k.Value, 64))
				}
				ft = f.Type
			}
			if err := checkNodes(v, ft); err != nil {
				return err
			}
		}
	case yaml.SequenceNode:
		var et reflect.Type
		if t != nil && t.Kind() == reflect.Slice {
			et = t.Elem()
		}
		for _, c := range n.Content {
			// The decoder would drop a null entry silently.
			if c.Kind == yaml.ScalarNode && c.ShortTag() == "!!null" {
				return fmt.Errorf("line %d: an empty entry in a list", c.Line)
			}
			if err := checkNodes(c, et); err != nil {
				return err
			}
		}
	default:
		for _, c := range n.Content {
			if err := checkNodes(c, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// yamlField returns the field of struct t that the YAML key name decodes
// into.
func yamlField(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); tag == name && f.IsExported() {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// LoadFunc builds a model from the bytes of its file. meta carries the name,
// version and what the configuration says; the runtime fills in the rest
// and checks that it agrees with the file.
type LoadFunc func(data []byte, meta Metadata) (Model, error)

// Runtime is one model file format the server can load.
type Runtime struct {
	// Type names the runtime, as model_loaded_info's model_type label shows it.
	Type string
	// File is the file name a version directory holds, such as "model.json".
	File string
	// Load builds the model.
	Load LoadFunc
}

// SafeLoad calls r.Load and turns a panic inside it into an error wrapping
// ErrInvalidModel, so that no model file can take the server down, even
// through a fault in a runtime's parser.
func (r Runtime) SafeLoad(data []byte, meta Metadata) (m Model, err error) {
	defer func() {
		if v := recover(); v != nil {
			m, err = nil, fmt.Errorf("%w: %s runtime panicked reading the file: %v", ErrInvalidModel, r.Type, v)
		}
	}()
	return r.Load(data, meta)
}

// Loaded is one model version LoadDir loaded, or failed to load.
type Loaded struct {
	Model Model
	// Err is why the version could not be loaded; Model is nil then.
	Err     error
	Version string
}

// LoadDir loads every version of the model in directory name of fsys: each
// subdirectory that holds one of the runtimes' files is a version. A version
// that fails to load is returned with its error; other versions still load.
// The error is for the model as a whole: an unreadable directory or
// config.yaml.
func LoadDir(fsys fs.FS, name string, runtimes []Runtime) ([]Loaded, Config, error) {
	if err := ValidName(name); err != nil {
		return nil, Config{}, err
	}
	cfg, _, err := ReadConfig(fsys, path.Join(name, "config.yaml"))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case errors.Is(err, ErrInvalidModel):
		return nil, Config{}, fmt.Errorf("model %s: %w", name, err)
	case err != nil:
		return nil, Config{}, fmt.Errorf("read config of model %s: %w", name, err)
	}
	entries, err := fs.ReadDir(fsys, name)
	if err != nil {
		return nil, Config{}, fmt.Errorf("read model directory %s: %w", name, err)
	}
	var out []Loaded
	for _, e := range entries {
		if !e.IsDir() || ValidName(e.Name()) != nil {
			continue
		}
		version := e.Name()
		for _, rt := range runtimes {
			data, err := fs.ReadFile(fsys, path.Join(name, version, rt.File))
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			l := Loaded{Version: version}
			if err != nil {
				l.Err = fmt.Errorf("read %s/%s/%s: %w", name, version, rt.File, err)
			} else {
				meta := cfg.Metadata(name, version, rt.Type)
				l.Model, l.Err = rt.SafeLoad(data, meta)
				if l.Err != nil {
					l.Err = fmt.Errorf("load %s/%s/%s: %w", name, version, rt.File, l.Err)
				}
			}
			out = append(out, l)
			break
		}
	}
	slices.SortFunc(out, func(a, b Loaded) int { return CompareVersions(a.Version, b.Version) })
	return out, cfg, nil
}
