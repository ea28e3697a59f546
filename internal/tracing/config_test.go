package tracing

import (
	"strings"
	"testing"
)

func TestConfigFromEnv(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     map[string]string
		want    Config
		enabled bool
		err     string
	}{
		{name: "unset: off", want: Config{Protocol: ProtocolHTTPProtobuf}},
		{
			name:    "endpoint turns it on",
			env:     map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318"},
			want:    Config{Protocol: ProtocolHTTPProtobuf, Endpoint: "http://jaeger:4318"},
			enabled: true,
		},
		{
			name:    "traces endpoint wins over the general one",
			env:     map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://b:4318/v1/traces"},
			want:    Config{Protocol: ProtocolHTTPProtobuf, Endpoint: "http://b:4318/v1/traces"},
			enabled: true,
		},
		{
			name:    "exporter otlp without endpoint: on, localhost default",
			env:     map[string]string{"OTEL_TRACES_EXPORTER": "otlp"},
			want:    Config{Exporter: "otlp", Protocol: ProtocolHTTPProtobuf},
			enabled: true,
		},
		{
			name: "exporter none beats an endpoint",
			env:  map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318"},
			want: Config{Exporter: "none", Protocol: ProtocolHTTPProtobuf, Endpoint: "http://jaeger:4318"},
		},
		{
			name: "sdk disabled beats everything",
			env:  map[string]string{"OTEL_SDK_DISABLED": "TRUE", "OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318"},
			want: Config{Exporter: "otlp", Protocol: ProtocolHTTPProtobuf, Endpoint: "http://jaeger:4318", SDKDisabled: true},
		},
		{
			name:    "sdk disabled false",
			env:     map[string]string{"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_EXPORTER": "otlp"},
			want:    Config{Exporter: "otlp", Protocol: ProtocolHTTPProtobuf},
			enabled: true,
		},
		{
			name:    "grpc, sampler and service name",
			env:     map[string]string{"OTEL_TRACES_EXPORTER": " OTLP ", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1", "OTEL_SERVICE_NAME": "fraud-api"},
			want:    Config{Exporter: "otlp", Protocol: ProtocolGRPC, Sampler: "parentbased_traceidratio", SamplerArg: "0.1", ServiceName: "fraud-api"},
			enabled: true,
		},
		{
			name:    "traces protocol wins over the general one",
			env:     map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"},
			want:    Config{Exporter: "otlp", Protocol: ProtocolHTTPProtobuf},
			enabled: true,
		},
		{name: "http/json is not spoken", env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, err: `OTLP protocol "http/json": unsupported`},
		{name: "unknown exporter", env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, err: `unsupported exporter "zipkin"`},
		{name: "none with another", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp,none"}, err: "none cannot be combined"},
		{
			name:    "otlp listed twice",
			env:     map[string]string{"OTEL_TRACES_EXPORTER": "otlp,otlp"},
			want:    Config{Exporter: "otlp", Protocol: ProtocolHTTPProtobuf},
			enabled: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ConfigFromEnv(func(k string) string { return tc.env[k] })
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("config\n got %+v\nwant %+v", got, tc.want)
			}
			if got.Enabled() != tc.enabled {
				t.Errorf("Enabled() = %v, want %v", got.Enabled(), tc.enabled)
			}
		})
	}
}
