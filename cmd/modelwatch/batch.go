package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/push"
	"golang.org/x/term"

	"github.com/modelwatch/modelwatch/internal/batch"
	"github.com/modelwatch/modelwatch/internal/model"
	"github.com/modelwatch/modelwatch/internal/model/onnx"
	"github.com/modelwatch/modelwatch/models"
)

// loadModel loads one version of a model from a repository directory, or
// from the embedded models when repo is empty; version "" is the latest.
func loadModel(repo, name, version, ortLib string) (model.Model, error) {
	if ortLib != "" {
		if err := onnx.Init(ortLib); err != nil {
			return nil, err
		}
	}
	var fsys fs.FS = models.FS
	if repo != "" {
		fsys = os.DirFS(repo)
	}
	loaded, _, err := model.LoadDir(fsys, name, runtimes())
	if err != nil {
		return nil, err
	}
	var found *model.Loaded
	for i := range loaded {
		if version == "" || loaded[i].Version == version {
			found = &loaded[i] // the last is the latest
		}
	}
	if found == nil {
		return nil, fmt.Errorf("model %s has no version %q", name, version)
	}
	for _, l := range loaded {
		if l.Model != nil && l.Model != found.Model {
			l.Model.Close()
		}
	}
	return found.Model, found.Err
}

// batchJob scores a file: modelwatch batch --input rows.csv --output predictions.csv.
func (m *Main) batchJob(ctx context.Context, args []string) error {
	fl := flag.NewFlagSet("batch", flag.ContinueOnError)
	fl.SetOutput(m.Stderr)
	var (
		name       = fl.String("model", models.Default, "model to score with")
		version    = fl.String("version", "", "model version (default: the latest)")
		repo       = fl.String("model-repository", m.Getenv("MODELWATCH_MODEL_REPOSITORY"), "model repository (default: the embedded models)")
		ortLib     = fl.String("onnxruntime-library", m.Getenv(onnx.LibraryEnv), "ONNX Runtime's shared library, for ONNX models")
		input      = fl.String("input", "", "rows to score: CSV with a header, or JSON lines (required)")
		output     = fl.String("output", "", "where to write the predictions, in the input's format (required)")
		format     = fl.String("format", "", "csv or jsonl (default: from the input's extension)")
		size       = fl.Int("batch-size", 256, "rows per model call")
		failBad    = fl.Bool("fail-on-bad-row", false, "stop at the first bad row instead of skipping it")
		gateway    = fl.String("pushgateway", m.Getenv("MODELWATCH_PUSHGATEWAY"), "Pushgateway URL to push the job's metrics to")
		job        = fl.String("job", "modelwatch_batch", "job label of the pushed metrics")
		grouping   = fl.String("grouping", "", "more grouping labels of the pushed metrics: key=value,...")
		expected   = fl.Duration("expected-interval", 24*time.Hour, "how often the job should succeed (pushed for the BatchJobOverdue alert)")
		progressOn = fl.String("progress", "auto", "progress on stderr: auto (on a terminal), on, off")
		workers    = fl.Int("workers", 0, "batches scored at once (default: GOMAXPROCS, every core)")
	)
	fl.Usage = func() {
		fmt.Fprintln(m.Stderr, "Usage: modelwatch batch --input rows.csv --output predictions.csv [flags]\n\nScores a file with a model and pushes the job's metrics to a Pushgateway.\n\nFlags:")
		fl.PrintDefaults()
	}
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{err}
	}
	if *input == "" || *output == "" {
		return &usageError{errors.New("--input and --output are required")}
	}
	if *format == "" {
		switch strings.ToLower(filepath.Ext(*input)) {
		case ".csv":
			*format = "csv"
		case ".jsonl", ".ndjson", ".json":
			*format = "jsonl"
		default:
			return &usageError{fmt.Errorf("cannot tell the format of %s: give --format csv or jsonl", *input)}
		}
	}
	groups := map[string]string{}
	for _, kv := range strings.Split(*grouping, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return &usageError{fmt.Errorf("grouping %q is not key=value", kv)}
		}
		groups[k] = v
	}

	mdl, err := loadModel(*repo, *name, *version, *ortLib)
	if err != nil {
		return err
	}
	defer mdl.Close()
	meta := mdl.Metadata()
	in, err := os.Open(*input)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(*output)
	if err != nil {
		return err
	}
	showProgress := *progressOn == "on" || *progressOn == "auto" && isTerminal(m.Stderr)
	var inputSize int64
	if st, err := in.Stat(); err == nil {
		inputSize = st.Size()
	}
	counted := &countingReader{r: in}
	opts := batch.Options{Model: mdl, Format: *format, BatchSize: *size, Workers: *workers, FailOnBadRow: *failBad}
	if showProgress {
		opts.Progress = func(r batch.Report) { fmt.Fprint(m.Stderr, "\r"+progressBar(counted.n.Load(), inputSize, r)) }
	}
	rep, runErr := batch.Run(ctx, counted, out, opts)
	if cerr := out.Close(); runErr == nil {
		runErr = cerr
	}
	if showProgress {
		fmt.Fprintln(m.Stderr)
	}
	for _, b := range rep.BadRows {
		fmt.Fprintln(m.Stderr, b)
	}
	if rep.Failed > len(rep.BadRows) {
		fmt.Fprintf(m.Stderr, "... and %d more bad rows\n", rep.Failed-len(rep.BadRows))
	}
	fmt.Fprintf(m.Stdout, "scored %d rows of %s with %s %s in %.2fs; %d bad rows\n", rep.Rows, *input, meta.Name, meta.Version, rep.Duration.Seconds(), rep.Failed)

	if *gateway != "" {
		if err := pushJob(*gateway, *job, groups, meta, rep, *expected, runErr == nil); err != nil {
			fmt.Fprintln(m.Stderr, "push to the Pushgateway failed:", err)
			if runErr == nil {
				runErr = err
			}
		}
	}
	return runErr
}

// isTerminal reports whether w is a terminal. /dev/null is a character
// device too, so a check of the file mode alone would say it is one.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// countingReader counts the bytes read through it, for the progress bar.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// progressBar draws the share of the input read (as far as the reader's
// buffer has gone), the rows scored and the rate.
func progressBar(read, size int64, r batch.Report) string {
	const width = 30
	share := 0.0
	if size > 0 {
		share = min(float64(read)/float64(size), 1)
	}
	filled := int(share * width)
	return fmt.Sprintf("[%s%s] %3.0f%%  %d rows scored, %d bad, %.0f rows/s ",
		strings.Repeat("#", filled), strings.Repeat("-", width-filled), 100*share, r.Rows, r.Failed,
		float64(r.Rows)/max(r.Duration.Seconds(), 1e-9))
}

// pushJob sends the run's metrics. A success replaces the job's group; a
// failure adds to it, so the last success time survives failed runs.
func pushJob(url, job string, groups map[string]string, meta model.Metadata, rep batch.Report, expected time.Duration, ok bool) error {
	labels := prometheus.Labels{"model_name": meta.Name, "model_version": meta.Version}
	gauge := func(name, help string, v float64) prometheus.Collector {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels})
		g.Set(v)
		return g
	}
	now := float64(time.Now().UnixNano()) / 1e9
	p := push.New(url, job)
	for k, v := range groups {
		p = p.Grouping(k, v)
	}
	p = p.Collector(gauge("modelwatch_batch_rows_processed", "Rows scored by the last run of the batch job.", float64(rep.Rows))).
		Collector(gauge("modelwatch_batch_rows_failed", "Bad rows in the last run of the batch job.", float64(rep.Failed))).
		Collector(gauge("modelwatch_batch_duration_seconds", "How long the last run of the batch job took.", rep.Duration.Seconds())).
		Collector(gauge("modelwatch_batch_last_run_timestamp_seconds", "When the last run of the batch job ended.", now)).
		Collector(gauge("modelwatch_batch_expected_interval_seconds", "How often the batch job should succeed.", expected.Seconds()))
	if ok {
		p = p.Collector(gauge("modelwatch_batch_last_success_timestamp_seconds", "When the batch job last succeeded.", now))
		return p.Push()
	}
	p = p.Collector(gauge("modelwatch_batch_last_failure_timestamp_seconds", "When the batch job last failed.", now))
	return p.Add()
}
