package server

import "github.com/prometheus/client_golang/prometheus"

// AccessMetrics are the metrics of who reaches the server: the connections
// each listener holds and closes, and the requests refused for their
// credentials. Every label value comes from a closed set of ours.
type AccessMetrics struct {
	// OpenConnections is modelwatch_http_open_connections{listener}.
	OpenConnections *prometheus.GaugeVec
	// MaxConnections is modelwatch_http_max_connections{listener}.
	MaxConnections *prometheus.GaugeVec
	// ConnectionsClosed is
	// modelwatch_http_connections_closed_total{listener,reason}.
	ConnectionsClosed *prometheus.CounterVec
	// AuthRefused is modelwatch_http_auth_refused_total{reason}.
	AuthRefused *prometheus.CounterVec
	// CredentialReloads is
	// modelwatch_credential_reloads_total{credential,result}.
	CredentialReloads *prometheus.CounterVec
}

// Connection close reasons: the reason label of
// modelwatch_http_connections_closed_total.
const (
	// ClosedIdle is a keep-alive connection between requests, closed to
	// make room for a new one.
	ClosedIdle = "idle"
	// ClosedSilent is an accepted connection that had sent no request yet,
	// closed to make room for a new one.
	ClosedSilent = "silent"
	// ClosedOverLimit is a new connection closed at once because every
	// connection the listener may hold was serving a request.
	ClosedOverLimit = "over_limit"
)

// NewAccessMetrics creates the access metrics and registers them with reg;
// a nil reg leaves them unregistered.
func NewAccessMetrics(reg prometheus.Registerer) *AccessMetrics {
	m := &AccessMetrics{
		OpenConnections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "modelwatch_http_open_connections",
			Help: "TCP connections the listener holds open.",
		}, []string{"listener"}),
		MaxConnections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "modelwatch_http_max_connections",
			Help: "Most TCP connections the listener holds open at once (--max-connections for the API listener).",
		}, []string{"listener"}),
		ConnectionsClosed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modelwatch_http_connections_closed_total",
			Help: "Connections the server closed because the listener was at its limit: idle (keep-alive between requests), silent (accepted, no request yet), over_limit (new, while every connection was serving).",
		}, []string{"listener", "reason"}),
		AuthRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modelwatch_http_auth_refused_total",
			Help: "Requests refused for their credentials: missing (401, no bearer token), invalid (401, an unknown token), forbidden (403, a token without the scope, or the control plane on a listener that does not serve it).",
		}, []string{"reason"}),
		CredentialReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modelwatch_credential_reloads_total",
			Help: "Reads of a changed credential file: credential tokens or tls_certificate, result success or failure (the previous credential stays in force).",
		}, []string{"credential", "result"}),
	}
	for _, why := range refusals {
		m.AuthRefused.WithLabelValues(string(why))
	}
	if reg != nil {
		reg.MustRegister(m.OpenConnections, m.MaxConnections, m.ConnectionsClosed, m.AuthRefused, m.CredentialReloads)
	}
	return m
}

// ReloadObserver returns a function that counts a credential file's reloads
// in CredentialReloads under credential, which must be "tokens" or
// "tls_certificate".
func (m *AccessMetrics) ReloadObserver(credential string) func(error) {
	ok := m.CredentialReloads.WithLabelValues(credential, "success")
	failed := m.CredentialReloads.WithLabelValues(credential, "failure")
	return func(err error) {
		if err != nil {
			failed.Inc()
			return
		}
		ok.Inc()
	}
}
