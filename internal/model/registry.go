package model

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Registry holds the loaded models and resolves a request's model name and
// version to one of them. Lookups are lock-free and never block on changes:
// every change publishes a new immutable snapshot. A model that is replaced
// or removed is closed once the last request that acquired it releases it.
type Registry struct {
	mu       sync.Mutex // serialises writers
	snapshot atomic.Pointer[snapshot]
	// OnClose, if set, is called after a retired model has been closed, with
	// Close's error.
	OnClose func(Model, error)
}

// slot holds one model version and counts the requests using it.
type slot struct {
	model   Model
	refs    atomic.Int64
	retired atomic.Bool
	closed  atomic.Bool
	done    func() // called once the model is closed
}

// retire marks the slot as no longer published and closes the model once
// it has no requests left.
func (r *Registry) retire(s *slot, done func()) {
	s.done = done
	s.retired.Store(true)
	r.tryClose(s)
}

func (r *Registry) tryClose(s *slot) {
	if s.retired.Load() && s.refs.Load() == 0 && s.closed.CompareAndSwap(false, true) {
		err := s.model.Close()
		if r.OnClose != nil {
			r.OnClose(s.model, err)
		}
		if s.done != nil {
			s.done()
		}
	}
}

type snapshot struct {
	defaultModel string
	models       map[string]*entry
	// maxFeatures is the most features any loaded version takes per row.
	maxFeatures int
}

// measure sets maxFeatures from the loaded versions.
func (s *snapshot) measure() {
	s.maxFeatures = 0
	for _, e := range s.models {
		for _, sl := range e.versions {
			s.maxFeatures = max(s.maxFeatures, len(sl.model.Metadata().Features))
		}
	}
}

// MaxFeatures returns the most features any loaded model version takes per
// row, which bounds what a valid /predict row can hold.
func (r *Registry) MaxFeatures() int { return r.snapshot.Load().maxFeatures }

type entry struct {
	versions       map[string]*slot
	order          []string // versions, oldest first
	defaultVersion string   // explicit default; "" means the latest
}

// NewRegistry returns an empty registry whose default model, used when a
// request names none, is defaultModel.
func NewRegistry(defaultModel string) *Registry {
	r := &Registry{}
	r.snapshot.Store(&snapshot{defaultModel: defaultModel, models: map[string]*entry{}})
	return r
}

// Add makes m available under its metadata's name and version. A model
// already there is replaced at once for new requests and closed when its
// in-flight requests are done. Add reports whether it replaced one.
func (r *Registry) Add(m Model) (replaced bool) {
	meta := m.Metadata()
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.snapshot.Load()
	next := old.clone()
	e := next.models[meta.Name].clone()
	prev := e.versions[meta.Version]
	e.versions[meta.Version] = &slot{model: m}
	if prev == nil {
		e.order = append(e.order, meta.Version)
		slices.SortFunc(e.order, CompareVersions)
	}
	next.models[meta.Name] = e
	next.measure()
	r.snapshot.Store(next)
	if prev != nil {
		r.retire(prev, nil)
	}
	return prev != nil
}

// SetDefaultVersion makes version the one a request for model name gets when
// it names no version; "" restores the default, the latest version. It does
// nothing for a model that is not loaded.
func (r *Registry) SetDefaultVersion(name, version string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.snapshot.Load()
	if old.models[name] == nil || old.models[name].defaultVersion == version {
		return
	}
	next := old.clone()
	e := next.models[name].clone()
	e.defaultVersion = version
	next.models[name] = e
	r.snapshot.Store(next)
}

// Remove takes a version out of the registry: new requests no longer get
// it, and it is closed once its in-flight requests are done, after which
// done (if not nil) is called. Remove reports whether the version was there.
func (r *Registry) Remove(name, version string, done func()) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.snapshot.Load()
	oe, ok := old.models[name]
	if !ok || oe.versions[version] == nil {
		return false
	}
	next := old.clone()
	e := oe.clone()
	s := e.versions[version]
	delete(e.versions, version)
	e.order = slices.DeleteFunc(e.order, func(v string) bool { return v == version })
	if len(e.versions) == 0 {
		delete(next.models, name)
	} else {
		next.models[name] = e
	}
	next.measure()
	r.snapshot.Store(next)
	r.retire(s, done)
	return true
}

// Resolve returns the model a request for name and version gets, for
// reading its metadata; a request that runs the model uses Acquire. An empty
// name means the default model; an empty version, the model's default
// version. It returns an error wrapping ErrModelNotFound or
// ErrVersionNotFound; the error text names neither the requested name nor
// version, which are client input.
func (r *Registry) Resolve(name, version string) (Model, error) {
	sl, err := r.resolve(name, version)
	if err != nil {
		return nil, err
	}
	return sl.model, nil
}

// Acquire resolves name and version like Resolve and holds the model open
// until release is called: a model replaced or removed meanwhile is closed
// only after that. release must be called exactly once.
func (r *Registry) Acquire(name, version string) (m Model, release func(), err error) {
	for {
		sl, err := r.resolve(name, version)
		if err != nil {
			return nil, nil, err
		}
		sl.refs.Add(1)
		if sl.retired.Load() {
			// Retired between the lookup and the count: let it close and look
			// again in the newer snapshot.
			sl.refs.Add(-1)
			r.tryClose(sl)
			continue
		}
		return sl.model, func() {
			if sl.refs.Add(-1) == 0 {
				r.tryClose(sl)
			}
		}, nil
	}
}

func (r *Registry) resolve(name, version string) (*slot, error) {
	s := r.snapshot.Load()
	if name == "" {
		name = s.defaultModel
	}
	e, ok := s.models[name]
	if !ok {
		return nil, ErrModelNotFound
	}
	if version == "" {
		version = e.defaultVersion
		if version == "" || e.versions[version] == nil {
			version = e.order[len(e.order)-1]
		}
	}
	sl, ok := e.versions[version]
	if !ok {
		return nil, ErrVersionNotFound
	}
	return sl, nil
}

// Versions returns the loaded versions of model name, oldest first.
func (r *Registry) Versions(name string) []string {
	e, ok := r.snapshot.Load().models[name]
	if !ok {
		return nil
	}
	return slices.Clone(e.order)
}

// Has reports whether a model called name is loaded, in any version.
func (r *Registry) Has(name string) bool {
	_, ok := r.snapshot.Load().models[name]
	return ok
}

// DefaultModel returns the name of the model a request gets when it names none.
func (r *Registry) DefaultModel() string { return r.snapshot.Load().defaultModel }

// Models returns the metadata of every loaded model version, sorted by name
// and then version, oldest first.
func (r *Registry) Models() []Metadata {
	s := r.snapshot.Load()
	names := make([]string, 0, len(s.models))
	for n := range s.models {
		names = append(names, n)
	}
	slices.Sort(names)
	var out []Metadata
	for _, n := range names {
		e := s.models[n]
		for _, v := range e.order {
			out = append(out, e.versions[v].model.Metadata())
		}
	}
	return out
}

// Len returns the number of loaded model versions.
func (r *Registry) Len() int {
	n := 0
	for _, e := range r.snapshot.Load().models {
		n += len(e.versions)
	}
	return n
}

func (s *snapshot) clone() *snapshot {
	c := &snapshot{defaultModel: s.defaultModel, models: make(map[string]*entry, len(s.models)+1), maxFeatures: s.maxFeatures}
	for k, v := range s.models {
		c.models[k] = v
	}
	return c
}

func (e *entry) clone() *entry {
	if e == nil {
		return &entry{versions: map[string]*slot{}}
	}
	c := &entry{versions: make(map[string]*slot, len(e.versions)+1), order: slices.Clone(e.order), defaultVersion: e.defaultVersion}
	for k, v := range e.versions {
		c.versions[k] = v
	}
	return c
}

// CompareVersions orders version names the way people read them: "v2" before
// "v10", "1" before "2"; names without a number sort by text, after numbered
// ones. It returns -1, 0 or +1 like strings.Compare.
func CompareVersions(a, b string) int {
	na, okA := versionNumber(a)
	nb, okB := versionNumber(b)
	switch {
	case okA && okB && na != nb:
		if na < nb {
			return -1
		}
		return 1
	case okA && !okB:
		return -1
	case !okA && okB:
		return 1
	}
	return strings.Compare(a, b)
}

func versionNumber(v string) (uint64, bool) {
	n, err := strconv.ParseUint(strings.TrimPrefix(strings.TrimPrefix(v, "v"), "V"), 10, 64)
	return n, err == nil
}

// ValidName reports whether s may name a model or a version: 1 to 64
// characters from letters, digits, '_', '-' and '.', not starting with '.'.
// Names appear in URLs and metric labels, so nothing else is allowed.
func ValidName(s string) error {
	if len(s) == 0 || len(s) > 64 {
		return fmt.Errorf("%w: name must have 1 to 64 characters", ErrInvalidModel)
	}
	if s[0] == '.' {
		return fmt.Errorf("%w: name %q starts with '.'", ErrInvalidModel, s)
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return fmt.Errorf("%w: name %q has a character other than letters, digits, '_', '-' and '.'", ErrInvalidModel, s)
		}
	}
	return nil
}
