package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

const (
	adminToken     = "admin-token-0123456789abcdef"
	inferenceToken = "inference-token-0123456789abcdef"
	hashedToken    = "hashed-token-0123456789abcdef"
)

func writeTokens(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func hashed(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return "sha256:" + hex.EncodeToString(sum[:])
}

func TestParseTokens(t *testing.T) {
	set, err := parseTokens([]byte("# operators\n\n" + adminToken + " admin\n  " + inferenceToken + "  \n" + hashed(hashedToken) + " inference\n"))
	if err != nil {
		t.Fatal(err)
	}
	for tok, want := range map[string]Scope{adminToken: ScopeAdmin, inferenceToken: ScopeInference, hashedToken: ScopeInference} {
		if got := set.byHash[sha256.Sum256([]byte(tok))]; got != want {
			t.Errorf("scope of %s: %q, want %q", tok[:5], got, want)
		}
	}
	if len(set.byHash) != 3 || !set.admin {
		t.Errorf("set: %d tokens, admin %v", len(set.byHash), set.admin)
	}
	for _, tc := range []struct{ file, want string }{
		{"", "no tokens"},
		{"# only a comment\n", "no tokens"},
		{"short admin\n", "line 1: a token must have at least 16 characters"},
		{adminToken + " root\n", "line 1: the scope is neither inference nor admin"},
		{"\n" + adminToken + " admin extra\n", "line 2: want TOKEN or TOKEN SCOPE"},
		{"sha256:abcd\n", "line 1: sha256: must be followed by 64 hex digits"},
		{adminToken + " admin\n" + adminToken + " inference\n", "line 2: the same token is given twice with different scopes"},
	} {
		_, err := parseTokens([]byte(tc.file))
		if err == nil || err.Error() != tc.want {
			t.Errorf("%q: %v, want %q", tc.file, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), adminToken) {
			t.Errorf("the error quotes the token: %v", err)
		}
	}
}

func TestTokensReloadWhenTheFileChanges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	writeTokens(t, path, adminToken+" admin\n")
	var logs bytes.Buffer
	var mu sync.Mutex
	var results []string
	tokens, err := LoadTokens(path, slog.New(slog.NewTextHandler(&logs, nil)), func(err error) {
		mu.Lock()
		defer mu.Unlock()
		results = append(results, fmt.Sprint(err))
	})
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Now()
	tokens.now = func() time.Time { return clock }
	tokens.check.read(clock)

	check := func(tok string, want Scope, wantOK bool) {
		t.Helper()
		if got, ok := tokens.Lookup(tok); got != want || ok != wantOK {
			t.Errorf("Lookup(%s): %q %v, want %q %v", tok[:5], got, ok, want, wantOK)
		}
	}
	check(adminToken, ScopeAdmin, true)
	check(inferenceToken, "", false)

	// A change is seen once a second has passed, not before.
	writeTokens(t, path, inferenceToken+"\n")
	check(adminToken, ScopeAdmin, true)
	clock = clock.Add(time.Second)
	check(adminToken, "", false)
	check(inferenceToken, ScopeInference, true)

	// A broken file keeps the previous tokens in force.
	writeTokens(t, path, "short\n")
	clock = clock.Add(time.Second)
	check(inferenceToken, ScopeInference, true)
	// The same broken file is logged and counted once.
	clock = clock.Add(time.Second)
	check(inferenceToken, ScopeInference, true)
	os.Remove(path)
	clock = clock.Add(time.Second)
	check(inferenceToken, ScopeInference, true)
	clock = clock.Add(time.Second)
	check(inferenceToken, ScopeInference, true)

	// An unchanged file is not counted as a reload.
	writeTokens(t, path, inferenceToken+"\n")
	clock = clock.Add(time.Second)
	check(inferenceToken, ScopeInference, true)

	mu.Lock()
	got := strings.Join(results, "|")
	mu.Unlock()
	want := "<nil>|line 1: a token must have at least 16 characters|open " + path + ": no such file or directory"
	if got != want {
		t.Errorf("reloads:\n got %s\nwant %s", got, want)
	}
	if n := strings.Count(logs.String(), "token file not reloaded"); n != 2 {
		t.Errorf("%d failed reloads logged, want 2:\n%s", n, logs.String())
	}
	for _, tok := range []string{adminToken, inferenceToken} {
		if strings.Contains(logs.String(), tok) {
			t.Errorf("the log holds a token:\n%s", logs.String())
		}
	}
}

// authHarness serves the embedded model with the given token file contents
// and options.
func authHarness(t *testing.T, tokenFile string, mutate func(*Options)) (*harness, *AccessMetrics) {
	t.Helper()
	var tokens *Tokens
	if tokenFile != "" {
		path := filepath.Join(t.TempDir(), "tokens")
		writeTokens(t, path, tokenFile)
		var err error
		if tokens, err = LoadTokens(path, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	access := NewAccessMetrics(prometheus.NewRegistry())
	repo := &fakeRepository{ready: true}
	h := newHarness(t, func(o *Options) {
		o.Tokens, o.Access, o.Repository, o.EnablePprof = tokens, access, repo, true
		if mutate != nil {
			mutate(o)
		}
	})
	return h, access
}

func refusedCounts(m *AccessMetrics) string {
	var out []string
	for _, why := range refusals {
		out = append(out, fmt.Sprintf("%s=%g", why, testutil.ToFloat64(m.AuthRefused.WithLabelValues(string(why)))))
	}
	return strings.Join(out, " ")
}

func TestControlPlaneNeedsACredential(t *testing.T) {
	const predictBody = `{"inputs": [[950.0, 2, 8, 120.5, 11, 12]]}`
	type call struct {
		method, path, token string
		status              int
		says                string
	}
	for _, tc := range []struct {
		name      string
		tokenFile string
		mutate    func(*Options)
		calls     []call
		refused   string
		unloaded  string
	}{
		{
			name: "no credential configured: control answers 403, inference is open",
			calls: []call{
				{"POST", "/v2/repository/models/fraud_model/unload", "", 403, "--admin-listen-address"},
				{"POST", "/v2/repository/models/fraud_model/load", adminToken, 403, `"error_type":"forbidden"`},
				{"GET", "/debug/pprof/cmdline", "", 403, `"error_type":"forbidden"`},
				{"POST", "/predict", "", 200, `"prediction":"fraud"`},
				{"POST", "/v2/repository/index", "", 200, `[]`},
			},
			refused: "missing=0 invalid=0 forbidden=3", unloaded: "[]",
		},
		{
			name:   "an admin listener configured: the API listener says where to go",
			mutate: func(o *Options) { o.AdminListener = true },
			calls: []call{
				{"POST", "/v2/repository/models/fraud_model/unload", "", 403, "served on the admin listener"},
			},
			refused: "missing=0 invalid=0 forbidden=1", unloaded: "[]",
		},
		{
			name:      "tokens: admin tokens open the control plane",
			tokenFile: adminToken + " admin\n" + inferenceToken + " inference\n",
			calls: []call{
				{"POST", "/v2/repository/models/fraud_model/unload", "", 401, `"error_type":"unauthorized"`},
				{"POST", "/v2/repository/models/fraud_model/unload", "not-a-token-at-all", 401, "not valid"},
				{"POST", "/v2/repository/models/fraud_model/unload", inferenceToken, 403, "needs an admin token"},
				{"GET", "/debug/pprof/cmdline", inferenceToken, 403, "needs an admin token"},
				{"GET", "/debug/pprof/cmdline", adminToken, 200, ""},
				{"POST", "/v2/repository/models/fraud_model/unload", adminToken, 200, "{}"},
				// Inference stays open without --inference-auth.
				{"POST", "/predict", "", 200, `"prediction":"fraud"`},
				{"POST", "/predict", "not-a-token-at-all", 200, `"prediction":"fraud"`},
			},
			refused: "missing=1 invalid=1 forbidden=2", unloaded: "[fraud_model]",
		},
		{
			name:      "inference auth: either scope predicts",
			tokenFile: adminToken + " admin\n" + inferenceToken + "\n",
			mutate:    func(o *Options) { o.InferenceAuth = true },
			calls: []call{
				{"POST", "/predict", "", 401, `"error_type":"unauthorized"`},
				{"POST", "/predict", "not-a-token-at-all", 401, "not valid"},
				{"POST", "/feedback", "", 401, `"error_type":"unauthorized"`},
				{"POST", "/v2/models/fraud_model/infer", "", 401, `"error_type":"unauthorized"`},
				{"POST", "/predict", inferenceToken, 200, `"prediction":"fraud"`},
				{"POST", "/predict", adminToken, 200, `"prediction":"fraud"`},
				// Health and metadata stay open for probes.
				{"GET", "/health", "", 200, `"healthy"`},
				{"GET", "/v2/models/fraud_model", "", 200, `"name":"fraud_model"`},
			},
			refused: "missing=3 invalid=1 forbidden=0", unloaded: "[]",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, access := authHarness(t, tc.tokenFile, tc.mutate)
			repo := h.srv.opts.Repository.(*fakeRepository)
			for _, c := range tc.calls {
				body := ""
				if c.path == "/predict" {
					body = predictBody
				}
				var header []string
				if c.token != "" {
					header = []string{"Authorization", "Bearer " + c.token}
				}
				rec := h.do(c.method, c.path, "application/json", body, header...)
				if rec.Code != c.status || !strings.Contains(rec.Body.String(), c.says) {
					t.Errorf("%s %s: %d %s\nwant %d saying %s", c.method, c.path, rec.Code, rec.Body, c.status, c.says)
				}
				if c.status == 401 && rec.Header().Get("WWW-Authenticate") != `Bearer realm="modelwatch"` {
					t.Errorf("%s %s: WWW-Authenticate %q", c.method, c.path, rec.Header().Get("WWW-Authenticate"))
				}
			}
			if got := refusedCounts(access); got != tc.refused {
				t.Errorf("refused: %s, want %s", got, tc.refused)
			}
			if got := fmt.Sprint(repo.unloaded); got != tc.unloaded {
				t.Errorf("unloaded: %s, want %s", got, tc.unloaded)
			}
			// Refusals are not prediction errors: a scanner does not page
			// anyone about the model.
			for k := range h.snapshot() {
				if strings.Contains(k, "unauthorized") || strings.Contains(k, "forbidden") {
					t.Errorf("series %s counts a refusal", k)
				}
			}
		})
	}
}

func TestAdminListenerRoutes(t *testing.T) {
	for _, tc := range []struct {
		name, tokenFile, token string
		status                 int
	}{
		{"no tokens: the listener is the credential", "", "", 200},
		{"tokens: an admin token is needed there too", adminToken + " admin\n", "", 401},
		{"tokens: an inference token is not enough", adminToken + " admin\n" + inferenceToken + "\n", inferenceToken, 403},
		{"tokens: an admin token", adminToken + " admin\n", adminToken, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := authHarness(t, tc.tokenFile, func(o *Options) { o.AdminListener = true })
			admin := h.srv.AdminRoutes()
			do := func(method, path string) *httptest.ResponseRecorder {
				req := httptest.NewRequest(method, path, strings.NewReader(""))
				if tc.token != "" {
					req.Header.Set("Authorization", "Bearer "+tc.token)
				}
				rec := httptest.NewRecorder()
				admin.ServeHTTP(rec, req)
				return rec
			}
			if rec := do("POST", "/v2/repository/models/fraud_model/unload"); rec.Code != tc.status {
				t.Errorf("unload: %d %s, want %d", rec.Code, rec.Body, tc.status)
			}
			if rec := do("GET", "/debug/pprof/cmdline"); rec.Code != tc.status {
				t.Errorf("pprof: %d, want %d", rec.Code, tc.status)
			}
			// Inference is not served on the admin listener.
			if rec := do("POST", "/predict"); rec.Code != 404 {
				t.Errorf("predict on the admin listener: %d", rec.Code)
			}
			if rec := do("GET", "/health"); rec.Code != 200 {
				t.Errorf("health on the admin listener: %d", rec.Code)
			}
		})
	}
}

func TestBearerToken(t *testing.T) {
	for h, want := range map[string]string{
		"Bearer abc": "abc", "bearer abc": "abc", "BEARER  abc ": "abc", "Basic abc": "", "Bearer ": "", "": "", "Bearerabc": "",
	} {
		req := httptest.NewRequest("GET", "/", nil)
		if h != "" {
			req.Header.Set("Authorization", h)
		}
		if got, ok := bearerToken(req); got != want || ok != (want != "") {
			t.Errorf("%q: %q %v", h, got, ok)
		}
	}
}
