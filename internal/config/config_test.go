package config

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func load(t *testing.T, args []string, env map[string]string) (Config, error) {
	t.Helper()
	c := Default()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(&bytes.Buffer{})
	file := c.RegisterFlags(fs)
	err := Load(fs, file, args, func(k string) string { return env[k] })
	return c, err
}

func TestPrecedence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "modelwatch.yaml")
	os.WriteFile(path, []byte("listen_address: \":9000\"\nmax_batch_rows: 64\nrequest_timeout: 3s\nlog_format: json\nweb.config.file: web.yml\n"), 0o644)
	c, err := load(t, []string{"--config-file", path, "--max-batch-rows", "8"}, map[string]string{
		"MODELWATCH_REQUEST_TIMEOUT": "5s",
		"MODELWATCH_LOG_LEVEL":       "debug",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.ListenAddress = ":9000"          // file
	want.MaxBatchRows = 8                 // flag over file
	want.RequestTimeout = 5 * time.Second // environment over file
	want.LogLevel = "debug"               // environment
	want.LogFormat = "json"               // file
	want.WebConfigFile = "web.yml"        // file, dotted key
	if c != want {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
	if err := c.Validate(); err != nil {
		t.Error(err)
	}

	// The file may also come from the environment.
	c, err = load(t, nil, map[string]string{"MODELWATCH_CONFIG_FILE": path})
	if err != nil || c.ListenAddress != ":9000" {
		t.Errorf("MODELWATCH_CONFIG_FILE: %v %+v", err, c)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(data), 0o644)
		return p
	}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"unknown flag", []string{"--nope"}, nil, "flag provided but not defined: -nope"},
		{"bad env value", nil, map[string]string{"MODELWATCH_MAX_BATCH_ROWS": "many"}, "environment variable MODELWATCH_MAX_BATCH_ROWS"},
		{"unknown file key", []string{"--config-file", write("a.yaml", "listen_adress: x\n")}, nil, "unknown settings: listen_adress"},
		{"nested file value", []string{"--config-file", write("b.yaml", "listen_address: [a, b]\n")}, nil, "listen_address must be a single value"},
		{"bad file value", []string{"--config-file", write("c.yaml", "request_timeout: soon\n")}, nil, "request-timeout"},
		{"missing file", []string{"--config-file", filepath.Join(dir, "none.yaml")}, nil, "read config file"},
		{"stray argument", []string{"extra"}, nil, "unexpected arguments: extra"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, tc.args, tc.env)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
	if _, err := load(t, []string{"--help"}, nil); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help: %v", err)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		mutate func(*Config)
		want   string
	}{
		{func(c *Config) { c.ListenAddress = "" }, "listen-address"},
		{func(c *Config) { c.MetricsListenAddress = c.ListenAddress }, "must differ"},
		{func(c *Config) { c.MaxBodyBytes = 10 }, "max-body-bytes"},
		{func(c *Config) { c.MaxBodyMemory = c.MaxBodyBytes - 1 }, "max-body-memory 8388607 is below max-body-bytes 8388608"},
		{func(c *Config) { c.ShutdownDelay = -time.Second }, "shutdown-delay must not be negative"},
		{func(c *Config) { c.MaxBatchRows = 0 }, "max-batch-rows"},
		{func(c *Config) { c.RequestTimeout = 0 }, "request-timeout must be positive"},
		{func(c *Config) { c.WriteTimeout = c.RequestTimeout }, "write-timeout"},
		{func(c *Config) { c.LogLevel = "loud" }, "log-level"},
		{func(c *Config) { c.LogFormat = "xml" }, "log-format"},
		{func(c *Config) { c.GPUMetrics = "yes" }, "gpu-metrics"},
		{func(c *Config) { c.GPUScrapeTimeout = 0 }, "gpu-scrape-timeout"},
		{func(c *Config) { c.AdminListenAddress = c.ListenAddress }, "admin-listen-address must differ"},
		{func(c *Config) { c.MetricsListenAddress, c.AdminListenAddress = ":9100", ":9100" }, "admin-listen-address must differ"},
		{func(c *Config) { c.InferenceAuth = true }, "inference-auth needs --token-file"},
		{func(c *Config) { c.TLSCertFile = "cert.pem" }, "tls-cert-file and tls-key-file go together"},
		{func(c *Config) { c.TLSKeyFile = "key.pem" }, "tls-cert-file and tls-key-file go together"},
		{func(c *Config) { c.TLSCertFile, c.TLSKeyFile, c.WebConfigFile = "cert.pem", "key.pem", "web.yml" }, "serve /metrics apart with --metrics-listen-address"},
		{func(c *Config) { c.MaxConnections = 15 }, "max-connections 15 must be at least 16"},
	} {
		c := Default()
		tc.mutate(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate: %v, want an error saying %q", err, tc.want)
		}
	}
	if err := Default().Validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
	// What the control plane and TLS flags allow together.
	for _, mutate := range []func(*Config){
		func(c *Config) { c.AdminListenAddress = ":9001" },
		func(c *Config) { c.TokenFile, c.InferenceAuth = "tokens", true },
		func(c *Config) { c.TLSCertFile, c.TLSKeyFile = "cert.pem", "key.pem" },
		func(c *Config) {
			c.TLSCertFile, c.TLSKeyFile, c.WebConfigFile, c.MetricsListenAddress = "cert.pem", "key.pem", "web.yml", ":9100"
		},
	} {
		c := Default()
		mutate(&c)
		if err := c.Validate(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
}

func TestUsageNamesEveryEnvironmentVariable(t *testing.T) {
	c := Default()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	c.RegisterFlags(fs)
	var buf bytes.Buffer
	Usage(&buf, fs, "Usage: modelwatch serve [flags]")
	fs.VisitAll(func(f *flag.Flag) {
		if !strings.Contains(buf.String(), "--"+f.Name+"\n") || !strings.Contains(buf.String(), "env "+EnvName(f.Name)+"\n") {
			t.Errorf("usage does not document --%s and %s", f.Name, EnvName(f.Name))
		}
	})
	if EnvName("web.config.file") != "MODELWATCH_WEB_CONFIG_FILE" {
		t.Errorf("EnvName(web.config.file) = %s", EnvName("web.config.file"))
	}
}
