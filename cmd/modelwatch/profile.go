package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/modelwatch/modelwatch/internal/drift"
	"github.com/modelwatch/modelwatch/internal/model"
	"github.com/modelwatch/modelwatch/internal/model/onnx"
	"github.com/modelwatch/modelwatch/models"
)

// profile writes a model's training profile: modelwatch profile --model M --data train.csv.
func (m *Main) profile(ctx context.Context, args []string) error {
	flags := flag.NewFlagSet("profile", flag.ContinueOnError)
	flags.SetOutput(m.Stderr)
	var (
		name    = flags.String("model", models.Default, "model to profile")
		version = flags.String("version", "", "version to profile (default: the latest)")
		repo    = flags.String("model-repository", m.Getenv("MODELWATCH_MODEL_REPOSITORY"), "model repository holding the model (default: the embedded models)")
		data    = flags.String("data", "", "CSV of training rows, with a header naming the model's features (required)")
		bins    = flags.Int("bins", 10, "quantile bins per feature")
		out     = flags.String("out", "", "where to write the profile (default: profile.json beside the model in the repository)")
		ortLib  = flags.String("onnxruntime-library", m.Getenv(onnx.LibraryEnv), "ONNX Runtime's shared library, for ONNX models")
	)
	flags.Usage = func() {
		fmt.Fprintln(m.Stderr, "Usage: modelwatch profile --model M --data train.csv [flags]\n\nWrites the training profile that drift monitoring compares live traffic with.\n\nFlags:")
		flags.PrintDefaults()
	}
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{err}
	}
	if *data == "" {
		return &usageError{errors.New("--data is required")}
	}
	if *repo == "" && *out == "" {
		return &usageError{errors.New("--out is required for an embedded model")}
	}
	mdl, err := loadModel(*repo, *name, *version, *ortLib)
	if err != nil {
		return err
	}
	defer mdl.Close()
	meta := mdl.Metadata()
	if len(meta.Features) == 0 {
		return fmt.Errorf("model %s takes tensors, not rows of features; drift is tracked for models of rows", meta.Name)
	}
	f, err := os.Open(*data)
	if err != nil {
		return err
	}
	values, err := drift.ReadCSV(f, meta.Features)
	f.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", *data, err)
	}
	rows := len(values) / len(meta.Features)
	var preds []float64
	for start := 0; start < rows; start += 1024 {
		n := min(1024, rows-start)
		b := model.Batch{Rows: n, Cols: len(meta.Features), Values: values[start*len(meta.Features) : (start+n)*len(meta.Features)]}
		res, err := model.SafePredict(ctx, mdl, b)
		if err != nil {
			return fmt.Errorf("predict rows %d to %d: %w", start, start+n, err)
		}
		preds = append(preds, res.Values...)
	}
	p, err := drift.Build(meta.Name, meta.Version, meta.Features, values, meta.Classes, preds, *bins)
	if err != nil {
		return err
	}
	target := *out
	if target == "" {
		target = filepath.Join(*repo, meta.Name, meta.Version, "profile.json")
	}
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(target, append(b, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(m.Stdout, "profiled %s %s on %d rows: %s\n", meta.Name, meta.Version, rows, target)
	return nil
}
