package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// limitedServer serves h on 127.0.0.1 behind a limiter of max connections.
func limitedServer(t *testing.T, max int, h http.Handler) (*ConnLimiter, *AccessMetrics, string) {
	t.Helper()
	m := NewAccessMetrics(prometheus.NewRegistry())
	lim := NewConnLimiter("api", max, m)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ConnState: lim.ConnState, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(lim.Listener(ln))
	t.Cleanup(func() { srv.Close() })
	return lim, m, ln.Addr().String()
}

func closedCounts(m *AccessMetrics) string {
	var out []string
	for _, why := range []string{ClosedIdle, ClosedSilent, ClosedOverLimit} {
		out = append(out, fmt.Sprintf("%s=%g", why, testutil.ToFloat64(m.ConnectionsClosed.WithLabelValues("api", why))))
	}
	return strings.Join(out, " ")
}

// waitOpen waits until the limiter counts n connections open.
func waitOpen(t *testing.T, lim *ConnLimiter, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for lim.Open() != n {
		if time.Now().After(deadline) {
			t.Fatalf("open connections %d, want %d", lim.Open(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (l *ConnLimiter) waitingLen() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.waiting.Len()
}

// closedByServer reports whether the server closed c within a second.
func closedByServer(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 512)
	for {
		// What is left of an answer is read first.
		if _, err := c.Read(buf); err != nil {
			return !isTimeout(err)
		}
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func TestConnLimiterClosesLongestWaitingFirst(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	lim, m, addr := limitedServer(t, 4, ok)

	// Two keep-alive connections that served a request, then two silent
	// ones: the limit is reached.
	var conns []net.Conn
	for i := range 4 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if i < 2 {
			fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			buf := make([]byte, 512)
			if n, err := c.Read(buf); err != nil || !strings.Contains(string(buf[:n]), "200 OK") {
				t.Fatalf("request %d: %q %v", i, buf[:n], err)
			}
		}
		conns = append(conns, c)
		// Each connection waits before the next one comes.
		deadline := time.Now().Add(5 * time.Second)
		for lim.waitingLen() != i+1 {
			if time.Now().After(deadline) {
				t.Fatalf("%d connections waiting, want %d", lim.waitingLen(), i+1)
			}
			time.Sleep(time.Millisecond)
		}
	}

	// Each new client is served, and keeps its connection; the connections
	// close in the order they began to wait: the idle keep-alive ones,
	// then the silent ones.
	get := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		buf := make([]byte, 512)
		if n, err := c.Read(buf); err != nil || !strings.Contains(string(buf[:n]), "200 OK") {
			t.Fatalf("new client: %q %v", buf[:n], err)
		}
		return c
	}
	for i := range 3 {
		defer get().Close()
		if !closedByServer(conns[i]) {
			t.Errorf("after new client %d, connection %d is still open", i, i)
		}
	}
	if closedByServer(conns[3]) {
		t.Error("the newest silent connection was closed")
	}
	if got := closedCounts(m); got != "idle=2 silent=1 over_limit=0" {
		t.Errorf("closed: %s", got)
	}
	waitOpen(t, lim, 4)
	if got := testutil.ToFloat64(m.OpenConnections.WithLabelValues("api")); got != 4 {
		t.Errorf("open connections gauge %g", got)
	}
	if got := testutil.ToFloat64(m.MaxConnections.WithLabelValues("api")); got != 4 {
		t.Errorf("max connections gauge %g", got)
	}
}

func TestConnLimiterRefusesWhenEveryConnectionServes(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 2)
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-release
		io.WriteString(w, "ok")
	})
	lim, m, addr := limitedServer(t, 2, slow)
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			resp, err := http.Get("http://" + addr + "/")
			if err == nil {
				resp.Body.Close()
			}
			errs <- err
		}()
	}
	for range 2 {
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			t.Fatal("the requests did not start")
		}
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !closedByServer(c) {
		t.Error("a connection past the limit, with every connection serving, stayed open")
	}
	close(release)
	for range 2 {
		if err := <-errs; err != nil {
			t.Errorf("a request in progress failed: %v", err)
		}
	}
	if got := closedCounts(m); got != "idle=0 silent=0 over_limit=1" {
		t.Errorf("closed: %s", got)
	}
	if lim.Open() > 2 {
		t.Errorf("open %d past the limit", lim.Open())
	}
}

// TestConnLimiterSeesThroughTLS: a TLS server hands ConnState the *tls.Conn
// over the accepted connection; the limiter still learns its states.
func TestConnLimiterSeesThroughTLS(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	lim := NewConnLimiter("api", 4, NewAccessMetrics(nil))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:   http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }),
		ConnState: lim.ConnState,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}},
	}
	go srv.ServeTLS(lim.Listener(ln), "", "")
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("https://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		lim.mu.Lock()
		var state http.ConnState = -1
		if e := lim.waiting.Front(); e != nil {
			state = e.Value.(*trackedConn).state
		}
		lim.mu.Unlock()
		if state == http.StateIdle {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the TLS connection's state in the limiter: %v, want idle", state)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestAccessMetricsLint(t *testing.T) {
	m := NewAccessMetrics(nil)
	NewConnLimiter("api", 8, m)
	m.ReloadObserver("tokens")(nil)
	for _, c := range []prometheus.Collector{m.OpenConnections, m.MaxConnections, m.ConnectionsClosed, m.AuthRefused, m.CredentialReloads} {
		problems, err := testutil.CollectAndLint(c)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("%s: %s", p.Metric, p.Text)
		}
	}
}
