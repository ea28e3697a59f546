package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelwatch/modelwatch/internal/testenv"
)

// floodConnections is how many idle connections the flood test holds;
// MODELWATCH_FLOOD_CONNECTIONS sets it (20000 takes an open-file limit
// above 20,256).
func floodConnections(t *testing.T) int {
	n := 5000
	if v := os.Getenv("MODELWATCH_FLOOD_CONNECTIONS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 100 || n > 100_000 {
			t.Fatalf("MODELWATCH_FLOOD_CONNECTIONS=%q is not a number from 100 to 100000", v)
		}
	}
	// The test process holds the client side of every connection.
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if need := uint64(n) + 256; lim.Cur < need && lim.Cur < lim.Max {
		lim.Cur = min(need, lim.Max)
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatal(err)
		}
	}
	if fit := int(lim.Cur) - 256; fit < n {
		t.Logf("the open-file limit %d holds %d connections, not %d", lim.Cur, fit, n)
		n = fit
	}
	if n < 2000 {
		t.Fatalf("the open-file limit %d is too low for a flood of 2000 connections (raise ulimit -n)", lim.Cur)
	}
	return n
}

// TestConnectionFloodLeavesInferenceServing holds thousands of idle
// connections (silent ones and keep-alive ones between requests) against a
// server limited to 1000: new clients are still served at once, the server
// holds no more than its limit, what it closed is counted by reason, and
// once the flood goes the connections and memory return to their idle
// level.
func TestConnectionFloodLeavesInferenceServing(t *testing.T) {
	const limit = 1000
	n := floodConnections(t)
	p := start(t, 1, "--max-connections", strconv.Itoa(limit))
	addr := p.addrs["api"]
	predict := func(what string) time.Duration {
		t.Helper()
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		t0 := time.Now()
		resp, err := client.Post(p.url("/predict"), "application/json", strings.NewReader(`{"inputs": [`+fraudRow+`]}`))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", what, resp.StatusCode)
		}
		return time.Since(t0)
	}
	for range 20 {
		predict("a predict before the flood")
	}
	rssIdle := metricsOf(t, p)["process_resident_memory_bytes{}"]

	// The flood: every other connection sends a request and never reads the
	// answer, so that it waits as a keep-alive connection; the others send
	// nothing. Bounded in count and in time.
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	deadline := time.Now().Add(90 * time.Second)
	for i := range n {
		if time.Now().After(deadline) {
			t.Fatalf("the flood opened only %d connections in 90s", i)
		}
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		if i%2 == 0 {
			fmt.Fprintf(c, "GET /health HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
		}
		conns = append(conns, c)
	}

	// New clients are served at once while the flood is held.
	var slowest time.Duration
	for i := range 50 {
		slowest = max(slowest, predict(fmt.Sprintf("predict %d during the flood", i)))
	}
	if slowest > time.Second {
		t.Errorf("the slowest predict during the flood took %s", slowest)
	}
	m := metricsOf(t, p)
	open := m[`modelwatch_http_open_connections{listener="api"}`]
	idle := m[`modelwatch_http_connections_closed_total{listener="api",reason="idle"}`]
	silent := m[`modelwatch_http_connections_closed_total{listener="api",reason="silent"}`]
	over := m[`modelwatch_http_connections_closed_total{listener="api",reason="over_limit"}`]
	t.Logf("%d flood connections: open %g, closed idle %g, silent %g, over_limit %g; slowest predict %s", n, open, idle, silent, over, slowest)
	if open > limit || open < limit-50 {
		t.Errorf("open connections %g, want the limit %d or just under", open, limit)
	}
	// Every connection beyond the limit was closed to make room, none
	// refused: the server had idle ones to close.
	if idle+silent < float64(n-limit) || idle == 0 || silent == 0 || over != 0 {
		t.Errorf("closed: idle %g, silent %g, over_limit %g; want idle and silent summing to at least %d, none over the limit", idle, silent, over, n-limit)
	}
	if m[`http_requests_total{endpoint="/predict",method="POST",status="200"}`] != 70 {
		t.Errorf("predicts counted: %g, want 70", m[`http_requests_total{endpoint="/predict",method="POST",status="200"}`])
	}

	// The flood goes: the connections and the memory return.
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	testenv.WaitFor(t, "the flood's connections to close", 10*time.Second, func() (bool, string) {
		v := metricsOf(t, p)[`modelwatch_http_open_connections{listener="api"}`]
		return v <= 2, fmt.Sprint(v)
	})
	var rss float64
	testenv.WaitFor(t, "resident memory near its idle level", 30*time.Second, func() (bool, string) {
		rss = metricsOf(t, p)["process_resident_memory_bytes{}"]
		return rss < rssIdle+16<<20, fmt.Sprintf("%.1f MiB, idle %.1f MiB", rss/(1<<20), rssIdle/(1<<20))
	})
	t.Logf("resident memory: idle %.1f MiB, after the flood %.1f MiB", rssIdle/(1<<20), rss/(1<<20))
	predict("a predict after the flood")
}

// TestMaxConnectionsFitsTheOpenFileLimit: under an open-file limit too low
// for --max-connections, the server lowers the limit to what fits, says so,
// and exports what it holds to.
func TestMaxConnectionsFitsTheOpenFileLimit(t *testing.T) {
	addr := testenv.FreePort(t)
	// ulimit -n sets the soft and the hard limit: the server cannot raise
	// it, and keeps 512 for the metrics and admin listeners and 256 for its
	// own files.
	proc := testenv.Start(t, "/bin/sh", "-c", `ulimit -n 1024 && exec "$0" "$@"`, binary, "serve",
		"--listen-address", addr, "--grpc-listen-address", "", "--max-connections", "4096", "--log-format", "json")
	testenv.WaitHTTP(t, "http://"+addr+"/ready", proc)
	_, text, _ := get(t, http.DefaultClient, "http://"+addr+"/metrics")
	if got := scrape(t, text)[`modelwatch_http_max_connections{listener="api"}`]; got != 256 {
		t.Errorf("modelwatch_http_max_connections{listener=\"api\"} = %g, want 256 (1024 - 512 - 256)", got)
	}
	for _, s := range []string{`"msg":"the open-file limit cannot hold --max-connections; lowered"`, `"open_file_limit":1024`, `"lowered_to":256`} {
		if !strings.Contains(proc.Log.String(), s) {
			t.Errorf("the log does not say %s:\n%s", s, proc.Log)
		}
	}
}
