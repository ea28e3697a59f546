package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"sort"
	"time"

	"github.com/modelwatch/modelwatch/internal/loadgen"
)

func (m *Main) loadgen(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(m.Stderr)
	var (
		cfg     loadgen.Config
		targets = fs.String("models", "", "mix of models: name[:version][=weight],... (default: the server's default model)")
		drift   = fs.String("drift", "", "shift features: name=*factor or name=+offset,... (for example amount=*3)")
		asJSON  = fs.Bool("json", false, "print the result as JSON")
	)
	fs.StringVar(&cfg.URL, "url", "http://localhost:8000", "base URL of the server")
	fs.Float64Var(&cfg.Rate, "rate", 0, "requests per second across all clients; 0 sends as fast as the clients can")
	fs.IntVar(&cfg.Concurrency, "concurrency", 4, "concurrent clients")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long to send")
	fs.IntVar(&cfg.Requests, "requests", 0, "stop after this many requests (0: at --duration)")
	fs.Float64Var(&cfg.BadShare, "bad-share", 0, "share of deliberately bad requests (unknown model, wrong feature count, malformed JSON, NaN)")
	fs.IntVar(&cfg.Batch, "batch", 1, "rows per request")
	fs.StringVar(&cfg.API, "api", "predict", "API to call: predict or v2")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "seed of the generated traffic")
	fs.DurationVar(&cfg.Timeout, "timeout", 10*time.Second, "timeout of one request")
	fs.Usage = func() {
		fmt.Fprintln(m.Stderr, "Usage: modelwatch loadgen [flags]\n\nSends traffic to a modelwatch server and reports the rate and latency achieved.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return err
		}
		return &usageError{err}
	}
	var err error
	if cfg.Targets, err = loadgen.ParseTargets(*targets); err != nil {
		return &usageError{err}
	}
	if cfg.Drift, err = loadgen.ParseDrift(*drift); err != nil {
		return &usageError{err}
	}
	if cfg.BadShare < 0 || cfg.BadShare > 1 {
		return &usageError{fmt.Errorf("bad-share %v is outside 0..1", cfg.BadShare)}
	}
	res, err := loadgen.Run(ctx, cfg, nil)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(m.Stdout).Encode(res)
	}
	fmt.Fprintf(m.Stdout, "sent %d requests in %.1fs: %.1f/s\n", res.Sent, res.Seconds, res.Rate)
	codes := make([]string, 0, len(res.ByStatus))
	for c := range res.ByStatus {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	for _, c := range codes {
		fmt.Fprintf(m.Stdout, "  status %s: %d\n", c, res.ByStatus[c])
	}
	if res.Transport > 0 {
		fmt.Fprintf(m.Stdout, "  transport errors: %d\n", res.Transport)
	}
	fmt.Fprintf(m.Stdout, "latency ms: p50 %.3f  p95 %.3f  p99 %.3f\n", res.P50, res.P95, res.P99)
	return nil
}
