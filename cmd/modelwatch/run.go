package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"
	"go.opentelemetry.io/otel/trace"

	"github.com/modelwatch/modelwatch/internal/config"
	"github.com/modelwatch/modelwatch/internal/drift"
	"github.com/modelwatch/modelwatch/internal/feedback"
	"github.com/modelwatch/modelwatch/internal/gpu"
	"github.com/modelwatch/modelwatch/internal/metrics"
	"github.com/modelwatch/modelwatch/internal/model"
	"github.com/modelwatch/modelwatch/internal/model/lightgbm"
	"github.com/modelwatch/modelwatch/internal/model/onnx"
	"github.com/modelwatch/modelwatch/internal/model/xgboost"
	"github.com/modelwatch/modelwatch/internal/predlog"
	"github.com/modelwatch/modelwatch/internal/repository"
	"github.com/modelwatch/modelwatch/internal/server"
	"github.com/modelwatch/modelwatch/internal/tracing"
	"github.com/modelwatch/modelwatch/internal/version"
	"github.com/modelwatch/modelwatch/models"
)

// Main runs the modelwatch command line.
type Main struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
}

// usageError is a command line that cannot be run; main exits 2 for it.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

const usage = `modelwatch serves machine-learning models over HTTP with Prometheus monitoring built in.

Usage:
  modelwatch serve [flags]     run the inference server (modelwatch serve --help lists the flags)
  modelwatch loadgen [flags]   send traffic to a server and report rate and latency
  modelwatch profile [flags]   write a model's training profile for drift monitoring
  modelwatch batch [flags]     score a file with a model and push the job's metrics to a Pushgateway
  modelwatch version [--json]  print the build information
`

// Run runs the subcommand args name until ctx ends or the command is done.
func (m *Main) Run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(m.Stderr, usage)
		return &usageError{errors.New("no command given")}
	}
	switch args[0] {
	case "serve":
		return m.serve(ctx, args[1:])
	case "version":
		return m.version(args[1:])
	case "loadgen":
		return m.loadgen(ctx, args[1:])
	case "profile":
		return m.profile(ctx, args[1:])
	case "batch":
		return m.batchJob(ctx, args[1:])
	case "help", "-h", "-help", "--help":
		fmt.Fprint(m.Stdout, usage)
		return nil
	}
	fmt.Fprint(m.Stderr, usage)
	return &usageError{fmt.Errorf("unknown command %q", args[0])}
}

func (m *Main) version(args []string) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	fs.SetOutput(m.Stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return &usageError{err}
	}
	i := version.Get()
	if *asJSON {
		return json.NewEncoder(m.Stdout).Encode(i)
	}
	fmt.Fprintf(m.Stdout, "modelwatch %s (revision %s, %s)\n", i.Version, i.Revision, i.GoVersion)
	return nil
}

func (m *Main) serve(ctx context.Context, args []string) error {
	cfg, err := m.serveConfig(args)
	if err != nil {
		return err
	}
	logger := cfg.NewLogger(m.Stderr)

	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewGoCollector(),
	)
	met := metrics.New(reg)
	tracerProvider, presampler, logger, stopTracing, err := setupTracing(ctx, m.Getenv, reg, logger)
	if err != nil {
		return err
	}
	defer func() {
		// Spans of a start that failed; a clean exit has flushed them.
		stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		stopTracing(stopCtx)
	}()
	access := server.NewAccessMetrics(reg)
	tokens, cert, err := loadCredentials(cfg, access, logger)
	if err != nil {
		return err
	}
	gpuOn, gpuState, releaseGPU, err := setupGPU(cfg, reg, logger)
	if err != nil {
		return err
	}
	defer releaseGPU()
	onnxState, err := setupONNX(cfg)
	if err != nil {
		return err
	}
	logger.Info("ONNX", "state", onnxState)

	registry := model.NewRegistry(cfg.DefaultModel)
	registry.OnClose = func(m model.Model, err error) {
		meta := m.Metadata()
		if err != nil {
			logger.Warn("closing a model failed", "model", meta.Name, "version", meta.Version, "err", err)
		}
	}
	monitor, store := setupQuality(cfg, reg, met)
	plog, closeLog, err := openPredictionLog(ctx, cfg, reg, logger)
	if err != nil {
		return err
	}
	defer closeLog()
	repo, err := newRepository(cfg, registry, met, monitor, store, tracerProvider, logger)
	if err != nil {
		return err
	}

	srv := server.New(server.Options{
		Models:            registry,
		Metrics:           met,
		MetricsHandler:    newMetricsHandler(reg, cfg.MaxScrapes, logger),
		SeparateMetrics:   cfg.MetricsListenAddress != "",
		Logger:            logger,
		MaxBodyBytes:      cfg.MaxBodyBytes,
		MaxBodyMemory:     cfg.MaxBodyMemory,
		MaxBatchRows:      cfg.MaxBatchRows,
		MaxInFlight:       cfg.MaxInFlight,
		EnablePprof:       cfg.EnablePprof,
		RequestTimeout:    cfg.RequestTimeout,
		Repository:        repo,
		Gatherer:          reg,
		Drift:             monitor,
		Feedback:          store,
		PredictionLog:     plog,
		Tokens:            tokens,
		InferenceAuth:     cfg.InferenceAuth,
		AdminListener:     cfg.AdminListenAddress != "",
		Access:            access,
		MaxStatusRequests: cfg.MaxScrapes,
		TracerProvider:    tracerProvider,
		Presampler:        presampler,
		Propagator:        tracing.Propagator(),
		Info: map[string]any{"gpu_metrics": gpuOn, "gpu": gpuState, "onnx": onnxState,
			"model_repository": cfg.ModelRepository},
	})

	servers := httpListeners(cfg, srv, cert, fitFileLimit(cfg.MaxConnections, logger))
	if cfg.WebConfigFile != "" {
		if err := web.Validate(cfg.WebConfigFile); err != nil {
			return fmt.Errorf("web.config.file: %w", err)
		}
	}
	errc := make(chan error, len(servers)+1)
	if err := startHTTP(cfg, servers, access, logger, errc); err != nil {
		return err
	}
	grpcSrv, err := serveGRPC(cfg, srv, reg, cert, logger, errc)
	if err != nil {
		closeHTTP(servers)
		return err
	}
	// Listening first lets liveness probes pass while models load; /ready
	// answers 503 until they have.
	repo.Sync(ctx)
	if !registry.Has(cfg.DefaultModel) {
		closeHTTP(servers)
		grpcSrv.Close()
		return &usageError{fmt.Errorf("default-model %q is not loaded", cfg.DefaultModel)}
	}
	if cfg.ModelRepository != "" && cfg.PollInterval > 0 {
		go repo.Run(ctx, cfg.PollInterval)
	}
	srv.SetReady(true)
	logger.Info("modelwatch serving", "version", version.Get().Version, "models", registry.Len(), "default_model", cfg.DefaultModel,
		"model_repository", cfg.ModelRepository)

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	return shutdown(cfg, srv, servers, grpcSrv, plog, stopTracing, errc, logger)
}

// serveConfig reads the serve command's configuration from its flags, the
// environment and the configuration file, and checks it.
func (m *Main) serveConfig(args []string) (config.Config, error) {
	cfg := config.Default()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	configFile := cfg.RegisterFlags(fs)
	if err := config.Load(fs, configFile, args, m.Getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			config.Usage(m.Stdout, fs, "Usage: modelwatch serve [flags]\n\nRuns the inference server. Tracing (OpenTelemetry) is set by the standard OTEL_* variables: docs/TRACING.md.")
			return cfg, err
		}
		return cfg, &usageError{err}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, &usageError{err}
	}
	return cfg, nil
}

// loadCredentials reads the token file and the TLS certificate, when the
// configuration names them; both are read again when they change.
func loadCredentials(cfg config.Config, access *server.AccessMetrics, logger *slog.Logger) (*server.Tokens, *server.Certificate, error) {
	var tokens *server.Tokens
	var cert *server.Certificate
	var err error
	if cfg.TokenFile != "" {
		if tokens, err = server.LoadTokens(cfg.TokenFile, logger, access.ReloadObserver("tokens")); err != nil {
			return nil, nil, err
		}
	}
	if cfg.TLSCertFile != "" {
		if cert, err = server.LoadCertificate(cfg.TLSCertFile, cfg.TLSKeyFile, logger, access.ReloadObserver("tls_certificate")); err != nil {
			return nil, nil, err
		}
	}
	return tokens, cert, nil
}

// setupGPU opens NVML as --gpu-metrics says and registers the GPU collector;
// it returns whether GPU metrics are on, their state in words, and the
// function that releases NVML.
func setupGPU(cfg config.Config, reg prometheus.Registerer, logger *slog.Logger) (bool, string, func(), error) {
	mode, _ := gpu.ParseMode(cfg.GPUMetrics)
	collector, release, state, err := gpu.Open(mode, cfg.GPUScrapeTimeout, logger.With("component", "gpu"))
	if err != nil {
		return false, "", nil, fmt.Errorf("gpu-metrics on: %w", err)
	}
	if collector == nil {
		logger.Info("GPU metrics off", "reason", state)
		return false, state, release, nil
	}
	reg.MustRegister(collector)
	logger.Info("GPU metrics on", "gpus", state)
	return true, state, release, nil
}

// setupONNX loads ONNX Runtime's library when --onnxruntime-library names
// it, and says in words whether ONNX models can load.
func setupONNX(cfg config.Config) (string, error) {
	switch {
	case cfg.ONNXRuntimeLibrary != "":
		if err := onnx.Init(cfg.ONNXRuntimeLibrary); err != nil {
			return "", fmt.Errorf("onnxruntime-library: %w", err)
		}
		return "ONNX Runtime " + onnx.Version(), nil
	case !onnx.BuiltIn:
		return onnx.ErrNotBuiltIn.Error(), nil
	}
	return "no ONNX Runtime library given (--onnxruntime-library); ONNX models cannot load", nil
}

// setupQuality makes the drift monitor and, unless --feedback-max-entries
// is 0, the feedback store, both registered as collectors that report on
// themselves.
func setupQuality(cfg config.Config, reg prometheus.Registerer, met *metrics.Metrics) (*drift.Monitor, *feedback.Store) {
	monitor := drift.NewMonitor(drift.Options{Window: cfg.DriftWindow, MinSamples: cfg.DriftMinSamples, MaxFeatures: cfg.DriftMaxFeatures})
	reg.MustRegister(metrics.SelfReporting("drift", metrics.Infallible(monitor), nil))
	if cfg.FeedbackMaxEntries == 0 {
		return monitor, nil
	}
	store := feedback.New(feedback.Options{MaxEntries: cfg.FeedbackMaxEntries, MaxRows: cfg.MaxBatchRows, TTL: cfg.FeedbackTTL, Window: cfg.AccuracyWindow}, met.FeedbackTotal, met.LabelledRows)
	reg.MustRegister(metrics.SelfReporting("feedback", metrics.Infallible(store), nil))
	return monitor, store
}

// newRepository makes the model repository: the embedded model, the
// directory --model-repository names, or both.
func newRepository(cfg config.Config, registry *model.Registry, met *metrics.Metrics, monitor *drift.Monitor, store *feedback.Store,
	tp trace.TracerProvider, logger *slog.Logger) (*repository.Repository, error) {
	opts := repository.Options{
		Registry: registry, Metrics: met, Logger: logger, Drift: monitor, Feedback: store,
		Runtimes:       runtimes(),
		Dir:            cfg.ModelRepository,
		TracerProvider: tp,
	}
	if cfg.EmbeddedModel {
		opts.Embedded = models.FS
	}
	if cfg.ModelRepository != "" {
		if st, err := os.Stat(cfg.ModelRepository); err != nil || !st.IsDir() {
			return nil, &usageError{fmt.Errorf("model-repository %q is not a directory", cfg.ModelRepository)}
		}
	}
	return repository.New(opts), nil
}

// httpListeners lists the HTTP listeners the configuration asks for: the
// API, and /metrics and the control plane on their own addresses.
func httpListeners(cfg config.Config, srv *server.Server, cert *server.Certificate, maxConns int) []*listener {
	servers := []*listener{{role: "api", addr: cfg.ListenAddress, handler: srv, webConfig: cfg.WebConfigFile, cert: cert, maxConns: maxConns}}
	if cfg.MetricsListenAddress != "" {
		servers[0].webConfig = ""
		servers = append(servers, &listener{role: "metrics", addr: cfg.MetricsListenAddress, handler: srv.MetricsRoutes(), webConfig: cfg.WebConfigFile, maxConns: sideListenerConns})
	}
	if cfg.AdminListenAddress != "" {
		servers = append(servers, &listener{role: "admin", addr: cfg.AdminListenAddress, handler: srv.AdminRoutes(), cert: cert, maxConns: sideListenerConns})
	}
	return servers
}

// startHTTP listens on every HTTP listener and serves each in a goroutine
// of its own, which sends to errc when it stops serving. A listener that
// cannot listen closes those already started.
func startHTTP(cfg config.Config, servers []*listener, access *server.AccessMetrics, logger *slog.Logger, errc chan<- error) error {
	for _, l := range servers {
		limiter := server.NewConnLimiter(l.role, l.maxConns, access)
		l.srv = &http.Server{
			ConnState:         limiter.ConnState,
			Handler:           l.handler,
			ReadHeaderTimeout: min(cfg.ReadTimeout, 10*time.Second),
			ReadTimeout:       cfg.ReadTimeout,
			WriteTimeout:      cfg.WriteTimeout,
			IdleTimeout:       cfg.IdleTimeout,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		}
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			closeHTTP(servers)
			return fmt.Errorf("listen: %w", err)
		}
		ln = limiter.Listener(ln)
		if l.cert != nil {
			l.srv.TLSConfig = l.cert.TLSConfig()
		}
		webConfig := l.webConfig
		logger.Info("listening", "role", l.role, "address", ln.Addr().String(), "web_config", webConfig != "", "tls", l.cert != nil,
			"max_connections", limiter.Max())
		go func() {
			switch {
			case webConfig != "":
				errc <- web.Serve(ln, l.srv, &web.FlagConfig{WebConfigFile: &webConfig}, logger.With("component", "web"))
			case l.cert != nil:
				errc <- l.srv.ServeTLS(ln, "", "")
			default:
				errc <- l.srv.Serve(ln)
			}
		}()
	}
	return nil
}

// closeHTTP closes the HTTP listeners started so far.
func closeHTTP(servers []*listener) {
	for _, l := range servers {
		if l.srv != nil {
			l.srv.Close()
		}
	}
}

// shutdown stops serving after SIGINT or SIGTERM: /ready and gRPC health
// turn, the server goes on serving for --shutdown-delay, then the listeners
// close and in-flight requests get --shutdown-timeout to finish; what they
// logged is written to the prediction log and their spans flushed in what
// is left of it.
func shutdown(cfg config.Config, srv *server.Server, servers []*listener, grpcSrv *grpcListener, plog *predlog.Log,
	stopTracing func(context.Context) error, errc <-chan error, logger *slog.Logger) error {
	srv.SetReady(false)
	grpcSrv.Drain()
	if cfg.ShutdownDelay > 0 {
		logger.Info("shutting down: /ready answers 503 while the server goes on serving", "delay", cfg.ShutdownDelay)
		select {
		case <-time.After(cfg.ShutdownDelay):
		case err := <-errc:
			return fmt.Errorf("serve: %w", err)
		}
	}
	logger.Info("shutting down: draining in-flight requests", "timeout", cfg.ShutdownTimeout)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	var firstErr error
	for _, l := range servers {
		if err := l.srv.Shutdown(shutdownCtx); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("shutdown: %w", err)
		}
	}
	if err := grpcSrv.Stop(shutdownCtx); err != nil && firstErr == nil {
		firstErr = fmt.Errorf("shutdown: grpc: %w", err)
	}
	// The requests are answered: what they logged is written before exit,
	// within what is left of the shutdown timeout.
	if plog != nil {
		if err := plog.Close(shutdownCtx); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("prediction log: %w", err)
		}
	}
	// Then the spans of those requests, within what is left of it; a
	// receiver that cannot take them is no reason to fail the exit.
	if err := stopTracing(shutdownCtx); err != nil {
		logger.Warn("tracing: flushing the last spans failed", "err", err)
	}
	if firstErr == nil {
		logger.Info("shut down cleanly")
	}
	return firstErr
}

// grpcListener is the gRPC front-end, or nothing (nil) with
// --grpc-listen-address "".
type grpcListener struct{ g *server.GRPC }

// serveGRPC starts the gRPC listener (role "grpc"), sending what ends its
// serving to errc.
func serveGRPC(cfg config.Config, srv *server.Server, reg prometheus.Registerer, cert *server.Certificate, logger *slog.Logger, errc chan<- error) (*grpcListener, error) {
	if cfg.GRPCListenAddress == "" || cfg.GRPCListenAddress == "off" { // off: what the environment can say
		return &grpcListener{}, nil
	}
	ln, err := net.Listen("tcp", cfg.GRPCListenAddress)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	g := srv.NewGRPC(server.GRPCOptions{Registerer: reg, Certificate: cert})
	logger.Info("listening", "role", "grpc", "address", ln.Addr().String(), "tls", cert != nil)
	go func() {
		if err := g.Serve(ln); err != nil {
			errc <- err
		}
	}()
	return &grpcListener{g: g}, nil
}

// Drain makes grpc.health.v1 answer NOT_SERVING.
func (l *grpcListener) Drain() {
	if l.g != nil {
		l.g.Drain()
	}
}

// Stop lets the calls in progress finish until ctx ends, then closes.
func (l *grpcListener) Stop(ctx context.Context) error {
	if l.g == nil {
		return nil
	}
	return l.g.Stop(ctx)
}

// Close stops at once.
func (l *grpcListener) Close() {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	l.Stop(ctx)
}

// openPredictionLog opens the prediction log's store and starts the log
// writing to it; nil with the log off. The returned function closes the
// log (if the shutdown has not) and then the store.
func openPredictionLog(ctx context.Context, cfg config.Config, reg prometheus.Registerer, logger *slog.Logger) (*predlog.Log, func(), error) {
	sc := cfg.PredictionLogStore()
	sc.Logger = logger
	if sc.Off() {
		logger.Info("prediction log off: labels join predictions kept in memory on this replica only")
		return nil, func() {}, nil
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, nil, &usageError{fmt.Errorf("data-dir: %w", err)}
	}
	openCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	store, spool, err := predlog.OpenStore(openCtx, sc)
	if err != nil {
		return nil, nil, fmt.Errorf("prediction-log: %w", err)
	}
	opts := predlog.DefaultOptions()
	opts.Sample = cfg.PredictionLogSample
	opts.Spool = spool
	opts.JournalDir = filepath.Join(cfg.DataDir, "journal")
	opts.Logger = logger
	l, err := predlog.New(store, opts, reg)
	if err != nil {
		store.Close()
		return nil, nil, &usageError{fmt.Errorf("prediction-log: %w", err)}
	}
	logger.Info("prediction log on", "store", sc.Describe(), "sample", cfg.PredictionLogSample,
		"retention", cfg.PredictionLogRetention, "data_dir", cfg.DataDir)
	return l, func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		l.Close(closeCtx)
		if err := store.Close(); err != nil {
			logger.Warn("closing the prediction log's store", "err", err)
		}
	}, nil
}

// runtimes lists the model file formats a version directory may hold, in the
// order they are looked for.
func runtimes() []model.Runtime {
	return append(slices.Clone(xgboost.Runtimes), lightgbm.Runtime, onnx.Runtime)
}

// newMetricsHandler serves the registry's metrics. Scrapes that arrive
// together share one gathering, gatherings are paced (metrics.Scrapes), and
// past maxScrapes at once scrapes are refused with 503, so that a storm of
// scrapes cannot take the CPU that inference needs;
// promhttp_metric_handler_requests_total counts every answer by status code.
func newMetricsHandler(reg *prometheus.Registry, maxScrapes int, logger *slog.Logger) http.Handler {
	return promhttp.InstrumentMetricHandler(reg, metrics.NewScrapes(promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelError),
		Registry:          reg,
		Timeout:           10 * time.Second,
		CoalesceGather:    true,
	}), maxScrapes, metrics.MinScrapeInterval))
}

type listener struct {
	role, addr, webConfig string
	handler               http.Handler
	cert                  *server.Certificate
	maxConns              int
	srv                   *http.Server
}

// sideListenerConns is the most connections the metrics and admin listeners
// each hold open.
const sideListenerConns = 256

// reservedFiles is the file descriptors kept for everything but the
// listeners' connections: model files, the prediction log, GPU devices.
const reservedFiles = 256

// fitFileLimit raises the open-file limit to its hard limit and returns the
// API listener's connection limit: want, lowered (and logged) when the
// limit cannot hold want connections besides the other listeners' and the
// files the server opens.
func fitFileLimit(want int, logger *slog.Logger) int {
	limit, err := server.RaiseFileLimit()
	if err != nil {
		logger.Warn("open-file limit unknown; max-connections kept", "max_connections", want, "err", err)
		return want
	}
	need := uint64(want) + 2*sideListenerConns + reservedFiles
	if limit >= need {
		logger.Debug("open-file limit", "limit", limit, "max_connections", want)
		return want
	}
	fit := max(int(limit)-2*sideListenerConns-reservedFiles, 16)
	logger.Warn("the open-file limit cannot hold --max-connections; lowered", "open_file_limit", limit, "max_connections", want, "lowered_to", fit)
	return fit
}
