//go:build cgo

package deploy_test

import (
	"context"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/modelwatch/modelwatch/deploy/internal/prometheustest"
	"github.com/modelwatch/modelwatch/internal/drift"
	"github.com/modelwatch/modelwatch/internal/loadgen"
	"github.com/modelwatch/modelwatch/internal/testenv"
)

// TestFleetDrift runs three replicas of the embedded fraud_model, each sent
// traffic whose distance_from_home_km has drifted by a different amount,
// under a Prometheus with the shipped configuration and rules. The recorded
// fleet PSI (model:feature_drift_psi:1h) must be drift.PSI of the replicas'
// bin counts summed, as Prometheus holds them, and ModelInputDrift must fire
// once for the model version and feature, not once per replica. It runs on
// Prometheus 2 and 3.
func TestFleetDrift(t *testing.T) {
	const feature = "distance_from_home_km"
	prometheustest.Each(t, func(t *testing.T, v prometheustest.Version) {
		dir := t.TempDir()
		var addrs []string
		for range 3 {
			addr := testenv.FreePort(t)
			p := testenv.Start(t, modelwatchBin, "serve", "--listen-address", addr, "--grpc-listen-address", "", "--log-level", "warn")
			testenv.WaitHTTP(t, "http://"+addr+"/ready", p)
			addrs = append(addrs, addr)
		}
		prom := startReplicaPrometheus(t, v, dir, []map[string]any{{"targets": addrs}}, 3)
		// Every bin is scraped at 0 before the first row.
		testenv.WaitFor(t, "the bin counters at 0", 30*time.Second, func() (bool, string) {
			n, _ := prom.scalar(t, `count(model_feature_bin_total{job="modelwatch",model_name="fraud_model"} == 0)`)
			return n == 3*61, fmt.Sprintf("%v series at 0, want 3 replicas x 61 bins", n)
		})

		// Replica i: 100 requests of 2 rows, distance shifted by 20*i km.
		for i, a := range addrs {
			cfg := loadgen.Config{URL: "http://" + a, Requests: 100, Batch: 2, Seed: uint64(10 + i)}
			if i > 0 {
				cfg.Drift = map[string]loadgen.Shift{feature: {Mul: 1, Add: 20 * float64(i)}}
			}
			if res, err := loadgen.Run(context.Background(), cfg, nil); err != nil || res.OK != 100 {
				t.Fatalf("replica %d: %v %+v", i, err, res)
			}
		}

		// One alert for the fleet.
		testenv.WaitFor(t, "ModelInputDrift for the fleet", 60*time.Second, func() (bool, string) {
			alerts := prom.vector(t, `ALERTS{alertname="ModelInputDrift",alertstate="firing"}`, 0)
			if len(alerts) != 1 {
				return false, fmt.Sprintf("%d alerts firing: %v", len(alerts), alerts)
			}
			l := alerts[0].labels
			return l["feature"] == feature && l["model_name"] == "fraud_model" && l["model_version"] == "v1" && l["instance"] == "" && l["job"] == "",
				fmt.Sprint(l)
		})

		// The recorded PSI is drift.PSI of the summed counts. A scrape that
		// lands after an evaluation can change what a later query sees at
		// its time, so this retries until one evaluation is compared with
		// the data it saw.
		var last string
		testenv.WaitFor(t, "the recorded fleet PSI to be drift.PSI of the summed counts", 30*time.Second, func() (bool, string) {
			rec := prom.vector(t, fmt.Sprintf(`timestamp(model:feature_drift_psi:1h{model_name="fraud_model",model_version="v1",feature=%q})`, feature), 0)
			psi := prom.vector(t, fmt.Sprintf(`model:feature_drift_psi:1h{model_name="fraud_model",model_version="v1",feature=%q}`, feature), 0)
			if len(rec) != 1 || len(psi) != 1 {
				return false, "no recorded PSI"
			}
			at := rec[0].value
			counts := map[string]float64{}
			for _, s := range prom.vector(t, fmt.Sprintf(`increase(model_feature_bin_total{job="modelwatch",model_name="fraud_model",model_version="v1",feature=%q}[1h])`, feature), at) {
				counts[s.labels["bin"]] += s.value
			}
			ref := map[string]float64{}
			for _, s := range prom.vector(t, fmt.Sprintf(`model_feature_bin_reference_ratio{job="modelwatch",model_name="fraud_model",model_version="v1",feature=%q}`, feature), at) {
				ref[s.labels["bin"]] = s.value
			}
			if len(counts) != 11 || len(ref) != 11 {
				return false, fmt.Sprintf("%d bins counted, %d reference bins; want 11", len(counts), len(ref))
			}
			var e, c []float64
			for bin := range ref {
				e, c = append(e, ref[bin]), append(c, counts[bin])
			}
			want := drift.PSI(e, c)
			last = fmt.Sprintf("recorded %v at %v, drift.PSI of the summed counts %v (%v)", psi[0].value, at, want, counts)
			return math.Abs(psi[0].value-want) < 1e-9 && want > 0.2, last
		})
		t.Log(last)
	})
}

type vectorSample struct {
	labels map[string]string
	value  float64
}

// vector runs an instant query at time at (Unix seconds; 0 for now) and
// returns its samples.
func (p *prometheusServer) vector(t *testing.T, expr string, at float64) []vectorSample {
	t.Helper()
	u := p.URL + "/api/v1/query?query=" + url.QueryEscape(expr)
	if at != 0 {
		u += "&time=" + strconv.FormatFloat(at, 'f', -1, 64)
	}
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	testenv.GetJSON(t, u, &r)
	if r.Status != "success" {
		t.Fatalf("%s: %s", expr, r.Error)
	}
	var out []vectorSample
	for _, s := range r.Data.Result {
		v, _ := strconv.ParseFloat(s.Value[1].(string), 64)
		out = append(out, vectorSample{s.Metric, v})
	}
	return out
}
