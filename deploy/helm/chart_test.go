package helm_test

import (
	"bytes"
	"cmp"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	"helm.sh/helm/v3/pkg/releaseutil"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/modelwatch/modelwatch/deploy/internal/prometheustest"
	"github.com/modelwatch/modelwatch/internal/config"
	"github.com/modelwatch/modelwatch/internal/testenv"
)

const chartDir = "modelwatch"

// kubeVersion is the cluster the chart is rendered for: the oldest its
// Chart.yaml accepts.
const kubeVersion = "v1.30.0"

// release is a rendered chart, each object decoded strictly into its
// Kubernetes or Prometheus Operator type.
type release struct {
	name, namespace string
	manifest        string

	serviceAccounts []*corev1.ServiceAccount
	services        []*corev1.Service
	deployments     []*appsv1.Deployment
	pdbs            []*policyv1.PodDisruptionBudget
	hpas            []*autoscalingv2.HorizontalPodAutoscaler
	serviceMonitors []*monitoringv1.ServiceMonitor
	prometheusRules []*monitoringv1.PrometheusRule
	configMaps      []*corev1.ConfigMap
}

func (r *release) count() int {
	return len(r.serviceAccounts) + len(r.services) + len(r.deployments) + len(r.pdbs) + len(r.hpas) + len(r.serviceMonitors) + len(r.prometheusRules) + len(r.configMaps)
}

// codecs decode only the kinds the chart may render; strict decoding refuses
// unknown and duplicate fields.
var codecs = func() serializer.CodecFactory {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme, autoscalingv2.AddToScheme, monitoringv1.AddToScheme} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
	return serializer.NewCodecFactory(scheme, serializer.EnableStrict)
}()

// render renders the chart as `helm template` does, with the Prometheus
// Operator's API known to the cluster, and decodes every object.
func render(t *testing.T, name, namespace string, values map[string]any) (*release, error) {
	t.Helper()
	return renderFor(t, kubeVersion, name, namespace, values)
}

// renderFor renders the chart for a cluster of Kubernetes version kube.
func renderFor(t *testing.T, kube, name, namespace string, values map[string]any) (*release, error) {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := chartutil.ParseKubeVersion(kube)
	if err != nil {
		t.Fatal(err)
	}
	inst := action.NewInstall(&action.Configuration{Log: func(string, ...any) {}})
	inst.DryRun, inst.ClientOnly, inst.Replace = true, true, true
	inst.ReleaseName, inst.Namespace = name, namespace
	inst.KubeVersion = kv
	inst.APIVersions = chartutil.VersionSet{"monitoring.coreos.com/v1", "monitoring.coreos.com/v1/ServiceMonitor", "monitoring.coreos.com/v1/PrometheusRule"}
	rel, err := inst.Run(ch, values)
	if err != nil {
		return nil, err
	}
	r := &release{name: name, namespace: namespace, manifest: rel.Manifest}
	docs := releaseutil.SplitManifests(rel.Manifest)
	keys := make([]string, 0, len(docs))
	for k := range docs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		obj, gvk, err := codecs.UniversalDeserializer().Decode([]byte(docs[k]), nil, nil)
		if err != nil {
			t.Fatalf("%s: strict decoding: %v\n%s", name, err, docs[k])
		}
		if m, ok := obj.(metav1.Object); ok {
			if m.GetNamespace() != namespace {
				t.Errorf("%s %s: namespace %q, want the release's %q", gvk.Kind, m.GetName(), m.GetNamespace(), namespace)
			}
			checkMeta(t, gvk.Kind, m)
		}
		switch o := obj.(type) {
		case *corev1.ServiceAccount:
			r.serviceAccounts = append(r.serviceAccounts, o)
		case *corev1.Service:
			r.services = append(r.services, o)
		case *appsv1.Deployment:
			r.deployments = append(r.deployments, o)
		case *policyv1.PodDisruptionBudget:
			r.pdbs = append(r.pdbs, o)
		case *autoscalingv2.HorizontalPodAutoscaler:
			r.hpas = append(r.hpas, o)
		case *monitoringv1.ServiceMonitor:
			r.serviceMonitors = append(r.serviceMonitors, o)
		case *monitoringv1.PrometheusRule:
			r.prometheusRules = append(r.prometheusRules, o)
		case *corev1.ConfigMap:
			r.configMaps = append(r.configMaps, o)
		default:
			t.Fatalf("%s: unexpected kind %s", name, gvk)
		}
	}
	return r, nil
}

// checkMeta applies the API server's rules for names, labels and annotations.
func checkMeta(t *testing.T, kind string, m metav1.Object) {
	t.Helper()
	nameErrs := validation.IsDNS1123Subdomain(m.GetName())
	if kind == "Service" {
		nameErrs = validation.IsDNS1035Label(m.GetName())
	}
	for _, e := range nameErrs {
		t.Errorf("%s name %q: %s", kind, m.GetName(), e)
	}
	for k, v := range m.GetLabels() {
		for _, e := range append(validation.IsQualifiedName(k), validation.IsValidLabelValue(v)...) {
			t.Errorf("%s %s label %s=%q: %s", kind, m.GetName(), k, v, e)
		}
	}
	for k := range m.GetAnnotations() {
		for _, e := range validation.IsQualifiedName(strings.ToLower(k)) {
			t.Errorf("%s %s annotation %s: %s", kind, m.GetName(), k, e)
		}
	}
	if d, ok := m.(*appsv1.Deployment); ok {
		tm := d.Spec.Template.ObjectMeta
		tm.Name = d.Name
		checkMeta(t, "pod template of "+kind, &tm)
	}
}

func mustRender(t *testing.T, name, namespace string, values map[string]any) *release {
	t.Helper()
	r, err := render(t, name, namespace, values)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return r
}

// values parses a YAML snippet of chart values.
func values(t *testing.T, y string) map[string]any {
	t.Helper()
	v := map[string]any{}
	if err := yaml.Unmarshal([]byte(y), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestLint(t *testing.T) {
	kv, _ := chartutil.ParseKubeVersion(kubeVersion)
	for name, v := range map[string]map[string]any{
		"default": nil,
		"full":    values(t, fullValues),
	} {
		l := lint.AllWithKubeVersion(chartDir, v, "ml", kv)
		for _, m := range l.Messages {
			if m.Severity > support.InfoSev {
				t.Errorf("%s: helm lint: %s", name, m)
			}
		}
	}
}

// fullValues turns everything on, as a Prometheus Operator user with a model
// repository on a volume would.
const fullValues = `
image: {tag: "1.2.3"}
modelRepository:
  volume:
    persistentVolumeClaim: {claimName: models}
  pollInterval: 10s
embeddedModel: false
extraArgs: [--max-in-flight=256]
serviceMonitor:
  enabled: true
  labels: {release: kube-prometheus-stack}
prometheusRule:
  enabled: true
  labels: {release: kube-prometheus-stack}
autoscaling:
  enabled: true
  minReplicas: 3
  maxReplicas: 12
grafanaDashboards:
  enabled: true
  annotations: {grafana_folder: modelwatch}
`

func TestDefaultValues(t *testing.T) {
	r := mustRender(t, "modelwatch", "default", nil)
	if len(r.deployments) != 1 || len(r.services) != 1 || len(r.serviceAccounts) != 1 || len(r.pdbs) != 1 || r.count() != 4 {
		t.Fatalf("default values render %d objects, want a ServiceAccount, Service, Deployment and PodDisruptionBudget:\n%s", r.count(), r.manifest)
	}
	checkRelease(t, r)
	d := r.deployments[0]
	if d.Name != "modelwatch" || *d.Spec.Replicas != 2 {
		t.Errorf("Deployment %s with %d replicas, want modelwatch with 2", d.Name, *d.Spec.Replicas)
	}
	c := d.Spec.Template.Spec.Containers[0]
	if c.Image != "ghcr.io/modelwatch/modelwatch:0.1.0" {
		t.Errorf("image %s, want the appVersion's tag", c.Image)
	}
	cfg := serveConfig(t, c.Args)
	if cfg.ModelRepository != "" || !cfg.EmbeddedModel || cfg.ListenAddress != ":8000" {
		t.Errorf("default args %q: repository %q, embedded %v, listen %q; want the embedded model only on :8000", c.Args, cfg.ModelRepository, cfg.EmbeddedModel, cfg.ListenAddress)
	}
	if env := c.Env; len(env) != 1 || env[0].Name != "GOMEMLIMIT" || env[0].Value != "2611MiB" {
		t.Errorf("env %+v, want GOMEMLIMIT at 85%% of the 3Gi limit, 2611MiB", env)
	}
	if len(c.VolumeMounts) != 2 || c.VolumeMounts[0].MountPath != "/tmp" || c.VolumeMounts[1].MountPath != "/var/lib/modelwatch" {
		t.Errorf("default mounts %+v, want /tmp and the data directory", c.VolumeMounts)
	}
	wantArgs := []string{"serve", "--listen-address=:8000", "--log-format=json", "--shutdown-timeout=20s", "--embedded-model=true", "--gpu-metrics=auto",
		"--max-connections=4096", "--admin-listen-address=127.0.0.1:9001", "--grpc-listen-address=:8001", "--data-dir=/var/lib/modelwatch", "--prediction-log=embedded",
		"--prediction-log-sample=1", "--prediction-log-retention=720h"}
	if !slices.Equal(c.Args, wantArgs) {
		t.Errorf("default args\n%q, want\n%q", c.Args, wantArgs)
	}
	if cfg.AdminListenAddress != "127.0.0.1:9001" || cfg.MaxConnections != 4096 || cfg.TokenFile != "" || cfg.InferenceAuth || cfg.TLSCertFile != "" || cfg.TLSKeyFile != "" {
		t.Errorf("default config: admin %q, max connections %d, token file %q, inference auth %v, TLS %q %q", cfg.AdminListenAddress, cfg.MaxConnections, cfg.TokenFile, cfg.InferenceAuth, cfg.TLSCertFile, cfg.TLSKeyFile)
	}
	if v := d.Spec.Template.Spec.Volumes; len(v) != 2 || v[0].Name != "tmp" || v[1].Name != "data" || v[1].EmptyDir == nil || v[1].EmptyDir.SizeLimit.String() != "8Gi" {
		t.Errorf("default volumes %+v, want tmp and an 8Gi emptyDir for data", v)
	}
	if cfg.DataDir != "/var/lib/modelwatch" || cfg.PredictionLog != "embedded" || cfg.PredictionLogSample != 1 || cfg.PredictionLogRetention != 720*time.Hour {
		t.Errorf("default prediction log: data dir %q, store %q, sample %v, retention %v", cfg.DataDir, cfg.PredictionLog, cfg.PredictionLogSample, cfg.PredictionLogRetention)
	}
}

func TestFullValues(t *testing.T) {
	r := mustRender(t, "fraud", "ml", values(t, fullValues))
	if len(r.deployments) != 1 || len(r.hpas) != 1 || len(r.serviceMonitors) != 1 || len(r.prometheusRules) != 1 || len(r.pdbs) != 1 || len(r.configMaps) != 1 || r.count() != 8 {
		t.Fatalf("full values render %d objects, want a ServiceAccount, Service, Deployment, PodDisruptionBudget, HorizontalPodAutoscaler, ServiceMonitor, PrometheusRule and dashboards ConfigMap:\n%s", r.count(), r.manifest)
	}
	checkRelease(t, r)
	d := r.deployments[0]
	if d.Name != "fraud-modelwatch" || d.Spec.Replicas != nil {
		t.Errorf("Deployment %s with replicas %v, want fraud-modelwatch with none (the autoscaler sets them)", d.Name, d.Spec.Replicas)
	}
	c := d.Spec.Template.Spec.Containers[0]
	if c.Image != "ghcr.io/modelwatch/modelwatch:1.2.3" {
		t.Errorf("image %s", c.Image)
	}
	cfg := serveConfig(t, c.Args)
	if cfg.ModelRepository != "/models" || cfg.EmbeddedModel || cfg.PollInterval.String() != "10s" || cfg.MaxInFlight != 256 {
		t.Errorf("args %q: repository %q, embedded %v, poll %s, max in flight %d", c.Args, cfg.ModelRepository, cfg.EmbeddedModel, cfg.PollInterval, cfg.MaxInFlight)
	}
	var models *corev1.Volume
	for i, v := range d.Spec.Template.Spec.Volumes {
		if v.Name == "models" {
			models = &d.Spec.Template.Spec.Volumes[i]
		}
	}
	if models == nil || models.PersistentVolumeClaim == nil || models.PersistentVolumeClaim.ClaimName != "models" {
		t.Fatalf("no models volume from the claim: %+v", d.Spec.Template.Spec.Volumes)
	}
	mounted := false
	for _, m := range c.VolumeMounts {
		if m.Name == "models" {
			mounted = m.MountPath == cfg.ModelRepository && m.ReadOnly
		}
	}
	if !mounted {
		t.Errorf("the models volume is not mounted read-only where --model-repository points: %+v", c.VolumeMounts)
	}

	h := r.hpas[0]
	if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas != 3 || h.Spec.MaxReplicas != 12 || len(h.Spec.Metrics) != 1 {
		t.Fatalf("HPA %+v", h.Spec)
	}
	m := h.Spec.Metrics[0]
	if m.Type != autoscalingv2.PodsMetricSourceType || m.Pods.Metric.Name != "modelwatch_active_requests" || m.Pods.Target.AverageValue.String() != "16" {
		t.Errorf("HPA metric %+v, want pods modelwatch_active_requests averaging 16", m)
	}
	if r.pdbs[0].Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("PDB maxUnavailable %v", r.pdbs[0].Spec.MaxUnavailable)
	}
	for _, o := range []metav1.Object{r.serviceMonitors[0], r.prometheusRules[0]} {
		if o.GetLabels()["release"] != "kube-prometheus-stack" {
			t.Errorf("%s lacks the label its Prometheus selects: %v", o.GetName(), o.GetLabels())
		}
	}
	checkRules(t, r.prometheusRules[0], nil)
	checkDashboards(t, r.configMaps[0])
}

// checkDashboards checks that the ConfigMap holds the repository's
// dashboards, each unchanged, labelled for Grafana's sidecar.
func checkDashboards(t *testing.T, cm *corev1.ConfigMap) {
	t.Helper()
	if cm.Labels["grafana_dashboard"] != "1" || cm.Annotations["grafana_folder"] != "modelwatch" {
		t.Errorf("dashboards ConfigMap labels %v, annotations %v", cm.Labels, cm.Annotations)
	}
	files, _ := filepath.Glob("../grafana/dashboards/*.json")
	if len(files) == 0 || len(cm.Data) != len(files) {
		t.Fatalf("ConfigMap holds %d dashboards, the repository %d", len(cm.Data), len(files))
	}
	size := 0
	for _, f := range files {
		want, _ := os.ReadFile(f)
		got, ok := cm.Data[filepath.Base(f)]
		// YAML's block scalar drops the file's final newline; nothing else may differ.
		if same := strings.TrimSuffix(got, "\n") == strings.TrimSuffix(string(want), "\n"); !ok || !same {
			t.Errorf("dashboard %s: in the ConfigMap %v, equal to %s %v", filepath.Base(f), ok, f, same)
		}
		size += len(got)
	}
	// The API server refuses ConfigMaps over 1 MiB.
	if size > 1<<20 {
		t.Errorf("dashboards are %d bytes, over a ConfigMap's 1 MiB", size)
	}
}

// TestVariants renders other choices a user makes.
func TestVariants(t *testing.T) {
	t.Run("single replica has no disruption budget", func(t *testing.T) {
		r := mustRender(t, "modelwatch", "ml", values(t, "replicaCount: 1"))
		checkRelease(t, r)
		if len(r.pdbs) != 0 {
			t.Errorf("a PodDisruptionBudget for one replica blocks every node drain:\n%s", r.manifest)
		}
	})
	t.Run("queue metric, CPU and no GPU rules", func(t *testing.T) {
		r := mustRender(t, "churn", "ml", values(t, `
autoscaling: {enabled: true, metric: modelwatch_queue_size, targetAverageValue: "4", targetCPUUtilizationPercentage: 150}
prometheusRule: {enabled: true, disabledGroups: [modelwatch-gpu-recording, modelwatch-gpu-alerts]}
prometheusScrapeAnnotations: false
spreadAcrossNodes: false
serviceAccount: {create: false}
env: [{name: MODELWATCH_LOG_LEVEL, value: debug}]
`))
		checkRelease(t, r)
		if len(r.hpas) != 1 || len(r.hpas[0].Spec.Metrics) != 2 {
			t.Fatalf("HPA: %s", r.manifest)
		}
		pods, cpu := r.hpas[0].Spec.Metrics[0], r.hpas[0].Spec.Metrics[1]
		if pods.Pods.Metric.Name != "modelwatch_queue_size" || pods.Pods.Target.AverageValue.String() != "4" ||
			cpu.Resource.Name != corev1.ResourceCPU || *cpu.Resource.Target.AverageUtilization != 150 {
			t.Errorf("HPA metrics %+v %+v", pods, cpu)
		}
		if len(r.serviceAccounts) != 0 || r.deployments[0].Spec.Template.Spec.ServiceAccountName != "default" {
			t.Errorf("serviceAccount.create=false still makes one")
		}
		if env := r.deployments[0].Spec.Template.Spec.Containers[0].Env; len(env) != 2 || env[1].Name != "MODELWATCH_LOG_LEVEL" || env[1].Value != "debug" {
			t.Errorf("env %+v, want GOMEMLIMIT then the user's MODELWATCH_LOG_LEVEL", env)
		}
		if a := r.deployments[0].Spec.Template.Annotations; len(a) != 0 {
			t.Errorf("scrape annotations turned off, pod has %v", a)
		}
		checkRules(t, r.prometheusRules[0], []string{"modelwatch-gpu-recording", "modelwatch-gpu-alerts"})
	})
	t.Run("longest release name", func(t *testing.T) {
		// Helm allows 53 characters; names stay valid at 63.
		name := strings.Repeat("fraud-", 8) + "prod1"
		r := mustRender(t, name, "ml", values(t, "serviceMonitor: {enabled: true}"))
		checkRelease(t, r)
		if n := r.deployments[0].Name; len(n) != 63 || !strings.HasPrefix(n, name) {
			t.Errorf("name %q (%d characters)", n, len(n))
		}
	})
	t.Run("GOMEMLIMIT", func(t *testing.T) {
		for _, c := range []struct{ values, want string }{
			{"resources: {limits: {memory: 1536Mi}}", "1305MiB"},
			{"goMemLimit: 2500MiB", "2500MiB"},
			{"goMemLimit: 'off'", ""},
			{"resources: {limits: {memory: 3G}}\ngoMemLimit: 2GiB", "2GiB"},
		} {
			r := mustRender(t, "modelwatch", "ml", values(t, c.values))
			got := ""
			for _, e := range r.deployments[0].Spec.Template.Spec.Containers[0].Env {
				if e.Name == "GOMEMLIMIT" {
					got = e.Value
				}
			}
			if got != c.want {
				t.Errorf("%s: GOMEMLIMIT %q, want %q", c.values, got, c.want)
			}
		}
		if _, err := render(t, "modelwatch", "ml", values(t, "resources: {limits: {memory: 3G}}")); err == nil || !strings.Contains(err.Error(), "goMemLimit: auto needs") {
			t.Errorf("auto with a limit in G rendered (err %v)", err)
		}
	})
	t.Run("as a subchart", func(t *testing.T) {
		// Helm hands every subchart the parent's global values.
		checkRelease(t, mustRender(t, "modelwatch", "ml", values(t, "global: {imageRegistry: registry.example.com}")))
	})
	t.Run("unknown rule group is refused", func(t *testing.T) {
		_, err := render(t, "modelwatch", "ml", values(t, "prometheusRule: {enabled: true, disabledGroups: [modelwatch-gpu]}"))
		if err == nil || !strings.Contains(err.Error(), `no rule group "modelwatch-gpu"`) {
			t.Errorf("a misspelt group to disable rendered (err %v)", err)
		}
	})
	t.Run("older Kubernetes is refused", func(t *testing.T) {
		// The preStop sleep action needs 1.30.
		if _, err := renderFor(t, "v1.29.9", "modelwatch", "ml", nil); err == nil || !strings.Contains(err.Error(), "kubeVersion") {
			t.Errorf("rendered for Kubernetes 1.29 (err %v)", err)
		}
	})
	t.Run("bad values are refused", func(t *testing.T) {
		for _, bad := range []string{
			"gpuMetrics: maybe",
			"autoscaling: {metric: active_requests}",
			"replicaCount: two",
			"extraArgs: [max-in-flight=3]",
			"modelRepository: {pollInterval: often}",
			"servicemonitor: {enabled: true}",
			"probes: {type: exec}",
			"grpc: {port: 0}",
		} {
			if _, err := render(t, "modelwatch", "ml", values(t, bad)); err == nil || !strings.Contains(err.Error(), "schema") {
				t.Errorf("%s: rendered (err %v), want a schema error", bad, err)
			}
		}
	})
}

// TestSecurity renders the control plane's and the credentials' values: the
// token and TLS Secrets are mounted as directories and their flags set
// exactly when they are given, and nothing else changes.
func TestSecurity(t *testing.T) {
	// secrets returns the container's flags that name a credential, the
	// pod's Secret volumes and the container's mounts of them.
	secrets := func(t *testing.T, r *release) (flags []string, volumes, mounts map[string]string) {
		t.Helper()
		pod := r.deployments[0].Spec.Template.Spec
		for _, a := range pod.Containers[0].Args {
			for _, f := range []string{"--token-file", "--inference-auth", "--tls-cert-file", "--tls-key-file"} {
				if a == f || strings.HasPrefix(a, f+"=") {
					flags = append(flags, a)
				}
			}
		}
		volumes, mounts = map[string]string{}, map[string]string{}
		for _, v := range pod.Volumes {
			if v.Secret != nil {
				if len(v.Secret.Items) != 0 {
					t.Errorf("volume %s picks items of its Secret", v.Name)
				}
				volumes[v.Name] = v.Secret.SecretName
			}
		}
		for _, m := range pod.Containers[0].VolumeMounts {
			if _, ok := volumes[m.Name]; ok {
				if !m.ReadOnly {
					t.Errorf("Secret volume %s is mounted writable", m.Name)
				}
				mounts[m.Name] = m.MountPath
			}
		}
		return flags, volumes, mounts
	}
	for _, c := range []struct {
		name, values    string
		flags           []string
		volumes, mounts map[string]string
	}{
		{"none", "", nil, map[string]string{}, map[string]string{}},
		{"tokens", "auth: {existingSecret: modelwatch-tokens}",
			[]string{"--token-file=/etc/modelwatch/auth/tokens"},
			map[string]string{"auth": "modelwatch-tokens"}, map[string]string{"auth": "/etc/modelwatch/auth"}},
		{"tokens for inference", "auth: {existingSecret: modelwatch-tokens, secretKey: tokens.txt, inference: true}",
			[]string{"--token-file=/etc/modelwatch/auth/tokens.txt", "--inference-auth"},
			map[string]string{"auth": "modelwatch-tokens"}, map[string]string{"auth": "/etc/modelwatch/auth"}},
		{"TLS", "tls: {existingSecret: modelwatch-tls}",
			[]string{"--tls-cert-file=/etc/modelwatch/tls/tls.crt", "--tls-key-file=/etc/modelwatch/tls/tls.key"},
			map[string]string{"tls": "modelwatch-tls"}, map[string]string{"tls": "/etc/modelwatch/tls"}},
		{"both", "auth: {existingSecret: tokens, inference: true}\ntls: {existingSecret: certs}",
			[]string{"--token-file=/etc/modelwatch/auth/tokens", "--inference-auth", "--tls-cert-file=/etc/modelwatch/tls/tls.crt", "--tls-key-file=/etc/modelwatch/tls/tls.key"},
			map[string]string{"auth": "tokens", "tls": "certs"}, map[string]string{"auth": "/etc/modelwatch/auth", "tls": "/etc/modelwatch/tls"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := mustRender(t, "modelwatch", "ml", values(t, c.values))
			checkRelease(t, r)
			flags, volumes, mounts := secrets(t, r)
			if !slices.Equal(flags, c.flags) || !reflect.DeepEqual(volumes, c.volumes) || !reflect.DeepEqual(mounts, c.mounts) {
				t.Errorf("flags %q, Secret volumes %v, mounts %v; want %q, %v, %v", flags, volumes, mounts, c.flags, c.volumes, c.mounts)
			}
			cont := r.deployments[0].Spec.Template.Spec.Containers[0]
			cfg := serveConfig(t, cont.Args)
			if cfg.AdminListenAddress != "127.0.0.1:9001" {
				t.Errorf("--admin-listen-address %q, want 127.0.0.1:9001", cfg.AdminListenAddress)
			}
			// Every file a flag names lies in a mounted Secret.
			for _, f := range []string{cfg.TokenFile, cfg.TLSCertFile, cfg.TLSKeyFile} {
				if f != "" && !slices.Contains(slices.Collect(maps.Values(mounts)), filepath.Dir(f)) {
					t.Errorf("%s is not in a mounted Secret %v", f, mounts)
				}
			}
			https := r.deployments[0].Spec.Template.Annotations["prometheus.io/scheme"] == "https"
			if https != (cfg.TLSCertFile != "") {
				t.Errorf("prometheus.io/scheme annotation %q with TLS %v", r.deployments[0].Spec.Template.Annotations["prometheus.io/scheme"], cfg.TLSCertFile != "")
			}
		})
	}
	t.Run("ServiceMonitor over TLS", func(t *testing.T) {
		for _, c := range []struct {
			values   string
			ca       string
			server   string
			insecure bool
		}{
			{"tls: {existingSecret: certs, insecureSkipVerify: true}", "", "", true},
			{"tls: {existingSecret: certs, ca: {secret: {name: modelwatch-ca, key: ca.crt}}, serverName: modelwatch.ml.svc}", "modelwatch-ca/ca.crt", "modelwatch.ml.svc", false},
		} {
			r := mustRender(t, "modelwatch", "ml", values(t, "serviceMonitor: {enabled: true}\n"+c.values))
			checkRelease(t, r)
			ep := r.serviceMonitors[0].Spec.Endpoints[0]
			if ep.Scheme.String() != "https" || ep.TLSConfig == nil {
				t.Fatalf("%s: scheme %q, tlsConfig %+v; want https with a tlsConfig", c.values, ep.Scheme.String(), ep.TLSConfig)
			}
			tc := ep.TLSConfig.SafeTLSConfig
			ca := ""
			if tc.CA.Secret != nil {
				ca = tc.CA.Secret.Name + "/" + tc.CA.Secret.Key
			}
			if ca != c.ca || ptrString(tc.ServerName) != c.server || tc.InsecureSkipVerify == nil || *tc.InsecureSkipVerify != c.insecure {
				t.Errorf("%s: tlsConfig CA %q, server name %q, insecureSkipVerify %v; want %q, %q, %v", c.values, ca, ptrString(tc.ServerName), tc.InsecureSkipVerify, c.ca, c.server, c.insecure)
			}
		}
		r := mustRender(t, "modelwatch", "ml", values(t, "serviceMonitor: {enabled: true}"))
		if ep := r.serviceMonitors[0].Spec.Endpoints[0]; ep.Scheme != nil || ep.TLSConfig != nil {
			t.Errorf("without TLS, scheme %q and tlsConfig %+v", ep.Scheme.String(), ep.TLSConfig)
		}
	})
	t.Run("other ports and connections", func(t *testing.T) {
		r := mustRender(t, "modelwatch", "ml", values(t, "admin: {port: 7000}\nmaxConnections: 20000\nservice: {port: 8080}"))
		checkRelease(t, r)
		cfg := serveConfig(t, r.deployments[0].Spec.Template.Spec.Containers[0].Args)
		if cfg.AdminListenAddress != "127.0.0.1:7000" || cfg.MaxConnections != 20000 || cfg.ListenAddress != ":8080" {
			t.Errorf("admin %q, max connections %d, listen %q; want 127.0.0.1:7000, 20000, :8080", cfg.AdminListenAddress, cfg.MaxConnections, cfg.ListenAddress)
		}
	})
	t.Run("prediction log on a shared PostgreSQL", func(t *testing.T) {
		r := mustRender(t, "modelwatch", "ml", values(t, "predictionLog: {store: postgres, postgres: {existingSecret: predlog-db}, sample: 0.25, retention: 2160h}\ndataVolume: {persistentVolumeClaim: {claimName: state}}"))
		checkRelease(t, r)
		c := r.deployments[0].Spec.Template.Spec.Containers[0]
		cfg := serveConfig(t, c.Args)
		// The URL comes from the Secret, so the flag keeps its default
		// here and the environment sets it in the pod.
		if slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--prediction-log=") }) || cfg.PredictionLogSample != 0.25 || cfg.PredictionLogRetention != 2160*time.Hour {
			t.Errorf("args %q: want no --prediction-log, sample 0.25, retention 2160h", c.Args)
		}
		i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "MODELWATCH_PREDICTION_LOG" })
		if i < 0 || c.Env[i].ValueFrom == nil || c.Env[i].ValueFrom.SecretKeyRef == nil || c.Env[i].ValueFrom.SecretKeyRef.Name != "predlog-db" || c.Env[i].ValueFrom.SecretKeyRef.Key != "url" {
			t.Errorf("env %+v: want MODELWATCH_PREDICTION_LOG from Secret predlog-db, key url", c.Env)
		}
		if v := r.deployments[0].Spec.Template.Spec.Volumes; len(v) != 2 || v[1].PersistentVolumeClaim == nil || v[1].PersistentVolumeClaim.ClaimName != "state" {
			t.Errorf("volumes %+v: want the data directory on claim state", v)
		}
		if _, err := render(t, "modelwatch", "ml", values(t, "predictionLog: {store: postgres}")); err == nil || !strings.Contains(err.Error(), "predictionLog.store postgres needs predictionLog.postgres.existingSecret") {
			t.Errorf("store postgres without a Secret rendered (err %v)", err)
		}
		for _, bad := range []string{"predictionLog: {store: sqlite}", "predictionLog: {sample: 2}", "predictionLog: {retention: 30d}"} {
			if _, err := render(t, "modelwatch", "ml", values(t, bad)); err == nil || !strings.Contains(err.Error(), "schema") {
				t.Errorf("%s rendered (err %v)", bad, err)
			}
		}
	})
	t.Run("inference auth without tokens is refused", func(t *testing.T) {
		_, err := render(t, "modelwatch", "ml", values(t, "auth: {inference: true}"))
		if err == nil || !strings.Contains(err.Error(), "auth.inference needs auth.existingSecret: a Secret holding the token file") {
			t.Errorf("auth.inference without a Secret rendered (err %v)", err)
		}
	})
	t.Run("admin port on the API's is refused", func(t *testing.T) {
		_, err := render(t, "modelwatch", "ml", values(t, "admin: {port: 8000}"))
		if err == nil || !strings.Contains(err.Error(), "admin.port 8000 is service.port's: the control plane needs a port of its own") {
			t.Errorf("admin.port 8000 rendered (err %v)", err)
		}
	})
	t.Run("bad values are refused", func(t *testing.T) {
		for _, bad := range []string{
			"maxConnections: 15",
			"admin: {port: 0}",
			"admin: {address: 0.0.0.0}",
			"auth: {existingSecret: Tokens_1}",
			"auth: {secretKey: ../tokens}",
			"auth: {inference: 'yes'}",
			"tls: {existingSecret: certs, insecureSkipVerify: 'true'}",
			"tls: {cert: tls.crt}",
		} {
			if _, err := render(t, "modelwatch", "ml", values(t, bad)); err == nil || !strings.Contains(err.Error(), "schema") {
				t.Errorf("%s: rendered (err %v), want a schema error", bad, err)
			}
		}
	})
}

func ptrString(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// serveConfig parses a container's args with modelwatch's own flags and
// validation, as the binary does at start.
func serveConfig(t *testing.T, args []string) config.Config {
	t.Helper()
	if len(args) == 0 || args[0] != "serve" {
		t.Fatalf("args %q do not start with serve", args)
	}
	cfg := config.Default()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	file := cfg.RegisterFlags(fs)
	if err := config.Load(fs, file, args[1:], func(string) string { return "" }); err != nil {
		t.Fatalf("modelwatch refuses the chart's args %q: %v", args, err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("modelwatch refuses the chart's args %q: %v", args, err)
	}
	return cfg
}

// goMemLimit returns the container's GOMEMLIMIT in bytes, 0 when unset,
// parsed as the Go runtime parses it.
func goMemLimit(t *testing.T, c corev1.Container) int64 {
	t.Helper()
	for _, e := range c.Env {
		if e.Name != "GOMEMLIMIT" {
			continue
		}
		units := map[string]int64{"TiB": 1 << 40, "GiB": 1 << 30, "MiB": 1 << 20, "KiB": 1 << 10, "B": 1}
		for _, u := range []string{"TiB", "GiB", "MiB", "KiB", "B"} {
			if n, ok := strings.CutSuffix(e.Value, u); ok {
				v, err := strconv.ParseInt(n, 10, 64)
				if err != nil {
					break
				}
				return v * units[u]
			}
		}
		t.Fatalf("GOMEMLIMIT %q is not a size the Go runtime reads", e.Value)
	}
	return 0
}

// checkRelease checks what every rendering must hold: the objects find each
// other, the pod is locked down and probed where modelwatch answers.
func checkRelease(t *testing.T, r *release) {
	t.Helper()
	if len(r.deployments) != 1 || len(r.services) != 1 {
		t.Fatalf("%s: %d Deployments and %d Services, want one each", r.name, len(r.deployments), len(r.services))
	}
	d, svc := r.deployments[0], r.services[0]
	pod := d.Spec.Template
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || !sel.Matches(labels.Set(pod.Labels)) {
		t.Errorf("Deployment selector %v does not select its pods %v", d.Spec.Selector, pod.Labels)
	}
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(pod.Labels)) {
		t.Errorf("Service selector %v does not select the pods %v", svc.Spec.Selector, pod.Labels)
	}
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	cfg := serveConfig(t, c.Args)
	wantPorts := 1
	if cfg.GRPCListenAddress != "" {
		// gRPC: a port of the pod and of the Service, named grpc.
		wantPorts = 2
		if len(c.Ports) != 2 || c.Ports[1].Name != "grpc" || fmt.Sprintf(":%d", c.Ports[1].ContainerPort) != cfg.GRPCListenAddress {
			t.Errorf("container ports %+v, want grpc on the --grpc-listen-address %s", c.Ports, cfg.GRPCListenAddress)
		}
		if len(svc.Spec.Ports) != 2 || svc.Spec.Ports[1].Name != "grpc" || svc.Spec.Ports[1].TargetPort.String() != "grpc" {
			t.Errorf("Service ports %+v, want grpc to the container's grpc", svc.Spec.Ports)
		}
	}
	if len(c.Ports) != wantPorts || c.Ports[0].Name != "http" || fmt.Sprintf(":%d", c.Ports[0].ContainerPort) != cfg.ListenAddress {
		t.Errorf("container ports %+v, want http on the --listen-address %s", c.Ports, cfg.ListenAddress)
	}
	if len(svc.Spec.Ports) != wantPorts || svc.Spec.Ports[0].Name != "http" || svc.Spec.Ports[0].TargetPort.String() != "http" {
		t.Errorf("Service ports %+v, want http to the container's http", svc.Spec.Ports)
	}
	// The control plane listens on the pod's loopback only, reached with
	// kubectl port-forward: never on the pod's IP, in the Service or as a
	// container port.
	adminHost, adminPort, err := net.SplitHostPort(cfg.AdminListenAddress)
	if err != nil || adminHost != "127.0.0.1" {
		t.Errorf("--admin-listen-address %q, want 127.0.0.1:PORT", cfg.AdminListenAddress)
	}
	if !slices.Contains(c.Args, "--admin-listen-address="+cfg.AdminListenAddress) {
		t.Errorf("args %q do not set --admin-listen-address", c.Args)
	}
	for _, p := range svc.Spec.Ports {
		if strconv.Itoa(int(p.Port)) == adminPort || p.TargetPort.String() == adminPort {
			t.Errorf("Service port %+v reaches the admin listener's port %s", p, adminPort)
		}
	}
	for _, p := range c.Ports {
		if strconv.Itoa(int(p.ContainerPort)) == adminPort {
			t.Errorf("container port %+v names the admin listener's port %s", p, adminPort)
		}
	}
	// Secrets are mounted as directories: a subPath mount never sees a
	// rotated Secret.
	for _, m := range c.VolumeMounts {
		if m.SubPath != "" || m.SubPathExpr != "" {
			t.Errorf("mount %s uses a subPath, which a rotated Secret never reaches", m.Name)
		}
	}
	scheme := corev1.URISchemeHTTP
	if cfg.TLSCertFile != "" {
		scheme = corev1.URISchemeHTTPS
	}
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"startup", c.StartupProbe, "/health"}, {"liveness", c.LivenessProbe, "/health"}, {"readiness", c.ReadinessProbe, "/ready"}} {
		if p.probe != nil && p.probe.GRPC != nil {
			// Kubernetes' gRPC probe: grpc.health.v1 on the gRPC port,
			// service "liveness" or "" (readiness).
			service := "liveness"
			if p.name == "readiness" {
				service = ""
			}
			if fmt.Sprintf(":%d", p.probe.GRPC.Port) != cfg.GRPCListenAddress || p.probe.GRPC.Service == nil || *p.probe.GRPC.Service != service || cfg.TLSCertFile != "" {
				t.Errorf("%s probe %+v, want gRPC service %q on %s, without TLS", p.name, p.probe.GRPC, service, cfg.GRPCListenAddress)
			}
			continue
		}
		if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port.String() != "http" {
			t.Errorf("%s probe %+v, want GET %s on http", p.name, p.probe, p.path)
		} else if got := cmp.Or(p.probe.HTTPGet.Scheme, corev1.URISchemeHTTP); got != scheme {
			t.Errorf("%s probe scheme %s, want %s", p.name, got, scheme)
		}
	}
	if a := pod.Annotations; len(a) > 0 {
		if a["prometheus.io/scrape"] != "true" || a["prometheus.io/path"] != "/metrics" || ":"+a["prometheus.io/port"] != cfg.ListenAddress {
			t.Errorf("scrape annotations %v do not point at modelwatch's /metrics on %s", a, cfg.ListenAddress)
		}
	}

	psc, sc := pod.Spec.SecurityContext, c.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod security context %+v, want non-root with the runtime's seccomp profile", psc)
	}
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("container security context %+v, want a read-only root, no privilege escalation, no capabilities", sc)
	}
	if pod.Spec.AutomountServiceAccountToken == nil || *pod.Spec.AutomountServiceAccountToken {
		t.Errorf("the pod mounts a service account token it never uses")
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v, want CPU and memory requests and a memory limit", c.Resources)
	}
	if limit := goMemLimit(t, c); limit != 0 && (limit >= c.Resources.Limits.Memory().Value() || limit < c.Resources.Limits.Memory().Value()/2) {
		t.Errorf("GOMEMLIMIT %d bytes against a memory limit of %s", limit, c.Resources.Limits.Memory())
	}
	// Kubernetes stops the pod after the preStop pause and the drain; the
	// grace period must cover both or in-flight requests are cut.
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
		t.Fatalf("no preStop pause while endpoints drop the pod")
	}
	if grace := *pod.Spec.TerminationGracePeriodSeconds; grace <= c.Lifecycle.PreStop.Sleep.Seconds+int64(cfg.ShutdownTimeout.Seconds()) {
		t.Errorf("grace period %ds does not cover the preStop %ds and the drain %s", grace, c.Lifecycle.PreStop.Sleep.Seconds, cfg.ShutdownTimeout)
	}

	for _, pdb := range r.pdbs {
		s, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil || !s.Matches(labels.Set(pod.Labels)) {
			t.Errorf("PodDisruptionBudget selects %v, not the pods", pdb.Spec.Selector)
		}
	}
	for _, h := range r.hpas {
		if ref := h.Spec.ScaleTargetRef; ref.Kind != "Deployment" || ref.APIVersion != "apps/v1" || ref.Name != d.Name {
			t.Errorf("HPA scales %+v, not the Deployment %s", ref, d.Name)
		}
		for _, m := range h.Spec.Metrics {
			if m.Type == autoscalingv2.PodsMetricSourceType && !slices.Contains(adapterMetricNames(t), m.Pods.Metric.Name) {
				t.Errorf("HPA metric %s is not one prometheus-adapter serves (%v)", m.Pods.Metric.Name, adapterMetricNames(t))
			}
		}
	}
	for _, sm := range r.serviceMonitors {
		s, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
		if err != nil || !s.Matches(labels.Set(svc.Labels)) {
			t.Errorf("ServiceMonitor selects %v, not the Service's labels %v", sm.Spec.Selector, svc.Labels)
		}
		if !slices.Equal(sm.Spec.NamespaceSelector.MatchNames, []string{r.namespace}) {
			t.Errorf("ServiceMonitor looks in %v", sm.Spec.NamespaceSelector)
		}
		if len(sm.Spec.Endpoints) != 1 {
			t.Fatalf("ServiceMonitor endpoints %+v", sm.Spec.Endpoints)
		}
		ep := sm.Spec.Endpoints[0]
		if ep.Port != svc.Spec.Ports[0].Name || ep.Path != "/metrics" {
			t.Errorf("ServiceMonitor scrapes port %q path %q, want the Service's %q and /metrics", ep.Port, ep.Path, svc.Spec.Ports[0].Name)
		}
		if got, want := cmp.Or(ep.Scheme.String(), "http"), strings.ToLower(string(scheme)); got != want {
			t.Errorf("ServiceMonitor scheme %q, want %q", got, want)
		}
		if (ep.TLSConfig != nil) != (scheme == corev1.URISchemeHTTPS) {
			t.Errorf("ServiceMonitor tlsConfig %+v with the pods serving %s", ep.TLSConfig, scheme)
		}
		job := false
		for _, rc := range ep.RelabelConfigs {
			job = job || (rc.TargetLabel == "job" && rc.Replacement != nil && *rc.Replacement == "modelwatch")
		}
		if !job {
			t.Errorf("ServiceMonitor does not set job=\"modelwatch\", which the rules select: %+v", ep.RelabelConfigs)
		}
		last := ep.RelabelConfigs[len(ep.RelabelConfigs)-1]
		if last.Action != "labeldrop" || last.Regex != "endpoint" {
			t.Errorf("ServiceMonitor keeps the Operator's endpoint target label, which displaces modelwatch's endpoint label: %+v", ep.RelabelConfigs)
		}
	}
}

// sourceRuleGroups reads the rule groups of deploy/prometheus/rules, in file
// order, decoded into the Prometheus Operator's type.
func sourceRuleGroups(t *testing.T) []monitoringv1.RuleGroup {
	t.Helper()
	files, _ := filepath.Glob("../prometheus/rules/*.yml")
	if len(files) == 0 {
		t.Fatal("no rule files under deploy/prometheus/rules")
	}
	var groups []monitoringv1.RuleGroup
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var rf struct {
			Groups []monitoringv1.RuleGroup `json:"groups"`
		}
		if err := yaml.UnmarshalStrict(b, &rf); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		groups = append(groups, rf.Groups...)
	}
	return groups
}

// TestChartFileCopies checks that the chart's copies of the rule files and
// dashboards are the repository's, byte for byte.
func TestChartFileCopies(t *testing.T) {
	for _, c := range []struct{ src, dst string }{
		{"../prometheus/rules/*.yml", chartDir + "/files/rules/*.yml"},
		{"../grafana/dashboards/*.json", chartDir + "/files/dashboards/*.json"},
	} {
		src, _ := filepath.Glob(c.src)
		dst, _ := filepath.Glob(c.dst)
		names := func(paths []string) (n []string) {
			for _, p := range paths {
				n = append(n, filepath.Base(p))
			}
			return n
		}
		if len(src) == 0 || !slices.Equal(names(src), names(dst)) {
			t.Fatalf("chart files %v, repository's %v: run make chart-files", names(dst), names(src))
		}
		for i := range src {
			a, _ := os.ReadFile(src[i])
			b, _ := os.ReadFile(dst[i])
			if !bytes.Equal(a, b) {
				t.Errorf("%s differs from %s: run make chart-files", dst[i], src[i])
			}
		}
	}
}

// checkRules checks that the PrometheusRule holds exactly the repository's
// rule groups but those disabled, that promtool accepts them, and that they
// pass the repository's rule unit tests unchanged, on Prometheus 2 and 3.
func checkRules(t *testing.T, pr *monitoringv1.PrometheusRule, disabled []string) {
	t.Helper()
	var want []monitoringv1.RuleGroup
	for _, g := range sourceRuleGroups(t) {
		if !slices.Contains(disabled, g.Name) {
			want = append(want, g)
		}
	}
	got := pr.Spec.Groups
	if !reflect.DeepEqual(got, want) {
		gb, _ := yaml.Marshal(got)
		wb, _ := yaml.Marshal(want)
		t.Fatalf("PrometheusRule groups differ from deploy/prometheus/rules:\n--- rendered\n%s\n--- repository\n%s", gb, wb)
	}
	if disabled != nil {
		return
	}
	b, err := yaml.Marshal(map[string]any{"groups": got})
	if err != nil {
		t.Fatal(err)
	}
	// With each Prometheus version's promtool.
	prometheustest.Each(t, func(t *testing.T, v prometheustest.Version) {
		dir := t.TempDir()
		rendered := filepath.Join(dir, "rendered.yml")
		os.WriteFile(rendered, b, 0o644)
		testenv.Run(t, dir, v.Promtool, "check", "rules", rendered)
		// The repository's unit tests, pointed at the rendered rules.
		tests, _ := filepath.Glob("../prometheus/tests/*.test.yml")
		if len(tests) == 0 {
			t.Fatal("no rule unit tests under deploy/prometheus/tests")
		}
		for _, f := range tests {
			tb, _ := os.ReadFile(f)
			var doc map[string]any
			if err := yaml.Unmarshal(tb, &doc); err != nil {
				t.Fatal(err)
			}
			doc["rule_files"] = []string{rendered}
			out, _ := yaml.Marshal(doc)
			tf := filepath.Join(dir, filepath.Base(f))
			os.WriteFile(tf, out, 0o644)
			testenv.Run(t, dir, v.Promtool, "test", "rules", tf)
		}
	})
}

// TestValuesDocumented checks that the chart's README documents every value.
func TestValuesDocumented(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(chartDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	// Values handed to Kubernetes whole are documented as one.
	whole := []string{"grafanaDashboards.labels", "grafanaDashboards.annotations", "commonLabels", "modelRepository.volume", "podSecurityContext", "securityContext", "resources", "nodeSelector",
		"affinity", "podAnnotations", "podLabels", "service.annotations", "serviceAccount.annotations", "serviceMonitor.labels",
		"prometheusRule.labels", "autoscaling.behavior", "tls.ca"}
	var walk func(prefix string, m map[string]any)
	n := 0
	walk = func(prefix string, m map[string]any) {
		for k, val := range m {
			path := prefix + k
			n++
			if sub, ok := val.(map[string]any); ok && !slices.Contains(whole, path) {
				walk(path+".", sub)
				continue
			}
			if !bytes.Contains(readme, []byte("| `"+path+"` |")) {
				t.Errorf("value %s is not in the README's table", path)
			}
		}
	}
	walk("", v)
	if n < 40 {
		t.Fatalf("walked only %d values", n)
	}
}

// TestGRPCValues: the gRPC port in the pod and the Service, the kubelet's
// native gRPC probes with probes.type grpc, gRPC off, and the combinations
// the chart refuses.
func TestGRPCValues(t *testing.T) {
	r := mustRender(t, "modelwatch", "ml", values(t, "probes: {type: grpc}\ngrpc: {port: 9500}"))
	checkRelease(t, r)
	c := r.deployments[0].Spec.Template.Spec.Containers[0]
	if c.ReadinessProbe.GRPC == nil || c.ReadinessProbe.GRPC.Port != 9500 || c.ReadinessProbe.HTTPGet != nil {
		t.Errorf("readiness probe %+v, want gRPC on 9500", c.ReadinessProbe)
	}
	if svc := r.services[0]; len(svc.Spec.Ports) != 2 || svc.Spec.Ports[1].Port != 9500 || svc.Spec.Ports[1].AppProtocol == nil || *svc.Spec.Ports[1].AppProtocol != "grpc" {
		t.Errorf("Service ports %+v, want grpc on 9500 with appProtocol grpc", svc.Spec.Ports)
	}

	off := mustRender(t, "modelwatch", "ml", values(t, "grpc: {enabled: false}"))
	checkRelease(t, off)
	if cfg := serveConfig(t, off.deployments[0].Spec.Template.Spec.Containers[0].Args); cfg.GRPCListenAddress != "" {
		t.Errorf("grpc.enabled false: --grpc-listen-address %q, want off", cfg.GRPCListenAddress)
	}

	for _, bad := range []string{
		"probes: {type: grpc}\ngrpc: {enabled: false}",
		"probes: {type: grpc}\ntls: {existingSecret: modelwatch-tls}",
		"grpc: {port: 8000}",
		"grpc: {port: 9001}",
	} {
		if _, err := render(t, "modelwatch", "ml", values(t, bad)); err == nil {
			t.Errorf("%s: rendered, want a refusal", bad)
		}
	}
}
