//go:build cgo

package deploy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/modelwatch/modelwatch/deploy/internal/prometheustest"
	"github.com/modelwatch/modelwatch/internal/gpu"
	"github.com/modelwatch/modelwatch/internal/gpu/gputest"
	"github.com/modelwatch/modelwatch/internal/loadgen"
	"github.com/modelwatch/modelwatch/internal/metrics"
	"github.com/modelwatch/modelwatch/internal/model/onnx/onnxtest"
	"github.com/modelwatch/modelwatch/internal/testenv"
)

var modelwatchBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "modelwatch-deploy")
	if err != nil {
		panic(err)
	}
	modelwatchBin, err = testenv.BuildModelwatch("..", dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// TestAlertmanagerConfig checks the configuration with amtool and that each
// severity reaches its receiver.
func TestAlertmanagerConfig(t *testing.T) {
	amtool := testenv.Tool(t, "amtool", "prometheus-alertmanager")
	testenv.Run(t, ".", amtool, "check-config", "alertmanager/alertmanager.yml")
	for labels, want := range map[string]string{
		"severity=critical": "pager",
		"severity=warning":  "team",
		"severity=info":     "team",
	} {
		out := strings.Split(strings.TrimSpace(testenv.Run(t, ".", amtool, "config", "routes", "test", "--config.file=alertmanager/alertmanager.yml", "alertname=X", labels)), "\n")
		if got := out[len(out)-1]; got != want { // amtool may print a warning first
			t.Errorf("%s goes to %q, want %s", labels, got, want)
		}
	}
}

// webhook collects what Alertmanager sends.
type webhook struct {
	mu     sync.Mutex
	alerts []string // receiver path + " " + alertname + " " + status
}

func (w *webhook) ServeHTTP(_ http.ResponseWriter, r *http.Request) {
	var msg struct {
		Alerts []struct {
			Status string            `json:"status"`
			Labels map[string]string `json:"labels"`
		} `json:"alerts"`
	}
	json.NewDecoder(r.Body).Decode(&msg)
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, a := range msg.Alerts {
		w.alerts = append(w.alerts, r.URL.Path+" "+a.Labels["alertname"]+" "+a.Status)
	}
}

func (w *webhook) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.alerts, "; ")
}

func (w *webhook) received(entry string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, a := range w.alerts {
		if a == entry {
			return true
		}
	}
	return false
}

// scalar runs an instant query and returns the value of its single series.
func (p *prometheusServer) scalar(t *testing.T, expr string) (float64, bool) {
	var r struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	testenv.GetJSON(t, p.URL+"/api/v1/query?query="+url.QueryEscape(expr), &r)
	if len(r.Data.Result) != 1 {
		return 0, false
	}
	var v float64
	fmt.Sscan(r.Data.Result[0].Value[1].(string), &v)
	return v, true
}

var forDuration = regexp.MustCompile(`(?m)^(\s+for:) \S+$`)

// shippedRules copies the shipped rule files into dir/rules with every
// `for:` shortened to 2s, and returns the directory.
func shippedRules(t *testing.T, dir string) string {
	t.Helper()
	rulesDir := filepath.Join(dir, "rules")
	os.MkdirAll(rulesDir, 0o755)
	for _, f := range ruleFiles(t) {
		b, _ := os.ReadFile(f)
		os.WriteFile(filepath.Join(rulesDir, filepath.Base(f)), forDuration.ReplaceAll(b, []byte("$1 2s")), 0o644)
	}
	return rulesDir
}

// firing returns the value of label of every firing alert called name.
func (p *prometheusServer) firing(t *testing.T, name, label string) []string {
	var r struct {
		Data struct {
			Alerts []struct {
				Labels map[string]string `json:"labels"`
				State  string            `json:"state"`
			} `json:"alerts"`
		} `json:"data"`
	}
	testenv.GetJSON(t, p.URL+"/api/v1/alerts", &r)
	var out []string
	for _, a := range r.Data.Alerts {
		if a.Labels["alertname"] == name && a.State == "firing" {
			out = append(out, a.Labels[label])
		}
	}
	return out
}

// TestStack runs the shipped configuration against the real components:
// modelwatch (and a second target with fake GPUs), Prometheus, Alertmanager,
// Pushgateway and node-exporter, on loopback ports, with only addresses and
// intervals rewritten; once with Prometheus 2 and once with Prometheus 3.
func TestStack(t *testing.T) {
	lib := onnxtest.Library(t)
	prometheustest.Each(t, func(t *testing.T, v prometheustest.Version) {
		stack(t, v, lib)
	})
}

// stack is TestStack on one Prometheus version, with ONNX Runtime's library
// at lib.
func stack(t *testing.T, v prometheustest.Version, lib string) {
	nodeExporter := testenv.Tool(t, "prometheus-node-exporter", "prometheus-node-exporter")
	pushgateway := testenv.Tool(t, "prometheus-pushgateway", "prometheus-pushgateway")
	alertmanager := testenv.Tool(t, "prometheus-alertmanager", "prometheus-alertmanager")
	dir := t.TempDir()

	// modelwatch, with a model whose inference fails on out-of-range input,
	// for the fault injection.
	repo := filepath.Join(dir, "models")
	os.MkdirAll(filepath.Join(repo, "faulty/1"), 0o755)
	data, _ := os.ReadFile("../internal/model/onnx/testdata/two_inputs.onnx")
	os.WriteFile(filepath.Join(repo, "faulty/1/model.onnx"), data, 0o644)
	mwAddr := testenv.FreePort(t)
	mw := testenv.Start(t, modelwatchBin, "serve", "--listen-address", mwAddr, "--grpc-listen-address", "", "--model-repository", repo, "--onnxruntime-library", lib)
	testenv.WaitHTTP(t, "http://"+mwAddr+"/ready", mw)

	// A second modelwatch target whose GPU metrics come from go-nvml's mock,
	// so the GPU panels and rules have data on a machine without a GPU.
	gpuReg := prometheus.NewRegistry()
	c, err := gpu.NewCollector(gputest.NewServer(2, 4242), 4242, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	gpuReg.MustRegister(metrics.SelfReporting("gpu", c, nil)) // as gpu.Open registers it
	gpuTarget := httptest.NewServer(promhttp.HandlerFor(gpuReg, promhttp.HandlerOpts{}))
	defer gpuTarget.Close()

	nodeAddr, pushAddr, amAddr, promAddr := testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)
	// Only the collectors the rules and dashboards read: a full collection can
	// take longer than the test's 1s scrape interval on a busy CI machine.
	node := testenv.Start(t, nodeExporter, "--web.listen-address="+nodeAddr, "--collector.disable-defaults",
		"--collector.cpu", "--collector.meminfo", "--collector.uname", "--collector.loadavg")
	push := testenv.Start(t, pushgateway, "--web.listen-address="+pushAddr)
	hook := &webhook{}
	hookServer := httptest.NewServer(hook)
	defer hookServer.Close()

	// Alertmanager: the shipped file, with the webhook's address and short
	// grouping intervals.
	amCfg, err := os.ReadFile("alertmanager/alertmanager.yml")
	if err != nil {
		t.Fatal(err)
	}
	amText := strings.ReplaceAll(string(amCfg), "http://webhook:8080", hookServer.URL)
	amText = regexp.MustCompile(`(group_wait|group_interval): \S+`).ReplaceAllString(amText, "$1: 1s")
	os.WriteFile(filepath.Join(dir, "alertmanager.yml"), []byte(amText), 0o644)
	am := testenv.Start(t, alertmanager, "--config.file="+filepath.Join(dir, "alertmanager.yml"), "--storage.path="+filepath.Join(dir, "am"),
		"--web.listen-address="+amAddr, "--cluster.listen-address=")
	testenv.WaitHTTP(t, "http://"+nodeAddr+"/metrics", node)
	testenv.WaitHTTP(t, "http://"+pushAddr+"/-/ready", push)
	testenv.WaitHTTP(t, "http://"+amAddr+"/-/ready", am)

	// Rules: the shipped files, with every `for:` shortened to 2s.
	rulesDir := shippedRules(t, dir)
	promCfg, err := os.ReadFile("prometheus/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.NewReplacer(
		`"modelwatch:8000"`, fmt.Sprintf("%q, %q", mwAddr, strings.TrimPrefix(gpuTarget.URL, "http://")),
		`"localhost:9090"`, `"`+promAddr+`"`,
		`"node-exporter:9100"`, `"`+nodeAddr+`"`,
		`"pushgateway:9091"`, `"`+pushAddr+`"`,
		`"alertmanager:9093"`, `"`+amAddr+`"`,
		"/etc/prometheus/rules/*.yml", rulesDir+"/*.yml",
		"/etc/prometheus/targets/*.json", filepath.Join(dir, "targets")+"/*.json",
		"scrape_interval: 15s", "scrape_interval: 1s",
		"evaluation_interval: 15s", "evaluation_interval: 1s",
	).Replace(string(promCfg))
	prom := startPrometheusAt(t, v, promAddr, cfg, "exemplar-storage")

	// Every target is up.
	testenv.WaitFor(t, "every target up", 30*time.Second, func() (bool, string) {
		var r struct {
			Data struct {
				ActiveTargets []struct {
					Labels    map[string]string `json:"labels"`
					Health    string            `json:"health"`
					LastError string            `json:"lastError"`
				} `json:"activeTargets"`
			} `json:"data"`
		}
		testenv.GetJSON(t, prom.URL+"/api/v1/targets", &r)
		var state []string
		up := 0
		for _, tg := range r.Data.ActiveTargets {
			state = append(state, tg.Labels["job"]+"="+tg.Health+" "+tg.LastError)
			if tg.Health == "up" {
				up++
			}
		}
		return up == 6 && len(r.Data.ActiveTargets) == 6, strings.Join(state, "; ")
	})

	// Traffic.
	res, err := loadgen.Run(context.Background(), loadgen.Config{
		URL: "http://" + mwAddr, Requests: 600, Concurrency: 4, BadShare: 0.1, Batch: 2, Seed: 3,
		Targets: []loadgen.Target{{Model: "fraud_model", Weight: 1}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("loadgen: %+v", res)

	// Labels for 12 predictions, so that accuracy is exported.
	for i := range 12 {
		resp, err := http.Post("http://"+mwAddr+"/predict", "application/json", strings.NewReader(`{"inputs": [[25.0, 14, 0, 1.5, 2, 900]]}`))
		if err != nil {
			t.Fatal(err)
		}
		var pr struct {
			RequestID string `json:"request_id"`
		}
		json.NewDecoder(resp.Body).Decode(&pr)
		resp.Body.Close()
		label := []string{"safe", "fraud"}[i%4/3] // one in four labelled fraud
		fb, err := http.Post("http://"+mwAddr+"/feedback", "application/json", strings.NewReader(fmt.Sprintf(`{"request_id": %q, "label": %q}`, pr.RequestID, label)))
		if err != nil {
			t.Fatal(err)
		}
		fb.Body.Close()
		if fb.StatusCode != 200 {
			t.Fatalf("feedback: %d", fb.StatusCode)
		}
	}
	// Traffic whose distance_from_home_km has drifted.
	drifted, err := loadgen.Run(context.Background(), loadgen.Config{
		URL: "http://" + mwAddr, Requests: 300, Concurrency: 4, Batch: 2, Seed: 4,
		Drift: map[string]loadgen.Shift{"distance_from_home_km": {Mul: 1, Add: 60}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Sent += drifted.Sent + 12
	res.OK += drifted.OK + 12
	res.Rows += drifted.Rows + 12

	// Prometheus counts what loadgen sent.
	testenv.WaitFor(t, "Prometheus to count every request", 20*time.Second, func() (bool, string) {
		sent, _ := prom.scalar(t, `sum(http_requests_total{job="modelwatch",endpoint="/predict"})`)
		ok, _ := prom.scalar(t, `sum(model_requests_total{job="modelwatch",status="success"})`)
		rows, _ := prom.scalar(t, `sum(model_predictions_total{job="modelwatch"})`)
		return sent == float64(res.Sent) && ok == float64(res.OK) && rows == float64(res.Rows),
			fmt.Sprintf("Prometheus: %v requests, %v successes, %v rows; loadgen: %d, %d, %d", sent, ok, rows, res.Sent, res.OK, res.Rows)
	})

	// Every recording rule returns series.
	var records []string
	for _, f := range ruleFiles(t) {
		b, _ := os.ReadFile(f)
		for _, m := range regexp.MustCompile(`(?m)^\s+- record: (\S+)$`).FindAllSubmatch(b, -1) {
			records = append(records, string(m[1]))
		}
	}
	if len(records) < 19 {
		t.Fatalf("found %d recording rules", len(records))
	}
	var queries []dashboardQuery
	for _, r := range records {
		queries = append(queries, dashboardQuery{"recording rule " + r, r})
	}
	// Every query of every dashboard panel and variable.
	files, _ := filepath.Glob("grafana/dashboards/*.json")
	for _, f := range files {
		queries = append(queries, dashboardQueries(t, f)...)
	}
	var pending []dashboardQuery
	testenv.WaitFor(t, "every rule and dashboard query to return data", 60*time.Second, func() (bool, string) {
		pending = pending[:0]
		for _, q := range queries {
			n, err := prom.query(q.expr)
			if err != nil {
				t.Fatalf("%s: %q: %v", q.where, q.expr, err)
			}
			if n == 0 {
				pending = append(pending, q)
			}
		}
		var names []string
		for _, q := range pending {
			names = append(names, q.where)
		}
		return len(pending) == 0, strings.Join(names, "; ")
	})
	t.Logf("%d recording rules and dashboard queries return data", len(queries))

	// Exemplars are stored: latency buckets carry request ids.
	var ex struct {
		Data []struct {
			Exemplars []struct {
				Labels map[string]string `json:"labels"`
			} `json:"exemplars"`
		} `json:"data"`
	}
	end := time.Now().Add(time.Minute)
	testenv.GetJSON(t, fmt.Sprintf("%s/api/v1/query_exemplars?query=%s&start=%d&end=%d", prom.URL,
		url.QueryEscape(`http_request_duration_seconds_bucket{job="modelwatch"}`), end.Add(-10*time.Minute).Unix(), end.Unix()), &ex)
	ids := 0
	for _, d := range ex.Data {
		for _, e := range d.Exemplars {
			if e.Labels["request_id"] != "" {
				ids++
			}
		}
	}
	if ids == 0 {
		t.Error("no exemplar with a request_id stored")
	}

	// Histograms: the classic buckets the rules and dashboards read, and the
	// native form, from the shipped configuration. Prometheus 2 before 2.45
	// cannot store both from one scrape: with its native-histograms feature
	// it keeps only the native form, so a second Prometheus with the feature
	// on shows that form, and that its classic buckets are gone.
	classic := `sum(http_request_duration_seconds_bucket{job="modelwatch",endpoint="/predict",le="+Inf"})`
	native := `histogram_count(sum(http_request_duration_seconds{job="modelwatch",endpoint="/predict"}))`
	testenv.WaitFor(t, "classic buckets", 20*time.Second, func() (bool, string) {
		n, _ := prom.scalar(t, classic)
		return n == float64(res.Sent), fmt.Sprintf("+Inf bucket %v, sent %d", n, res.Sent)
	})
	// Classic bucket bounds are stored as floats, le="1.0", on both
	// versions: Prometheus 3 writes them so whatever the format scraped,
	// and Prometheus 2 with exemplar storage asks for OpenMetrics, which
	// writes them so (the classic text format says le="1").
	stored, gone := `le="1.0"`, `le="1"`
	for sel, want := range map[string]bool{stored: true, gone: false} {
		n, err := prom.query(`http_request_duration_seconds_bucket{job="modelwatch",endpoint="/predict",` + sel + `}`)
		if err != nil || (n > 0) != want {
			t.Errorf("Prometheus %s: %d series with %s (%v), want them stored: %v", v.Release, n, sel, err, want)
		}
	}
	nativeProm := prom
	if !v.BothHistograms() {
		nativeProm = startPrometheusAt(t, v, testenv.FreePort(t), fmt.Sprintf("global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: modelwatch\n    static_configs: [{targets: [%q]}]\n", mwAddr), "native-histograms")
	}
	testenv.WaitFor(t, "a native histogram", 20*time.Second, func() (bool, string) {
		n, _ := nativeProm.scalar(t, native)
		return n == float64(res.Sent), fmt.Sprintf("histogram_count %v, sent %d", n, res.Sent)
	})
	if !v.BothHistograms() {
		if n, err := nativeProm.query(`http_request_duration_seconds_bucket`); err != nil || n != 0 {
			t.Errorf("Prometheus %s with native histograms stored %d classic bucket series (%v); docs/DEPLOY.md says it stores none", v.Release, n, err)
		}
	}

	// The drift reaches the team's webhook.
	testenv.WaitFor(t, "ModelInputDrift at the team webhook", 60*time.Second, func() (bool, string) {
		return hook.received("/team ModelInputDrift firing"), hook.String()
	})

	// Fault 1: a burst of requests that fail inside the model (500).
	body := `{"inputs": [{"name": "numeric", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}, {"name": "category", "shape": [1], "datatype": "INT64", "data": [99]}]}`
	// Spread over a few scrapes, as a real outage is: rate() counts increases
	// between samples, and a series' first sample is not one.
	for i := range 200 {
		if i%20 == 0 {
			time.Sleep(500 * time.Millisecond)
		}
		resp, err := http.Post("http://"+mwAddr+"/v2/models/faulty/infer", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 500 {
			t.Fatalf("fault injection answered %d", resp.StatusCode)
		}
	}
	testenv.WaitFor(t, "InferenceErrorBudgetBurnFast at the pager webhook", 60*time.Second, func() (bool, string) {
		return hook.received("/pager InferenceErrorBudgetBurnFast firing"), hook.String()
	})

	// Fault 2: the server stops. ModelwatchDown reaches the pager, and it
	// inhibits the error-budget alert of the same job.
	mw.Stop()
	testenv.WaitFor(t, "ModelwatchDown at the pager webhook", 60*time.Second, func() (bool, string) {
		return hook.received("/pager ModelwatchDown firing"), hook.String()
	})
	testenv.WaitFor(t, "the error-budget alert inhibited", 30*time.Second, func() (bool, string) {
		var alerts []struct {
			Labels map[string]string `json:"labels"`
			Status struct {
				State       string   `json:"state"`
				InhibitedBy []string `json:"inhibitedBy"`
			} `json:"status"`
		}
		testenv.GetJSON(t, "http://"+amAddr+"/api/v2/alerts", &alerts)
		var state []string
		for _, a := range alerts {
			state = append(state, a.Labels["alertname"]+"="+a.Status.State)
			if a.Labels["alertname"] == "InferenceErrorBudgetBurnFast" && a.Status.State == "suppressed" && len(a.Status.InhibitedBy) > 0 {
				return true, ""
			}
		}
		return false, strings.Join(state, ", ")
	})
}

// startPrometheusAt runs Prometheus of version v on addr with the
// configuration text cfg, written for Prometheus 3 (see
// prometheustest.Version.Config).
func startPrometheusAt(t *testing.T, v prometheustest.Version, addr, cfg string, features ...string) *prometheusServer {
	t.Helper()
	return &prometheusServer{v.Start(t, addr, cfg, features...)}
}

// TestBatchJobThroughPushgateway runs modelwatch batch against a real
// Pushgateway scraped by Prometheus with the shipped configuration: the job's
// metrics arrive under the job's own labels (honor_labels), a failed run
// keeps the last success, and BatchJobOverdue fires once the job is late;
// on Prometheus 2 and 3.
func TestBatchJobThroughPushgateway(t *testing.T) {
	prometheustest.Each(t, func(t *testing.T, v prometheustest.Version) {
		pushgateway := testenv.Tool(t, "prometheus-pushgateway", "prometheus-pushgateway")
		dir := t.TempDir()
		pushAddr, promAddr := testenv.FreePort(t), testenv.FreePort(t)
		push := testenv.Start(t, pushgateway, "--web.listen-address="+pushAddr)
		testenv.WaitHTTP(t, "http://"+pushAddr+"/-/ready", push)

		rulesDir := shippedRules(t, dir)
		promCfg, _ := os.ReadFile("prometheus/prometheus.yml")
		cfg := strings.NewReplacer(
			`"pushgateway:9091"`, `"`+pushAddr+`"`,
			`"modelwatch:8000"`, `"127.0.0.1:1"`, `"localhost:9090"`, `"`+promAddr+`"`,
			`"node-exporter:9100"`, `"127.0.0.1:1"`, `"alertmanager:9093"`, `"127.0.0.1:1"`,
			"/etc/prometheus/rules/*.yml", rulesDir+"/*.yml",
			"/etc/prometheus/targets/*.json", filepath.Join(dir, "targets")+"/*.json",
			"scrape_interval: 15s", "scrape_interval: 1s", "evaluation_interval: 15s", "evaluation_interval: 1s",
		).Replace(string(promCfg))
		prom := startPrometheusAt(t, v, promAddr, cfg)

		heldout, err := os.ReadFile("../models/fraud_model/testdata/heldout.csv")
		if err != nil {
			t.Fatal(err)
		}
		input := filepath.Join(dir, "rows.csv")
		lines := strings.Split(strings.TrimSpace(string(heldout)), "\n")
		bad := append(slices.Clone(lines[:11]), "12.5,3,not-a-number,1,2,3,0")
		os.WriteFile(input, []byte(strings.Join(append(bad, lines[11:]...), "\n")+"\n"), 0o644)
		batch := func(extra ...string) (int, string) {
			args := append([]string{"batch", "--input", input, "--output", filepath.Join(dir, "out.csv"), "--pushgateway", "http://" + pushAddr,
				"--job", "nightly_scoring", "--grouping", "team=fraud", "--expected-interval", "3s"}, extra...)
			out, err := exec.Command(modelwatchBin, args...).CombinedOutput()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
			return code, string(out)
		}
		code, out := batch()
		if code != 0 || !strings.Contains(out, "line 12, column merchant_category") || !strings.Contains(out, "scored 300 rows") {
			t.Fatalf("batch: exit %d\n%s", code, out)
		}
		sel := `{job="nightly_scoring",team="fraud",model_name="fraud_model",model_version="v1"}`
		testenv.WaitFor(t, "the job's metrics in Prometheus", 30*time.Second, func() (bool, string) {
			rows, _ := prom.scalar(t, "modelwatch_batch_rows_processed"+sel)
			failed, _ := prom.scalar(t, "modelwatch_batch_rows_failed"+sel)
			_, ok := prom.scalar(t, "modelwatch_batch_last_success_timestamp_seconds"+sel)
			return rows == 300 && failed == 1 && ok, fmt.Sprintf("rows %v, failed %v, success %v", rows, failed, ok)
		})
		success, _ := prom.scalar(t, "modelwatch_batch_last_success_timestamp_seconds"+sel)

		// A failed run pushes its failure and keeps the last success.
		code, out = batch("--fail-on-bad-row")
		if code != 1 {
			t.Fatalf("failing batch: exit %d\n%s", code, out)
		}
		written, _ := os.ReadFile(filepath.Join(dir, "out.csv"))
		if n := strings.Count(string(written), "\n"); n != 11 {
			t.Errorf("the failed run kept %d lines of output, want the header and the 10 rows before the bad one", n)
		}
		testenv.WaitFor(t, "the failure in Prometheus", 30*time.Second, func() (bool, string) {
			_, failed := prom.scalar(t, "modelwatch_batch_last_failure_timestamp_seconds"+sel)
			s, _ := prom.scalar(t, "modelwatch_batch_last_success_timestamp_seconds"+sel)
			return failed && s == success, fmt.Sprintf("failure pushed %v, success %v (was %v)", failed, s, success)
		})
		// Three seconds after the last success the job is late: the alert fires.
		testenv.WaitFor(t, "BatchJobOverdue", 30*time.Second, func() (bool, string) {
			jobs := prom.firing(t, "BatchJobOverdue", "job")
			return slices.Contains(jobs, "nightly_scoring"), fmt.Sprint(jobs)
		})
	})
}
