package repository

import (
	"context"
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/modelwatch/modelwatch/internal/metrics"
	"github.com/modelwatch/modelwatch/internal/model"
	"github.com/modelwatch/modelwatch/internal/model/xgboost"
	"github.com/modelwatch/modelwatch/models"
)

// TestLoadSpans checks the span of each version load: its model, version,
// type and source, and its outcome (loaded, reloaded, failed with an error
// status); a sync that changes nothing makes no span.
func TestLoadSpans(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	f := &fixture{t: t, dir: t.TempDir(), reg: model.NewRegistry(models.Default)}
	f.met = metrics.New(prometheus.NewRegistry())
	f.repo = New(Options{Registry: f.reg, Metrics: f.met, Runtimes: []model.Runtime{xgboost.Runtime}, Dir: f.dir, TracerProvider: tp})

	spans := func() []string {
		var out []string
		for _, s := range exp.GetSpans() {
			a := map[string]string{}
			for _, kv := range s.Attributes {
				a[string(kv.Key)] = kv.Value.Emit()
			}
			line := fmt.Sprintf("%s %s/%s %s %s %s", s.Name, a["modelwatch.model.name"], a["modelwatch.model.version"],
				a["modelwatch.model.type"], a["modelwatch.load.outcome"], s.Status.Code)
			out = append(out, line)
		}
		exp.Reset()
		return out
	}
	ctx := context.Background()
	f.put("m", "1", "binary")
	f.repo.Sync(ctx)
	if got := fmt.Sprint(spans()); got != "[load model m/1 xgboost loaded Unset]" {
		t.Errorf("first load: %s", got)
	}
	f.repo.Sync(ctx)
	if got := spans(); len(got) != 0 {
		t.Errorf("an unchanged sync made spans: %v", got)
	}
	f.put("m", "1", "dart")
	f.repo.Sync(ctx)
	if got := fmt.Sprint(spans()); got != "[load model m/1 xgboost reloaded Unset]" {
		t.Errorf("reload: %s", got)
	}
	f.write("m/2/model.json", `{"learner": "broken"}`)
	f.repo.Sync(ctx)
	got := exp.GetSpans()
	if fmt.Sprint(spans()) != "[load model m/2 xgboost failed Error]" || got[0].Status.Description == "" {
		t.Errorf("failed load: %v %q", got, got[0].Status.Description)
	}
}
