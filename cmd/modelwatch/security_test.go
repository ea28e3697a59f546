package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelwatch/modelwatch/internal/testenv"
)

const (
	testAdminToken     = "e2e-admin-token-0123456789abcdef"
	testInferenceToken = "e2e-inference-token-0123456789abcdef"
	testRotatedToken   = "e2e-rotated-admin-token-0123456789"
)

// do sends a request with an optional bearer token and returns the status
// and body.
func do(t *testing.T, client *http.Client, method, url, token, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metricsOf scrapes the API listener's /metrics.
func metricsOf(t *testing.T, p *process) map[string]float64 {
	t.Helper()
	_, text, _ := get(t, http.DefaultClient, p.url("/metrics"))
	return scrape(t, text)
}

// TestUnauthenticatedUnloadIsRefused: with no flags the control plane is
// closed on the API listener; an unload answers 403, the model goes on
// serving and the refusal is counted.
func TestUnauthenticatedUnloadIsRefused(t *testing.T) {
	p := start(t, 1)
	for _, path := range []string{"/v2/repository/models/fraud_model/unload", "/v2/repository/models/fraud_model/load"} {
		code, body := do(t, http.DefaultClient, "POST", p.url(path), "", "")
		if code != 403 || !strings.Contains(body, `"error_type":"forbidden"`) {
			t.Errorf("POST %s: %d %s, want 403", path, code, body)
		}
	}
	if code, r := post(t, p.url("/predict"), `{"inputs": [`+fraudRow+`]}`); code != 200 || r["prediction"] != "fraud" {
		t.Errorf("predict after the refused unload: %d %v", code, r)
	}
	if code, _ := do(t, http.DefaultClient, "GET", p.url("/v2/models/fraud_model/ready"), "", ""); code != 200 {
		t.Errorf("fraud_model ready: %d", code)
	}
	m := metricsOf(t, p)
	for k, want := range map[string]float64{
		`modelwatch_http_auth_refused_total{reason="forbidden"}`:                                          2,
		`modelwatch_http_auth_refused_total{reason="missing"}`:                                            0,
		`modelwatch_http_auth_refused_total{reason="invalid"}`:                                            0,
		`http_requests_total{endpoint="/v2/repository/models/{model}/unload",method="POST",status="403"}`: 1,
		`http_requests_total{endpoint="/v2/repository/models/{model}/load",method="POST",status="403"}`:   1,
		`http_requests_total{endpoint="/predict",method="POST",status="200"}`:                             1,
		`model_loaded_info{model_name="fraud_model",model_type="xgboost",model_version="v1"}`:             1,
		`modelwatch_http_max_connections{listener="api"}`:                                                 4096,
	} {
		if got, ok := m[k]; !ok || got != want {
			t.Errorf("%s = %g (exported: %v), want %g", k, got, ok, want)
		}
	}
}

// TestTokensOpenTheControlPlaneAndReload: with --token-file and
// --inference-auth, inference needs a token of either scope and control an
// admin token; a rewritten token file takes effect without a restart.
func TestTokensOpenTheControlPlaneAndReload(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "tokens")
	writeFile(t, tokenFile, testAdminToken+" admin\n"+testInferenceToken+" inference\n")
	p := start(t, 1, "--token-file", tokenFile, "--inference-auth")
	predict := `{"inputs": [` + fraudRow + `]}`
	unload := p.url("/v2/repository/models/fraud_model/unload")
	load := p.url("/v2/repository/models/fraud_model/load")
	for _, tc := range []struct {
		method, url, token, body string
		status                   int
	}{
		{"POST", p.url("/predict"), "", predict, 401},
		{"POST", p.url("/predict"), "wrong-token-0123456789abcdef", predict, 401},
		{"POST", p.url("/predict"), testInferenceToken, predict, 200},
		{"POST", p.url("/predict"), testAdminToken, predict, 200},
		{"POST", unload, "", "", 401},
		{"POST", unload, testInferenceToken, "", 403},
		{"GET", p.url("/health"), "", "", 200},
		{"GET", p.url("/ready"), "", "", 200},
	} {
		if code, body := do(t, http.DefaultClient, tc.method, tc.url, tc.token, tc.body); code != tc.status {
			t.Errorf("%s %s with token %q: %d %s, want %d", tc.method, tc.url, tc.token, code, body, tc.status)
		}
	}
	if code, r := post(t, p.url("/predict"), predict); code != 401 || r["error_type"] != "unauthorized" {
		t.Errorf("predict without a token: %d %v", code, r)
	}
	// The model still serves after the refused unloads.
	if code, _ := do(t, http.DefaultClient, "POST", p.url("/predict"), testInferenceToken, predict); code != 200 {
		t.Errorf("predict after refused unloads: %d", code)
	}

	// Rotate: the old admin token goes, a new one comes.
	writeFile(t, tokenFile, testRotatedToken+" admin\n"+testInferenceToken+"\n")
	// Requests with a token in force make the file be read again, at most
	// once a second.
	testenv.WaitFor(t, "the token file's reload", 10*time.Second, func() (bool, string) {
		do(t, http.DefaultClient, "POST", p.url("/predict"), testInferenceToken, predict)
		k := `modelwatch_credential_reloads_total{credential="tokens",result="success"}`
		v := metricsOf(t, p)[k]
		return v == 1, fmt.Sprint(v)
	})
	if code, body := do(t, http.DefaultClient, "POST", load, testRotatedToken, ""); code != 200 {
		t.Errorf("load with the new admin token: %d %s", code, body)
	}
	if code, _ := do(t, http.DefaultClient, "POST", unload, testAdminToken, ""); code != 401 {
		t.Errorf("unload with the removed token: %d, want 401", code)
	}
	// A broken file keeps the tokens in force.
	writeFile(t, tokenFile, "short\n")
	testenv.WaitFor(t, "the failed reload", 10*time.Second, func() (bool, string) {
		do(t, http.DefaultClient, "POST", p.url("/predict"), testInferenceToken, predict)
		m := metricsOf(t, p)
		k := `modelwatch_credential_reloads_total{credential="tokens",result="failure"}`
		return m[k] == 1, fmt.Sprint(m[k])
	})
	if code, _ := do(t, http.DefaultClient, "POST", unload, testRotatedToken, ""); code != 200 {
		t.Errorf("unload with the token in force: %d, want 200", code)
	}
	if code, _ := do(t, http.DefaultClient, "POST", p.url("/predict"), testInferenceToken, predict); code != 404 {
		t.Errorf("predict after the unload: %d, want 404", code)
	}

	m := metricsOf(t, p)
	for k, want := range map[string]float64{
		`modelwatch_http_auth_refused_total{reason="missing"}`:                                            3,
		`modelwatch_http_auth_refused_total{reason="invalid"}`:                                            2,
		`modelwatch_http_auth_refused_total{reason="forbidden"}`:                                          1,
		`modelwatch_credential_reloads_total{credential="tokens",result="success"}`:                       1,
		`modelwatch_credential_reloads_total{credential="tokens",result="failure"}`:                       1,
		`http_requests_total{endpoint="/predict",method="POST",status="401"}`:                             3,
		`http_requests_total{endpoint="/v2/repository/models/{model}/unload",method="POST",status="200"}`: 1,
	} {
		if got, ok := m[k]; !ok || got != want {
			t.Errorf("%s = %g (exported: %v), want %g", k, got, ok, want)
		}
	}
	for _, tok := range []string{testAdminToken, testInferenceToken, testRotatedToken} {
		if strings.Contains(p.logs.String(), tok) {
			t.Errorf("the log holds a token")
		}
	}
}

// TestTLSCertificateReload: the API and admin listeners serve the
// certificate of --tls-cert-file, and a renewed one without a restart.
func TestTLSCertificateReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	cert1, key1 := selfSigned(t)
	os.WriteFile(certFile, cert1, 0o600)
	os.WriteFile(keyFile, key1, 0o600)
	api, admin := testenv.FreePort(t), testenv.FreePort(t)
	proc := testenv.Start(t, binary, "serve", "--listen-address", api, "--admin-listen-address", admin, "--grpc-listen-address", "",
		"--tls-cert-file", certFile, "--tls-key-file", keyFile, "--log-format", "json")

	// served returns the certificate a listener presents.
	served := func(addr string) []byte {
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			return nil
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Raw
	}
	der := func(certPEM []byte) []byte {
		block, _ := pem.Decode(certPEM)
		return block.Bytes
	}
	testenv.WaitFor(t, "the TLS listener", 30*time.Second, func() (bool, string) {
		code, body := 0, ""
		if served(api) != nil {
			code, body = do(t, tlsClient(cert1), "GET", "https://"+api+"/ready", "", "")
		}
		return code == 200, body + proc.Log.String()
	})
	if code, body := do(t, tlsClient(cert1), "POST", "https://"+api+"/predict", "", `{"inputs": [`+fraudRow+`]}`); code != 200 || !strings.Contains(body, `"prediction":"fraud"`) {
		t.Errorf("predict over TLS: %d %s", code, body)
	}
	if code, _ := do(t, tlsClient(cert1), "POST", "https://"+admin+"/v2/repository/models/nope/unload", "", ""); code != 404 {
		t.Errorf("the admin listener over TLS: %d, want 404 for an unknown model", code)
	}
	// Plain HTTP to a TLS listener gets Go's 400.
	if resp, err := http.Get("http://" + api + "/health"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("plain HTTP to the TLS listener: %d", resp.StatusCode)
		}
	}

	// Renew: both listeners serve the new certificate without a restart.
	cert2, key2 := selfSigned(t)
	os.WriteFile(certFile+".new", cert2, 0o600)
	os.WriteFile(keyFile+".new", key2, 0o600)
	os.Rename(keyFile+".new", keyFile)
	os.Rename(certFile+".new", certFile)
	for _, addr := range []string{api, admin} {
		testenv.WaitFor(t, "the renewed certificate on "+addr, 10*time.Second, func() (bool, string) {
			return bytes.Equal(served(addr), der(cert2)), ""
		})
	}
	if code, _ := do(t, tlsClient(cert2), "GET", "https://"+api+"/health", "", ""); code != 200 {
		t.Errorf("health with the renewed certificate: %d", code)
	}
	// A broken renewal keeps the certificate in force.
	os.WriteFile(certFile, []byte("not a certificate"), 0o600)
	time.Sleep(1100 * time.Millisecond)
	if !bytes.Equal(served(api), der(cert2)) {
		t.Error("a broken renewal replaced the certificate")
	}
	testenv.WaitFor(t, "the failed renewal in the log", 5*time.Second, func() (bool, string) {
		return strings.Contains(proc.Log.String(), "tls certificate not reloaded"), proc.Log.String()
	})
	_, text, _ := get(t, tlsClient(cert2), "https://"+api+"/metrics")
	m := scrape(t, text)
	for k, want := range map[string]float64{
		`modelwatch_credential_reloads_total{credential="tls_certificate",result="success"}`: 1,
		`modelwatch_credential_reloads_total{credential="tls_certificate",result="failure"}`: 1,
	} {
		if got, ok := m[k]; !ok || got != want {
			t.Errorf("%s = %g (exported: %v), want %g", k, got, ok, want)
		}
	}
}

// tlsClient trusts certPEM only.
func tlsClient(certPEM []byte) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}
