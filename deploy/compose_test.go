package deploy_test

import (
	"context"
	"encoding/json"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"

	"github.com/modelwatch/modelwatch/deploy/internal/prometheustest"
	"github.com/modelwatch/modelwatch/internal/testenv"
)

// TestCompose loads the Compose file as Docker Compose would, and checks it
// against the files it mounts: every bind-mounted file exists, every image is
// pinned, every data directory is a named volume, and every address that
// Prometheus, Grafana and Alertmanager use names a service and a port it
// listens on.
func TestCompose(t *testing.T) {
	opts, err := cli.NewProjectOptions([]string{"compose/docker-compose.yml"}, cli.WithWorkingDirectory("compose"), cli.WithName("modelwatch"))
	if err != nil {
		t.Fatal(err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	want := []string{"alertmanager", "grafana", "jaeger", "modelwatch", "node-exporter", "prometheus", "pushgateway", "webhook"}
	if got := project.ServiceNames(); !slices.Equal(sorted(got), want) {
		t.Fatalf("services %v, want %v", got, want)
	}

	pinned := regexp.MustCompile(`^[\w./-]+:v?\d+(\.\d+)*$`)
	ports := map[string][]uint32{} // service -> ports it listens on
	mounts := map[string]map[string]bool{}
	for name, svc := range project.Services {
		if svc.Build == nil && !pinned.MatchString(svc.Image) {
			t.Errorf("%s: image %q is not pinned to a version", name, svc.Image)
		}
		for _, p := range svc.Ports {
			ports[name] = append(ports[name], p.Target)
		}
		for _, e := range svc.Expose {
			n, _ := strconv.Atoi(e)
			ports[name] = append(ports[name], uint32(n))
		}
		mounts[name] = map[string]bool{}
		for _, v := range svc.Volumes {
			mounts[name][v.Target] = true
			switch v.Type {
			case types.VolumeTypeBind:
				if v.Source == "/" {
					continue // node-exporter reads the host's root
				}
				if _, err := os.Stat(v.Source); err != nil {
					t.Errorf("%s mounts %s, which does not exist: %v", name, v.Source, err)
				}
			case types.VolumeTypeVolume:
				if _, ok := project.Volumes[v.Source]; !ok {
					t.Errorf("%s uses volume %s, which is not declared", name, v.Source)
				}
			}
		}
	}
	for svc, dir := range map[string]string{"prometheus": "/prometheus", "grafana": "/var/lib/grafana", "alertmanager": "/alertmanager", "modelwatch": "/var/lib/modelwatch"} {
		if !mounts[svc][dir] || !isNamedVolume(project.Services[svc], dir) {
			t.Errorf("%s keeps its data in %s: it must be a named volume", svc, dir)
		}
	}

	// Where each service must listen, by what the configurations say.
	listens := func(where, hostport string) {
		t.Helper()
		host, port, err := net.SplitHostPort(hostport)
		if err != nil {
			t.Errorf("%s: %q: %v", where, hostport, err)
			return
		}
		if host == "localhost" {
			return // a service's own address
		}
		n, _ := strconv.Atoi(port)
		if !slices.Contains(ports[host], uint32(n)) {
			t.Errorf("%s: %s: service %q does not listen on %s (ports %v)", where, hostport, host, port, ports[host])
		}
	}
	var prom struct {
		RuleFiles []string `yaml:"rule_files"`
		Alerting  struct {
			Alertmanagers []struct {
				StaticConfigs []struct{ Targets []string } `yaml:"static_configs"`
			} `yaml:"alertmanagers"`
		} `yaml:"alerting"`
		ScrapeConfigs []struct {
			JobName       string                       `yaml:"job_name"`
			StaticConfigs []struct{ Targets []string } `yaml:"static_configs"`
			FileSDConfigs []struct{ Files []string }   `yaml:"file_sd_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, "prometheus/prometheus.yml", &prom)
	for _, sc := range prom.ScrapeConfigs {
		for _, s := range sc.StaticConfigs {
			for _, tg := range s.Targets {
				listens("prometheus.yml job "+sc.JobName, tg)
			}
		}
		for _, f := range sc.FileSDConfigs {
			for _, glob := range f.Files {
				if !mounts["prometheus"][filepath.Dir(glob)] {
					t.Errorf("file_sd %s is not mounted into prometheus", glob)
				}
			}
		}
	}
	for _, am := range prom.Alerting.Alertmanagers {
		for _, s := range am.StaticConfigs {
			for _, tg := range s.Targets {
				listens("prometheus.yml alerting", tg)
			}
		}
	}
	for _, rf := range prom.RuleFiles {
		if !mounts["prometheus"][filepath.Dir(rf)] {
			t.Errorf("rule_files %s is not mounted into prometheus", rf)
		}
	}

	var ds struct {
		Datasources []struct {
			Name, UID, Type, URL string
			JSONData             struct {
				ExemplarTraceIDDestinations []struct {
					Name          string `yaml:"name"`
					DatasourceUID string `yaml:"datasourceUid"`
				} `yaml:"exemplarTraceIdDestinations"`
			} `yaml:"jsonData"`
		} `yaml:"datasources"`
	}
	readYAML(t, "grafana/provisioning/datasources/prometheus.yml", &ds)
	types := map[string]string{} // uid -> type
	for _, d := range ds.Datasources {
		u, err := url.Parse(d.URL)
		if err != nil {
			t.Fatal(err)
		}
		listens("grafana datasource "+d.Name, u.Host)
		types[d.UID] = d.Type
	}
	// Exemplars' trace_id opens the trace in the Jaeger datasource.
	linked := false
	for _, d := range ds.Datasources {
		for _, dest := range d.JSONData.ExemplarTraceIDDestinations {
			if dest.DatasourceUID != "" && types[dest.DatasourceUID] == "" {
				t.Errorf("datasource %s: exemplar label %s links to datasource %q, which is not provisioned", d.Name, dest.Name, dest.DatasourceUID)
			}
			if d.Type == "prometheus" && dest.Name == "trace_id" && types[dest.DatasourceUID] == "jaeger" {
				linked = true
			}
		}
	}
	if !linked {
		t.Error("no Prometheus datasource links exemplars' trace_id to a Jaeger datasource")
	}
	// modelwatch sends its traces to a port Jaeger listens on.
	otlp := project.Services["modelwatch"].Environment["OTEL_EXPORTER_OTLP_ENDPOINT"]
	if otlp == nil {
		t.Error("modelwatch has no OTEL_EXPORTER_OTLP_ENDPOINT")
	} else if u, err := url.Parse(*otlp); err != nil || u.Host == "" {
		t.Errorf("OTEL_EXPORTER_OTLP_ENDPOINT %q is not a URL: %v", *otlp, err)
	} else {
		listens("modelwatch OTEL_EXPORTER_OTLP_ENDPOINT", u.Host)
	}
	var dp struct {
		Providers []struct {
			Options struct{ Path string } `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, "grafana/provisioning/dashboards/modelwatch.yml", &dp)
	for _, p := range dp.Providers {
		if !mounts["grafana"][p.Options.Path] {
			t.Errorf("dashboards path %s is not mounted into grafana", p.Options.Path)
		}
	}
	home := project.Services["grafana"].Environment["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
	if home == nil || !fileExists(filepath.Join("grafana/dashboards", filepath.Base(*home))) {
		t.Errorf("Grafana's home dashboard %v is not one of deploy/grafana/dashboards", home)
	}

	amText, err := os.ReadFile("alertmanager/alertmanager.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`url: "(http://[^"]+)"`).FindAllStringSubmatch(string(amText), -1) {
		u, _ := url.Parse(m[1])
		listens("alertmanager webhook", u.Host)
	}
	if !strings.Contains(string(amText), "webhook_configs") {
		t.Error("alertmanager.yml has no webhook receiver")
	}
}

// TestComposeAdminListener checks that modelwatch's control plane has a
// listener of its own, published on the host's loopback only, and that the
// API's port is not the admin listener's.
func TestComposeAdminListener(t *testing.T) {
	opts, err := cli.NewProjectOptions([]string{"compose/docker-compose.yml"}, cli.WithWorkingDirectory("compose"), cli.WithName("modelwatch"))
	if err != nil {
		t.Fatal(err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	svc := project.Services["modelwatch"]
	admin := svc.Environment["MODELWATCH_ADMIN_LISTEN_ADDRESS"]
	if admin == nil || *admin != ":9001" {
		t.Fatalf("MODELWATCH_ADMIN_LISTEN_ADDRESS %v, want \":9001\"", admin)
	}
	if _, ok := svc.Environment["MODELWATCH_TOKEN_FILE"]; ok {
		t.Errorf("MODELWATCH_TOKEN_FILE is set: the token file is wired only when ./tokens exists (commented out)")
	}
	var published []string
	for _, p := range svc.Ports {
		if p.Target != 9001 {
			continue
		}
		published = append(published, p.HostIP+":"+p.Published)
		if p.HostIP != "127.0.0.1" || p.Published != "9001" {
			t.Errorf("admin port published as %q:%q, want 127.0.0.1:9001 only (the control plane must not reach the network)", p.HostIP, p.Published)
		}
	}
	if !slices.Equal(published, []string{"127.0.0.1:9001"}) {
		t.Errorf("admin port published %v, want [127.0.0.1:9001]", published)
	}
	for _, other := range project.Services {
		for _, p := range other.Ports {
			if p.Published == "9001" && (other.Name != "modelwatch" || p.Target != 9001) {
				t.Errorf("%s publishes host port 9001 to %d", other.Name, p.Target)
			}
		}
	}
	for _, p := range svc.Ports {
		if p.Target == 8000 && p.Published != "8000" {
			t.Errorf("API port published as %q, want 8000", p.Published)
		}
	}

	raw, err := os.ReadFile("compose/docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"curl -XPOST localhost:9001/v2/repository/models/<m>/unload",
		"# MODELWATCH_TOKEN_FILE: /run/secrets/modelwatch_tokens",
		"#   modelwatch_tokens:\n#     file: ./tokens",
	} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("docker-compose.yml lacks %q", want)
		}
	}
}

func isNamedVolume(svc types.ServiceConfig, target string) bool {
	for _, v := range svc.Volumes {
		if v.Target == target {
			return v.Type == types.VolumeTypeVolume
		}
	}
	return false
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// TestFileSDExample checks the file_sd example is the format Prometheus reads.
func TestFileSDExample(t *testing.T) {
	var groups []struct {
		Targets []string          `yaml:"targets"`
		Labels  map[string]string `yaml:"labels"`
	}
	readYAML(t, "prometheus/targets/modelwatch-replicas.json.example", &groups)
	if len(groups) == 0 {
		t.Fatal("no target groups")
	}
	for _, g := range groups {
		if len(g.Targets) == 0 {
			t.Error("a group without targets")
		}
		for _, tg := range g.Targets {
			if _, _, err := net.SplitHostPort(tg); err != nil {
				t.Errorf("target %q: %v", tg, err)
			}
		}
	}
}

// TestDockerfile checks what the image promises without a Docker engine: a
// multi-stage build, a non-root user, a health check on /health, ONNX
// Runtime from its release archive in the version the tests use, and build
// inputs that exist.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	if n := len(regexp.MustCompile(`(?m)^FROM `).FindAllString(df, -1)); n < 2 {
		t.Errorf("%d stages, want a multi-stage build", n)
	}
	user := regexp.MustCompile(`(?m)^USER (\S+)$`).FindAllStringSubmatch(df, -1)
	if len(user) == 0 || user[len(user)-1][1] == "root" || user[len(user)-1][1] == "0" {
		t.Errorf("the runtime stage runs as %v; want a non-root user", user)
	}
	if !regexp.MustCompile(`(?m)^HEALTHCHECK .*http://127\.0\.0\.1:8000/health`).MatchString(df) {
		t.Error("no HEALTHCHECK on /health")
	}
	script, err := os.ReadFile("../scripts/fetch-onnxruntime.sh")
	if err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(`ONNXRUNTIME_VERSION:-([\d.]+)`).FindStringSubmatch(string(script))
	got := regexp.MustCompile(`ARG ONNXRUNTIME_VERSION=([\d.]+)`).FindStringSubmatch(df)
	if want == nil || got == nil || want[1] != got[1] {
		t.Errorf("ONNX Runtime %v in the Dockerfile, %v in the tests", got, want)
	}
	if !strings.Contains(df, "github.com/microsoft/onnxruntime/releases/download/v${ONNXRUNTIME_VERSION}/onnxruntime-linux-x64-${ONNXRUNTIME_VERSION}.tgz") {
		t.Error("ONNX Runtime does not come from its release archive")
	}
	for _, p := range []string{"../go.mod", "../go.sum", "../cmd/modelwatch/main.go"} {
		if !fileExists(p) {
			t.Errorf("build input %s is missing", p)
		}
	}
	if env := regexp.MustCompile(`MODELWATCH_ONNXRUNTIME_LIBRARY=(\S+)`).FindStringSubmatch(df); env == nil || !strings.HasPrefix(env[1], "/opt/onnxruntime/lib/") {
		t.Errorf("the image does not point modelwatch at its ONNX Runtime: %v", env)
	}
	// The data directory is the image's volume, owned by the user it runs as.
	if !strings.Contains(df, "MODELWATCH_DATA_DIR=/var/lib/modelwatch") || !strings.Contains(df, "VOLUME /var/lib/modelwatch") ||
		!regexp.MustCompile(`chown modelwatch [^\n]*/var/lib/modelwatch`).MatchString(df) {
		t.Error("the image does not keep --data-dir in a volume at /var/lib/modelwatch owned by its user")
	}
}

// TestComposePrometheus starts the Compose file's Prometheus service as
// Compose would, with its command's flags and its mounted files, on the
// Prometheus 3 release its image names (the one the other tests run): only
// the container paths are rewritten to the files they mount, the data
// directory to a temporary one, and a loopback listen address added.
func TestComposePrometheus(t *testing.T) {
	opts, err := cli.NewProjectOptions([]string{"compose/docker-compose.yml"}, cli.WithWorkingDirectory("compose"), cli.WithName("modelwatch"))
	if err != nil {
		t.Fatal(err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	svc := project.Services["prometheus"]
	v := prometheustest.Get(t, 3)
	if tag := strings.TrimPrefix(svc.Image[strings.LastIndex(svc.Image, ":")+1:], "v"); tag != v.Release {
		t.Fatalf("Compose runs Prometheus %s, the tests %s", tag, v.Release)
	}
	dir := t.TempDir()
	// Container paths to the files and directories they mount.
	var paths []string
	for _, vol := range svc.Volumes {
		switch vol.Type {
		case types.VolumeTypeBind:
			paths = append(paths, vol.Target, vol.Source)
		case types.VolumeTypeVolume:
			paths = append(paths, vol.Target, filepath.Join(dir, vol.Source))
		}
	}
	containerPaths := strings.NewReplacer(paths...)
	var args []string
	cfgFile := ""
	for _, a := range svc.Command {
		if f, ok := strings.CutPrefix(a, "--config.file="); ok {
			cfgFile = f
			continue
		}
		args = append(args, containerPaths.Replace(a))
	}
	if cfgFile == "" {
		t.Fatalf("the prometheus service's command names no --config.file: %q", svc.Command)
	}
	cfg, err := os.ReadFile(containerPaths.Replace(cfgFile))
	if err != nil {
		t.Fatal(err)
	}
	// The configuration's own paths (rules, file_sd) are container paths too.
	rewritten := filepath.Join(dir, "prometheus.yml")
	os.WriteFile(rewritten, []byte(containerPaths.Replace(string(cfg))), 0o644)
	addr := testenv.FreePort(t)
	p := testenv.Start(t, v.Prometheus, append(args, "--config.file="+rewritten, "--web.listen-address="+addr)...)
	testenv.WaitHTTP(t, "http://"+addr+"/-/ready", p)
	// It loaded the rules the Compose file mounts.
	var rules struct {
		Data struct {
			Groups []struct {
				File string `json:"file"`
			} `json:"groups"`
		} `json:"data"`
	}
	testenv.GetJSON(t, "http://"+addr+"/api/v1/rules", &rules)
	files, _ := filepath.Glob("prometheus/rules/*.yml")
	loaded := map[string]bool{}
	for _, g := range rules.Data.Groups {
		loaded[filepath.Base(g.File)] = true
	}
	if len(files) == 0 || len(loaded) != len(files) {
		t.Errorf("Prometheus loaded rules from %v, want the %d files of prometheus/rules", loaded, len(files))
	}
}

// TestComposeJaeger checks that the Compose file runs the Jaeger release
// the tracing tests run (make jaeger builds it, stamped with its release).
func TestComposeJaeger(t *testing.T) {
	opts, err := cli.NewProjectOptions([]string{"compose/docker-compose.yml"}, cli.WithWorkingDirectory("compose"), cli.WithName("modelwatch"))
	if err != nil {
		t.Fatal(err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	img := project.Services["jaeger"].Image
	if !strings.HasPrefix(img, "jaegertracing/jaeger:2.") {
		t.Fatalf("jaeger image %q, want Jaeger v2 (jaegertracing/jaeger:2.x)", img)
	}
	out := testenv.Run(t, "", testenv.JaegerBinary(t), "version")
	var v struct {
		GitVersion string `json:"gitVersion"`
	}
	if i := strings.LastIndex(out, "{"); i < 0 || json.Unmarshal([]byte(out[i:]), &v) != nil {
		t.Fatalf("jaeger version: %q", out)
	}
	if tag := img[strings.LastIndex(img, ":")+1:]; "v"+tag != v.GitVersion {
		t.Errorf("Compose runs Jaeger %s, the tests %s", tag, v.GitVersion)
	}
}
