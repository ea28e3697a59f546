package model_test

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/modelwatch/modelwatch/internal/model"
)

// FuzzParseConfig feeds ParseConfig arbitrary config.yaml files, seeded
// with the embedded model's and with small hostile ones. A file is refused
// with ErrInvalidModel, or gives a configuration within the bounds that
// reads back the same once written out again.
func FuzzParseConfig(f *testing.F) {
	embedded, err := os.ReadFile("../../models/fraud_model/config.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		string(embedded),
		"",
		"version_policy: {latest: 2}\nclasses: [no, yes]\n",
		"version_policy: {specific: [\"1\", v2]}\ndefault_version: v2\n",
		"dynamic_batching: {max_batch_size: 32, max_queue_delay: 5ms, queue_capacity: 512, workers: 1}\nmax_batch_size: 8\n",
		"features:\n  - a\n  - b\nprediction_output: probabilities\ndescription: |\n  two\n  lines\n",
		"description: &d x\nclasses: [*d]\n",
		"classes: [a, b]\nclasses: [c]\n",
		"version_policy: {<<: {all: true}}\n",
		"features: [[[[a]]]]\n",
		"? [a]\n: 1\n",
		"--- a\n--- b\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := model.ParseConfig(strings.NewReader(string(data)))
		if err != nil {
			if !errors.Is(err, model.ErrInvalidModel) {
				t.Fatalf("error %v does not wrap ErrInvalidModel", err)
			}
			return
		}
		if len(c.Classes) > model.MaxConfigClasses || len(c.VersionPolicy.Specific) > model.MaxConfigSpecific {
			t.Fatalf("%d classes and %d specific versions accepted", len(c.Classes), len(c.VersionPolicy.Specific))
		}
		if b := c.DynamicBatching; b != nil && (b.QueueCapacity > model.MaxQueueCapacity || b.Workers > 256) {
			t.Fatalf("dynamic_batching %+v accepted", *b)
		}
		for _, names := range [][]string{c.Classes, c.Features} {
			seen := map[string]bool{}
			for _, n := range names {
				if n == "" || len(n) > 128 || seen[n] {
					t.Fatalf("name %q accepted in %q", n, names)
				}
				seen[n] = true
			}
		}
		c.VersionPolicy.Select([]string{"1", "2", "v2", "10"})
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("marshal %+v: %v", c, err)
		}
		again, err := model.ParseConfig(strings.NewReader(string(out)))
		if err != nil {
			t.Fatalf("the configuration written out is refused: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(normal(c), normal(again)) {
			t.Fatalf("read back %+v, want %+v\n%s", again, c, out)
		}
	})
}

// normal makes empty and absent lists alike, as YAML writes both as [].
func normal(c model.Config) model.Config {
	for _, s := range []*[]string{&c.Classes, &c.Features, &c.VersionPolicy.Specific} {
		if len(*s) == 0 {
			*s = nil
		}
	}
	return c
}
