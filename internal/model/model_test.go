package model_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/modelwatch/modelwatch/internal/model"
	"github.com/modelwatch/modelwatch/internal/model/modeltest"
)

func fake(name, version string) *modeltest.Model {
	return &modeltest.Model{Meta: model.Metadata{Name: name, Version: version, Outputs: 1, Features: []string{"x"}}}
}

func TestRegistryResolve(t *testing.T) {
	r := model.NewRegistry("a")
	for _, v := range []string{"v2", "v10", "v1"} {
		if r.Add(fake("a", v)) {
			t.Fatalf("Add %s replaced a model", v)
		}
	}
	r.Add(fake("b", "1"))
	for _, tc := range []struct {
		name, version, want string
		err                 error
	}{
		{"", "", "a/v10", nil},
		{"a", "", "a/v10", nil},
		{"a", "v2", "a/v2", nil},
		{"b", "", "b/1", nil},
		{"c", "", "", model.ErrModelNotFound},
		{"a", "v3", "", model.ErrVersionNotFound},
	} {
		m, err := r.Resolve(tc.name, tc.version)
		if !errors.Is(err, tc.err) {
			t.Errorf("Resolve(%q, %q) error %v, want %v", tc.name, tc.version, err, tc.err)
			continue
		}
		if err == nil && m.Metadata().Name+"/"+m.Metadata().Version != tc.want {
			t.Errorf("Resolve(%q, %q) = %s/%s, want %s", tc.name, tc.version, m.Metadata().Name, m.Metadata().Version, tc.want)
		}
	}
	r.SetDefaultVersion("a", "v2")
	if m, _ := r.Resolve("a", ""); m.Metadata().Version != "v2" {
		t.Errorf("default version %s, want v2", m.Metadata().Version)
	}
	var got []string
	for _, m := range r.Models() {
		got = append(got, m.Name+"/"+m.Version)
	}
	if want := []string{"a/v1", "a/v2", "a/v10", "b/1"}; !slices.Equal(got, want) {
		t.Errorf("Models() = %v, want %v", got, want)
	}
	if r.Len() != 4 {
		t.Errorf("Len() = %d", r.Len())
	}

	replacement := fake("a", "v2")
	if !r.Add(replacement) {
		t.Error("replacing v2 reported no replacement")
	}
	if m, _ := r.Resolve("a", "v2"); m != model.Model(replacement) {
		t.Errorf("v2 after replacement is %v", m)
	}
	if !r.Remove("a", "v2", nil) {
		t.Error("Remove found no v2")
	}
	// The default version is gone: requests fall back to the latest.
	if m, _ := r.Resolve("a", ""); m.Metadata().Version != "v10" {
		t.Errorf("after removing the default version: %s", m.Metadata().Version)
	}
	r.Remove("b", "1", nil)
	if r.Has("b") || r.Remove("b", "1", nil) {
		t.Error("b still there after its only version was removed")
	}
}

// TestRegistryClosesAfterInFlightRequests checks that a replaced or removed
// model is closed only when the requests that acquired it are done.
func TestRegistryClosesAfterInFlightRequests(t *testing.T) {
	r := model.NewRegistry("a")
	closed := map[string]int{}
	mk := func(tag string) *modeltest.Model {
		m := fake("a", "1")
		m.Meta.Description = tag
		m.CloseFunc = func() error { closed[tag]++; return nil }
		return m
	}
	r.Add(mk("old"))
	m1, release1, err := r.Acquire("a", "")
	if err != nil || m1.Metadata().Description != "old" {
		t.Fatal(err)
	}
	r.Add(mk("new")) // replace while a request holds the old one
	if closed["old"] != 0 {
		t.Fatal("old model closed while a request held it")
	}
	m2, release2, _ := r.Acquire("a", "")
	if m2.Metadata().Description != "new" {
		t.Fatalf("new requests get %q", m2.Metadata().Description)
	}
	release1()
	if closed["old"] != 1 {
		t.Fatalf("old model closed %d times after its last request", closed["old"])
	}
	done := false
	r.Remove("a", "1", func() { done = true })
	if closed["new"] != 0 || done {
		t.Fatal("removed model closed while a request held it")
	}
	if _, _, err := r.Acquire("a", ""); !errors.Is(err, model.ErrModelNotFound) {
		t.Errorf("Acquire after removal: %v", err)
	}
	release2()
	if closed["new"] != 1 || !done {
		t.Errorf("after the last request: closed %d, done %v", closed["new"], done)
	}
}

func TestRegistryConcurrentAcquireAndReplace(t *testing.T) {
	r := model.NewRegistry("a")
	var mu sync.Mutex
	open := map[*modeltest.Model]bool{}
	mk := func() *modeltest.Model {
		m := fake("a", "1")
		m.CloseFunc = func() error {
			mu.Lock()
			defer mu.Unlock()
			open[m] = false
			return nil
		}
		mu.Lock()
		open[m] = true
		mu.Unlock()
		return m
	}
	r.Add(mk())
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				m, release, err := r.Acquire("a", "1")
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if !open[m.(*modeltest.Model)] {
					t.Error("acquired a closed model")
				}
				mu.Unlock()
				release()
			}
		}()
	}
	for range 200 {
		r.Add(mk())
	}
	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	n := 0
	for _, o := range open {
		if o {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d models open after 200 replacements, want 1", n)
	}
}

func TestCompareVersions(t *testing.T) {
	vs := []string{"v10", "beta", "2", "v1", "alpha", "v2"}
	slices.SortFunc(vs, model.CompareVersions)
	if want := []string{"v1", "2", "v2", "v10", "alpha", "beta"}; !slices.Equal(vs, want) {
		t.Errorf("sorted %v, want %v", vs, want)
	}
}

func TestSafePredict(t *testing.T) {
	m := fake("a", "1")
	m.PredictFunc = func(context.Context, model.Batch) (model.Result, error) { panic("boom") }
	_, err := model.SafePredict(context.Background(), m, model.Batch{Rows: 1, Cols: 1, Values: []float64{1}})
	var pe *model.PanicError
	if !errors.As(err, &pe) || pe.Value != "boom" || !strings.Contains(string(pe.Stack), "TestSafePredict") {
		t.Errorf("SafePredict of a panicking model: %v", err)
	}
	m.PredictFunc = func(context.Context, model.Batch) (model.Result, error) {
		return model.Result{Rows: 2, Cols: 1, Values: []float64{1, 2}}, nil
	}
	if _, err := model.SafePredict(context.Background(), m, model.Batch{Rows: 1, Cols: 1, Values: []float64{1}}); err == nil {
		t.Error("SafePredict accepted 2 result rows for 1 input row")
	}
}

// TestSafeInfer: a tensor model's panic is recovered with the stack of the
// goroutine that panicked, and reported once however many requests share it.
func TestSafeInfer(t *testing.T) {
	m := &modeltest.TensorModel{InferFunc: func(context.Context, []model.Tensor, []string) ([]model.Tensor, error) { panic("tensor boom") }}
	_, err := model.SafeInfer(context.Background(), m, nil, nil)
	var pe *model.PanicError
	if !errors.As(err, &pe) || pe.Value != "tensor boom" || !strings.Contains(string(pe.Stack), "TestSafeInfer") {
		t.Fatalf("SafeInfer of a panicking model: %v (stack %q)", err, pe.Stack)
	}
	if !pe.FirstReport() || pe.FirstReport() || pe.FirstReport() {
		t.Error("FirstReport is not true exactly once")
	}
}

func TestLoadDir(t *testing.T) {
	var seen []model.Metadata
	rt := model.Runtime{Type: "fake", File: "model.bin", Load: func(data []byte, meta model.Metadata) (model.Model, error) {
		if string(data) == "broken" {
			return nil, errors.New("cannot parse")
		}
		seen = append(seen, meta)
		meta.Outputs = 1
		return &modeltest.Model{Meta: meta}, nil
	}}
	fsys := fstest.MapFS{
		"m/config.yaml":   {Data: []byte("description: test\nclasses: [no, yes]\ndefault_version: \"2\"\n")},
		"m/1/model.bin":   {Data: []byte("ok")},
		"m/2/model.bin":   {Data: []byte("ok")},
		"m/3/model.bin":   {Data: []byte("broken")},
		"m/4/README":      {Data: []byte("no model file: not a version")},
		"m/.hidden/x.bin": {Data: []byte("ignored")},
	}
	loaded, cfg, err := model.LoadDir(fsys, "m", []model.Runtime{rt})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DefaultVersion != "2" || cfg.Description != "test" {
		t.Errorf("config %+v", cfg)
	}
	var versions []string
	for _, l := range loaded {
		versions = append(versions, l.Version)
	}
	if !slices.Equal(versions, []string{"1", "2", "3"}) {
		t.Fatalf("versions %v", versions)
	}
	if loaded[2].Err == nil || !strings.Contains(loaded[2].Err.Error(), "load m/3/model.bin: cannot parse") || loaded[2].Model != nil {
		t.Errorf("broken version: %+v", loaded[2])
	}
	if len(seen) != 2 || seen[0].Type != "fake" || !slices.Equal(seen[0].Classes, []string{"no", "yes"}) || seen[0].Description != "test" {
		t.Errorf("metadata given to the runtime: %+v", seen)
	}

	for name, bad := range map[string]string{
		"unknown key": "clases: [a, b]\n",
		"repeated":    "classes: [a, a]\n",
		"not yaml":    "classes: [a\n",
	} {
		_, _, err := model.LoadDir(fstest.MapFS{"m/config.yaml": {Data: []byte(bad)}, "m/1/model.bin": {Data: []byte("ok")}}, "m", []model.Runtime{rt})
		if !errors.Is(err, model.ErrInvalidModel) {
			t.Errorf("%s: error %v, want ErrInvalidModel", name, err)
		}
	}
	if _, _, err := model.LoadDir(fsys, "bad name", []model.Runtime{rt}); !errors.Is(err, model.ErrInvalidModel) {
		t.Errorf("invalid model name: %v", err)
	}
}
