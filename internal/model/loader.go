package model

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
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
		return slices.DeleteFunc(vs, func(v string) bool { return !slices.Contains(p.Specific, v) })
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

// ParseConfig reads a model's config.yaml. Unknown keys are an error, so a
// misspelt setting is not silently ignored.
func ParseConfig(r io.Reader) (Config, error) {
	var c Config
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("%w: config.yaml: %v", ErrInvalidModel, err)
	}
	if err := c.VersionPolicy.validate(); err != nil {
		return Config{}, fmt.Errorf("%w: config.yaml: %v", ErrInvalidModel, err)
	}
	if b := c.DynamicBatching; b != nil && (b.MaxBatchSize < 0 || b.MaxQueueDelay < 0 || b.MaxQueueDelay > time.Second || b.QueueCapacity < 0 || b.Workers < 0 || b.Workers > 256) {
		return Config{}, fmt.Errorf("%w: config.yaml: dynamic_batching: sizes must not be negative, max_queue_delay at most 1s, workers at most 256", ErrInvalidModel)
	}
	if c.MaxBatchSize < 0 {
		return Config{}, fmt.Errorf("%w: config.yaml: max_batch_size must not be negative", ErrInvalidModel)
	}
	for _, names := range [][]string{c.Classes, c.Features} {
		seen := map[string]bool{}
		for _, n := range names {
			if n == "" || len(n) > 128 || seen[n] {
				return Config{}, fmt.Errorf("%w: config.yaml: empty, overlong or repeated name %q", ErrInvalidModel, n)
			}
			seen[n] = true
		}
	}
	return c, nil
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
	var cfg Config
	switch data, err := fs.ReadFile(fsys, path.Join(name, "config.yaml")); {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, Config{}, fmt.Errorf("read config of model %s: %w", name, err)
	default:
		if cfg, err = ParseConfig(bytes.NewReader(data)); err != nil {
			return nil, Config{}, fmt.Errorf("model %s: %w", name, err)
		}
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
				l.Model, l.Err = rt.Load(data, meta)
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
