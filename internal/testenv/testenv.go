// Package testenv runs the real components that the deploy tests prove
// modelwatch's files against (Debian's Prometheus and friends, the modelwatch
// binary) and talks to them. It is for tests only.
package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// Tool finds a command-line tool. A missing one skips the test, except under
// CI=true, where it fails: CI must have every component.
func Tool(t testing.TB, name, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed (Debian package %s); CI must have it", name, debianPackage)
		}
		t.Skipf("%s not installed (Debian package %s)", name, debianPackage)
	}
	return p
}

// Run runs name in dir and returns its combined output; a failure fails t.
func Run(t testing.TB, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return string(out)
}

// BuildModelwatch builds the modelwatch binary of the module rooted at
// moduleRoot into dir and returns its path.
func BuildModelwatch(moduleRoot, dir string) (string, error) {
	bin := filepath.Join(dir, "modelwatch")
	build := exec.Command("go", "build", "-o", bin, "./cmd/modelwatch")
	build.Dir = moduleRoot
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/modelwatch: %v\n%s", err, out)
	}
	return bin, nil
}

// Proc is a running component.
type Proc struct {
	Cmd *exec.Cmd
	Log *SyncBuffer
}

// SyncBuffer collects a process's output.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Start runs bin with args until the test ends.
func Start(t testing.TB, bin string, args ...string) *Proc {
	t.Helper()
	p := &Proc{Cmd: exec.Command(bin, args...), Log: &SyncBuffer{}}
	p.Cmd.Stdout, p.Cmd.Stderr = p.Log, p.Log
	// A modelwatch server keeps its prediction log in a directory of its
	// own (a --data-dir flag wins), never in the user's.
	p.Cmd.Env = append(os.Environ(), "MODELWATCH_DATA_DIR="+t.TempDir())
	if err := p.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return p
}

// Stop kills the process if it still runs.
func (p *Proc) Stop() {
	if p.Cmd.ProcessState == nil {
		p.Cmd.Process.Kill()
		p.Cmd.Wait()
	}
}

// WaitHTTP waits up to 30 seconds for url to answer 200.
func WaitHTTP(t testing.TB, url string, p *Proc) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer within 30s:\n%s", url, p.Log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// WaitFor polls ok every 250ms for up to timeout.
func WaitFor(t testing.TB, what string, timeout time.Duration, ok func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		done, state := ok()
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last state: %s", timeout, what, state)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// FreePort returns a loopback address with a port nothing listens on.
func FreePort(t testing.TB) string {
	return FreePortOn(t, "127.0.0.1")
}

// FreePortOn returns host:port with a port free on host.
func FreePortOn(t testing.TB, host string) string {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Port returns the port of a host:port address.
func Port(t testing.TB, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// GetJSON decodes the JSON answer of a GET into v.
func GetJSON(t testing.TB, u string, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v: %s", u, err, b)
	}
}

// Prometheus is a running Prometheus from Debian's package.
type Prometheus struct {
	URL string
	*Proc
}

// StartPrometheus runs Prometheus on addr with the configuration text cfg
// and waits until it is ready.
func StartPrometheus(t testing.TB, addr, cfg string, features ...string) *Prometheus {
	t.Helper()
	bin := Tool(t, "prometheus", "prometheus")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644)
	args := []string{"--config.file=" + filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path=" + filepath.Join(dir, "data"),
		"--web.listen-address=" + addr, "--log.level=warn"}
	if len(features) > 0 {
		args = append(args, "--enable-feature="+strings.Join(features, ","))
	}
	p := &Prometheus{URL: "http://" + addr, Proc: Start(t, bin, args...)}
	WaitHTTP(t, p.URL+"/-/ready", p.Proc)
	return p
}

// Sample is one series of an instant vector.
type Sample struct {
	Labels map[string]string
	Value  float64
}

// Query runs an instant query, through client_golang's Prometheus API
// client, and returns its vector; a query Prometheus refuses is an error.
func (p *Prometheus) Query(expr string) ([]Sample, error) {
	client, err := api.NewClient(api.Config{Address: p.URL})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	val, _, _, err := promv1.NewAPI(client).Query(ctx, expr, time.Now())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", expr, err)
	}
	vec, ok := val.(model.Vector)
	if !ok {
		return nil, fmt.Errorf("%s: a %s, not a vector", expr, val.Type())
	}
	out := make([]Sample, 0, len(vec))
	for _, s := range vec {
		labels := make(map[string]string, len(s.Metric))
		for k, v := range s.Metric {
			labels[string(k)] = string(v)
		}
		out = append(out, Sample{Labels: labels, Value: float64(s.Value)})
	}
	return out, nil
}
