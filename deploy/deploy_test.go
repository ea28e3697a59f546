//go:build cgo

// Package deploy_test proves the files under deploy/ against the real
// components: promtool checks and unit-tests the rules, amtool checks
// Alertmanager's configuration, and the stack test runs modelwatch,
// Prometheus, Alertmanager, Pushgateway and node-exporter together.
package deploy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/modelwatch/modelwatch/deploy/internal/prometheustest"
	"github.com/modelwatch/modelwatch/internal/testenv"
)

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Record      string            `yaml:"record"`
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func ruleFiles(t *testing.T) []string {
	files, err := filepath.Glob("prometheus/rules/*.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no rule files: %v", err)
	}
	return files
}

// TestRules checks every rule file with promtool, runs every rule unit test
// (both with Prometheus 2 and 3),
// and holds every alert to the project's standard: a severity, a summary, a
// description, a runbook section in docs/RUNBOOK.md, and a unit test.
func TestRules(t *testing.T) {
	files := ruleFiles(t)
	tests, _ := filepath.Glob("prometheus/tests/*.test.yml")
	if len(tests) == 0 {
		t.Fatal("no rule tests")
	}
	// The same files and unit tests hold on Prometheus 2 and 3.
	prometheustest.Each(t, func(t *testing.T, v prometheustest.Version) {
		testenv.Run(t, ".", v.Promtool, append([]string{"check", "rules"}, files...)...)
		for _, f := range tests {
			testenv.Run(t, filepath.Dir(f), v.Promtool, "test", "rules", filepath.Base(f))
		}
	})
	var testText bytes.Buffer
	for _, f := range tests {
		b, _ := os.ReadFile(f)
		testText.Write(b)
	}

	runbook, err := os.ReadFile("../docs/RUNBOOK.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var rf ruleFile
		if err := yaml.Unmarshal(b, &rf); err != nil {
			t.Fatal(err)
		}
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				if r.Alert == "" {
					continue
				}
				sev := r.Labels["severity"]
				if sev != "critical" && sev != "warning" && sev != "info" {
					t.Errorf("%s: severity %q", r.Alert, sev)
				}
				for _, a := range []string{"summary", "description", "runbook_url"} {
					if r.Annotations[a] == "" {
						t.Errorf("%s has no %s", r.Alert, a)
					}
				}
				anchor := strings.ToLower(r.Alert)
				if !strings.HasSuffix(r.Annotations["runbook_url"], "RUNBOOK.md#"+anchor) || !bytes.Contains(runbook, []byte("\n## "+r.Alert+"\n")) {
					t.Errorf("%s: runbook_url %q, or no '## %s' section in docs/RUNBOOK.md", r.Alert, r.Annotations["runbook_url"], r.Alert)
				}
				if !bytes.Contains(testText.Bytes(), []byte("alertname: "+r.Alert+"\n")) {
					t.Errorf("%s has no promtool unit test", r.Alert)
				}
			}
		}
	}
}

// TestConfigs checks the shipped Prometheus configurations with each
// version's promtool, as docs/DEPLOY.md tells a user of that version to run
// them (prometheustest.Version.Config). Debian's Prometheus 2 is built
// without Kubernetes discovery, so only Prometheus 3 checks the Kubernetes
// one; the chart's tests run its scrape job.
func TestConfigs(t *testing.T) {
	prometheustest.Each(t, func(t *testing.T, v prometheustest.Version) {
		files := []string{"prometheus/prometheus.yml"}
		if v.Major >= 3 {
			files = append(files, "prometheus/kubernetes/prometheus.yml")
		}
		dir := t.TempDir()
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			cfg, _ := v.Config(string(b))
			out := filepath.Join(dir, strings.ReplaceAll(f, "/", "_"))
			os.WriteFile(out, []byte(cfg), 0o644)
			// --syntax-only: the rule files are where the containers mount them.
			testenv.Run(t, dir, v.Promtool, "check", "config", "--syntax-only", out)
		}
	})
}

// prometheusServer is a running Prometheus.
type prometheusServer struct {
	*testenv.Prometheus
}

type queryResult struct {
	Status string `json:"status"`
	Error  string `json:"error"`
	Data   struct {
		Result []json.RawMessage `json:"result"`
	} `json:"data"`
}

// query runs an instant query and returns the number of series it answered.
func (p *prometheusServer) query(expr string) (int, error) {
	resp, err := http.Get(p.URL + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r queryResult
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, err
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("%s", r.Error)
	}
	return len(r.Data.Result), nil
}

// dashboardQuery is one PromQL expression of a dashboard.
type dashboardQuery struct {
	where, expr string
}

var labelValues = regexp.MustCompile(`^label_values\((.*),\s*(\w+)\)$`)

// dashboardQueries lists every expression of a dashboard: panel targets (in
// rows too) and template variable queries, with Grafana's variables replaced
// by values Prometheus accepts.
func dashboardQueries(t *testing.T, file string) []dashboardQuery {
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID        string `json:"uid"`
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if d.UID == "" {
		t.Errorf("%s has no uid", file)
	}
	subst := strings.NewReplacer("$__rate_interval", "15s", "$__interval", "5s", "$__range", "1m",
		"$instance", ".*", "$gpu", ".*", "$node", ".*", "$model", ".*", "$version", ".*", "$job", ".*")
	var out []dashboardQuery
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				if tg.Expr == "" {
					t.Errorf("%s panel %q target %s has no expression", file, p.Title, tg.RefID)
				}
				out = append(out, dashboardQuery{fmt.Sprintf("%s panel %q %s", filepath.Base(file), p.Title, tg.RefID), subst.Replace(tg.Expr)})
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			json.Unmarshal(v.Query, &q.Query)
		}
		m := labelValues.FindStringSubmatch(q.Query)
		if m == nil {
			t.Errorf("%s variable %s: query %q is not label_values(...)", file, v.Name, q.Query)
			continue
		}
		out = append(out, dashboardQuery{fmt.Sprintf("%s variable %s", filepath.Base(file), v.Name), subst.Replace("group by (" + m[2] + ") (" + m[1] + ")")})
	}
	return out
}

type panel struct {
	Title   string `json:"title"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}
