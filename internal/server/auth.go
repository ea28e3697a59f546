package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Scope is what a bearer token allows.
type Scope string

const (
	// ScopeInference allows the inference API: /predict, the v2 infer
	// endpoints and /feedback.
	ScopeInference Scope = "inference"
	// ScopeAdmin allows the control plane (repository load and unload,
	// /debug/pprof) and, besides, everything ScopeInference allows.
	ScopeAdmin Scope = "admin"
)

// MinTokenLength is the fewest characters a token given in clear in a token
// file may have.
const MinTokenLength = 16

// Tokens is a set of bearer tokens read from a file and read again when the
// file changes, without a restart. The file's tokens are kept as SHA-256
// sums: a presented token is hashed and looked up by its sum, so that no
// comparison runs over a secret the file holds. A token that matched is
// kept, and checked the next times with a constant-time comparison. It is
// safe for concurrent use.
//
// The file holds one token a line: "TOKEN" or "TOKEN SCOPE", SCOPE being
// "inference" (the default) or "admin". A token may be written as
// "sha256:HEX", the hex SHA-256 sum of the token, so that the file holds no
// secret. Blank lines and lines starting with "#" are skipped.
type Tokens struct {
	path string
	log  *slog.Logger
	// onReload, if set, is told the result of every read that found the
	// file changed: nil, or the error that kept the previous tokens.
	onReload func(err error)
	now      func() time.Time

	set   atomic.Pointer[tokenSet]
	check recheck
	mu    sync.Mutex // held while the file is read
	raw   []byte
	// failed is what was last refused (the contents, or the error that
	// kept the file from being read), so that a broken file is logged and
	// counted once, not at every read.
	failed string
}

type tokenSet struct {
	byHash map[[sha256.Size]byte]Scope
	admin  bool // whether any token has ScopeAdmin
	// verified keeps the tokens that have matched, by their hash under a
	// random seed, so that a token in use is checked with a constant-time
	// comparison (tens of nanoseconds) instead of a SHA-256 (about half a
	// microsecond). It holds at most maxVerified tokens and goes with the
	// set when the file is read again.
	seed      maphash.Seed
	verified  sync.Map // uint64 -> *verifiedToken
	nVerified atomic.Int32
}

// maxVerified bounds the tokens a set keeps as verified.
const maxVerified = 1024

type verifiedToken struct {
	token string
	scope Scope
}

// LoadTokens reads the token file at path. It returns an error that names
// the file and the line (never a token) when the file cannot be read or a
// line is malformed. onReload, if not nil, is called after each later read
// that found the file changed, with nil or the error that kept the previous
// tokens in force.
func LoadTokens(path string, logger *slog.Logger, onReload func(error)) (*Tokens, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	t := &Tokens{path: path, log: logger.With("component", "auth"), onReload: onReload, now: time.Now}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("token file: %w", err)
	}
	set, err := parseTokens(raw)
	if err != nil {
		return nil, fmt.Errorf("token file %s: %w", path, err)
	}
	t.raw = raw
	t.set.Store(set)
	t.check.read(t.now())
	return t, nil
}

// parseTokens reads a token file's contents.
func parseTokens(raw []byte) (*tokenSet, error) {
	set := &tokenSet{byHash: map[[sha256.Size]byte]Scope{}, seed: maphash.MakeSeed()}
	for i, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		scope := ScopeInference
		switch len(fields) {
		case 1:
		case 2:
			scope = Scope(fields[1])
			if scope != ScopeInference && scope != ScopeAdmin {
				return nil, fmt.Errorf("line %d: the scope is neither inference nor admin", i+1)
			}
		default:
			return nil, fmt.Errorf("line %d: want TOKEN or TOKEN SCOPE", i+1)
		}
		var sum [sha256.Size]byte
		if hexSum, ok := strings.CutPrefix(fields[0], "sha256:"); ok {
			b, err := hex.DecodeString(hexSum)
			if err != nil || len(b) != sha256.Size {
				return nil, fmt.Errorf("line %d: sha256: must be followed by 64 hex digits", i+1)
			}
			copy(sum[:], b)
		} else {
			if len(fields[0]) < MinTokenLength {
				return nil, fmt.Errorf("line %d: a token must have at least %d characters", i+1, MinTokenLength)
			}
			sum = sha256.Sum256([]byte(fields[0]))
		}
		if prev, ok := set.byHash[sum]; ok && prev != scope {
			return nil, fmt.Errorf("line %d: the same token is given twice with different scopes", i+1)
		}
		set.byHash[sum] = scope
		set.admin = set.admin || scope == ScopeAdmin
	}
	if len(set.byHash) == 0 {
		return nil, errors.New("no tokens")
	}
	return set, nil
}

// current returns the tokens in force at now, reading the file again first
// when the last read is more than a second older.
func (t *Tokens) current(now time.Time) *tokenSet {
	if t.check.due(now) {
		t.reload()
	}
	return t.set.Load()
}

// reload reads the file and, when its contents changed, replaces the tokens.
// A file that cannot be read or parsed leaves the previous tokens in force.
func (t *Tokens) reload() {
	t.mu.Lock()
	defer t.mu.Unlock()
	raw, err := os.ReadFile(t.path)
	if err == nil && bytes.Equal(raw, t.raw) {
		t.failed = ""
		return
	}
	seen := "\x00" + string(raw)
	if err != nil {
		seen = "\x01" + err.Error()
	}
	if seen == t.failed {
		return
	}
	var set *tokenSet
	if err == nil {
		set, err = parseTokens(raw)
	}
	t.failed = ""
	if err != nil {
		t.failed = seen
		t.log.Error("token file not reloaded; the previous tokens stay in force", "file", t.path, "err", err)
	} else {
		t.raw = raw
		t.set.Store(set)
		t.log.Info("token file reloaded", "file", t.path, "tokens", len(set.byHash))
	}
	if t.onReload != nil {
		t.onReload(err)
	}
}

// Lookup returns the scope of token, and false when the file holds no such
// token.
func (t *Tokens) Lookup(token string) (Scope, bool) { return t.lookupAt(token, t.now()) }

// lookupAt is Lookup at the time now, which a request brings: reading the
// clock costs more than the rest of the lookup on some virtual machines.
func (t *Tokens) lookupAt(token string, now time.Time) (Scope, bool) {
	set := t.current(now)
	h := maphash.String(set.seed, token)
	if v, ok := set.verified.Load(h); ok {
		if vt := v.(*verifiedToken); equalConstantTime(vt.token, token) {
			return vt.scope, true
		}
	}
	sum := sha256.Sum256([]byte(token))
	scope, ok := set.byHash[sum]
	if ok && set.nVerified.Load() < maxVerified {
		if _, loaded := set.verified.LoadOrStore(h, &verifiedToken{token: strings.Clone(token), scope: scope}); !loaded {
			set.nVerified.Add(1)
		}
	}
	return scope, ok
}

// equalConstantTime reports whether a and b are equal, in a time that
// depends on their length only.
func equalConstantTime(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	var v byte
	for i := 0; i < len(a); i++ {
		v |= a[i] ^ b[i]
	}
	return v == 0
}

// refusal is why a request's credential was refused: the reason label of
// modelwatch_http_auth_refused_total. The set is closed.
type refusal string

const (
	refusedMissing   refusal = "missing"   // 401: no bearer token
	refusedInvalid   refusal = "invalid"   // 401: a token the file does not hold
	refusedForbidden refusal = "forbidden" // 403: a token without the scope, or a listener where the control plane is closed
)

// refusals lists every refusal reason, for the metrics' initial series.
var refusals = []refusal{refusedMissing, refusedInvalid, refusedForbidden}

// access is what a route needs of a request's credentials.
type access int

const (
	accessOpen      access = iota // health, metadata, the status page
	accessInference               // inference and feedback: a token when --inference-auth is on
	accessControl                 // the control plane: an admin token, or the admin listener
)

// bearerToken returns the token of an "Authorization: Bearer" header.
func bearerToken(r *http.Request) (string, bool) {
	// The canonical key read directly: Header.Get would canonicalize it
	// on every request.
	v := r.Header["Authorization"]
	if len(v) == 0 {
		return "", false
	}
	h := v[0]
	if len(h) < 7 || !strings.EqualFold(h[:7], "bearer ") {
		return "", false
	}
	tok := strings.TrimSpace(h[7:])
	return tok, tok != ""
}

// authorize decides whether r may reach a route that needs a; adminListener
// says whether r came through the admin listener. It returns nil, or the
// error to answer and the reason to count.
func (s *Server) authorize(r *http.Request, a access, adminListener bool) (*apiError, refusal) {
	tokens := s.opts.Tokens
	switch {
	case a == accessOpen:
		return nil, ""
	case a == accessInference && !s.opts.InferenceAuth:
		return nil, ""
	case a == accessControl && tokens == nil:
		if adminListener {
			return nil, ""
		}
		msg := "the control plane is not served on this listener without a credential; start the server with --admin-listen-address, or --token-file with an admin token"
		if s.opts.AdminListener {
			msg = "the control plane is served on the admin listener (--admin-listen-address)"
		}
		return newError(errForbidden, "%s", msg), refusedForbidden
	case tokens == nil:
		return newError(errForbidden, "no token file is configured"), refusedForbidden
	}
	tok, ok := bearerToken(r)
	if !ok {
		tok = ""
	}
	return checkBearer(r.Context(), tokens, tok, a, "endpoint", "Authorization: Bearer TOKEN")
}

// checkBearer checks a bearer token ("" when none came) against tokens for
// access a, over HTTP or gRPC alike: what names what was asked for
// ("endpoint", "method") and how says how to send a token.
func checkBearer(ctx context.Context, tokens *Tokens, tok string, a access, what, how string) (*apiError, refusal) {
	if tok == "" {
		return newError(errUnauthorized, "this %s needs a bearer token (%s)", what, how), refusedMissing
	}
	now := requestInfoFrom(ctx).start
	if now.IsZero() {
		now = tokens.now()
	}
	scope, ok := tokens.lookupAt(tok, now)
	if !ok {
		return newError(errUnauthorized, "the bearer token is not valid"), refusedInvalid
	}
	if a == accessControl && scope != ScopeAdmin {
		return newError(errForbidden, "the bearer token's scope is %s; this %s needs an admin token", scope, what), refusedForbidden
	}
	return nil, ""
}

// guard wraps a route's handler with the credential check its access needs.
func (s *Server) guard(a access, adminListener bool, next http.HandlerFunc) http.HandlerFunc {
	if a == accessOpen || (a == accessInference && !s.opts.InferenceAuth) {
		return next
	}
	refused := map[refusal]func(){}
	for _, why := range refusals {
		c := s.access.AuthRefused.WithLabelValues(string(why))
		refused[why] = c.Inc
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if err, why := s.authorize(r, a, adminListener); err != nil {
			refused[why]()
			if err.typ == errUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="modelwatch"`)
			}
			s.writeError(w, r, err, false)
			return
		}
		next(w, r)
	}
}
