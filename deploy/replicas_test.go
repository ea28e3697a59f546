//go:build cgo

package deploy_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/modelwatch/modelwatch/deploy/internal/prometheustest"
	"github.com/modelwatch/modelwatch/internal/loadgen"
	"github.com/modelwatch/modelwatch/internal/testenv"
)

// TestThreeReplicas runs three modelwatch replicas found through file_sd by a
// Prometheus with the shipped configuration and rules. The aggregated queries
// and recording rules must equal the traffic sent to all three; when one
// replica stops, only its ModelwatchDown alert fires and the others' numbers
// stay right. It runs on Prometheus 2 and 3.
func TestThreeReplicas(t *testing.T) {
	prometheustest.Each(t, func(t *testing.T, v prometheustest.Version) {
		dir := t.TempDir()
		var addrs []string
		var procs []*testenv.Proc
		for range 3 {
			addr := testenv.FreePort(t)
			p := testenv.Start(t, modelwatchBin, "serve", "--listen-address", addr, "--grpc-listen-address", "", "--log-level", "warn")
			testenv.WaitHTTP(t, "http://"+addr+"/ready", p)
			addrs, procs = append(addrs, addr), append(procs, p)
		}
		var group []map[string]any
		for i, a := range addrs {
			group = append(group, map[string]any{"targets": []string{a}, "labels": map[string]string{"replica": fmt.Sprint(i)}})
		}
		prom := startReplicaPrometheus(t, v, dir, group, 3)

		// Known traffic: 100, 200 and 300 requests of 2 rows.
		sent := 0
		for i, a := range addrs {
			res, err := loadgen.Run(context.Background(), loadgen.Config{URL: "http://" + a, Requests: 100 * (i + 1), Batch: 2, Seed: uint64(i)}, nil)
			if err != nil || res.OK != 100*(i+1) {
				t.Fatalf("replica %d: %v %+v", i, err, res)
			}
			sent += res.OK
		}
		testenv.WaitFor(t, "the totals across replicas", 30*time.Second, func() (bool, string) {
			reqs, _ := prom.scalar(t, `sum(model_requests_total{job="modelwatch",status="success"})`)
			rows, _ := prom.scalar(t, `sum(model_predictions_total{job="modelwatch"})`)
			byReplica, _ := prom.scalar(t, `sum(model_requests_total{job="modelwatch",status="success",replica="2"})`)
			_, recorded := prom.scalar(t, `model:requests:rate5m{model_name="fraud_model"}`)
			return reqs == float64(sent) && rows == float64(2*sent) && byReplica == 300 && recorded,
				fmt.Sprintf("requests %v, rows %v, replica 2 %v, recorded %v; sent %d", reqs, rows, byReplica, recorded, sent)
		})
		// The recording rule aggregates the replicas into one series per model version.
		if n, _ := prom.query(`model:requests:rate5m{model_name="fraud_model",model_version="v1"}`); n != 1 {
			t.Errorf("model:requests:rate5m has %d series for fraud_model v1, want one across replicas", n)
		}

		// Replica 1 stops: only its ModelwatchDown fires; the others' totals stay.
		procs[1].Stop()
		testenv.WaitFor(t, "ModelwatchDown for replica 1 only", 30*time.Second, func() (bool, string) {
			down := prom.firing(t, "ModelwatchDown", "instance")
			return len(down) == 1 && down[0] == addrs[1], fmt.Sprintf("firing for %v", down)
		})
		live, _ := prom.scalar(t, `sum(model_requests_total{job="modelwatch",status="success"} and on (instance) (up == 1))`)
		if live != 100+300 {
			t.Errorf("requests of the live replicas %v, want 400", live)
		}
	})
}
