package repository

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/modelwatch/modelwatch/internal/drift"
	"github.com/modelwatch/modelwatch/internal/metrics"
	"github.com/modelwatch/modelwatch/internal/model"
	"github.com/modelwatch/modelwatch/internal/model/lightgbm"
	"github.com/modelwatch/modelwatch/internal/model/onnx"
	"github.com/modelwatch/modelwatch/internal/model/onnx/onnxtest"
	"github.com/modelwatch/modelwatch/internal/model/xgboost"
)

// syncBuffer is a log sink safe for the goroutines a repository logs from.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// hostileFixture is a repository of every runtime the server has, with a
// drift monitor and its log kept.
func hostileFixture(t *testing.T) (*fixture, *drift.Monitor, *syncBuffer) {
	logs := &syncBuffer{}
	mon := drift.NewMonitor(drift.Options{})
	f := &fixture{t: t, dir: t.TempDir(), reg: model.NewRegistry("m"), met: metrics.New(prometheus.NewRegistry())}
	f.repo = New(Options{Registry: f.reg, Metrics: f.met, Dir: f.dir, Drift: mon,
		Runtimes: append(slices.Clone(xgboost.Runtimes), lightgbm.Runtime, onnx.Runtime),
		Logger:   slog.New(slog.NewTextHandler(logs, nil))})
	return f, mon, logs
}

// readFile returns a file of the repository's source tree.
func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// answer is what the default version of model m predicts for a row of
// 0.25s: its version and outputs.
func answer(t *testing.T, f *fixture, m string) string {
	t.Helper()
	mdl, err := f.reg.Resolve(m, "")
	if err != nil {
		t.Fatalf("model %s: %v", m, err)
	}
	meta := mdl.Metadata()
	row := make([]float64, len(meta.Features))
	for i := range row {
		row[i] = 0.25
	}
	res, err := model.SafePredict(context.Background(), mdl, model.Batch{Rows: 1, Cols: len(row), Values: row})
	if err != nil {
		t.Fatalf("model %s predicts: %v", m, err)
	}
	return fmt.Sprintf("%s %v", meta.Version, res.Values)
}

// status returns the index entry of a model version.
func status(f *fixture, name, version string) Status {
	for _, s := range f.repo.Index() {
		if s.Name == name && s.Version == version {
			return s
		}
	}
	return Status{}
}

// ubjCount is a UBJSON object whose first value is an array of n nulls
// given by a count alone: a few bytes that would expand to 5n bytes of JSON.
func ubjCount(n uint32) string {
	var b bytes.Buffer
	b.WriteString("{#i\x01i\x01a[$Z#l")
	binary.Write(&b, binary.BigEndian, n)
	return b.String()
}

// onnxHuge is a serialised ModelProto whose graph field claims 2^62 bytes.
const onnxHuge = "\x3a\x80\x80\x80\x80\x80\x80\x80\x80\x40"

// TestHostileModelFiles: for each model format, a hostile file in a new
// version and then over the serving version's file is refused with an error
// that says what is wrong, counted in model_load_failures_total and shown in
// the index, while the serving version keeps answering as before.
func TestHostileModelFiles(t *testing.T) {
	binaryJSON := readFile(t, "../model/xgboost/testdata/binary.json")
	lgbm := readFile(t, "../model/lightgbm/testdata/boosters/binary_classification/model.txt")
	for _, tc := range []struct {
		name, file, good string
		// hostile holds pairs: a hostile file, and the start of what its
		// refusal says (for ONNX, ONNX Runtime's own words follow).
		hostile []string
		onnx    bool
	}{
		{name: "xgboost json", file: "model.json", good: binaryJSON, hostile: []string{
			strings.Replace(binaryJSON, `"num_class":"0","num_feature":"5"`, `"num_class":"0","num_feature":"1000000000"`, 1),
			"invalid model: xgboost: num_feature 1000000000 is more than the 100000 supported",
			strings.Replace(binaryJSON, `"num_class":"0"`, `"num_class":"99999999"`, 1),
			"invalid model: xgboost: num_class 99999999 is more than the 10000 supported",
		}},
		{name: "xgboost ubjson", file: "model.ubj", good: readFile(t, "../model/xgboost/testdata/categorical_small.ubj"), hostile: []string{
			ubjCount(1 << 20), "invalid model: xgboost: not an XGBoost UBJSON model: ubjson: offset 16: length 1048576 exceeds the input size 16",
			"{i\x01a" + strings.Repeat("[", 2000), "invalid model: xgboost: not an XGBoost UBJSON model: ubjson: offset 1004: nesting deeper than 1000",
		}},
		{name: "lightgbm", file: "model.txt", good: lgbm, hostile: []string{
			strings.Replace(lgbm, "num_class=1\n", "num_class=1000000000\n", 1),
			"invalid model: lightgbm: num_class=1000000000 is not a whole number from 1 to 10000",
			strings.Replace(lgbm, "max_feature_idx=9\n", "max_feature_idx=2000000000\n", 1),
			"invalid model: lightgbm: max_feature_idx=2000000000 is not a whole number from 0 to 999999",
		}},
		{name: "onnx", file: "model.onnx", good: readFile(t, "../model/onnx/testdata/regressor.onnx"), onnx: true, hostile: []string{
			onnxHuge, "invalid model: onnx: not a usable ONNX model: ",
			readFile(t, "../model/onnx/testdata/regressor.onnx")[:200], "invalid model: onnx: not a usable ONNX model: ",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.onnx {
				if err := onnx.Init(onnxtest.Library(t)); err != nil {
					t.Fatal(err)
				}
			}
			f, _, logs := hostileFixture(t)
			ctx := context.Background()
			f.write("m/1/"+tc.file, tc.good)
			f.repo.Sync(ctx)
			if got := f.index(); got != "m/1 READY" {
				t.Fatalf("index %s", got)
			}
			before := answer(t, f, "m")
			failures := 0.0
			for i := 0; i < len(tc.hostile); i += 2 {
				hostile, want := tc.hostile[i], tc.hostile[i+1]
				// A new version: refused, and the serving one kept.
				f.write("m/2/"+tc.file, hostile)
				f.repo.Sync(ctx)
				f.repo.Sync(ctx)
				failures++
				if s := status(f, "m", "2"); s.State != Unavailable || !strings.HasPrefix(s.Reason, want) {
					t.Errorf("hostile file %d in a new version: index %+v, want a reason starting %q", i/2, s, want)
				}
				if got := testutil.ToFloat64(f.met.LoadFailures.WithLabelValues("m")); got != failures {
					t.Errorf("model_load_failures_total %v, want %v", got, failures)
				}
				if got := answer(t, f, "m"); got != before {
					t.Errorf("with a hostile new version, m answers %s, want %s", got, before)
				}
				os.RemoveAll(filepath.Join(f.dir, "m/2"))
				// A change to the serving version's file: refused, and the
				// previous file keeps serving.
				f.write("m/1/"+tc.file, hostile)
				f.repo.Sync(ctx)
				f.repo.Sync(ctx)
				failures++
				wantReason := "reload failed, the previous file still serves: " + want
				if s := status(f, "m", "1"); s.State != Ready || !strings.HasPrefix(s.Reason, wantReason) {
					t.Errorf("hostile file %d over the serving one: index %+v, want a reason starting %q", i/2, s, wantReason)
				}
				if got := testutil.ToFloat64(f.met.LoadFailures.WithLabelValues("m")); got != failures {
					t.Errorf("model_load_failures_total %v, want %v", got, failures)
				}
				if got := answer(t, f, "m"); got != before {
					t.Errorf("with a hostile change, m answers %s, want %s", got, before)
				}
				if !strings.Contains(logs.String(), "err=\""+want) {
					t.Errorf("no log line says %q in\n%s", want, logs.String())
				}
				// Fixed: the good file is back, unchanged, and serves.
				f.write("m/1/"+tc.file, tc.good)
				f.repo.Sync(ctx)
				if got := f.index(); got != "m/1 READY" {
					t.Errorf("after the fix: index %s", got)
				}
			}
			if !f.repo.Ready() {
				t.Error("not ready")
			}
		})
	}
}

// TestHostileConfig: a config.yaml that would make the YAML decoder or the
// server allocate without bound is refused with the reason in the index, one
// load failure counted for each, while the loaded version keeps serving.
func TestHostileConfig(t *testing.T) {
	f, _, logs := hostileFixture(t)
	ctx := context.Background()
	f.put("m", "1", "binary")
	f.write("m/config.yaml", "classes: [no, yes]\n")
	f.repo.Sync(ctx)
	before := answer(t, f, "m")
	var laughs strings.Builder
	laughs.WriteString("description: &a lol\nfeatures: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n")
	for _, tc := range []struct{ name, doc, want string }{
		{"billion laughs", laughs.String(), "invalid model: config.yaml: line 2: aliases (*a) are not allowed"},
		{"repeated keys", "version_policy: {" + strings.Repeat("all: true, ", 5000) + "}\n", "invalid model: config.yaml: line 1: a mapping of 5000 keys, more than 64"},
		{"huge queue", "dynamic_batching: {queue_capacity: 100000000000}\n", "invalid model: config.yaml: dynamic_batching: sizes must not be negative, max_queue_delay at most 1s, queue_capacity at most 1048576, workers at most 256"},
		{"oversize", "classes: [no, yes]\n" + strings.Repeat("# padding\n", model.MaxConfigBytes/10), "invalid model: config.yaml: larger than 1048576 bytes"},
		{"deep", "features: " + strings.Repeat("[", 20000) + "\n", "invalid model: config.yaml: yaml: exceeded max depth of 10000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			failures := testutil.ToFloat64(f.met.LoadFailures.WithLabelValues("m"))
			f.write("m/config.yaml", tc.doc)
			f.repo.Sync(ctx)
			f.repo.Sync(ctx)
			s := status(f, "m", "")
			if want := "the model cannot be read: " + tc.want; s.State != Unavailable || !strings.HasPrefix(s.Reason, want) {
				t.Errorf("index %+v, want a reason starting %q", s, want)
			}
			if got := testutil.ToFloat64(f.met.LoadFailures.WithLabelValues("m")); got != failures+1 {
				t.Errorf("model_load_failures_total %v, want %v", got, failures+1)
			}
			if got := answer(t, f, "m"); got != before || !f.repo.Ready() {
				t.Errorf("m answers %s (ready %v), want %s", got, f.repo.Ready(), before)
			}
			if !strings.Contains(logs.String(), tc.want) {
				t.Errorf("no log line says %q", tc.want)
			}
		})
	}
	f.write("m/config.yaml", "classes: [no, yes]\n")
	f.repo.Sync(ctx)
	if got := f.index(); got != "m/1 READY" {
		t.Errorf("after the fix: index %s", got)
	}
}

// TestHostileProfile: a hostile profile.json beside a new version leaves
// that version serving without drift tracking, and the log says why.
func TestHostileProfile(t *testing.T) {
	f, mon, logs := hostileFixture(t)
	ctx := context.Background()
	f.put("m", "1", "binary")
	f.repo.Sync(ctx)
	before := answer(t, f, "m")
	for i, tc := range []struct{ name, doc, want string }{
		{"values", `{"features": [{"name": "f0", "edges": [` + strings.Repeat("0,", drift.MaxProfileValues) + `0]}]}`, "profile: more than 2097152 values"},
		{"unsorted edges", `{"features": [{"name": "f0", "edges": [2, 1], "proportions": [1, 0, 0, 0]}], "prediction": {"classes": ["0", "1"], "proportions": [1, 0]}}`,
			"profile: feature f0: edge 1 (1) is not above edge 0 (2); edges must increase"},
		{"oversize", strings.Repeat(" ", drift.MaxProfileBytes+1), "profile: larger than 67108864 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := fmt.Sprint(i + 2)
			f.write("m/"+v+"/profile.json", tc.doc)
			f.put("m", v, "binary")
			f.repo.Sync(ctx)
			if got := answer(t, f, "m"); got == before || !strings.HasPrefix(got, v+" ") {
				t.Errorf("m answers %s, want version %s serving", got, v)
			}
			if mon.Tracks("m", v) {
				t.Error("a hostile profile is tracked")
			}
			if want := `msg="drift tracking is off for this version: its profile cannot be used" component=repository model=m version=` + v + ` err="` + tc.want; !strings.Contains(logs.String(), want) {
				t.Errorf("no log line %s", want)
			}
		})
	}
}
