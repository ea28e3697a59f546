// Package config holds the configuration of `modelwatch serve`: defaults,
// validation, and parsing from command-line flags, MODELWATCH_* environment
// variables and an optional YAML file, in that order of precedence.
package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/modelwatch/modelwatch/internal/predlog"
)

// EnvPrefix starts the environment variable of every flag: --max-body-bytes
// is MODELWATCH_MAX_BODY_BYTES.
const EnvPrefix = "MODELWATCH_"

// Config is the configuration of the serve command.
type Config struct {
	ListenAddress              string
	MetricsListenAddress       string
	AdminListenAddress         string
	GRPCListenAddress          string
	WebConfigFile              string
	TokenFile                  string
	InferenceAuth              bool
	TLSCertFile                string
	TLSKeyFile                 string
	MaxConnections             int
	DefaultModel               string
	MaxBodyBytes               int64
	MaxBodyMemory              int64
	MaxBatchRows               int
	MaxInFlight                int
	MaxScrapes                 int
	EnablePprof                bool
	RequestTimeout             time.Duration
	ReadTimeout                time.Duration
	WriteTimeout               time.Duration
	IdleTimeout                time.Duration
	ShutdownTimeout            time.Duration
	ShutdownDelay              time.Duration
	LogLevel                   string
	LogFormat                  string
	GPUMetrics                 string
	GPUScrapeTimeout           time.Duration
	ModelRepository            string
	PollInterval               time.Duration
	EmbeddedModel              bool
	ONNXRuntimeLibrary         string
	DriftWindow                time.Duration
	DriftMinSamples            int
	DriftMaxFeatures           int
	FeedbackTTL                time.Duration
	FeedbackMaxEntries         int
	AccuracyWindow             time.Duration
	DataDir                    string
	PredictionLog              string
	PredictionLogSample        float64
	PredictionLogRetention     time.Duration
	PredictionLogMaxBytes      int64
	PredictionLogSpoolMaxBytes int64
}

// Default returns the configuration used where nothing else is said.
func Default() Config {
	return Config{
		ListenAddress:              ":8000",
		GRPCListenAddress:          ":8001",
		DefaultModel:               "fraud_model",
		MaxBodyBytes:               8 << 20,
		MaxBodyMemory:              256 << 20,
		MaxBatchRows:               1024,
		MaxInFlight:                1024,
		MaxScrapes:                 8,
		MaxConnections:             4096,
		RequestTimeout:             10 * time.Second,
		ReadTimeout:                30 * time.Second,
		WriteTimeout:               60 * time.Second,
		IdleTimeout:                120 * time.Second,
		ShutdownTimeout:            25 * time.Second,
		LogLevel:                   "info",
		LogFormat:                  "text",
		GPUMetrics:                 "auto",
		GPUScrapeTimeout:           2 * time.Second,
		PollInterval:               5 * time.Second,
		EmbeddedModel:              true,
		DriftWindow:                5 * time.Minute,
		DriftMinSamples:            100,
		DriftMaxFeatures:           50,
		FeedbackTTL:                time.Hour,
		FeedbackMaxEntries:         20_000,
		AccuracyWindow:             time.Hour,
		DataDir:                    DefaultDataDir(os.Getenv),
		PredictionLog:              "embedded",
		PredictionLogSample:        1,
		PredictionLogRetention:     30 * 24 * time.Hour,
		PredictionLogMaxBytes:      4 << 30,
		PredictionLogSpoolMaxBytes: 1 << 30,
	}
}

// DefaultDataDir is where the server keeps its state (the embedded
// prediction log, the PostgreSQL log's spool) unless told otherwise:
// $XDG_STATE_HOME/modelwatch, else ~/.local/state/modelwatch (the XDG base
// directory specification's place for state that survives restarts), else,
// with no home directory, /var/lib/modelwatch. The container image sets
// MODELWATCH_DATA_DIR=/var/lib/modelwatch.
func DefaultDataDir(getenv func(string) string) string {
	if d := getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "modelwatch")
	}
	if h := getenv("HOME"); filepath.IsAbs(h) {
		return filepath.Join(h, ".local", "state", "modelwatch")
	}
	return "/var/lib/modelwatch"
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	switch {
	case c.ListenAddress == "":
		return errors.New("listen-address must not be empty")
	case c.MetricsListenAddress != "" && c.MetricsListenAddress == c.ListenAddress && !strings.HasSuffix(c.ListenAddress, ":0"):
		return errors.New("metrics-listen-address must differ from listen-address")
	case c.AdminListenAddress != "" && (c.AdminListenAddress == c.ListenAddress || c.AdminListenAddress == c.MetricsListenAddress) && !strings.HasSuffix(c.AdminListenAddress, ":0"):
		return errors.New("admin-listen-address must differ from listen-address and metrics-listen-address")
	case c.GRPCListenAddress != "" && c.GRPCListenAddress != "off" && (c.GRPCListenAddress == c.ListenAddress || c.GRPCListenAddress == c.MetricsListenAddress || c.GRPCListenAddress == c.AdminListenAddress) && !strings.HasSuffix(c.GRPCListenAddress, ":0"):
		return errors.New("grpc-listen-address must differ from listen-address, metrics-listen-address and admin-listen-address")
	case c.InferenceAuth && c.TokenFile == "":
		return errors.New("inference-auth needs --token-file")
	case (c.TLSCertFile == "") != (c.TLSKeyFile == ""):
		return errors.New("tls-cert-file and tls-key-file go together")
	case c.TLSCertFile != "" && c.WebConfigFile != "" && c.MetricsListenAddress == "":
		return errors.New("tls-cert-file and web.config.file would both configure the API listener; serve /metrics apart with --metrics-listen-address, or leave TLS to the web configuration")
	case c.MaxConnections < 16:
		return fmt.Errorf("max-connections %d must be at least 16", c.MaxConnections)
	case c.DefaultModel == "":
		return errors.New("default-model must not be empty")
	case c.MaxBodyBytes < 1024 || c.MaxBodyBytes > 1<<30:
		return fmt.Errorf("max-body-bytes %d is outside 1024 to 1073741824 (1 GiB)", c.MaxBodyBytes)
	case c.MaxBodyMemory < c.MaxBodyBytes:
		return fmt.Errorf("max-body-memory %d is below max-body-bytes %d: no body of the largest size could be read", c.MaxBodyMemory, c.MaxBodyBytes)
	case c.MaxBatchRows < 1 || c.MaxBatchRows > 1<<20:
		return fmt.Errorf("max-batch-rows %d is outside 1..%d", c.MaxBatchRows, 1<<20)
	case c.MaxInFlight < 1:
		return fmt.Errorf("max-in-flight %d must be at least 1", c.MaxInFlight)
	case c.MaxScrapes < 1:
		return fmt.Errorf("max-concurrent-scrapes %d must be at least 1", c.MaxScrapes)
	case c.RequestTimeout <= 0:
		return errors.New("request-timeout must be positive")
	case c.ReadTimeout <= 0 || c.WriteTimeout <= 0 || c.IdleTimeout <= 0:
		return errors.New("read-timeout, write-timeout and idle-timeout must be positive")
	case c.WriteTimeout <= c.RequestTimeout:
		return fmt.Errorf("write-timeout %s must be longer than request-timeout %s, or timed-out requests get no answer", c.WriteTimeout, c.RequestTimeout)
	case c.ShutdownTimeout < 0 || c.ShutdownDelay < 0:
		return errors.New("shutdown-timeout and shutdown-delay must not be negative")
	}
	if _, err := c.SlogLevel(); err != nil {
		return err
	}
	if c.GPUMetrics != "auto" && c.GPUMetrics != "on" && c.GPUMetrics != "off" {
		return fmt.Errorf("gpu-metrics %q is not one of auto, on, off", c.GPUMetrics)
	}
	if c.PollInterval < 0 {
		return errors.New("repository-poll-interval must not be negative")
	}
	if !c.EmbeddedModel && c.ModelRepository == "" {
		return errors.New("with --embedded-model=false, --model-repository must name a directory of models")
	}
	if c.DriftWindow < 10*time.Second || c.AccuracyWindow < 10*time.Second || c.FeedbackTTL < time.Second {
		return errors.New("drift-window and accuracy-window must be at least 10s, feedback-ttl at least 1s")
	}
	if c.DriftMinSamples < 1 || c.DriftMaxFeatures < 1 || c.FeedbackMaxEntries < 0 {
		return errors.New("drift-min-samples and drift-max-features must be positive, feedback-max-entries not negative")
	}
	if c.GPUScrapeTimeout <= 0 {
		return errors.New("gpu-scrape-timeout must be positive")
	}
	if err := c.PredictionLogStore().Validate(); err != nil {
		return fmt.Errorf("prediction-log: %w", err)
	}
	if !(c.PredictionLogSample >= 0 && c.PredictionLogSample <= 1) {
		return fmt.Errorf("prediction-log-sample %v is outside 0..1", c.PredictionLogSample)
	}
	if c.PredictionLogRetention < time.Minute {
		return fmt.Errorf("prediction-log-retention %s must be at least 1m", c.PredictionLogRetention)
	}
	if c.PredictionLogMaxBytes != 0 && c.PredictionLogMaxBytes < 1<<20 || c.PredictionLogSpoolMaxBytes < 1<<20 {
		return errors.New("prediction-log-max-bytes (0 for no bound) and prediction-log-spool-max-bytes must be at least 1 MiB")
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("log-format %q is neither text nor json", c.LogFormat)
	}
	return nil
}

// PredictionLogStore returns what the configuration says about the
// prediction log's store.
func (c Config) PredictionLogStore() predlog.StoreConfig {
	return predlog.StoreConfig{Store: c.PredictionLog, DataDir: c.DataDir, Retention: c.PredictionLogRetention,
		MaxBytes: c.PredictionLogMaxBytes, SpoolMaxBytes: c.PredictionLogSpoolMaxBytes}
}

// SlogLevel returns LogLevel as a slog.Level.
func (c Config) SlogLevel() (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return 0, fmt.Errorf("log-level %q is not one of debug, info, warn, error", c.LogLevel)
	}
	return l, nil
}

// NewLogger returns the logger the configuration asks for, writing to w.
func (c Config) NewLogger(w io.Writer) *slog.Logger {
	level, _ := c.SlogLevel()
	opts := &slog.HandlerOptions{Level: level}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// RegisterFlags defines a flag for every setting on fs, with c's values as
// defaults, and one for the configuration file, whose value it returns.
func (c *Config) RegisterFlags(fs *flag.FlagSet) *string {
	fs.StringVar(&c.ListenAddress, "listen-address", c.ListenAddress, "address the API, /metrics and the status page listen on")
	fs.StringVar(&c.MetricsListenAddress, "metrics-listen-address", c.MetricsListenAddress, "serve /metrics on this address instead, apart from the API")
	fs.StringVar(&c.WebConfigFile, "web.config.file", c.WebConfigFile, "exporter-toolkit web configuration (TLS, basic auth) for the listener that serves /metrics")
	fs.StringVar(&c.AdminListenAddress, "admin-listen-address", c.AdminListenAddress, "serve the control plane (repository load and unload, /debug/pprof/ with --enable-pprof) on this address; without it or an admin token in --token-file, control requests get 403")
	fs.StringVar(&c.GRPCListenAddress, "grpc-listen-address", c.GRPCListenAddress, "address the Open Inference Protocol's gRPC service (with grpc.health.v1 and reflection) listens on; off (or \"\") turns it off")
	fs.StringVar(&c.TokenFile, "token-file", c.TokenFile, "file of bearer tokens, one a line: TOKEN [inference|admin] (inference when no scope is given), or sha256:HEX for a token's SHA-256 sum; read again when it changes. Admin tokens open the control plane on every listener")
	fs.BoolVar(&c.InferenceAuth, "inference-auth", c.InferenceAuth, "require a bearer token from --token-file (either scope) for /predict, the v2 infer endpoints and /feedback")
	fs.StringVar(&c.TLSCertFile, "tls-cert-file", c.TLSCertFile, "PEM certificate for TLS on the API and admin listeners, read again when it changes (with --tls-key-file)")
	fs.StringVar(&c.TLSKeyFile, "tls-key-file", c.TLSKeyFile, "PEM private key of --tls-cert-file")
	fs.IntVar(&c.MaxConnections, "max-connections", c.MaxConnections, "most TCP connections the API listener holds open; at the limit the connection idle longest is closed for a new one (lowered to fit the open-file limit)")
	fs.StringVar(&c.DefaultModel, "default-model", c.DefaultModel, "model a request gets when it names none")
	fs.StringVar(&c.ModelRepository, "model-repository", c.ModelRepository, "directory of models: DIR/<model>/<version>/model.onnx or model.json, with an optional DIR/<model>/config.yaml")
	fs.DurationVar(&c.PollInterval, "repository-poll-interval", c.PollInterval, "how often the model repository is checked for new, changed and removed versions; 0 checks only at start and on request")
	fs.BoolVar(&c.EmbeddedModel, "embedded-model", c.EmbeddedModel, "serve the embedded fraud_model too (a repository model of the same name replaces it)")
	fs.DurationVar(&c.DriftWindow, "drift-window", c.DriftWindow, "span of live traffic that input and prediction drift compare with the training profile")
	fs.IntVar(&c.DriftMinSamples, "drift-min-samples", c.DriftMinSamples, "fewest rows in the drift window for which drift is exported")
	fs.IntVar(&c.DriftMaxFeatures, "drift-max-features", c.DriftMaxFeatures, "most features per model version whose drift is exported")
	fs.DurationVar(&c.FeedbackTTL, "feedback-ttl", c.FeedbackTTL, "how long a classifier's prediction waits for its label on POST /feedback")
	fs.IntVar(&c.FeedbackMaxEntries, "feedback-max-entries", c.FeedbackMaxEntries, "most predictions waiting for labels (about 200 bytes each, and 2 bytes per row of a batch); 0 turns /feedback off")
	fs.DurationVar(&c.AccuracyWindow, "accuracy-window", c.AccuracyWindow, "span of labels that model_accuracy_ratio covers")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory of the server's state: the embedded prediction log (predictions.db) and the PostgreSQL log's spool")
	fs.StringVar(&c.PredictionLog, "prediction-log", c.PredictionLog, "where every prediction (input row, output, request id) is logged, for labels joined late on any replica and as a labelled data set: embedded (an SQLite file in --data-dir, for one machine), postgres://user:pass@host/db (one database shared by every replica), or off")
	fs.Float64Var(&c.PredictionLogSample, "prediction-log-sample", c.PredictionLogSample, "share of requests whose predictions are logged, 0 to 1, chosen by request id (the same on every replica); labels for the others get 404")
	fs.DurationVar(&c.PredictionLogRetention, "prediction-log-retention", c.PredictionLogRetention, "how long logged predictions and their labels are kept")
	fs.Int64Var(&c.PredictionLogMaxBytes, "prediction-log-max-bytes", c.PredictionLogMaxBytes, "largest size of the embedded prediction log's file; past it the oldest predictions are deleted (0: no bound)")
	fs.Int64Var(&c.PredictionLogSpoolMaxBytes, "prediction-log-spool-max-bytes", c.PredictionLogSpoolMaxBytes, "largest size of the on-disk spool that keeps predictions while PostgreSQL is down; past it they are dropped and counted")
	fs.StringVar(&c.ONNXRuntimeLibrary, "onnxruntime-library", c.ONNXRuntimeLibrary, "path of ONNX Runtime's shared library (libonnxruntime.so), needed to serve ONNX models")
	fs.Int64Var(&c.MaxBodyBytes, "max-body-bytes", c.MaxBodyBytes, "largest request body accepted; larger ones get 413")
	fs.Int64Var(&c.MaxBodyMemory, "max-body-memory", c.MaxBodyMemory, "most memory all request bodies being read or served may hold at once; past it, requests get 503 with Retry-After")
	fs.IntVar(&c.MaxBatchRows, "max-batch-rows", c.MaxBatchRows, "most rows in one inference request; more get 413")
	fs.BoolVar(&c.EnablePprof, "enable-pprof", c.EnablePprof, "serve Go's profiler under /debug/pprof/ (for diagnosing; off by default)")
	fs.IntVar(&c.MaxInFlight, "max-in-flight", c.MaxInFlight, "most inference requests in progress at once; more get 503 with Retry-After")
	fs.IntVar(&c.MaxScrapes, "max-concurrent-scrapes", c.MaxScrapes, "most /metrics requests, and apart from them most /status.json requests, waiting or served at once (scrapes of /metrics share one answer per format, gathered at most every 100ms); more get 503")
	fs.DurationVar(&c.RequestTimeout, "request-timeout", c.RequestTimeout, "longest time one inference may take; longer ones get 504")
	fs.DurationVar(&c.ReadTimeout, "read-timeout", c.ReadTimeout, "longest time to read a request, body included")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", c.WriteTimeout, "longest time from the end of reading a request to the end of its answer")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", c.IdleTimeout, "how long an idle keep-alive connection stays open")
	fs.DurationVar(&c.ShutdownDelay, "shutdown-delay", c.ShutdownDelay, "on SIGINT or SIGTERM, how long to go on serving with /ready answering 503, so that load balancers stop sending requests, before the listeners close")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "on SIGINT or SIGTERM, after --shutdown-delay, how long in-flight requests may take to finish")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "least severe log level written: debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "log format: text or json")
	fs.StringVar(&c.GPUMetrics, "gpu-metrics", c.GPUMetrics, "NVIDIA GPU metrics through NVML: auto (when a driver is present), on (refuse to start without one) or off")
	fs.DurationVar(&c.GPUScrapeTimeout, "gpu-scrape-timeout", c.GPUScrapeTimeout, "longest time the GPU readings of one scrape may take")
	return fs.String("config-file", "", "YAML file with settings, keyed by flag name with '_' for '-' and '.' (flags and environment win)")
}

// EnvName returns the environment variable that sets a flag.
func EnvName(flagName string) string {
	return EnvPrefix + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(flagName))
}

// Load parses args into fs, then gives every flag that args did not set the
// value of its environment variable (looked up with getenv) or else of the
// YAML file that --config-file (or MODELWATCH_CONFIG_FILE) names. It returns
// flag.ErrHelp for -h or --help.
func Load(fs *flag.FlagSet, configFile *string, args []string, getenv func(string) string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["config-file"] {
		if v := getenv(EnvName("config-file")); v != "" {
			*configFile = v
		}
	}
	file := map[string]string{}
	if *configFile != "" {
		data, err := os.ReadFile(*configFile)
		if err != nil {
			return fmt.Errorf("read config file: %w", err)
		}
		if file, err = parseFile(fs, data); err != nil {
			return fmt.Errorf("config file %s: %w", *configFile, err)
		}
	}
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || f.Name == "config-file" || err != nil {
			return
		}
		if v := getenv(EnvName(f.Name)); v != "" {
			if e := f.Value.Set(v); e != nil {
				err = fmt.Errorf("environment variable %s: %w", EnvName(f.Name), e)
			}
			return
		}
		if v, ok := file[f.Name]; ok {
			if e := f.Value.Set(v); e != nil {
				err = fmt.Errorf("config file %s: %s: %w", *configFile, f.Name, e)
			}
		}
	})
	return err
}

// parseFile reads the YAML file into flag name -> value. Unknown keys are an
// error.
func parseFile(fs *flag.FlagSet, data []byte) (map[string]string, error) {
	var raw map[string]yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&raw); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	out := map[string]string{}
	var unknown []string
	for k, node := range raw {
		name := strings.ReplaceAll(k, "_", "-")
		if name == "web.config.file" || name == "web-config-file" {
			name = "web.config.file"
		}
		if fs.Lookup(name) == nil || name == "config-file" {
			unknown = append(unknown, k)
			continue
		}
		if node.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("%s must be a single value", k)
		}
		out[name] = node.Value
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, fmt.Errorf("unknown settings: %s", strings.Join(unknown, ", "))
	}
	return out, nil
}

// Usage writes the help of a command: its synopsis and every flag with its
// default and environment variable.
func Usage(w io.Writer, fs *flag.FlagSet, synopsis string) {
	fmt.Fprintf(w, "%s\n\nFlags (each also set by the environment variable shown, or a --config-file key):\n", synopsis)
	fs.VisitAll(func(f *flag.Flag) {
		def := ""
		if f.DefValue != "" {
			def = fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(w, "  --%s\n        %s%s\n        env %s\n", f.Name, f.Usage, def, EnvName(f.Name))
	})
}
