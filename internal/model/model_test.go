package model_test

import (
	"context"
	"errors"
	"slices"
	"strings"
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
		if old := r.Add(fake("a", v)); old != nil {
			t.Fatalf("Add %s replaced %v", v, old)
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
	if old := r.Add(replacement); old == nil || old.Metadata().Version != "v2" || old == model.Model(replacement) {
		t.Errorf("replacing v2 returned %v", old)
	}
	if m := r.Remove("a", "v2"); m != model.Model(replacement) {
		t.Errorf("Remove returned %v", m)
	}
	// The default version is gone: requests fall back to the latest.
	if m, _ := r.Resolve("a", ""); m.Metadata().Version != "v10" {
		t.Errorf("after removing the default version: %s", m.Metadata().Version)
	}
	r.Remove("b", "1")
	if r.Has("b") || r.Remove("b", "1") != nil {
		t.Error("b still there after its only version was removed")
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
