package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"slices"
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
		concept = fs.String("concept-drift", "", "change the true labels, not the inputs: flip=share (turn a share of labels to the other class) and/or logit=+delta (add to the fraud log-odds); needs --feedback-share")
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
	fs.Float64Var(&cfg.FeedbackShare, "feedback-share", 0, "share of successful predictions whose true labels are posted to /feedback (fraud_model only; 0: none)")
	fs.DurationVar(&cfg.FeedbackDelay, "feedback-delay", 0, "how long after its prediction a label is posted")
	fs.IntVar(&cfg.FeedbackMaxPending, "feedback-max-pending", 100_000, "most predictions whose labels wait for --feedback-delay; past it labels are dropped and counted")
	fs.Usage = func() {
		fmt.Fprintln(m.Stderr, "Usage: modelwatch loadgen [flags]\n\nSends traffic to a modelwatch server and reports the rate and latency achieved,\nand with --feedback-share the accuracy of the labels it sent.\n\nFlags:")
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
	if cfg.Concept, err = loadgen.ParseConcept(*concept); err != nil {
		return &usageError{err}
	}
	switch {
	case !(cfg.FeedbackShare >= 0 && cfg.FeedbackShare <= 1):
		return &usageError{fmt.Errorf("feedback-share %v is outside 0..1", cfg.FeedbackShare)}
	case cfg.FeedbackDelay < 0:
		return &usageError{fmt.Errorf("feedback-delay %v is negative", cfg.FeedbackDelay)}
	case cfg.FeedbackMaxPending < 1:
		return &usageError{fmt.Errorf("feedback-max-pending %d is below 1", cfg.FeedbackMaxPending)}
	case *concept != "" && cfg.FeedbackShare == 0:
		return &usageError{errors.New("concept-drift changes only the labels loadgen sends: it needs --feedback-share")}
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
	if fb := res.Feedback; fb != nil {
		fmt.Fprintf(m.Stdout, "labels: %d in %d requests to /feedback, %d answered 200", fb.Labels, fb.Requests, fb.OK)
		if fb.Flipped > 0 {
			fmt.Fprintf(m.Stdout, ", %d flipped by concept drift", fb.Flipped)
		}
		fmt.Fprintln(m.Stdout)
		codes := slices.Sorted(maps.Keys(fb.ByStatus))
		for _, c := range codes {
			if c != "200" {
				fmt.Fprintf(m.Stdout, "  status %s: %d\n", c, fb.ByStatus[c])
			}
		}
		if fb.Transport > 0 {
			fmt.Fprintf(m.Stdout, "  transport errors: %d\n", fb.Transport)
		}
		if fb.Dropped > 0 || fb.Unsent > 0 {
			fmt.Fprintf(m.Stdout, "  not sent: %d dropped (over --feedback-max-pending), %d still waiting at the end\n", fb.Dropped, fb.Unsent)
		}
		fmt.Fprintf(m.Stdout, "accuracy sent: %.4f (%d correct, %d incorrect)\n", fb.Accuracy, fb.Correct, fb.Incorrect)
	}
	return nil
}
