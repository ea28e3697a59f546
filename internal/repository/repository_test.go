package repository

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/modelwatch/modelwatch/internal/drift"
	"github.com/modelwatch/modelwatch/internal/metrics"
	"github.com/modelwatch/modelwatch/internal/model"
	"github.com/modelwatch/modelwatch/internal/model/xgboost"
	"github.com/modelwatch/modelwatch/models"
)

type fixture struct {
	t    *testing.T
	dir  string
	reg  *model.Registry
	met  *metrics.Metrics
	repo *Repository
}

func newFixture(t *testing.T, embedded bool) *fixture {
	f := &fixture{t: t, dir: t.TempDir(), reg: model.NewRegistry(models.Default)}
	f.met = metrics.New(prometheus.NewRegistry())
	opts := Options{Registry: f.reg, Metrics: f.met, Runtimes: []model.Runtime{xgboost.Runtime}, Dir: f.dir}
	if embedded {
		opts.Embedded = models.FS
	}
	f.repo = New(opts)
	return f
}

// put copies an XGBoost fixture to DIR/name/version/model.json.
func (f *fixture) put(name, version, fixture string) {
	f.t.Helper()
	data, err := os.ReadFile(filepath.Join("../model/xgboost/testdata", fixture+".json"))
	if err != nil {
		f.t.Fatal(err)
	}
	f.write(filepath.Join(name, version, "model.json"), string(data))
}

func (f *fixture) write(rel, data string) {
	f.t.Helper()
	p := filepath.Join(f.dir, rel)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		f.t.Fatal(err)
	}
	// Make a rewrite within the same second visible as a change.
	later := time.Now().Add(time.Duration(len(data)) * time.Millisecond)
	os.Chtimes(p, later, later)
}

func (f *fixture) index() string {
	var out []string
	for _, s := range f.repo.Index() {
		line := s.Name + "/" + s.Version + " " + string(s.State)
		if s.Reason != "" {
			line += " (" + firstWords(s.Reason) + ")"
		}
		out = append(out, line)
	}
	return strings.Join(out, "; ")
}

func firstWords(s string) string {
	w := strings.Fields(s)
	return strings.Join(w[:min(3, len(w))], " ")
}

func (f *fixture) serving(name string) string {
	return strings.Join(f.reg.Versions(name), ",")
}

func TestSyncLoadsReloadsAndUnloads(t *testing.T) {
	f := newFixture(t, false)
	ctx := context.Background()
	f.put("m", "1", "binary")
	f.put("m", "2", "binary")
	f.write("m/config.yaml", "version_policy: {latest: 2}\nclasses: [no, yes]\n")
	f.put("reg", "1", "regression")
	if f.repo.Ready() {
		t.Error("ready before the first sync")
	}
	f.repo.Sync(ctx)
	if got := f.index(); got != "m/1 READY; m/2 READY; reg/1 READY" {
		t.Fatalf("index %s", got)
	}
	if !f.repo.Ready() {
		t.Error("not ready after loading every model")
	}
	m, _ := f.reg.Resolve("m", "")
	if m.Metadata().Version != "2" || strings.Join(m.Metadata().Classes, ",") != "no,yes" {
		t.Errorf("default version %s, classes %v", m.Metadata().Version, m.Metadata().Classes)
	}
	if v := testutil.ToFloat64(f.met.LoadedInfo.WithLabelValues("m", "1", "xgboost")); v != 1 {
		t.Errorf("model_loaded_info m/1 = %v", v)
	}

	// A new version: the policy keeps the latest two, so version 1 goes.
	f.put("m", "3", "binary")
	f.repo.Sync(ctx)
	if got := f.serving("m"); got != "2,3" {
		t.Errorf("serving %s, want 2,3", got)
	}
	if n := testutil.CollectAndCount(f.met.LoadedInfo); n != 3 {
		t.Errorf("%d model_loaded_info series after version 1 left, want 3", n)
	}

	// A changed file is loaded into a new instance that replaces the old.
	before, _ := f.reg.Resolve("m", "3")
	f.put("m", "3", "dart")
	f.repo.Sync(ctx)
	after, _ := f.reg.Resolve("m", "3")
	if before == after {
		t.Error("changed file not reloaded")
	}
	// An unchanged file is not reloaded, even with a new modification time.
	os.Chtimes(filepath.Join(f.dir, "m/3/model.json"), time.Now().Add(time.Hour), time.Now().Add(time.Hour))
	f.repo.Sync(ctx)
	if again, _ := f.reg.Resolve("m", "3"); again != after {
		t.Error("unchanged file reloaded")
	}

	// A broken replacement leaves the serving version in place, once counted.
	f.write("m/3/model.json", `{"learner": "broken"}`)
	f.repo.Sync(ctx)
	f.repo.Sync(ctx)
	if still, _ := f.reg.Resolve("m", "3"); still != after {
		t.Error("a broken file replaced the serving model")
	}
	if got := f.index(); got != "m/2 READY; m/3 READY (reload failed, the); reg/1 READY" {
		t.Errorf("index %s", got)
	}
	if v := testutil.ToFloat64(f.met.LoadFailures.WithLabelValues("m")); v != 1 {
		t.Errorf("model_load_failures_total %v, want 1", v)
	}

	// A broken new version is unavailable, with its reason, and not served.
	f.write("m/4/model.json", "not json")
	f.write("m/config.yaml", "version_policy: {all: true}\nclasses: [no, yes]\n")
	f.repo.Sync(ctx)
	if got := f.index(); got != "m/1 READY; m/2 READY; m/3 READY (reload failed, the); m/4 UNAVAILABLE (invalid model: xgboost:); reg/1 READY" {
		t.Errorf("index %s", got)
	}
	if v := testutil.ToFloat64(f.met.LoadedInfo.WithLabelValues("m", "4", "xgboost")); v != 0 {
		t.Errorf("model_loaded_info m/4 = %v, want 0", v)
	}
	if _, err := f.reg.Resolve("m", "4"); !errors.Is(err, model.ErrVersionNotFound) {
		t.Errorf("broken version served: %v", err)
	}

	// Removed directories stop serving and their series go.
	os.RemoveAll(filepath.Join(f.dir, "m/4"))
	os.RemoveAll(filepath.Join(f.dir, "reg"))
	f.repo.Sync(ctx)
	if got := f.index(); got != "m/1 READY; m/2 READY; m/3 READY (reload failed, the)" {
		t.Errorf("index %s", got)
	}
	for _, c := range []prometheus.Collector{f.met.LoadedInfo, f.met.ModelRequests, f.met.LoadFailures} {
		if n := testutil.CollectAndCount(c); n == 0 {
			t.Error("no series left")
		}
	}
	if n := testutil.CollectAndCount(f.met.LoadedInfo); n != 3 {
		t.Errorf("%d model_loaded_info series, want m's 3", n)
	}
	if f.reg.Has("reg") {
		t.Error("reg still served")
	}
}

func TestUnloadAndLoadOnRequest(t *testing.T) {
	f := newFixture(t, false)
	ctx := context.Background()
	f.put("m", "1", "binary")
	f.repo.Sync(ctx)
	if err := f.repo.Unload("m"); err != nil {
		t.Fatal(err)
	}
	f.repo.Sync(ctx) // polling does not bring it back
	if f.reg.Has("m") {
		t.Fatal("m served after Unload")
	}
	if got := f.index(); got != "m/ UNAVAILABLE (unloaded on request)" {
		t.Errorf("index %s", got)
	}
	if n := testutil.CollectAndCount(f.met.ModelRequests); n != 0 {
		t.Errorf("%d model_requests_total series after unload", n)
	}
	if err := f.repo.Load(ctx, "m"); err != nil {
		t.Fatal(err)
	}
	if !f.reg.Has("m") || f.index() != "m/1 READY" {
		t.Errorf("after Load: %s", f.index())
	}
	if err := f.repo.Load(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Load of an unknown model: %v", err)
	}
	if err := f.repo.Unload("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Unload of an unknown model: %v", err)
	}
	f.write("m/1/model.json", "broken")
	if err := f.repo.Load(ctx, "m"); err != nil {
		t.Errorf("Load with a broken file but a serving version: %v", err)
	}
	f.write("bad/1/model.json", "broken")
	if err := f.repo.Load(ctx, "bad"); err == nil || !strings.Contains(err.Error(), "no version loaded") {
		t.Errorf("Load of a broken model: %v", err)
	}
	if f.repo.Ready() {
		t.Error("ready while a model has no version serving")
	}
}

func TestEmbeddedAndRepository(t *testing.T) {
	f := newFixture(t, true)
	f.put("other", "1", "regression")
	f.repo.Sync(context.Background())
	if got := f.index(); got != "fraud_model/v1 READY; other/1 READY" {
		t.Fatalf("index %s", got)
	}
	for _, s := range f.repo.Index() {
		if s.Name == "fraud_model" && s.Source != "embedded" {
			t.Errorf("fraud_model from %s", s.Source)
		}
	}
	// A repository model of the same name takes the embedded one's place.
	f.put("fraud_model", "v2", "binary")
	f.write("fraud_model/config.yaml", "classes: [safe, fraud]\n")
	f.repo.Sync(context.Background())
	if got := f.index(); got != "fraud_model/v2 READY; other/1 READY" {
		t.Errorf("index %s", got)
	}
}

func TestBadConfigKeepsServing(t *testing.T) {
	f := newFixture(t, false)
	ctx := context.Background()
	f.put("m", "1", "binary")
	f.repo.Sync(ctx)
	f.write("m/config.yaml", "version_polcy: {all: true}\n")
	f.repo.Sync(ctx)
	f.repo.Sync(ctx)
	if !f.reg.Has("m") || !f.repo.Ready() {
		t.Error("an unreadable config.yaml unloaded the model")
	}
	if got := f.index(); got != "m/1 READY; m/ UNAVAILABLE (the model cannot)" {
		t.Errorf("index %s", got)
	}
	// One failure for the broken file, however many polls see it.
	if got := testutil.ToFloat64(f.met.LoadFailures.WithLabelValues("m")); got != 1 {
		t.Errorf("load failures %v, want 1", got)
	}
}

// TestBadConfigOfANewModel: a model whose config.yaml cannot be read never
// loads; that shows as a load failure (ModelLoadFailing), in the index and
// in readiness, not only in a log line.
func TestBadConfigOfANewModel(t *testing.T) {
	f := newFixture(t, true)
	ctx := context.Background()
	f.put("churn", "1", "binary")
	f.write("churn/config.yaml", "descripton: typo\n")
	f.repo.Sync(ctx)
	f.repo.Sync(ctx)
	if f.reg.Has("churn") || f.repo.Ready() {
		t.Errorf("served %v, ready %v", f.reg.Has("churn"), f.repo.Ready())
	}
	var reason string
	for _, st := range f.repo.Index() {
		if st.Name == "churn" {
			reason = st.Reason
		}
	}
	if !strings.Contains(reason, "the model cannot be read: ") || !strings.Contains(reason, "descripton") {
		t.Errorf("index reason %q", reason)
	}
	failures := func() float64 { return testutil.ToFloat64(f.met.LoadFailures.WithLabelValues("churn")) }
	if got := failures(); got != 1 {
		t.Errorf("load failures %v, want 1", got)
	}
	// Another mistake counts again.
	f.write("churn/config.yaml", "classes: 7\n")
	f.repo.Sync(ctx)
	if got := failures(); got != 2 {
		t.Errorf("load failures %v after a second mistake, want 2", got)
	}
	// Fixed: it loads, and the count stays.
	f.write("churn/config.yaml", "classes: [stays, churns]\n")
	f.repo.Sync(ctx)
	if !f.reg.Has("churn") || !f.repo.Ready() || failures() != 2 {
		t.Errorf("after the fix: served %v, ready %v, failures %v", f.reg.Has("churn"), f.repo.Ready(), failures())
	}
	if got := f.index(); got != "churn/1 READY; fraud_model/v1 READY" {
		t.Errorf("index %s", got)
	}
	// Broken, then removed: nothing of it is left.
	f.write("churn/config.yaml", "descripton: typo\n")
	f.repo.Sync(ctx)
	os.RemoveAll(filepath.Join(f.dir, "churn"))
	f.repo.Sync(ctx)
	if f.met.LoadFailures.DeleteLabelValues("churn") || !f.repo.Ready() || f.reg.Has("churn") {
		t.Errorf("after the model was removed: its load failure series is left, or ready %v, or served %v", f.repo.Ready(), f.reg.Has("churn"))
	}
	// Never loaded, broken, then removed: the same.
	f.put("typo", "1", "binary")
	f.write("typo/config.yaml", "classes: 7\n")
	f.repo.Sync(ctx)
	os.RemoveAll(filepath.Join(f.dir, "typo"))
	f.repo.Sync(ctx)
	if f.met.LoadFailures.DeleteLabelValues("typo") || !f.repo.Ready() || f.index() != "fraud_model/v1 READY" {
		t.Errorf("after a broken model was removed: ready %v, index %s", f.repo.Ready(), f.index())
	}
}

// TestPolicyUnloadSaysWhy: a version the version policy leaves out is
// unloaded with that reason, not as if its files were gone.
func TestPolicyUnloadSaysWhy(t *testing.T) {
	var logs bytes.Buffer
	reg := model.NewRegistry("m")
	repo := New(Options{Registry: reg, Metrics: metrics.New(prometheus.NewRegistry()), Runtimes: []model.Runtime{xgboost.Runtime},
		Dir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	f := &fixture{t: t, dir: repo.opts.Dir}
	f.put("m", "1", "binary")
	f.put("m", "2", "binary")
	f.write("m/config.yaml", "version_policy: {all: true}\n")
	repo.Sync(context.Background())
	f.put("m", "3", "binary")
	f.put("m", "4", "binary")
	os.RemoveAll(filepath.Join(f.dir, "m", "1"))
	f.write("m/config.yaml", "version_policy: {latest: 2}\n")
	repo.Sync(context.Background())
	if got := strings.Join(reg.Versions("m"), ","); got != "3,4" {
		t.Errorf("serving %s", got)
	}
	for _, want := range []string{
		`msg="model unloaded" component=repository model=m version=1 reason="its files are gone"`,
		`msg="model unloaded" component=repository model=m version=2 reason="the model's version_policy leaves it out"`,
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no log line %s in\n%s", want, logs.String())
		}
	}
}

func TestVersionPolicy(t *testing.T) {
	avail := []string{"3", "10", "1", "2"}
	for _, tc := range []struct {
		p    model.VersionPolicy
		want string
	}{
		{model.VersionPolicy{}, "10"},
		{model.VersionPolicy{Latest: 2}, "3,10"},
		{model.VersionPolicy{All: true}, "1,2,3,10"},
		{model.VersionPolicy{Specific: []string{"2", "3", "9"}}, "2,3"},
	} {
		if got := strings.Join(tc.p.Select(avail), ","); got != tc.want {
			t.Errorf("%+v: %s, want %s", tc.p, got, tc.want)
		}
	}
}

func TestDriftProfiles(t *testing.T) {
	f := newFixture(t, true)
	mon := drift.NewMonitor(drift.Options{})
	f.repo.opts.Drift = mon
	f.put("m", "1", "binary")
	f.write("m/1/profile.json", `{"broken": true}`)
	f.repo.Sync(context.Background())
	if !mon.Tracks("fraud_model", "v1") {
		t.Error("the embedded model's profile is not tracked")
	}
	if mon.Tracks("m", "1") || !f.reg.Has("m") {
		t.Error("a broken profile must leave the model serving, untracked")
	}
	f.repo.Unload("fraud_model")
	if mon.Tracks("fraud_model", "v1") {
		t.Error("an unloaded version is still tracked")
	}
}

// TestBrokenNewVersionKeepsTheOldOne: under the default policy (the latest
// version), a broken new version does not take the model down: the
// version it would replace keeps serving until the new one loads.
func TestBrokenNewVersionKeepsTheOldOne(t *testing.T) {
	f := newFixture(t, false)
	ctx := context.Background()
	f.put("m", "1", "binary")
	f.repo.Sync(ctx)
	f.write("m/2/model.json", "not json")
	f.repo.Sync(ctx)
	f.repo.Sync(ctx)
	if got := f.serving("m"); got != "1" || !f.repo.Ready() {
		t.Errorf("serving %q, ready %v; want version 1 kept", got, f.repo.Ready())
	}
	if got := f.index(); got != "m/1 READY (replaced by a); m/2 UNAVAILABLE (invalid model: xgboost:)" {
		t.Errorf("index %s", got)
	}
	if m, err := f.reg.Resolve("m", ""); err != nil || m.Metadata().Version != "1" {
		t.Errorf("default version: %v %v", m, err)
	}
	if err := f.repo.Load(ctx, "m"); err == nil || !strings.Contains(err.Error(), "no version loaded: [2: invalid model") {
		t.Errorf("Load with the selected version broken: %v", err)
	}
	// The broken version removed: version 1 is the policy's again, with no
	// reason left on it.
	os.RemoveAll(filepath.Join(f.dir, "m/2"))
	f.repo.Sync(ctx)
	if got := f.index(); got != "m/1 READY" {
		t.Errorf("after the broken version left: index %s", got)
	}
	f.write("m/2/model.json", "not json")
	f.repo.Sync(ctx)
	// Fixed: version 2 serves and version 1 goes, as the policy says.
	f.put("m", "2", "binary")
	f.repo.Sync(ctx)
	if got := f.index(); got != "m/2 READY" || f.serving("m") != "2" {
		t.Errorf("after the fix: index %s, serving %s", got, f.serving("m"))
	}
	// Unloaded on request, nothing is kept.
	f.write("m/3/model.json", "not json")
	f.repo.Sync(ctx)
	if err := f.repo.Unload("m"); err != nil || f.reg.Has("m") {
		t.Errorf("unload: %v, still served %v", err, f.reg.Has("m"))
	}
}

// TestBrokenRepositoryModelKeepsTheEmbeddedOne: a repository model that
// replaces the embedded one of the same name, and fails to load, leaves the
// embedded one serving until it loads.
func TestBrokenRepositoryModelKeepsTheEmbeddedOne(t *testing.T) {
	f := newFixture(t, true)
	ctx := context.Background()
	f.repo.Sync(ctx)
	f.write("fraud_model/2/model.json", "not json")
	f.repo.Sync(ctx)
	if got := f.serving("fraud_model"); got != "v1" || !f.repo.Ready() {
		t.Errorf("serving %q, ready %v; want the embedded v1 kept", got, f.repo.Ready())
	}
	if got := f.index(); got != "fraud_model/v1 READY (replaced by a); fraud_model/2 UNAVAILABLE (invalid model: xgboost:)" {
		t.Errorf("index %s", got)
	}
	f.put("fraud_model", "2", "binary")
	f.repo.Sync(ctx)
	if got := f.serving("fraud_model"); got != "2" {
		t.Errorf("serving %q after the repository version loaded, want 2", got)
	}
}

// TestAddedBackWhileTheOldInstanceFinishes: a version unloaded and loaded
// again while a request still holds its old instance keeps the new
// instance's series when the old one finally closes.
func TestAddedBackWhileTheOldInstanceFinishes(t *testing.T) {
	f := newFixture(t, false)
	ctx := context.Background()
	f.put("m", "1", "binary")
	f.repo.Sync(ctx)
	_, release, err := f.reg.Acquire("m", "1") // a request in flight on the old instance
	if err != nil {
		t.Fatal(err)
	}
	if err := f.repo.Unload("m"); err != nil {
		t.Fatal(err)
	}
	if err := f.repo.Load(ctx, "m"); err != nil {
		t.Fatal(err)
	}
	release() // the old instance closes now
	if got := testutil.ToFloat64(f.met.LoadedInfo.WithLabelValues("m", "1", "xgboost")); got != 1 {
		t.Errorf("model_loaded_info of the new instance = %v after the old one closed, want 1", got)
	}
	if n := testutil.CollectAndCount(f.met.ModelRequests); n != 2 {
		t.Errorf("%d model_requests_total series, want the new instance's 2", n)
	}
	// Unloaded for good, the series go once the last request is done.
	_, release, _ = f.reg.Acquire("m", "1")
	f.repo.Unload("m")
	release()
	if n := testutil.CollectAndCount(f.met.LoadedInfo); n != 0 {
		t.Errorf("%d model_loaded_info series after the unload", n)
	}
}
