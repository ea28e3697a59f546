// Package repository keeps the served models in step with their files: the
// embedded default model and a model repository directory laid out as
// DIR/<model>/<version>/<model file> with an optional DIR/<model>/config.yaml.
// It loads new versions, replaces changed ones after a warm-up inference,
// keeps serving the old version when a new file is broken, and unloads
// versions whose files are gone, all without a restart.
package repository

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"slices"
	"sort"
	"sync"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/modelwatch/modelwatch/internal/batcher"
	"github.com/modelwatch/modelwatch/internal/drift"
	"github.com/modelwatch/modelwatch/internal/feedback"
	"github.com/modelwatch/modelwatch/internal/metrics"
	"github.com/modelwatch/modelwatch/internal/model"
	"github.com/modelwatch/modelwatch/internal/tracing"
)

// State is a model version's state in the repository index, named as the
// Open Inference Protocol's repository extension names them.
type State string

// The states of a model version.
const (
	Ready       State = "READY"
	Unavailable State = "UNAVAILABLE"
)

// Status is one entry of the repository index.
type Status struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	State   State  `json:"state"`
	// Reason says why a version is unavailable, or that the last reload
	// failed while the previous file still serves.
	Reason string `json:"reason,omitempty"`
	// Type is the runtime that serves (or would serve) the version.
	Type   string `json:"type,omitempty"`
	Source string `json:"source"`
}

// ErrNotFound means a model named in a load or unload is in no source.
var ErrNotFound = errors.New("no such model in the repository")

// Options configures a Repository.
type Options struct {
	Registry *model.Registry
	Metrics  *metrics.Metrics
	Runtimes []model.Runtime
	Logger   *slog.Logger
	// Embedded holds models shipped in the binary (models.FS); nil for none.
	// A model of the same name in Dir takes precedence.
	Embedded fs.FS
	// Dir is the model repository directory; "" for none.
	Dir string
	// Drift, if set, tracks every version that has a profile.json beside its
	// model file.
	Drift *drift.Monitor
	// Feedback, if set, forgets the predictions of versions that go.
	Feedback *feedback.Store
	// TracerProvider, if set, records a span for each model version load
	// (docs/TRACING.md); nil for none.
	TracerProvider trace.TracerProvider
}

// Repository syncs the registry with the model sources. Its methods are safe
// for concurrent use; syncs and explicit loads and unloads run one at a time.
type Repository struct {
	opts   Options
	log    *slog.Logger
	dir    fs.FS
	tracer trace.Tracer

	mu       sync.Mutex
	versions map[key]*entry
	unloaded map[string]bool   // models unloaded on request, until loaded again
	broken   map[string]string // models whose directory or config.yaml cannot be read -> why
	// gen counts, per version, the index entries made for it; the clean-up
	// after a removed version's last request compares it, so that it never
	// deletes the series of an entry made since (removed and added back).
	genMu  sync.Mutex
	gen    map[key]uint64
	hashes map[string]fileHash // path -> last hash, to skip re-hashing unchanged files
	// configs keeps each config.yaml as last parsed, to skip reading and
	// parsing an unchanged one at every poll.
	configs map[string]parsedConfig
	synced  bool
}

// parsedConfig is a config.yaml as last read: its size and modification
// time, what parsing it gave, and the hash of its bytes.
type parsedConfig struct {
	size    int64
	modTime time.Time
	cfg     model.Config
	err     error
	sum     string
}

type key struct{ name, version string }

type entry struct {
	status Status
	// fingerprint identifies the file and configuration last tried; a
	// version is loaded again only when it changes.
	fingerprint string
	serving     bool
}

type fileHash struct {
	size    int64
	modTime time.Time
	sum     string
}

// New returns a Repository; call Sync to load the models.
func New(opts Options) *Repository {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.TracerProvider == nil {
		opts.TracerProvider = noop.NewTracerProvider()
	}
	r := &Repository{
		tracer:   opts.TracerProvider.Tracer("github.com/modelwatch/modelwatch/internal/repository"),
		opts:     opts,
		log:      opts.Logger.With("component", "repository"),
		versions: map[key]*entry{},
		unloaded: map[string]bool{},
		broken:   map[string]string{},
		gen:      map[key]uint64{},
		hashes:   map[string]fileHash{},
		configs:  map[string]parsedConfig{},
	}
	if opts.Dir != "" {
		r.dir = os.DirFS(opts.Dir)
	}
	return r
}

// found is one model version found in a source.
type found struct {
	name, version string
	source        string
	fsys          fs.FS
	runtime       model.Runtime
	file          string // path in fsys
	cfg           model.Config
	cfgSum        string
}

// scan lists the versions the sources serve under each model's version
// policy. Models whose directory or configuration cannot be read are
// returned in broken with the reason.
//
// excluded holds the versions whose files are there but are not served,
// with why: the version policy leaves them out, or a repository model of the
// same name replaces the embedded one.
func (r *Repository) scan() (want map[key]found, excluded map[key]string, broken map[string]error) {
	out := map[key]found{}
	excluded = map[key]string{}
	broken = map[string]error{}
	add := func(fsys fs.FS, source string, only func(string) bool, shadowed func(string) bool) {
		entries, err := fs.ReadDir(fsys, ".")
		if err != nil {
			r.log.Error("cannot read model source", "source", source, "err", err)
			return
		}
		for _, e := range entries {
			name := e.Name()
			if !e.IsDir() || model.ValidName(name) != nil || !only(name) {
				continue
			}
			vs, all, err := r.scanModel(fsys, source, name)
			if shadowed(name) {
				for _, v := range all {
					excluded[key{name, v}] = "a repository model of the same name replaces it"
				}
				continue
			}
			if err != nil {
				broken[name] = err
				continue
			}
			for _, v := range all {
				excluded[key{name, v}] = "the model's version_policy leaves it out"
			}
			for _, f := range vs {
				out[key{f.name, f.version}] = f
				delete(excluded, key{f.name, f.version})
			}
		}
	}
	inDir := map[string]bool{}
	if r.dir != nil {
		if entries, err := fs.ReadDir(r.dir, "."); err == nil {
			for _, e := range entries {
				inDir[e.Name()] = e.IsDir()
			}
		}
		add(r.dir, "repository", func(string) bool { return true }, func(string) bool { return false })
	}
	if r.opts.Embedded != nil {
		add(r.opts.Embedded, "embedded", func(string) bool { return true }, func(n string) bool { return inDir[n] })
	}
	return out, excluded, broken
}

// scanModel returns the versions of a model its version policy selects, and
// the names of all versions that have a model file.
func (r *Repository) scanModel(fsys fs.FS, source, name string) ([]found, []string, error) {
	pc, err := r.readConfig(fsys, source, path.Join(name, "config.yaml"))
	if err != nil {
		return nil, nil, err
	}
	cfg := pc.cfg
	entries, err := fs.ReadDir(fsys, name)
	if err != nil {
		return nil, nil, fmt.Errorf("read model directory: %w", err)
	}
	byVersion := map[string]found{}
	var versions []string
	for _, e := range entries {
		if !e.IsDir() || model.ValidName(e.Name()) != nil {
			continue
		}
		for _, rt := range r.opts.Runtimes {
			p := path.Join(name, e.Name(), rt.File)
			if st, err := fs.Stat(fsys, p); err == nil && st.Mode().IsRegular() {
				byVersion[e.Name()] = found{name: name, version: e.Name(), source: source, fsys: fsys, runtime: rt, file: p, cfg: cfg, cfgSum: pc.sum}
				versions = append(versions, e.Name())
				break
			}
		}
	}
	var out []found
	for _, v := range cfg.VersionPolicy.Select(versions) {
		out = append(out, byVersion[v])
	}
	return out, versions, nil
}

// readConfig reads and parses a model's config.yaml (at most
// model.MaxConfigBytes of it), again only when its size or modification time
// changed. A model without one gets the zero Config.
func (r *Repository) readConfig(fsys fs.FS, source, file string) (parsedConfig, error) {
	st, err := fs.Stat(fsys, file)
	if errors.Is(err, fs.ErrNotExist) {
		return parsedConfig{sum: emptyConfigSum}, nil
	}
	if err != nil {
		return parsedConfig{}, fmt.Errorf("read config.yaml: %w", err)
	}
	cacheKey := source + ":" + file
	if pc, ok := r.configs[cacheKey]; ok && pc.size == st.Size() && pc.modTime.Equal(st.ModTime()) {
		return pc, pc.err
	}
	cfg, data, err := model.ReadConfig(fsys, file)
	if errors.Is(err, fs.ErrNotExist) {
		return parsedConfig{sum: emptyConfigSum}, nil
	}
	sum := sha256.Sum256(data)
	pc := parsedConfig{size: st.Size(), modTime: st.ModTime(), cfg: cfg, err: err, sum: hex.EncodeToString(sum[:8])}
	r.configs[cacheKey] = pc
	return pc, err
}

// emptyConfigSum fingerprints a model without a config.yaml.
var emptyConfigSum = func() string { s := sha256.Sum256(nil); return hex.EncodeToString(s[:8]) }()

// fingerprint hashes a version's file, re-reading it only when its size or
// modification time changed. It returns the file's bytes when it read them.
func (r *Repository) fingerprint(f found) (string, []byte, error) {
	st, err := fs.Stat(f.fsys, f.file)
	if err != nil {
		return "", nil, err
	}
	cacheKey := f.source + ":" + f.file
	if h, ok := r.hashes[cacheKey]; ok && h.size == st.Size() && h.modTime.Equal(st.ModTime()) {
		return f.runtime.Type + ":" + h.sum + ":" + f.cfgSum, nil, nil
	}
	data, err := fs.ReadFile(f.fsys, f.file)
	if err != nil {
		return "", nil, err
	}
	s := sha256.Sum256(data)
	sum := hex.EncodeToString(s[:])
	r.hashes[cacheKey] = fileHash{size: st.Size(), modTime: st.ModTime(), sum: sum}
	return f.runtime.Type + ":" + sum + ":" + f.cfgSum, data, nil
}

// Sync brings the registry in line with the sources: it loads new and
// changed versions and unloads versions that are gone. A version that fails
// to load is reported in the index and tried again only once its file or
// configuration changes.
func (r *Repository) Sync(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sync(ctx, "")
	r.synced = true
}

// sync does the work of Sync; with only set, it touches that model alone.
// It reads the sources, notes the models that cannot be read, loads the
// versions wanted, removes those no longer wanted, and sets the default
// versions.
func (r *Repository) sync(ctx context.Context, only string) {
	want, excluded, broken := r.scan()
	healed := r.noteBroken(broken, only)
	if !r.loadWanted(ctx, want, only) {
		return
	}
	r.removeUnwanted(want, excluded, broken, only)
	// A broken model that has left every source leaves no failure count
	// behind (as remove does for a version that never loaded).
	for _, name := range healed {
		if !anyVersion(want, name, always) && !r.known(name) && !r.opts.Registry.Has(name) {
			r.opts.Metrics.LoadFailures.DeleteLabelValues(name)
		}
	}
	// Default versions follow the configuration.
	seen := map[string]bool{}
	for _, f := range want {
		if !seen[f.name] {
			seen[f.name] = true
			r.opts.Registry.SetDefaultVersion(f.name, f.cfg.DefaultVersion)
		}
	}
}

// loadWanted loads the wanted versions that are new or changed, in order of
// model name and version; false when ctx ended first.
func (r *Repository) loadWanted(ctx context.Context, want map[key]found, only string) bool {
	keys := make([]key, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].name != keys[j].name {
			return keys[i].name < keys[j].name
		}
		return model.CompareVersions(keys[i].version, keys[j].version) < 0
	})
	for _, k := range keys {
		if ctx.Err() != nil {
			return false
		}
		if (only != "" && k.name != only) || r.unloaded[k.name] {
			continue
		}
		r.syncVersion(ctx, want[k])
	}
	return true
}

// removeUnwanted removes the versions that are no longer wanted, unless
// their model's directory is unreadable for now: then they keep serving. A
// serving version the version policy leaves out stays while a version the
// policy selects in its place fails to load, so that a broken upload does
// not take the model down.
func (r *Repository) removeUnwanted(want map[key]found, excluded map[key]string, broken map[string]error, only string) {
	for k, e := range r.versions {
		if _, ok := want[k]; ok && !r.unloaded[k.name] {
			if e.status.Reason == keptReason {
				e.status.Reason = ""
			}
			continue
		}
		if (only != "" && k.name != only) || broken[k.name] != nil {
			continue
		}
		why := "its files are gone"
		if reason, ok := excluded[k]; ok && !r.unloaded[k.name] {
			if e.serving && r.selectedFailing(want, k.name) {
				if e.status.Reason != keptReason {
					r.log.Warn("model version kept serving: the version that replaces it failed to load", "model", k.name, "version", k.version, "replaced_because", reason)
				}
				e.status.Reason = keptReason
				continue
			}
			why = reason
		}
		r.remove(k, e, why)
	}
}

// noteBroken records the models whose directory or configuration cannot be
// read. Each new or changed reason counts one load failure and one log line:
// ModelLoadFailing fires for a typo in config.yaml as for a bad model file,
// without a count at every poll. With only set, other models are left as
// they are. It returns the models that were broken and no longer are.
func (r *Repository) noteBroken(broken map[string]error, only string) (healed []string) {
	for name, err := range broken {
		if only != "" && name != only {
			continue
		}
		reason := err.Error()
		if r.broken[name] == reason {
			continue
		}
		r.broken[name] = reason
		r.opts.Metrics.LoadFailures.WithLabelValues(name).Inc()
		if r.hasServing(name) {
			r.log.Error("model cannot be read; its loaded versions keep serving", "model", name, "err", reason)
		} else {
			r.log.Error("model cannot be read", "model", name, "err", reason)
		}
	}
	for name := range r.broken {
		if _, ok := broken[name]; !ok && (only == "" || name == only) {
			delete(r.broken, name)
			healed = append(healed, name)
		}
	}
	return healed
}

// hasServing reports whether a version of a model serves.
func (r *Repository) hasServing(name string) bool {
	return anyVersion(r.versions, name, func(e *entry) bool { return e.serving })
}

// anyVersion reports whether versions holds a version of model name for
// which ok holds.
func anyVersion[V any](versions map[key]V, name string, ok func(V) bool) bool {
	for k, v := range versions {
		if k.name == name && ok(v) {
			return true
		}
	}
	return false
}

// always is anyVersion's test for any version at all.
func always[V any](V) bool { return true }

// keptReason is the index's reason for a version kept by selectedFailing.
const keptReason = "replaced by a version that fails to load; kept serving until it loads"

// selectedFailing reports whether a version of model name that the version
// policy selects is not serving (its load failed).
func (r *Repository) selectedFailing(want map[key]found, name string) bool {
	for k := range want {
		if e := r.versions[k]; k.name == name && (e == nil || !e.serving) {
			return true
		}
	}
	return false
}

// LoadSpanName is the name of a model version load's span.
const LoadSpanName = "load model"

// syncVersion loads a version that is new or whose files changed; its span
// (LoadSpanName) covers reading, parsing and warming up, and ends with its
// outcome. An unchanged version costs no span.
func (r *Repository) syncVersion(ctx context.Context, f found) {
	k := key{f.name, f.version}
	e := r.versions[k]
	fp, data, err := r.fingerprint(f)
	if err != nil {
		r.fail(k, f, fmt.Sprintf("read %s: %v", f.file, err), "")
		return
	}
	if e != nil && e.fingerprint == fp {
		return
	}
	_, span := r.tracer.Start(ctx, LoadSpanName, trace.WithAttributes(tracing.ModelNameKey.String(f.name),
		tracing.ModelVersionKey.String(f.version), tracing.ModelTypeKey.String(f.runtime.Type), tracing.ModelSourceKey.String(f.source)))
	defer span.End()
	failed := func(reason string) {
		r.fail(k, f, reason, fp)
		span.SetAttributes(tracing.LoadOutcomeKey.String("failed"))
		span.SetStatus(codes.Error, reason)
	}
	if data == nil {
		if data, err = fs.ReadFile(f.fsys, f.file); err != nil {
			failed(fmt.Sprintf("read %s: %v", f.file, err))
			return
		}
	}
	start := time.Now()
	m, err := f.runtime.SafeLoad(data, f.cfg.Metadata(f.name, f.version, f.runtime.Type))
	if err == nil && f.cfg.DynamicBatching != nil {
		m = r.batch(m, *f.cfg.DynamicBatching)
	}
	if err == nil {
		if err = warmUp(m); err != nil {
			m.Close()
		}
	}
	if err != nil {
		failed(err.Error())
		return
	}
	took := time.Since(start)
	meta := m.Metadata()
	r.trackDrift(f, meta)
	replaced := r.opts.Registry.Add(m)
	r.opts.Metrics.ModelLoaded(meta, took)
	if e == nil {
		r.generation(k, true)
	}
	r.versions[k] = &entry{fingerprint: fp, serving: true,
		status: Status{Name: f.name, Version: f.version, State: Ready, Type: meta.Type, Source: f.source}}
	verb, outcome := "model loaded", "loaded"
	if replaced {
		verb, outcome = "model reloaded", "reloaded"
	}
	span.SetAttributes(tracing.LoadOutcomeKey.String(outcome))
	r.log.Info(verb, "model", f.name, "version", f.version, "type", meta.Type, "source", f.source,
		"seconds", took.Seconds(), "features", len(meta.Features), "classes", len(meta.Classes))
}

// batch puts a model behind a dynamic batcher that reports into the
// catalogue.
func (r *Repository) batch(m model.Model, cfg model.DynamicBatching) model.Model {
	meta := m.Metadata()
	ser := r.opts.Metrics.Series(meta)
	return batcher.Wrap(m, batcher.Config{
		MaxBatchRows: cfg.MaxBatchSize, MaxDelay: cfg.MaxQueueDelay, QueueCapacity: cfg.QueueCapacity, Workers: cfg.Workers,
	}, batcher.Observers{QueueSize: r.opts.Metrics.QueueSize.WithLabelValues(meta.Name), BatchSize: ser.BatchSize})
}

// trackDrift starts drift tracking of a version from the profile.json
// beside its model file, if there is one; a broken profile is logged and the
// model serves without drift tracking.
func (r *Repository) trackDrift(f found, meta model.Metadata) {
	if r.opts.Drift == nil {
		return
	}
	r.opts.Drift.Remove(meta.Name, meta.Version)
	file, err := f.fsys.Open(path.Join(path.Dir(f.file), ProfileFile))
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err == nil {
		var p *drift.Profile
		// ParseProfile reads at most drift.MaxProfileBytes of the file.
		p, err = drift.ParseProfile(file)
		file.Close()
		if err == nil {
			err = r.opts.Drift.Add(meta, p)
		}
	}
	if err != nil {
		r.log.Warn("drift tracking is off for this version: its profile cannot be used", "model", meta.Name, "version", meta.Version, "err", err)
		return
	}
	r.log.Info("drift tracking on", "model", meta.Name, "version", meta.Version)
}

// ProfileFile is the training profile's file name in a version directory.
const ProfileFile = "profile.json"

// fail records a failed load. A serving version keeps serving.
func (r *Repository) fail(k key, f found, reason, fp string) {
	r.opts.Metrics.LoadFailures.WithLabelValues(k.name).Inc()
	e := r.versions[k]
	if e == nil {
		e = &entry{}
		r.versions[k] = e
		r.generation(k, true)
	}
	e.fingerprint = fp
	if e.serving {
		e.status.Reason = "reload failed, the previous file still serves: " + reason
		r.log.Error("model reload failed; the previous file still serves", "model", k.name, "version", k.version, "err", reason)
		return
	}
	e.status = Status{Name: k.name, Version: k.version, State: Unavailable, Reason: reason, Type: f.runtime.Type, Source: f.source}
	r.opts.Metrics.LoadedInfo.WithLabelValues(k.name, k.version, f.runtime.Type).Set(0)
	r.log.Error("model load failed", "model", k.name, "version", k.version, "err", reason)
}

// remove takes a version out of service. Its series are deleted once its
// in-flight requests are done, so nothing freezes at its last value.
func (r *Repository) remove(k key, e *entry, why string) {
	delete(r.versions, k)
	if !e.serving {
		r.opts.Metrics.LoadedInfo.DeleteLabelValues(k.name, k.version, e.status.Type)
		if len(r.opts.Registry.Versions(k.name)) == 0 && !r.known(k.name) {
			r.opts.Metrics.LoadFailures.DeleteLabelValues(k.name)
		}
		return
	}
	meta := model.Metadata{Name: k.name, Version: k.version}
	reg := r.opts.Registry
	gen := r.generation(k, false)
	reg.Remove(k.name, k.version, func() {
		if r.generation(k, false) != gen {
			// Added back while its old instance finished its requests: the
			// series, drift and feedback are the new instance's now.
			return
		}
		r.opts.Metrics.ModelUnloaded(meta, !reg.Has(k.name))
		if r.opts.Drift != nil {
			r.opts.Drift.Remove(k.name, k.version)
		}
		if r.opts.Feedback != nil {
			r.opts.Feedback.Forget(k.name, k.version)
		}
	})
	r.log.Info("model unloaded", "model", k.name, "version", k.version, "reason", why)
}

// generation returns the count of index entries made for a version,
// counting a new one first when made is set.
func (r *Repository) generation(k key, made bool) uint64 {
	r.genMu.Lock()
	defer r.genMu.Unlock()
	if made {
		r.gen[k]++
	}
	return r.gen[k]
}

// known reports whether any version of a model is in the index.
func (r *Repository) known(name string) bool { return anyVersion(r.versions, name, always) }

// warmUp runs one inference of zeros, so a model that loads but cannot run
// never takes traffic.
func warmUp(m model.Model) error {
	meta := m.Metadata()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if len(meta.Features) > 0 {
		_, err := model.SafePredict(ctx, m, model.Batch{Rows: 1, Cols: len(meta.Features), Values: make([]float64, len(meta.Features))})
		if err != nil {
			return fmt.Errorf("warm-up inference failed: %w", err)
		}
		return nil
	}
	tm, ok := m.(model.TensorModel)
	if !ok {
		return errors.New("the model takes neither rows nor tensors")
	}
	var ins []model.Tensor
	for _, spec := range meta.InputTensors {
		t := model.Tensor{Name: spec.Name, DataType: spec.DataType, Shape: make([]int64, len(spec.Shape))}
		for i, d := range spec.Shape {
			t.Shape[i] = max(d, 1)
		}
		n := t.Len()
		switch spec.DataType {
		case model.FP32:
			t.Data = make([]float32, n)
		case model.FP64:
			t.Data = make([]float64, n)
		case model.INT64:
			t.Data = make([]int64, n)
		case model.INT32:
			t.Data = make([]int32, n)
		case model.BOOL:
			t.Data = make([]bool, n)
		}
		ins = append(ins, t)
	}
	if _, err := model.SafeInfer(ctx, tm, ins, nil); err != nil {
		return fmt.Errorf("warm-up inference failed: %w", err)
	}
	return nil
}

// Run syncs every interval until ctx ends.
func (r *Repository) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.Sync(ctx)
		}
	}
}

// Load (re)loads every version of model name that its source serves, and
// lifts an earlier Unload. It returns ErrNotFound when no source has the
// model, and the load error when no version of it could be loaded.
func (r *Repository) Load(ctx context.Context, name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	want, _, broken := r.scan()
	if err := broken[name]; err != nil {
		return fmt.Errorf("model %s: %w", name, err)
	}
	if !anyVersion(want, name, always) {
		return ErrNotFound
	}
	delete(r.unloaded, name)
	// Forget fingerprints so that even unchanged files load again.
	for k, e := range r.versions {
		if k.name == name {
			e.fingerprint = ""
		}
	}
	r.sync(ctx, name)
	// Success is a version the policy selects serving (not one kept in its
	// place).
	var reasons []string
	for k, e := range r.versions {
		if _, selected := want[k]; k.name == name && selected {
			if e.status.State == Ready {
				return nil
			}
			reasons = append(reasons, k.version+": "+e.status.Reason)
		}
	}
	slices.Sort(reasons)
	return fmt.Errorf("model %s: no version loaded: %v", name, reasons)
}

// Unload stops serving every version of model name until Load is called
// for it. It returns ErrNotFound when no version of it is loaded or known.
func (r *Repository) Unload(name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.known(name) && !r.opts.Registry.Has(name) {
		return ErrNotFound
	}
	r.unloaded[name] = true
	for k, e := range r.versions {
		if k.name == name {
			r.remove(k, e, "unloaded on request")
		}
	}
	return nil
}

// Index lists every model version the repository knows, sorted by name and
// version, with models unloaded on request listed as unavailable.
func (r *Repository) Index() []Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Status
	for _, e := range r.versions {
		out = append(out, e.status)
	}
	for name := range r.unloaded {
		out = append(out, Status{Name: name, State: Unavailable, Reason: "unloaded on request"})
	}
	for name, reason := range r.broken {
		if !r.unloaded[name] {
			out = append(out, Status{Name: name, State: Unavailable, Reason: "the model cannot be read: " + reason})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return model.CompareVersions(out[i].Version, out[j].Version) < 0
	})
	return out
}

// Ready reports whether the first sync is done and every model that is not
// unloaded on request, including one whose configuration cannot be read, has
// a version serving.
func (r *Repository) Ready() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.synced {
		return false
	}
	serving := map[string]bool{}
	for k, e := range r.versions {
		serving[k.name] = serving[k.name] || e.serving
	}
	for name := range r.broken {
		if _, ok := serving[name]; !ok && !r.unloaded[name] {
			serving[name] = false
		}
	}
	for _, ok := range serving {
		if !ok {
			return false
		}
	}
	return true
}
