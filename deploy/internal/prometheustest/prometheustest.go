// Package prometheustest runs the deploy tests against every Prometheus
// major version that deploy/ is proven on: Debian's 2.x (prometheus and
// promtool on PATH) and a 3.x built from the Go module proxy (make
// prometheus3), found through the directory named by MODELWATCH_TEST_PROMETHEUS3.
// It is for tests only.
package prometheustest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/modelwatch/modelwatch/internal/testenv"
)

// Env names the directory holding the Prometheus 3 prometheus and promtool
// binaries.
const Env = "MODELWATCH_TEST_PROMETHEUS3"

// Version is one Prometheus release: its server and promtool binaries.
type Version struct {
	// Major and Minor are the release's version numbers (2 and 42 for 2.42.0).
	Major, Minor int
	// Release is the version as the binary prints it, such as "3.16.0".
	Release string
	// Prometheus and Promtool are the paths of the binaries.
	Prometheus, Promtool string
}

// Majors lists the major versions Each runs a subtest for.
var Majors = []int{2, 3}

// Each runs f in a subtest per major version, named "prometheus2" and
// "prometheus3". A version whose binaries are missing skips its subtest,
// except under CI=true, where it fails: CI must prove both.
func Each(t *testing.T, f func(t *testing.T, v Version)) {
	t.Helper()
	for _, major := range Majors {
		t.Run(fmt.Sprintf("prometheus%d", major), func(t *testing.T) {
			f(t, Get(t, major))
		})
	}
}

// Get finds the binaries of the given major version: 2 is Debian's package
// on PATH, 3 is the directory named by MODELWATCH_TEST_PROMETHEUS3. A binary
// that is missing, or of another major version, fails t under CI=true and
// skips it otherwise.
func Get(t testing.TB, major int) Version {
	t.Helper()
	var v Version
	switch major {
	case 2:
		v.Prometheus = testenv.Tool(t, "prometheus", "prometheus")
		v.Promtool = testenv.Tool(t, "promtool", "prometheus")
	case 3:
		dir := os.Getenv(Env)
		missing := ""
		if dir == "" {
			missing = Env + " is not set"
		} else {
			v.Prometheus, v.Promtool = filepath.Join(dir, "prometheus"), filepath.Join(dir, "promtool")
			for _, b := range []string{v.Prometheus, v.Promtool} {
				if _, err := os.Stat(b); err != nil {
					missing = err.Error()
				}
			}
		}
		if missing != "" {
			if os.Getenv("CI") == "true" {
				t.Fatalf("Prometheus 3: %s (make prometheus3 builds it); CI must have it", missing)
			}
			t.Skipf("Prometheus 3: %s (make prometheus3 builds it and make test sets it)", missing)
		}
	default:
		t.Fatalf("no Prometheus %d", major)
	}
	for _, b := range []string{v.Prometheus, v.Promtool} {
		release, maj, minor, err := releaseOf(b)
		if err != nil {
			t.Fatal(err)
		}
		if maj != major {
			t.Fatalf("%s is Prometheus %s, want a %d.x", b, release, major)
		}
		v.Release, v.Major, v.Minor = release, maj, minor
	}
	return v
}

var (
	releases   sync.Map // binary path -> [3]any{release, major, minor}
	versionRE  = regexp.MustCompile(`(?m)^\S+, version (\d+)\.(\d+)\.\d+\S*`)
	moduleLine = regexp.MustCompile(`(?m)^\s+mod\s+github\.com/prometheus/prometheus\s+v0\.(\d)(\d\d)\.(\d+)`)
)

// releaseOf asks a Prometheus binary for its version. A build without the
// version stamped in (go install without -ldflags) answers through the Go
// module version it was built from: v0.316.0 is 3.16.0.
func releaseOf(bin string) (string, int, int, error) {
	if r, ok := releases.Load(bin); ok {
		a := r.([3]any)
		return a[0].(string), a[1].(int), a[2].(int), nil
	}
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		return "", 0, 0, fmt.Errorf("%s --version: %v\n%s", bin, err, out)
	}
	var release string
	var major, minor int
	if m := versionRE.FindSubmatch(out); m != nil {
		major, _ = strconv.Atoi(string(m[1]))
		minor, _ = strconv.Atoi(string(m[2]))
		release = strings.Fields(string(m[0]))[2]
	} else {
		mod, err := exec.Command("go", "version", "-m", bin).CombinedOutput()
		m := moduleLine.FindSubmatch(mod)
		if err != nil || m == nil {
			return "", 0, 0, fmt.Errorf("%s prints no version:\n%s", bin, out)
		}
		major, _ = strconv.Atoi(string(m[1]))
		minor, _ = strconv.Atoi(string(m[2]))
		release = fmt.Sprintf("%d.%d.%s", major, minor, m[3])
	}
	releases.Store(bin, [3]any{release, major, minor})
	return release, major, minor, nil
}

// BothHistograms reports whether one Prometheus of this version stores a
// histogram's native form and its classic buckets together: 3.x with
// always_scrape_classic_histograms, 2.x from 2.45 with
// scrape_classic_histograms. Before 2.45 the native-histograms feature
// stores only the native form of a histogram that has one.
func (v Version) BothHistograms() bool {
	return v.Major >= 3 || v.Minor >= 45
}

// Config turns a configuration written for Prometheus 3 into what this
// version runs, the way docs/DEPLOY.md tells a Prometheus 2 user to: 2.45
// and later drop scrape_native_histograms (the native-histograms feature
// flag does its work) and call always_scrape_classic_histograms
// scrape_classic_histograms; before 2.45 both go, and only classic buckets
// are stored. It returns the configuration and the --enable-feature values
// to add; a configuration that is not YAML is returned as it is, for
// Prometheus to refuse.
func (v Version) Config(cfg string) (string, []string) {
	if v.Major >= 3 {
		return cfg, nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(cfg), &doc); err != nil {
		return cfg, nil
	}
	native, changed := false, false
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.MappingNode {
			kept := n.Content[:0]
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, val := n.Content[i], n.Content[i+1]
				switch k.Value {
				case "scrape_native_histograms":
					native = native || val.Value == "true"
					changed = true
					continue
				case "always_scrape_classic_histograms":
					changed = true
					if !v.BothHistograms() {
						continue
					}
					k.Value = "scrape_classic_histograms"
				}
				kept = append(kept, k, val)
			}
			n.Content = kept
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(&doc)
	if !changed {
		return cfg, nil
	}
	var out strings.Builder
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return cfg, nil
	}
	if native && v.BothHistograms() {
		return out.String(), []string{"native-histograms"}
	}
	return out.String(), nil
}

// Start runs this Prometheus on addr with the configuration text cfg,
// written for Prometheus 3 (see Config), and the --enable-feature values
// features, and waits until it is ready. The configuration is first checked
// with this version's promtool.
func (v Version) Start(t testing.TB, addr, cfg string, features ...string) *testenv.Prometheus {
	t.Helper()
	cfg, extra := v.Config(cfg)
	features = append(features, extra...)
	dir := t.TempDir()
	file := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, dir, v.Promtool, "check", "config", file)
	args := []string{"--config.file=" + file, "--storage.tsdb.path=" + filepath.Join(dir, "data"),
		"--web.listen-address=" + addr, "--log.level=warn"}
	if len(features) > 0 {
		args = append(args, "--enable-feature="+strings.Join(features, ","))
	}
	p := &testenv.Prometheus{URL: "http://" + addr, Proc: testenv.Start(t, v.Prometheus, args...)}
	testenv.WaitHTTP(t, p.URL+"/-/ready", p.Proc)
	return p
}
