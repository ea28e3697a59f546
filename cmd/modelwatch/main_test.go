package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/crypto/bcrypt"

	"github.com/modelwatch/modelwatch/internal/testenv"
)

var binary string

// TestMain builds the real modelwatch binary once for the tests that run it.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "modelwatch-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Servers started in process, or without a directory of their own,
	// keep their prediction log here, never in the user's directory.
	os.Setenv("MODELWATCH_DATA_DIR", filepath.Join(dir, "data"))
	binary, err = testenv.BuildModelwatch("../..", dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// process is a running modelwatch serve.
type process struct {
	cmd     *exec.Cmd
	addrs   map[string]string // listen address by role: "api", "metrics"
	logs    *logBuffer
	exited  chan error
	logDone chan struct{}
}

// logBuffer collects the process's log lines for concurrent reading.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) add(line []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(line)
	b.buf.WriteByte('\n')
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// start runs `modelwatch serve` with args on loopback port 0 and waits until
// it listens.
func start(t *testing.T, listeners int, args ...string) *process {
	t.Helper()
	args = append([]string{"serve", "--listen-address", "127.0.0.1:0", "--grpc-listen-address", "127.0.0.1:0", "--log-format", "json"}, args...)
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "MODELWATCH_LOG_LEVEL=info")
	// A directory of its own for the prediction log (a --data-dir flag
	// wins).
	cmd.Env = append(cmd.Env, "MODELWATCH_DATA_DIR="+t.TempDir())
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, addrs: map[string]string{}, logs: &logBuffer{}, exited: make(chan error, 1), logDone: make(chan struct{})}
	found := make(chan [2]string, 4)
	go func() {
		defer close(p.logDone)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Bytes()
			p.logs.add(line)
			var entry struct{ Msg, Role, Address string }
			if json.Unmarshal(line, &entry) == nil && entry.Msg == "listening" {
				found <- [2]string{entry.Role, entry.Address}
			}
		}
	}()
	go func() { <-p.logDone; p.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.logDone
	})
	for len(p.addrs) < listeners {
		select {
		case a := <-found:
			p.addrs[a[0]] = a[1]
		case err := <-p.exited:
			t.Fatalf("modelwatch exited before listening: %v\n%s", err, p.logs)
		case <-time.After(30 * time.Second):
			t.Fatalf("modelwatch did not listen within 30s:\n%s", p.logs)
		}
	}
	// Models load after the listeners open; /ready says when they have.
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(p.url("/ready"))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("modelwatch not ready within 30s:\n%s", p.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitCleanExit waits up to 30 s for the process to exit 0 having logged a
// clean shutdown.
func (p *process) waitCleanExit(t *testing.T) {
	t.Helper()
	select {
	case err := <-p.exited:
		if err != nil || !strings.Contains(p.logs.String(), "shut down cleanly") {
			t.Errorf("exit: %v\n%s", err, p.logs)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("modelwatch did not exit after the delay")
	}
}

func (p *process) url(path string) string { return "http://" + p.addrs["api"] + path }

// waitLog waits until the process has logged s.
func (p *process) waitLog(t *testing.T, s string) {
	t.Helper()
	testenv.WaitFor(t, "the log line "+strconv.Quote(s), 10*time.Second, func() (bool, string) {
		return strings.Contains(p.logs.String(), s), p.logs.String()
	})
}

func post(t *testing.T, url, body string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("POST %s: answer is not JSON: %v", url, err)
	}
	return resp.StatusCode, out
}

func get(t *testing.T, client *http.Client, url string, header ...string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// scrape parses /metrics into "name{labels}" -> value for counters and
// gauges, and name_count{labels} for histograms.
func scrape(t *testing.T, text string) map[string]float64 {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	out := map[string]float64{}
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			key := "{" + strings.Join(ls, ",") + "}"
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[name+key] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[name+key] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[name+"_count"+key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

const (
	fraudRow = `[950.0, 2, 8, 120.5, 11, 12]`
	safeRow  = `[25.0, 14, 0, 1.5, 2, 900]`
)

func TestServeOverTCP(t *testing.T) {
	p := start(t, 1)

	for i := 0; i < 3; i++ {
		code, r := post(t, p.url("/predict"), `{"inputs": [`+fraudRow+`]}`)
		if code != 200 || r["prediction"] != "fraud" || r["model_name"] != "fraud_model" || r["model_version"] != "v1" {
			t.Fatalf("predict: %d %v", code, r)
		}
	}
	code, r := post(t, p.url("/predict"), `{"inputs": [`+safeRow+`,`+safeRow+`,`+fraudRow+`,`+safeRow+`]}`)
	if preds, _ := r["predictions"].([]any); code != 200 || len(preds) != 4 {
		t.Fatalf("batch: %d %v", code, r)
	}
	if code, r := post(t, p.url("/predict"), `{"model_name": "no_such_model", "inputs": [`+safeRow+`]}`); code != 404 || r["error_type"] != "model_not_found" {
		t.Errorf("unknown model: %d %v", code, r)
	}
	if code, r := post(t, p.url("/predict"), `{"inputs": [`+safeRow+`, [1]]}`); code != 422 || r["error_type"] != "shape_mismatch" {
		t.Errorf("ragged: %d %v", code, r)
	}
	if code, body, _ := get(t, http.DefaultClient, p.url("/health")); code != 200 || !strings.Contains(body, `"status":"healthy"`) {
		t.Errorf("/health: %d %s", code, body)
	}
	if code, _, _ := get(t, http.DefaultClient, p.url("/ready")); code != 200 {
		t.Errorf("/ready: %d", code)
	}

	code, text, hdr := get(t, http.DefaultClient, p.url("/metrics"))
	if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: %d %s", code, hdr.Get("Content-Type"))
	}
	s := scrape(t, text)
	for k, v := range map[string]float64{
		`model_requests_total{model_name="fraud_model",model_version="v1",status="success"}`:     4,
		`model_predictions_total{model_name="fraud_model",model_version="v1"}`:                   7,
		`model_predicted_class_total{class="fraud",model_name="fraud_model",model_version="v1"}`: 4,
		`model_predicted_class_total{class="safe",model_name="fraud_model",model_version="v1"}`:  3,
		`model_batch_size_count{model_name="fraud_model"}`:                                       4,
		`http_requests_total{endpoint="/predict",method="POST",status="200"}`:                    4,
		`http_requests_total{endpoint="/predict",method="POST",status="404"}`:                    1,
		`http_requests_total{endpoint="/predict",method="POST",status="422"}`:                    1,
		`model_prediction_errors_total{error_type="model_not_found",model_name=""}`:              1,
		`model_prediction_errors_total{error_type="shape_mismatch",model_name="fraud_model"}`:    1,
		`model_loaded_info{model_name="fraud_model",model_type="xgboost",model_version="v1"}`:    1,
		`http_request_duration_seconds_count{endpoint="/predict",method="POST"}`:                 6,
	} {
		if got, ok := s[k]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, v)
		}
	}
	for _, prefix := range []string{"modelwatch_build_info{", "process_resident_memory_bytes{", "go_goroutines{", "model_load_time_seconds{"} {
		present := false
		for k := range s {
			present = present || strings.HasPrefix(k, prefix)
		}
		if !present {
			t.Errorf("/metrics has no %s...}", prefix)
		}
	}
	if strings.Contains(text, "no_such_model") {
		t.Error("/metrics carries the unknown model name a client sent")
	}

	// OpenMetrics, with the request id of a request as an exemplar. A series
	// takes an exemplar at most every 100ms (metrics.ExemplarInterval): the
	// pause makes this request's the next one.
	time.Sleep(150 * time.Millisecond)
	resp, err := http.Post(p.url("/predict"), "application/json", strings.NewReader(`{"inputs": [`+safeRow+`]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	id := resp.Header.Get("X-Request-ID")
	_, om, hdr := get(t, http.DefaultClient, p.url("/metrics"), "Accept", "application/openmetrics-text; version=1.0.0")
	if !strings.HasPrefix(hdr.Get("Content-Type"), "application/openmetrics-text") || !strings.Contains(om, `# {request_id="`+id+`"}`) {
		t.Errorf("OpenMetrics scrape: %s, exemplar for %s present: %v", hdr.Get("Content-Type"), id, strings.Contains(om, id))
	}

	promtoolCheck(t, text)
}

// promtoolCheck lints the exposition with Prometheus's promtool. Under
// CI=true a missing promtool fails the test.
func promtoolCheck(t *testing.T, text string) {
	t.Helper()
	promtool := testenv.Tool(t, "promtool", "prometheus")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestGracefulShutdown sends SIGTERM while a request is in flight: the
// request is answered, the process exits 0, and new connections are refused.
func TestGracefulShutdown(t *testing.T) {
	p := start(t, 1)
	body := `{"inputs": [` + fraudRow + `]}`
	conn, err := net.Dial("tcp", p.addrs["api"])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body[:10])
	// The server has the request's headers once another request on another
	// connection has been answered after them.
	if code, _, _ := get(t, http.DefaultClient, p.url("/health")); code != 200 {
		t.Fatal("/health failed")
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Wait for the server to begin draining, then finish the request.
	p.waitLog(t, "draining in-flight requests")
	if _, err := conn.Write([]byte(body[10:])); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("in-flight request lost: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"prediction":"fraud"`) {
		t.Errorf("in-flight request: %d %s", resp.StatusCode, b)
	}
	select {
	case err := <-p.exited:
		if err != nil {
			t.Errorf("exit: %v\n%s", err, p.logs)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("modelwatch did not exit after SIGTERM")
	}
	if !strings.Contains(p.logs.String(), "shut down cleanly") {
		t.Errorf("logs:\n%s", p.logs)
	}
	if c, err := net.Dial("tcp", p.addrs["api"]); err == nil {
		c.Close()
		t.Error("new connections accepted after shutdown")
	}
}

// TestShutdownDelay: with --shutdown-delay, SIGTERM turns /ready to 503
// while the server still takes requests, on new connections too, so that a
// load balancer polling /ready stops sending before the listener closes.
func TestShutdownDelay(t *testing.T) {
	p := start(t, 1, "--shutdown-delay", "3s")
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.waitLog(t, "/ready answers 503")
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	if code, body, _ := get(t, client, p.url("/ready")); code != 503 || !strings.Contains(body, `"ready":false`) {
		t.Errorf("/ready during the delay: %d %s", code, body)
	}
	resp, err := client.Post(p.url("/predict"), "application/json", strings.NewReader(`{"inputs": [`+fraudRow+`]}`))
	if err != nil {
		t.Fatalf("a request during the delay: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("a request during the delay: %d", resp.StatusCode)
	}
	if strings.Contains(p.logs.String(), "draining in-flight requests") {
		t.Error("draining began before the delay ended")
	}
	p.waitCleanExit(t)
}

// TestSecondSignalEndsAtOnce: a second SIGTERM during a long shutdown
// delay ends the process without waiting.
func TestSecondSignalEndsAtOnce(t *testing.T) {
	p := start(t, 1, "--shutdown-delay", "60s")
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.waitLog(t, "/ready answers 503")
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		if err == nil || !strings.Contains(err.Error(), "terminated") {
			t.Errorf("exit after the second signal: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a second SIGTERM did not end the process")
	}
}

// TestMetricsBehindTLSAndBasicAuth serves /metrics on its own listener with
// an exporter-toolkit web configuration; the API stays open.
func TestMetricsBehindTLSAndBasicAuth(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := selfSigned(t)
	os.WriteFile(filepath.Join(dir, "cert.pem"), certPEM, 0o600)
	os.WriteFile(filepath.Join(dir, "key.pem"), keyPEM, 0o600)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webConfig := filepath.Join(dir, "web.yml")
	os.WriteFile(webConfig, []byte(fmt.Sprintf("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\nbasic_auth_users:\n  prometheus: %s\n", hash)), 0o600)

	p := start(t, 2, "--metrics-listen-address", "127.0.0.1:0", "--web.config.file", webConfig)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	metricsURL := "https://" + p.addrs["metrics"] + "/metrics"

	if code, _, _ := get(t, client, metricsURL); code != 401 {
		t.Errorf("/metrics without credentials: %d, want 401", code)
	}
	req, _ := http.NewRequest("GET", metricsURL, nil)
	req.SetBasicAuth("prometheus", "s3cret")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "model_loaded_info") {
		t.Errorf("/metrics with credentials: %d", resp.StatusCode)
	}
	// Go's TLS server answers a plain-HTTP request with 400.
	if resp, err := http.Get("http://" + p.addrs["metrics"] + "/metrics"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP to the metrics listener: %d, want 400", resp.StatusCode)
		}
	}
	// The API listener is plain HTTP, without auth, and has no /metrics.
	if code, r := post(t, p.url("/predict"), `{"inputs": [`+safeRow+`]}`); code != 200 || r["prediction"] != "safe" {
		t.Errorf("predict: %d %v", code, r)
	}
	if code, _, _ := get(t, http.DefaultClient, p.url("/metrics")); code != 404 {
		t.Errorf("/metrics on the API listener: %d, want 404", code)
	}
}

func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "modelwatch-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

func TestCommandLine(t *testing.T) {
	run := func(args ...string) (int, string, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, binary, args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, stdout.String(), stderr.String()
	}
	if code, out, _ := run("version"); code != 0 || !strings.HasPrefix(out, "modelwatch dev (revision ") {
		t.Errorf("version: %d %q", code, out)
	}
	if code, out, _ := run("version", "--json"); code != 0 || !strings.Contains(out, `"goversion":"go`) {
		t.Errorf("version --json: %d %q", code, out)
	}
	code, out, _ := run("serve", "--help")
	if code != 0 || !strings.Contains(out, "--max-batch-rows") || !strings.Contains(out, "env MODELWATCH_LISTEN_ADDRESS") {
		t.Errorf("serve --help: %d\n%s", code, out)
	}
	for _, args := range [][]string{{"serve", "--no-such-flag"}, {"serve", "--max-batch-rows", "0"}, {"bogus"}, {}} {
		if code, _, errOut := run(args...); code != 2 || errOut == "" {
			t.Errorf("%v: exit %d, stderr %q; want 2 and a message", args, code, errOut)
		}
	}
	// loadgen against a closed port exits non-zero with a clear message.
	if code, _, errOut := run("loadgen", "--url", "http://127.0.0.1:1", "--requests", "1"); code != 1 || !strings.Contains(errOut, "server unreachable") {
		t.Errorf("loadgen to nowhere: exit %d, %q", code, errOut)
	}
	if _, err := os.Stat("/dev/nvidiactl"); err != nil {
		// No NVIDIA driver here: --gpu-metrics on must refuse to start.
		if code, _, errOut := run("serve", "--listen-address", "127.0.0.1:0", "--grpc-listen-address", "", "--gpu-metrics", "on"); code != 1 || !strings.Contains(errOut, "gpu-metrics on: ") {
			t.Errorf("--gpu-metrics on without a GPU: exit %d, %q", code, errOut)
		}
	}
	if code, _, errOut := run("serve", "--listen-address", "127.0.0.1:0", "--grpc-listen-address", "", "--default-model", "other"); code != 2 || !strings.Contains(errOut, `default-model "other" is not loaded`) {
		t.Errorf("unknown default model: %d %q", code, errOut)
	}
}

// TestLoadgenCommand runs modelwatch loadgen against modelwatch serve, both
// real binaries, and checks the server counted what loadgen sent.
func TestLoadgenCommand(t *testing.T) {
	p := start(t, 1)
	cmd := exec.Command(binary, "loadgen", "--url", "http://"+p.addrs["api"], "--requests", "120", "--bad-share", "0.25",
		"--batch", "2", "--drift", "amount=*4", "--json")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("loadgen: %v", err)
	}
	var res struct {
		Sent     int            `json:"sent"`
		OK       int            `json:"ok"`
		ByStatus map[string]int `json:"by_status"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	_, text, _ := get(t, http.DefaultClient, p.url("/metrics"))
	s := scrape(t, text)
	served := s[`http_requests_total{endpoint="/predict",method="POST",status="200"}`]
	if res.Sent != 120 || float64(res.OK) != served || s[`model_predictions_total{model_name="fraud_model",model_version="v1"}`] != float64(2*res.OK) {
		t.Errorf("loadgen %+v; server: %v successes", res, served)
	}
	failed := 0.0
	for k, v := range s {
		if strings.HasPrefix(k, `http_requests_total{endpoint="/predict",method="POST",status="4`) {
			failed += v
		}
	}
	if int(failed) != res.Sent-res.OK {
		t.Errorf("server counted %v failures, loadgen %d", failed, res.Sent-res.OK)
	}
}
