// Package tracing sets up OpenTelemetry tracing for modelwatch from the
// standard OTEL_* environment: off by default (a no-op provider that costs
// nothing), otherwise an SDK provider exporting over OTLP (gRPC or HTTP)
// with its exporter's outcomes counted in Prometheus.
package tracing

import (
	"fmt"
	"strings"
)

// The protocols of OTEL_EXPORTER_OTLP_PROTOCOL that Go's OTLP exporters speak.
const (
	ProtocolGRPC         = "grpc"
	ProtocolHTTPProtobuf = "http/protobuf"
)

// Config is what decides whether tracing is on and which OTLP exporter
// carries the spans, read from the standard OpenTelemetry environment
// variables. Everything else (the endpoint's headers, TLS, timeout and
// compression, the sampler, the resource, the batch processor's limits) is
// read from the environment by the OpenTelemetry SDK and exporters
// themselves when Setup builds them; the fields below that repeat some of it
// are for logging.
type Config struct {
	// Exporter is OTEL_TRACES_EXPORTER: "otlp", "none", or "" when unset.
	Exporter string
	// Protocol is OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else
	// OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" or "http/protobuf" (the
	// specification's default).
	Protocol string
	// Endpoint is OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else
	// OTEL_EXPORTER_OTLP_ENDPOINT, or "" when neither is set (the exporter
	// then sends to localhost's default OTLP port).
	Endpoint string
	// SDKDisabled is OTEL_SDK_DISABLED=true: tracing is off whatever else
	// is set.
	SDKDisabled bool
	// Sampler and SamplerArg are OTEL_TRACES_SAMPLER and
	// OTEL_TRACES_SAMPLER_ARG, as given ("" when unset: the SDK's default,
	// parentbased_always_on).
	Sampler, SamplerArg string
	// ServiceName is OTEL_SERVICE_NAME, "" when unset (Setup's resource
	// then names the service "modelwatch", unless OTEL_RESOURCE_ATTRIBUTES
	// gives service.name).
	ServiceName string
}

// ConfigFromEnv reads the tracing configuration through getenv (os.Getenv
// outside tests). It returns an error for an exporter other than otlp or
// none, or an OTLP protocol Go's exporters do not speak (http/json), naming
// the variable; an error leaves tracing off.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	get := func(k string) string { return strings.TrimSpace(getenv(k)) }
	c := Config{
		Protocol:    firstSet(get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"), get("OTEL_EXPORTER_OTLP_PROTOCOL"), ProtocolHTTPProtobuf),
		Endpoint:    firstSet(get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), get("OTEL_EXPORTER_OTLP_ENDPOINT")),
		SDKDisabled: strings.EqualFold(get("OTEL_SDK_DISABLED"), "true"),
		Sampler:     get("OTEL_TRACES_SAMPLER"),
		SamplerArg:  get("OTEL_TRACES_SAMPLER_ARG"),
		ServiceName: get("OTEL_SERVICE_NAME"),
	}
	// OTEL_TRACES_EXPORTER is a comma-separated list; "none" alone turns
	// exporting off, and otlp is the one exporter modelwatch has.
	for _, e := range strings.Split(get("OTEL_TRACES_EXPORTER"), ",") {
		switch e = strings.ToLower(strings.TrimSpace(e)); e {
		case "":
		case "otlp", "none":
			if c.Exporter != "" && c.Exporter != e {
				return Config{}, fmt.Errorf("OTEL_TRACES_EXPORTER %q: none cannot be combined with another exporter", getenv("OTEL_TRACES_EXPORTER"))
			}
			c.Exporter = e
		default:
			return Config{}, fmt.Errorf("OTEL_TRACES_EXPORTER %q: unsupported exporter %q (want otlp or none)", getenv("OTEL_TRACES_EXPORTER"), e)
		}
	}
	switch strings.ToLower(c.Protocol) {
	case ProtocolGRPC, ProtocolHTTPProtobuf:
		c.Protocol = strings.ToLower(c.Protocol)
	default:
		return Config{}, fmt.Errorf("OTLP protocol %q: unsupported (want %s or %s)", c.Protocol, ProtocolGRPC, ProtocolHTTPProtobuf)
	}
	return c, nil
}

// Enabled reports whether tracing is on: OTEL_TRACES_EXPORTER is otlp, or
// an OTLP endpoint is set and OTEL_TRACES_EXPORTER is not none; and in
// either case OTEL_SDK_DISABLED is not true. Unlike the specification's
// default exporter (otlp), an unset environment leaves tracing off, so that
// a server nobody configured for tracing pays nothing for it.
func (c Config) Enabled() bool {
	if c.SDKDisabled || c.Exporter == "none" {
		return false
	}
	return c.Exporter == "otlp" || c.Endpoint != ""
}

func firstSet(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
