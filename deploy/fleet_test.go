//go:build cgo

package deploy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/modelwatch/modelwatch/deploy/internal/prometheustest"
	"github.com/modelwatch/modelwatch/internal/drift"
	"github.com/modelwatch/modelwatch/internal/loadgen"
	"github.com/modelwatch/modelwatch/internal/testenv"
	"github.com/modelwatch/modelwatch/models"
)

// fleetReplica is one modelwatch of the fleet: its address and data
// directory outlive its processes.
type fleetReplica struct {
	addr, data string
	proc       *testenv.Proc
}

// TestFleet runs three replicas behind a real haproxy (round robin), sharing
// one real PostgreSQL as their prediction log, scraped by Prometheus 3 with
// the shipped rules. Loadgen sends traffic with one drifted feature and
// delayed labels through the balancer while one replica is killed with
// SIGKILL and restarted, and then all three are restarted one by one with
// SIGTERM. No label may be refused; every prediction answered 200 must be in
// the log once, with the labels sent; the fleet's accuracy and PSI from
// Prometheus must be what was sent; ModelInputDrift must fire once.
func TestFleet(t *testing.T) {
	const feature = "distance_from_home_km"
	v := prometheustest.Get(t, 3)
	haproxy := lookPathOrFail(t, "haproxy", "Debian package haproxy")
	pg := testenv.StartPostgres(t)
	dir := t.TempDir()

	replicas := make([]*fleetReplica, 3)
	start := func(r *fleetReplica) {
		t.Helper()
		r.proc = testenv.Start(t, modelwatchBin, "serve", "--listen-address", r.addr, "--grpc-listen-address", "", "--log-level", "warn",
			"--prediction-log", pg.DSN(), "--data-dir", r.data,
			// Long enough for haproxy's health check to see /ready fail,
			// and for a scrape to take the last counts.
			"--shutdown-delay", "2500ms")
		testenv.WaitHTTP(t, "http://"+r.addr+"/ready", r.proc)
	}
	stop := func(r *fleetReplica, sig syscall.Signal) {
		t.Helper()
		r.proc.Cmd.Process.Signal(sig)
		done := make(chan error, 1)
		go func() { done <- r.proc.Cmd.Wait() }()
		select {
		case err := <-done:
			if sig == syscall.SIGTERM && err != nil {
				t.Errorf("replica %s after SIGTERM: %v\n%s", r.addr, err, r.proc.Log)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("replica %s did not exit after %v", r.addr, sig)
		}
	}
	for i := range replicas {
		replicas[i] = &fleetReplica{addr: testenv.FreePort(t), data: filepath.Join(dir, fmt.Sprintf("replica-%d", i))}
		start(replicas[i])
	}

	// haproxy: round robin, health checks on /ready (a replica that comes
	// back takes traffic after 12 good checks, 2.4 s), and retried on
	// another replica: the connections a dead replica refuses, the 503s a
	// starting one answers (nothing done), and a request in flight when a
	// replica was killed (empty-response: at least once, so the killed
	// replica may have logged it too; the test reports such requests).
	lb := testenv.FreePort(t)
	cfg := fmt.Sprintf(`global
  maxconn 2000
defaults
  mode http
  timeout connect 1s
  timeout client 30s
  timeout server 30s
  retries 3
  option redispatch
  option http-buffer-request
  retry-on conn-failure empty-response 503
frontend api
  bind %s
  default_backend modelwatch
backend modelwatch
  balance roundrobin
  option httpchk GET /ready
  default-server inter 200ms fall 1 rise 12
`, lb)
	for i, r := range replicas {
		cfg += fmt.Sprintf("  server r%d %s check\n", i, r.addr)
	}
	cfgFile := filepath.Join(dir, "haproxy.cfg")
	os.WriteFile(cfgFile, []byte(cfg), 0o644)
	hap := testenv.Start(t, haproxy, "-db", "-f", cfgFile)
	testenv.WaitHTTP(t, "http://"+lb+"/ready", hap)

	var addrs []string
	for _, r := range replicas {
		addrs = append(addrs, r.addr)
	}
	prom := startReplicaPrometheus(t, v, dir, []map[string]any{{"targets": addrs}}, len(replicas))

	// The traffic: 4-row requests with distance_from_home_km tripled, and a
	// label for half of them 2 s after their answer.
	var mu sync.Mutex
	answered := map[string][][]float64{}
	lcfg := loadgen.Config{URL: "http://" + lb, Rate: 200, Concurrency: 8, Duration: 26 * time.Second, Batch: 4, Seed: 14,
		Drift:         map[string]loadgen.Shift{feature: {Mul: 3}},
		FeedbackShare: 0.5, FeedbackDelay: 2 * time.Second,
		Answered: func(id string, rows [][]float64) {
			mu.Lock()
			answered[id] = rows
			mu.Unlock()
		},
	}
	restarts := make(chan struct{})
	go func() {
		defer close(restarts)
		// Killed before any label is sent: what it answered is in its
		// journal only, and the labels for it arrive after its restart,
		// through any replica. What it counted since Prometheus last
		// scraped it is lost to Prometheus (not to the log), as for any
		// counter of a killed process: it is killed just after a scrape.
		time.Sleep(300 * time.Millisecond)
		justScraped(prom, replicas[0].addr)
		stop(replicas[0], syscall.SIGKILL)
		start(replicas[0])
		time.Sleep(6 * time.Second)
		for _, r := range replicas {
			stop(r, syscall.SIGTERM)
			start(r)
			time.Sleep(2 * time.Second)
		}
	}()
	res, err := loadgen.Run(context.Background(), lcfg, nil)
	<-restarts
	if err != nil {
		t.Fatal(err)
	}
	fb := res.Feedback
	t.Logf("loadgen: %d sent, %d answered 200, by status %v, %d transport errors; labels: %d requests, %d ok, %v, %d correct, %d incorrect",
		res.Sent, res.OK, res.ByStatus, res.Transport, fb.Requests, fb.OK, fb.ByStatus, fb.Correct, fb.Incorrect)
	if res.OK != res.Sent || res.OK < 2000 {
		t.Errorf("%d of %d predictions answered 200 (%v, %d transport errors); want all, and at least 2000", res.OK, res.Sent, res.ByStatus, res.Transport)
	}
	if fb.OK != fb.Requests || fb.Transport != 0 || fb.Requests < 800 {
		t.Errorf("labels: %d of %d answered 200 (%v, %d transport errors); want every label taken, and at least 800", fb.OK, fb.Requests, fb.ByStatus, fb.Transport)
	}

	// The log: every prediction answered, once, with the labels sent.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT request_id, count(*), count(label), count(*) FILTER (WHERE label = predicted_class)
		FROM predictions GROUP BY request_id`)
	if err != nil {
		t.Fatal(err)
	}
	logged := map[string][3]int{}
	for rows.Next() {
		var id string
		var n, labelled, correct int
		if err := rows.Scan(&id, &n, &labelled, &correct); err != nil {
			t.Fatal(err)
		}
		logged[id] = [3]int{n, labelled, correct}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var missing, labelledRows, correctRows int
	for id, sent := range answered {
		got, ok := logged[id]
		if !ok || got[0] != len(sent) {
			missing++
			continue
		}
		labelledRows += got[1]
		correctRows += got[2]
	}
	if missing > 0 {
		t.Errorf("%d of %d predictions answered 200 are not in the log whole", missing, len(answered))
	}
	// A request in flight when its replica was killed is retried on
	// another (at least once): the killed one may have logged it before it
	// died, under its own request id, never answered. Reported, not an
	// error; nothing answered is missing or doubled.
	if extra := len(logged) - len(answered); extra != 0 {
		t.Logf("the log also holds %d requests that were never answered (in flight at the SIGKILL, retried elsewhere)", extra)
	}
	if labelledRows != fb.Correct+fb.Incorrect || correctRows != fb.Correct {
		t.Errorf("the log holds %d labelled rows, %d predicted right; loadgen labelled %d, %d right", labelledRows, correctRows, fb.Correct+fb.Incorrect, fb.Correct)
	}

	// Prometheus: the fleet's counts exactly, its accuracy and drift.
	testenv.WaitFor(t, "the last counts scraped", 30*time.Second, func() (bool, string) {
		n, _ := prom.scalar(t, `count(up{job="modelwatch"} == 1)`)
		correct, _ := prom.scalar(t, `sum(increase(model_feedback_total{job="modelwatch",result="correct"}[1h] anchored))`)
		incorrect, _ := prom.scalar(t, `sum(increase(model_feedback_total{job="modelwatch",result="incorrect"}[1h] anchored))`)
		return n == 3 && correct == float64(fb.Correct) && incorrect == float64(fb.Incorrect),
			fmt.Sprintf("%v up; counted %v correct, %v incorrect; loadgen sent %d and %d", n, correct, incorrect, fb.Correct, fb.Incorrect)
	})
	if acc, ok := prom.scalar(t, `model:accuracy:ratio_1h{model_name="fraud_model",model_version="v1"}`); !ok || math.Abs(acc-fb.Accuracy) > 0.005 {
		t.Errorf("model:accuracy:ratio_1h = %v (%v), loadgen's accuracy %v", acc, ok, fb.Accuracy)
	}

	// The fleet PSI of the drifted feature against PSI of every row sent.
	pb, err := models.FS.ReadFile("fraud_model/v1/profile.json")
	if err != nil {
		t.Fatal(err)
	}
	profile, err := drift.ParseProfile(strings.NewReader(string(pb)))
	if err != nil {
		t.Fatal(err)
	}
	j := slices.IndexFunc(profile.Features, func(f drift.Feature) bool { return f.Name == feature })
	f := profile.Features[j]
	counts := make([]float64, f.Bins())
	for _, rows := range answered {
		for _, row := range rows {
			counts[f.Bin(row[j])]++
		}
	}
	want := drift.PSI(f.Proportions, counts)
	psi, ok := prom.scalar(t, fmt.Sprintf(`model:feature_drift_psi:1h{model_name="fraud_model",model_version="v1",feature=%q}`, feature))
	if !ok || math.Abs(psi-want) > 0.01*want || want < 0.2 {
		t.Errorf("fleet PSI of %s = %v (%v); PSI of every row sent %v", feature, psi, ok, want)
	}
	counted, _ := prom.scalar(t, fmt.Sprintf(`sum(increase(model_feature_bin_total{job="modelwatch",feature=%q}[1h] anchored))`, feature))
	t.Logf("rows sent %v, counted in the bins %v", f64sum(counts), counted)
	acc, _ := prom.scalar(t, `model:accuracy:ratio_1h{model_name="fraud_model",model_version="v1"}`)
	t.Logf("fleet PSI of %s %.4f, of every row sent %.4f; fleet accuracy %.4f, sent %.4f", feature, psi, want, acc, fb.Accuracy)
	for _, s := range prom.vector(t, `model:feature_drift_psi:1h{model_name="fraud_model",model_version="v1"}`, 0) {
		if s.labels["feature"] != feature && s.value >= 0.1 {
			t.Errorf("fleet PSI of unshifted %s = %v, want below 0.1", s.labels["feature"], s.value)
		}
	}
	testenv.WaitFor(t, "ModelInputDrift once for the fleet", 30*time.Second, func() (bool, string) {
		alerts := prom.vector(t, `ALERTS{alertname="ModelInputDrift",alertstate="firing"}`, 0)
		return len(alerts) == 1 && alerts[0].labels["feature"] == feature && alerts[0].labels["instance"] == "", fmt.Sprint(alerts)
	})
}

func f64sum(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s
}

// justScraped returns as soon as Prometheus has scraped the target at addr
// again (within 3 s).
func justScraped(prom *prometheusServer, addr string) {
	last := func() float64 {
		var r struct {
			Data struct {
				Result []struct {
					Value [2]any `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		resp, err := http.Get(prom.URL + "/api/v1/query?query=" + url.QueryEscape(fmt.Sprintf(`timestamp(up{job="modelwatch",instance=%q})`, addr)))
		if err != nil {
			return 0
		}
		defer resp.Body.Close()
		if json.NewDecoder(resp.Body).Decode(&r) != nil || len(r.Data.Result) != 1 {
			return 0
		}
		v, _ := strconv.ParseFloat(fmt.Sprint(r.Data.Result[0].Value[1]), 64)
		return v
	}
	before := last()
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if last() != before {
			return
		}
	}
}

// startReplicaPrometheus runs Prometheus with the shipped configuration and
// rules, the static modelwatch target replaced by the file_sd groups given
// (targets and labels), scraping and evaluating every second, and waits
// until the n replicas they name are up.
func startReplicaPrometheus(t *testing.T, v prometheustest.Version, dir string, groups []map[string]any, n int) *prometheusServer {
	t.Helper()
	targets := filepath.Join(dir, "targets")
	os.MkdirAll(targets, 0o755)
	b, _ := json.Marshal(groups)
	os.WriteFile(filepath.Join(targets, "replicas.json"), b, 0o644)
	rulesDir := shippedRules(t, dir)
	promAddr := testenv.FreePort(t)
	promCfg, _ := os.ReadFile("prometheus/prometheus.yml")
	cfg := strings.NewReplacer(
		`      - targets: ["modelwatch:8000"]`+"\n", "      - targets: []\n",
		`"localhost:9090"`, `"`+promAddr+`"`,
		`"node-exporter:9100"`, `"127.0.0.1:1"`, `"pushgateway:9091"`, `"127.0.0.1:1"`, `"alertmanager:9093"`, `"127.0.0.1:1"`,
		"/etc/prometheus/rules/*.yml", rulesDir+"/*.yml",
		"/etc/prometheus/targets/*.json", targets+"/*.json",
		"refresh_interval: 30s", "refresh_interval: 1s",
		"scrape_interval: 15s", "scrape_interval: 1s", "evaluation_interval: 15s", "evaluation_interval: 1s",
	).Replace(string(promCfg))
	if strings.Contains(cfg, "modelwatch:8000") {
		t.Fatal("the static target was not removed")
	}
	prom := startPrometheusAt(t, v, promAddr, cfg)
	testenv.WaitFor(t, "the replicas up", 30*time.Second, func() (bool, string) {
		up, _ := prom.scalar(t, `count(up{job="modelwatch"} == 1)`)
		return up == float64(n), fmt.Sprintf("%v up, want %d", up, n)
	})
	return prom
}

// lookPathOrFail finds a program a test needs: a test that cannot run fails
// under CI=true, and is skipped elsewhere.
func lookPathOrFail(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed (%s); CI must have it", name, pkg)
		}
		t.Skipf("%s not installed (%s)", name, pkg)
	}
	return p
}
