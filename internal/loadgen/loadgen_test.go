package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/modelwatch/modelwatch/internal/metrics"
	"github.com/modelwatch/modelwatch/internal/model"
	"github.com/modelwatch/modelwatch/internal/model/modeltest"
	"github.com/modelwatch/modelwatch/internal/model/xgboost"
	"github.com/modelwatch/modelwatch/internal/server"
	"github.com/modelwatch/modelwatch/models"
)

// modelwatch runs the real server, with the embedded model, in process.
func modelwatch(t *testing.T) (*httptest.Server, *metrics.Metrics) {
	reg := prometheus.NewRegistry()
	met := metrics.New(reg)
	registry := model.NewRegistry(models.Default)
	loaded, _, err := model.LoadDir(models.FS, models.Default, []model.Runtime{xgboost.Runtime})
	if err != nil || loaded[0].Err != nil {
		t.Fatal(err)
	}
	registry.Add(loaded[0].Model)
	met.ModelLoaded(loaded[0].Model.Metadata(), 0)
	srv := server.New(server.Options{Models: registry, Metrics: met, MetricsHandler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{})})
	srv.SetReady(true)
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return ts, met
}

func TestRunCountsWhatTheServerSaw(t *testing.T) {
	ts, met := modelwatch(t)
	for _, api := range []string{"predict", "v2"} {
		t.Run(api, func(t *testing.T) {
			before := testutil.ToFloat64(met.ModelRequests.WithLabelValues("fraud_model", "v1", "success"))
			res, err := Run(context.Background(), Config{
				URL: ts.URL, Requests: 300, Concurrency: 4, BadShare: 0.2, Batch: 3, API: api, Seed: 7,
				Targets: []Target{{Model: "fraud_model", Weight: 3}, {Model: "fraud_model", Version: "v1", Weight: 1}},
			}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.Sent != 300 || res.Transport != 0 {
				t.Fatalf("sent %d, transport errors %d", res.Sent, res.Transport)
			}
			total := 0
			for _, n := range res.ByStatus {
				total += n
			}
			if total != 300 || res.OK != res.ByStatus["200"] || res.Rows != 3*res.OK {
				t.Errorf("statuses %v, ok %d, rows %d", res.ByStatus, res.OK, res.Rows)
			}
			if res.Bad < 30 || res.Bad > 90 || res.OK != 300-res.Bad {
				t.Errorf("bad %d of 300 with a share of 0.2, ok %d", res.Bad, res.OK)
			}
			if got := testutil.ToFloat64(met.ModelRequests.WithLabelValues("fraud_model", "v1", "success")) - before; got != float64(res.OK) {
				t.Errorf("server counted %v successes, loadgen %d", got, res.OK)
			}
			if res.PerTarget["fraud_model"]+res.PerTarget["fraud_model:v1"] != res.OK || res.PerTarget["fraud_model"] <= res.PerTarget["fraud_model:v1"] {
				t.Errorf("per target %v", res.PerTarget)
			}
			if res.P50 <= 0 || res.P99 < res.P50 {
				t.Errorf("percentiles %v %v", res.P50, res.P99)
			}
		})
	}
	// Bad requests were counted, never under the model name loadgen made up.
	if got := testutil.ToFloat64(met.PredictionErrors.WithLabelValues("", "model_not_found")); got == 0 {
		t.Error("no unknown-model errors counted")
	}
	if n := testutil.CollectAndCount(met.PredictionErrors); n > 5 {
		t.Errorf("%d error series", n)
	}
}

func TestRate(t *testing.T) {
	ts, _ := modelwatch(t)
	res, err := Run(context.Background(), Config{URL: ts.URL, Rate: 200, Duration: 500 * time.Millisecond, Concurrency: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// 200/s for half a second: about 100 requests, never more than 101.
	if res.Sent > 101 || res.Sent < 50 {
		t.Errorf("sent %d at 200/s for 0.5s", res.Sent)
	}
}

func TestUnreachable(t *testing.T) {
	ts := httptest.NewServer(http.NotFoundHandler())
	url := ts.URL
	ts.Close()
	if _, err := Run(context.Background(), Config{URL: url, Requests: 1}, nil); !errors.Is(err, ErrUnreachable) {
		t.Errorf("closed server: %v", err)
	}
}

func TestDrift(t *testing.T) {
	info := modelInfo{features: fraudFeatures, gen: fraudValue}
	cfg := Config{Batch: 2000, Drift: map[string]Shift{"distance_from_home_km": {Mul: 1, Add: 100}}}
	_, body, _ := request(rand.New(rand.NewPCG(1, 2)), cfg, Target{}, info, false)
	_, plain, _ := request(rand.New(rand.NewPCG(1, 2)), Config{Batch: 2000}, Target{}, info, false)
	var drifted, original struct{ Inputs [][]float64 }
	if json.Unmarshal(body, &drifted) != nil || json.Unmarshal(plain, &original) != nil || len(drifted.Inputs) != 2000 {
		t.Fatalf("bodies %.60s %.60s", body, plain)
	}
	// The same rows, with distance_from_home_km (column 3) shifted by 100.
	for i, row := range drifted.Inputs {
		for j, v := range row {
			want := original.Inputs[i][j]
			if j == 3 {
				want += 100
			}
			if math.Abs(v-want) > 1e-9 {
				t.Fatalf("row %d column %d: %v, want %v", i, j, v, want)
			}
		}
	}
}

func TestParse(t *testing.T) {
	ts, err := ParseTargets("fraud_model:v1=3, churn")
	if err != nil || len(ts) != 2 || ts[0] != (Target{"fraud_model", "v1", 3}) || ts[1] != (Target{"churn", "", 1}) {
		t.Errorf("targets %+v %v", ts, err)
	}
	for _, bad := range []string{"=3", "m=-1", "m=x"} {
		if _, err := ParseTargets(bad); err == nil {
			t.Errorf("ParseTargets(%q) accepted", bad)
		}
	}
	d, err := ParseDrift("amount=*3,distance_from_home_km=+50,hour_of_day=-2")
	if err != nil || d["amount"] != (Shift{Mul: 3}) || d["distance_from_home_km"] != (Shift{Mul: 1, Add: 50}) || d["hour_of_day"] != (Shift{Mul: 1, Add: -2}) {
		t.Errorf("drift %+v %v", d, err)
	}
	for _, bad := range []string{"amount", "amount=3", "amount=*x", "=*2"} {
		if _, err := ParseDrift(bad); err == nil {
			t.Errorf("ParseDrift(%q) accepted", bad)
		}
	}
}

// TestV2ToTheDefaultModel: with no --models, loadgen asks the server for its
// default model and calls it by that name over the Open Inference Protocol,
// with the input name and datatype its metadata gives.
func TestV2ToTheDefaultModel(t *testing.T) {
	loaded, _, err := model.LoadDir(models.FS, models.Default, []model.Runtime{xgboost.Runtime})
	if err != nil || loaded[0].Err != nil {
		t.Fatal(err)
	}
	real := loaded[0].Model
	meta := real.Metadata()
	meta.Name, meta.Version = "scorer", "3"
	meta.InputTensors = []model.TensorSpec{{Name: "features", DataType: model.FP64, Shape: []int64{-1, int64(len(meta.Features))}}}
	scorer := &modeltest.Model{Meta: meta, PredictFunc: real.Predict}
	reg := prometheus.NewRegistry()
	met := metrics.New(reg)
	registry := model.NewRegistry("scorer")
	registry.Add(scorer)
	met.ModelLoaded(meta, 0)
	srv := server.New(server.Options{Models: registry, Metrics: met, MetricsHandler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{})})
	srv.SetReady(true)
	ts := httptest.NewServer(srv)
	defer ts.Close()
	res, err := Run(context.Background(), Config{URL: ts.URL, Requests: 50, Concurrency: 2, API: "v2", Seed: 3}, nil)
	if err != nil || res.OK != 50 {
		t.Fatalf("%v: %+v", err, res)
	}
	if got := testutil.ToFloat64(met.ModelRequests.WithLabelValues("scorer", "3", "success")); got != 50 {
		t.Errorf("the server counted %v successes for scorer", got)
	}
}
