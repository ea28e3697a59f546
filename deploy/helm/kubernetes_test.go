package helm_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"
	"helm.sh/helm/v3/pkg/releaseutil"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	sigsyaml "sigs.k8s.io/yaml"

	adapterclient "sigs.k8s.io/prometheus-adapter/pkg/client"
	adapterconfig "sigs.k8s.io/prometheus-adapter/pkg/config"
	"sigs.k8s.io/prometheus-adapter/pkg/naming"

	"github.com/modelwatch/modelwatch/deploy/internal/prometheustest"
	"github.com/modelwatch/modelwatch/internal/testenv"
)

// adapterValues is deploy/helm/prometheus-adapter-values.yaml, decoded
// strictly: a misspelt key fails.
type adapterValues struct {
	Prometheus struct {
		URL  string `json:"url"`
		Port int    `json:"port"`
	} `json:"prometheus"`
	Rules struct {
		Default bool                          `json:"default"`
		Custom  []adapterconfig.DiscoveryRule `json:"custom"`
	} `json:"rules"`
}

// adapterNamers compiles the shipped prometheus-adapter rules with the
// adapter's own code, for a cluster whose API knows pods and namespaces.
func adapterNamers(t *testing.T) []naming.MetricNamer {
	t.Helper()
	b, err := os.ReadFile("prometheus-adapter-values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var v adapterValues
	if err := sigsyaml.UnmarshalStrict(b, &v); err != nil {
		t.Fatalf("prometheus-adapter-values.yaml: %v", err)
	}
	if v.Rules.Default || len(v.Rules.Custom) == 0 {
		t.Fatalf("prometheus-adapter-values.yaml: want only custom rules, got default=%v and %d custom", v.Rules.Default, len(v.Rules.Custom))
	}
	// The adapter reads its rules from a file of this shape (the chart
	// writes rules.custom into it); read them the same way.
	cfgYAML, _ := sigsyaml.Marshal(map[string]any{"rules": v.Rules.Custom})
	cfg, err := adapterconfig.FromYAML(cfgYAML)
	if err != nil {
		t.Fatal(err)
	}
	mapper := apimeta.NewDefaultRESTMapper([]schema.GroupVersion{{Version: "v1"}})
	mapper.Add(schema.GroupVersionKind{Version: "v1", Kind: "Pod"}, apimeta.RESTScopeNamespace)
	mapper.Add(schema.GroupVersionKind{Version: "v1", Kind: "Namespace"}, apimeta.RESTScopeRoot)
	namers, err := naming.NamersFromConfig(cfg.Rules, mapper)
	if err != nil {
		t.Fatalf("prometheus-adapter refuses the rules: %v", err)
	}
	return namers
}

// adapterSeries are the modelwatch gauges the adapter rules turn into
// custom metrics.
var adapterSeries = []string{"active_requests", "model_queue_size"}

// adapterMetricNames lists the custom metric names the adapter serves.
func adapterMetricNames(t *testing.T) []string {
	t.Helper()
	var names []string
	for _, n := range adapterNamers(t) {
		for _, s := range adapterSeries {
			series := []adapterclient.Series{{Name: s}}
			if len(n.FilterSeries(series)) == 1 {
				name, err := n.MetricNameForSeries(series[0])
				if err != nil {
					t.Fatal(err)
				}
				names = append(names, name)
			}
		}
	}
	sort.Strings(names)
	return names
}

func TestAdapterServesTheChartsMetrics(t *testing.T) {
	names := adapterMetricNames(t)
	if !slices.Equal(names, []string{"modelwatch_active_requests", "modelwatch_queue_size"}) {
		t.Fatalf("adapter serves %v", names)
	}
	// Every metric the chart's values schema accepts is served.
	b, _ := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	var schema struct {
		Properties struct {
			Autoscaling struct {
				Properties struct {
					Metric struct {
						Enum []string `json:"enum"`
					} `json:"metric"`
				} `json:"properties"`
			} `json:"autoscaling"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(b, &schema); err != nil {
		t.Fatal(err)
	}
	enum := schema.Properties.Autoscaling.Properties.Metric.Enum
	sort.Strings(enum)
	if !slices.Equal(enum, names) {
		t.Errorf("values.schema.json allows autoscaling.metric %v, the adapter serves %v", enum, names)
	}
}

// metaName is how Kubernetes service discovery names a pod label or
// annotation in its __meta_ labels.
func metaName(s string) string {
	return regexp.MustCompile(`[^a-zA-Z0-9_]`).ReplaceAllString(s, "_")
}

// k8sPod describes a pod as Kubernetes service discovery (role: pod) sees
// it; targets lists its container ports (none: one target, the pod's IP).
type k8sPod struct {
	name, ip, phase string
	labels          map[string]string
	annotations     map[string]string
	containers      []k8sPort
}

type k8sPort struct {
	container string
	port      int
	init      bool
}

// targetGroup is the file_sd form of the pod's targets, with the __meta_
// labels Kubernetes service discovery gives them.
func (p k8sPod) targetGroups(namespace, node string) []map[string]any {
	common := map[string]string{
		"__meta_kubernetes_namespace":           namespace,
		"__meta_kubernetes_pod_name":            p.name,
		"__meta_kubernetes_pod_ip":              p.ip,
		"__meta_kubernetes_pod_phase":           p.phase,
		"__meta_kubernetes_pod_ready":           "true",
		"__meta_kubernetes_pod_node_name":       node,
		"__meta_kubernetes_pod_host_ip":         "10.0.0.1",
		"__meta_kubernetes_pod_uid":             "uid-" + p.name,
		"__meta_kubernetes_pod_controller_kind": "ReplicaSet",
	}
	for k, v := range p.labels {
		common["__meta_kubernetes_pod_label_"+metaName(k)] = v
		common["__meta_kubernetes_pod_labelpresent_"+metaName(k)] = "true"
	}
	for k, v := range p.annotations {
		common["__meta_kubernetes_pod_annotation_"+metaName(k)] = v
		common["__meta_kubernetes_pod_annotationpresent_"+metaName(k)] = "true"
	}
	var groups []map[string]any
	if len(p.containers) == 0 {
		return append(groups, map[string]any{"targets": []string{p.ip}, "labels": common})
	}
	for _, c := range p.containers {
		l := map[string]string{}
		for k, v := range common {
			l[k] = v
		}
		l["__meta_kubernetes_pod_container_name"] = c.container
		l["__meta_kubernetes_pod_container_port_number"] = strconv.Itoa(c.port)
		l["__meta_kubernetes_pod_container_port_protocol"] = "TCP"
		l["__meta_kubernetes_pod_container_init"] = strconv.FormatBool(c.init)
		groups = append(groups, map[string]any{"targets": []string{net.JoinHostPort(p.ip, strconv.Itoa(c.port))}, "labels": l})
	}
	return groups
}

// kubernetesConfig reads deploy/prometheus/kubernetes/prometheus.yml and
// turns it into one this test runs: the modelwatch job alone, scraped every
// second, its relabelling unchanged, with rules from rulesDir. sd says where
// its pods come from: nil keeps its Kubernetes discovery and points it at
// apiServer; otherwise sd replaces that discovery (file_sd for a Prometheus
// built without Kubernetes discovery).
func kubernetesConfig(t *testing.T, apiServer string, sd map[string]any, rulesDir string) string {
	t.Helper()
	b, err := os.ReadFile("../prometheus/kubernetes/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	var job map[string]any
	for _, sc := range cfg["scrape_configs"].([]any) {
		if sc := sc.(map[string]any); sc["job_name"] == "modelwatch" {
			job = sc
		}
	}
	if job == nil {
		t.Fatal("no modelwatch job in deploy/prometheus/kubernetes/prometheus.yml")
	}
	// Pods, in every namespace, through the in-cluster API.
	if sd, _ := json.Marshal(job["kubernetes_sd_configs"]); string(sd) != `[{"role":"pod"}]` {
		t.Fatalf("modelwatch job discovers %s, want [{role: pod}]", sd)
	}
	if sd == nil {
		job["kubernetes_sd_configs"] = []any{map[string]any{"role": "pod", "api_server": apiServer}}
	} else {
		delete(job, "kubernetes_sd_configs")
		for k, v := range sd {
			job[k] = v
		}
	}
	job["scrape_interval"] = "1s"
	cfg["scrape_configs"] = []any{job}
	cfg["rule_files"] = []string{filepath.Join(rulesDir, "*.yml")}
	delete(cfg, "alerting")
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// TestKubernetesScrapeJob runs the shipped Kubernetes scrape job in a real
// Prometheus of each version over pods with the annotations and labels the
// chart puts on its pods. Prometheus 3 finds them with its Kubernetes
// discovery, through a fake API server that lists and watches pods (one of
// them is created while it watches), once with the streaming watch-list its
// client asks for by default and once with list-then-watch. Debian's Prometheus 2 is built without
// Kubernetes discovery, so file_sd hands it the same pods as target groups
// with the __meta_ labels Kubernetes discovery gives them. The modelwatch
// pods are real servers started with the chart's args; the annotated ones
// are scraped with the labels the rules and dashboards select, the others
// dropped, and the prometheus-adapter rules then find and query them
// through the adapter's own code.
func TestKubernetesScrapeJob(t *testing.T) {
	r := mustRender(t, "fraud", "ml", nil)
	tmpl := r.deployments[0].Spec.Template
	args := tmpl.Spec.Containers[0].Args
	bin, err := testenv.BuildModelwatch("../..", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}

	// Three modelwatch pods, one on an IPv6 address, each started with the
	// chart's args but on a free port of its own address.
	type server struct {
		pod, ip string
		port    int
	}
	var servers []server
	for _, s := range []struct{ pod, ip string }{{"fraud-modelwatch-5d8c7-a1", "127.0.0.1"}, {"fraud-modelwatch-5d8c7-b2", "127.0.0.2"}, {"fraud-modelwatch-5d8c7-c3", "::1"}} {
		addr := testenv.FreePortOn(t, s.ip)
		a := slices.Clone(args)
		for i := range a {
			if strings.HasPrefix(a[i], "--listen-address=") {
				a[i] = "--listen-address=" + addr
			}
			// Each pod's control plane is on its own loopback; here they
			// share one, so each gets a free port of it.
			if strings.HasPrefix(a[i], "--admin-listen-address=127.0.0.1:") {
				a[i] = "--admin-listen-address=" + testenv.FreePortOn(t, "127.0.0.1")
			}
			if strings.HasPrefix(a[i], "--grpc-listen-address=") {
				a[i] = "--grpc-listen-address=" + testenv.FreePortOn(t, s.ip)
			}
		}
		p := testenv.Start(t, bin, a...)
		testenv.WaitHTTP(t, "http://"+addr+"/ready", p)
		servers = append(servers, server{s.pod, s.ip, testenv.Port(t, addr)})
	}
	// Two more pods export fixed values of the gauges the adapter serves,
	// over two models each, so that its per-pod arithmetic shows: a sum is
	// neither the largest nor the mean.
	fixed := map[string]map[string]float64{"active_requests": {}, "model_queue_size": {}}
	for i, v := range []struct{ active, queue [2]float64 }{{[2]float64{3, 2}, [2]float64{1, 0}}, {[2]float64{1, 0}, [2]float64{2, 2}}} {
		reg := prometheus.NewRegistry()
		active := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "active_requests", Help: "Requests in progress."}, []string{"model_name"})
		queue := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "model_queue_size", Help: "Requests waiting for a batch."}, []string{"model_name"})
		reg.MustRegister(active, queue)
		pod := fmt.Sprintf("fraud-modelwatch-5d8c7-s%d", i+1)
		for j, m := range []string{"fraud_model", "churn"} {
			active.WithLabelValues(m).Set(v.active[j])
			queue.WithLabelValues(m).Set(v.queue[j])
		}
		fixed["active_requests"][pod] = v.active[0] + v.active[1]
		fixed["model_queue_size"][pod] = v.queue[0] + v.queue[1]
		srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		t.Cleanup(srv.Close)
		u, _ := url.Parse(srv.URL)
		servers = append(servers, server{pod, u.Hostname(), testenv.Port(t, u.Host)})
	}

	withAnnotations := func(over map[string]string) map[string]string {
		a := map[string]string{}
		for k, v := range tmpl.Annotations {
			a[k] = v
		}
		for k, v := range over {
			if v == "" {
				delete(a, k)
			} else {
				a[k] = v
			}
		}
		return a
	}
	portOf := func(s server) map[string]string {
		return withAnnotations(map[string]string{"prometheus.io/port": strconv.Itoa(s.port)})
	}
	other := map[string]string{"app.kubernetes.io/name": "redis", "app.kubernetes.io/instance": "cache"}
	modelwatchPort := int(tmpl.Spec.Containers[0].Ports[0].ContainerPort)
	pods := []k8sPod{
		// Scraped: the annotation's port replaces the container ports'
		// (the second, a sidecar's, collapses into the same target).
		{name: servers[0].pod, ip: servers[0].ip, phase: "Running", labels: tmpl.Labels, annotations: portOf(servers[0]),
			containers: []k8sPort{{"modelwatch", modelwatchPort, false}, {"proxy", 15090, false}, {"fetch-models", 9999, true}}},
		{name: servers[1].pod, ip: servers[1].ip, phase: "Running", labels: tmpl.Labels, annotations: portOf(servers[1]),
			containers: []k8sPort{{"modelwatch", modelwatchPort, false}}},
		{name: servers[2].pod, ip: servers[2].ip, phase: "Running", labels: tmpl.Labels, annotations: portOf(servers[2])},
		{name: servers[3].pod, ip: servers[3].ip, phase: "Running", labels: tmpl.Labels, annotations: portOf(servers[3]),
			containers: []k8sPort{{"modelwatch", modelwatchPort, false}}},
		{name: servers[4].pod, ip: servers[4].ip, phase: "Running", labels: tmpl.Labels, annotations: portOf(servers[4]),
			containers: []k8sPort{{"modelwatch", modelwatchPort, false}}},
		// Scraped where its annotations say: another scheme and path.
		{name: "fraud-modelwatch-5d8c7-d4", ip: "127.0.0.3", phase: "Running", labels: tmpl.Labels,
			annotations: withAnnotations(map[string]string{"prometheus.io/scheme": "https", "prometheus.io/path": "/internal/metrics", "prometheus.io/port": "9443"}),
			containers:  []k8sPort{{"modelwatch", modelwatchPort, false}}},
		// Dropped: it opted out, it has no annotations, it is another
		// application, it has finished.
		{name: "fraud-modelwatch-5d8c7-e5", ip: "127.0.0.4", phase: "Running", labels: tmpl.Labels,
			annotations: withAnnotations(map[string]string{"prometheus.io/scrape": "false"}), containers: []k8sPort{{"modelwatch", modelwatchPort, false}}},
		{name: "fraud-modelwatch-5d8c7-f6", ip: "127.0.0.5", phase: "Running", labels: tmpl.Labels, containers: []k8sPort{{"modelwatch", modelwatchPort, false}}},
		{name: "cache-redis-0", ip: "127.0.0.6", phase: "Running", labels: other, annotations: withAnnotations(map[string]string{"prometheus.io/port": "9121"}),
			containers: []k8sPort{{"redis", 6379, false}}},
		{name: "fraud-modelwatch-5d8c7-g7", ip: "127.0.0.7", phase: "Succeeded", labels: tmpl.Labels, annotations: withAnnotations(nil),
			containers: []k8sPort{{"modelwatch", modelwatchPort, false}}},
	}
	rulesDir, _ := filepath.Abs("../prometheus/rules")
	var podNames []string
	for _, s := range servers {
		podNames = append(podNames, s.pod)
	}
	sort.Strings(podNames)

	// watch is how Prometheus 3 asks the API server for pods: "watch-list"
	// (its client's default) or "list-then-watch" (its client's fallback for
	// an API server without streaming watches, chosen here by turning its
	// WatchListClient feature off).
	scrapeJob := func(t *testing.T, v prometheustest.Version, watch string) {
		var (
			cfg  string
			late func() // the last modelwatch pod appears while Prometheus runs
			kube *fakeKubernetes
		)
		if v.Major >= 3 {
			// Kubernetes discovery against a fake API server: the pods
			// but one are there from the start, the last one is added
			// while Prometheus watches.
			last := slices.IndexFunc(pods, func(p k8sPod) bool { return p.name == servers[len(servers)-1].pod })
			var objects []corev1.Pod
			for i, p := range pods {
				if i != last {
					objects = append(objects, p.object("ml", "node-1"))
				}
			}
			kube = startFakeKubernetes(t, objects)
			late = func() { kube.add(pods[last].object("ml", "node-1")) }
			cfg = kubernetesConfig(t, kube.URL, nil, rulesDir)
		} else {
			// Debian's Prometheus is built without Kubernetes discovery:
			// file_sd hands it the same target groups, with the __meta_
			// labels Kubernetes discovery gives them; relabelling does
			// not depend on where they come from.
			var groups []map[string]any
			for _, p := range pods {
				groups = append(groups, p.targetGroups("ml", "node-1")...)
			}
			targetsFile := filepath.Join(t.TempDir(), "pods.json")
			tb, _ := json.Marshal(groups)
			os.WriteFile(targetsFile, tb, 0o644)
			cfg = kubernetesConfig(t, "", map[string]any{"file_sd_configs": []any{map[string]any{"files": []string{targetsFile}, "refresh_interval": "1s"}}}, rulesDir)
			late = func() {}
		}
		prom := v.Start(t, testenv.FreePort(t), cfg)

		type target struct {
			Labels           map[string]string `json:"labels"`
			DiscoveredLabels map[string]string `json:"discoveredLabels"`
			ScrapeURL        string            `json:"scrapeUrl"`
			Health           string            `json:"health"`
		}
		var targets struct {
			Data struct {
				Active  []target `json:"activeTargets"`
				Dropped []target `json:"droppedTargets"`
			} `json:"data"`
		}
		upAndDown := func(up int) func() (bool, string) {
			return func() (bool, string) {
				testenv.GetJSON(t, prom.URL+"/api/v1/targets?state=any", &targets)
				health := map[string]int{}
				var state []string
				for _, a := range targets.Data.Active {
					health[a.Health]++
					state = append(state, a.ScrapeURL+" "+a.Health)
				}
				return health["up"] == up && health["down"] == 1, strings.Join(state, ", ")
			}
		}
		if v.Major >= 3 {
			testenv.WaitFor(t, "the first four modelwatch pods up and the https one scraped", 30*time.Second, upAndDown(len(servers)-1))
			late()
		}
		testenv.WaitFor(t, "the five modelwatch pods up and the https one scraped", 30*time.Second, upAndDown(len(servers)))

		want := map[string]string{}
		for _, s := range servers {
			u := fmt.Sprintf("http://%s/metrics", net.JoinHostPort(s.ip, strconv.Itoa(s.port)))
			want[u] = fmt.Sprintf("instance=%s job=modelwatch namespace=ml node=node-1 pod=%s release=fraud", net.JoinHostPort(s.ip, strconv.Itoa(s.port)), s.pod)
		}
		want["https://127.0.0.3:9443/internal/metrics"] = "instance=127.0.0.3:9443 job=modelwatch namespace=ml node=node-1 pod=fraud-modelwatch-5d8c7-d4 release=fraud"
		got := map[string]string{}
		for _, a := range targets.Data.Active {
			var kv []string
			for k, v := range a.Labels {
				kv = append(kv, k+"="+v)
			}
			sort.Strings(kv)
			got[a.ScrapeURL] = strings.Join(kv, " ")
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("active targets:\n got %v\nwant %v", got, want)
		}
		var dropped []string
		for _, d := range targets.Data.Dropped {
			dropped = append(dropped, d.DiscoveredLabels["__meta_kubernetes_pod_name"]+" "+d.DiscoveredLabels["__address__"])
		}
		sort.Strings(dropped)
		wantDropped := []string{
			"cache-redis-0 127.0.0.6:6379",
			servers[0].pod + " 127.0.0.1:9999",
			"fraud-modelwatch-5d8c7-e5 127.0.0.4:" + strconv.Itoa(modelwatchPort),
			"fraud-modelwatch-5d8c7-f6 127.0.0.5:" + strconv.Itoa(modelwatchPort),
			"fraud-modelwatch-5d8c7-g7 127.0.0.7:" + strconv.Itoa(modelwatchPort),
		}
		sort.Strings(wantDropped)
		if !slices.Equal(dropped, wantDropped) {
			t.Errorf("dropped targets:\n got %q\nwant %q", dropped, wantDropped)
		}
		if kube != nil {
			// Discovery asked the API server the way it was meant to,
			// and for nothing else.
			served, unknown := kube.forms()
			want := []string{"watch-list"}
			if watch == "list-then-watch" {
				want = []string{"list", "watch"}
			}
			if len(unknown) > 0 || !slices.Equal(slices.Compact(served), want) {
				t.Errorf("the API server served %v, want %v, and was asked for %v", served, want, unknown)
			}
		}

		// The rules see the pods under job="modelwatch": ModelwatchDown's
		// expression finds exactly the unreachable https pod.
		testenv.WaitFor(t, `up{job="modelwatch"} == 0 for the https pod only`, 10*time.Second, func() (bool, string) {
			down, err := prom.Query(`up{job="modelwatch"} == 0`)
			return err == nil && len(down) == 1 && down[0].Labels["pod"] == "fraud-modelwatch-5d8c7-d4", fmt.Sprint(down, err)
		})

		t.Run("prometheus-adapter", func(t *testing.T) {
			checkAdapter(t, prom.URL, podNames, fixed)
		})
	}
	prometheustest.Each(t, func(t *testing.T, v prometheustest.Version) {
		if v.Major < 3 {
			scrapeJob(t, v, "")
			return
		}
		for _, watch := range []string{"watch-list", "list-then-watch"} {
			t.Run(watch, func(t *testing.T) {
				if watch == "list-then-watch" {
					t.Setenv("KUBE_FEATURE_WatchListClient", "false")
				}
				scrapeJob(t, v, watch)
			})
		}
	})
}

// checkAdapter does what prometheus-adapter does for a HorizontalPodAutoscaler
// on the pods of namespace ml, with its own code against a live Prometheus:
// discover series with each rule's series query, name them, and query a value
// per pod. Each value must equal fixed[series][pod] where given, else the sum
// of the gauge on that pod's /metrics.
func checkAdapter(t *testing.T, promURL string, pods []string, fixed map[string]map[string]float64) {
	base, _ := url.Parse(promURL)
	client := adapterclient.NewClient(http.DefaultClient, base, nil, "GET")
	ctx := context.Background()
	podsGR := schema.GroupResource{Resource: "pods"}
	for _, n := range adapterNamers(t) {
		now := model.Now()
		series, err := client.Series(ctx, model.Interval{Start: now.Add(-5 * time.Minute), End: now}, n.Selector())
		if err != nil {
			t.Fatalf("series %s: %v", n.Selector(), err)
		}
		series = n.FilterSeries(series)
		if len(series) == 0 {
			t.Fatalf("series query %s finds nothing", n.Selector())
		}
		var seen []string
		for _, s := range series {
			if res, _ := n.ResourcesForSeries(s); !slices.Contains(res, podsGR) {
				t.Errorf("series %v does not map to pods: %v", s, res)
			}
			seen = append(seen, string(s.Labels["pod"]))
		}
		slices.Sort(seen)
		seen = slices.Compact(seen)
		if !slices.Equal(seen, pods) {
			t.Errorf("%s: series of pods %v, want %v", n.Selector(), seen, pods)
		}
		name, _ := n.MetricNameForSeries(series[0])
		query, err := n.QueryForSeries(series[0].Name, podsGR, "ml", labels.Everything(), pods...)
		if err != nil {
			t.Fatal(err)
		}
		res, err := client.Query(ctx, model.Now(), query)
		if err != nil {
			t.Fatalf("%s: %s: %v", name, query, err)
		}
		if res.Vector == nil || len(*res.Vector) != len(pods) {
			t.Fatalf("%s: %s answers %+v, want one value per pod", name, query, res)
		}
		for _, s := range *res.Vector {
			pod := string(s.Metric["pod"])
			want, ok := fixed[series[0].Name][pod]
			if !ok {
				want = podGauge(t, promURL, pod, series[0].Name)
			}
			if float64(s.Value) != want {
				t.Errorf("%s of %s = %v, its /metrics says %v", name, pod, s.Value, want)
			}
		}
		t.Logf("%s: %s", name, query)
	}
}

// podGauge reads the sum of a gauge straight from a pod's /metrics, found
// through Prometheus's target list.
func podGauge(t *testing.T, promURL, pod, metric string) float64 {
	t.Helper()
	var targets struct {
		Data struct {
			Active []struct {
				Labels    map[string]string `json:"labels"`
				ScrapeURL string            `json:"scrapeUrl"`
			} `json:"activeTargets"`
		} `json:"data"`
	}
	testenv.GetJSON(t, promURL+"/api/v1/targets", &targets)
	for _, a := range targets.Data.Active {
		if a.Labels["pod"] != pod {
			continue
		}
		resp, err := http.Get(a.ScrapeURL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		f, ok := families[metric]
		if !ok {
			t.Fatalf("%s does not export %s", pod, metric)
		}
		sum := 0.0
		for _, m := range f.Metric {
			sum += m.GetGauge().GetValue()
		}
		return sum
	}
	t.Fatalf("no target for pod %s", pod)
	return 0
}

// TestKubernetesDiscoveryRBAC checks that rbac.yaml lets the ServiceAccount
// do what Kubernetes discovery with role pod does: get, list and watch pods
// in every namespace.
func TestKubernetesDiscoveryRBAC(t *testing.T) {
	b, err := os.ReadFile("../prometheus/kubernetes/rbac.yaml")
	if err != nil {
		t.Fatal(err)
	}
	scheme := runtime.NewScheme()
	corev1.AddToScheme(scheme)
	rbacv1.AddToScheme(scheme)
	decoder := serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
	var (
		accounts []*corev1.ServiceAccount
		roles    = map[string]*rbacv1.ClusterRole{}
		bindings []*rbacv1.ClusterRoleBinding
	)
	for _, doc := range releaseutil.SplitManifests(string(b)) {
		obj, gvk, err := decoder.Decode([]byte(doc), nil, nil)
		if err != nil {
			t.Fatalf("rbac.yaml: strict decoding: %v\n%s", err, doc)
		}
		checkMeta(t, gvk.Kind, obj.(metav1.Object))
		switch o := obj.(type) {
		case *corev1.ServiceAccount:
			accounts = append(accounts, o)
		case *rbacv1.ClusterRole:
			roles[o.Name] = o
		case *rbacv1.ClusterRoleBinding:
			bindings = append(bindings, o)
		default:
			t.Fatalf("rbac.yaml: unexpected %s", gvk)
		}
	}
	if len(accounts) != 1 || len(bindings) != 1 {
		t.Fatalf("rbac.yaml: %d ServiceAccounts and %d ClusterRoleBindings, want one each", len(accounts), len(bindings))
	}
	sa, binding := accounts[0], bindings[0]
	bound := false
	for _, s := range binding.Subjects {
		bound = bound || (s.Kind == rbacv1.ServiceAccountKind && s.Name == sa.Name && s.Namespace == sa.Namespace)
	}
	role := roles[binding.RoleRef.Name]
	if !bound || binding.RoleRef.Kind != "ClusterRole" || binding.RoleRef.APIGroup != rbacv1.GroupName || role == nil {
		t.Fatalf("the binding %+v does not give ServiceAccount %s/%s a ClusterRole of the file", binding, sa.Namespace, sa.Name)
	}
	allows := func(verb string) bool {
		for _, r := range role.Rules {
			if slices.Contains(r.APIGroups, "") && slices.Contains(r.Resources, "pods") && (slices.Contains(r.Verbs, verb) || slices.Contains(r.Verbs, "*")) {
				return true
			}
		}
		return false
	}
	for _, verb := range []string{"get", "list", "watch"} {
		if !allows(verb) {
			t.Errorf("ClusterRole %s does not allow %s on pods", role.Name, verb)
		}
	}
}

// relabelConfigs turns a ServiceMonitor's relabelings into the Prometheus
// configuration the Operator writes for them.
func relabelConfigs(rcs []monitoringv1.RelabelConfig) []map[string]any {
	var out []map[string]any
	for _, rc := range rcs {
		m := map[string]any{}
		if len(rc.SourceLabels) > 0 {
			m["source_labels"] = rc.SourceLabels
		}
		if rc.Separator != nil {
			m["separator"] = *rc.Separator
		}
		if rc.TargetLabel != "" {
			m["target_label"] = rc.TargetLabel
		}
		if rc.Regex != "" {
			m["regex"] = rc.Regex
		}
		if rc.Modulus != 0 {
			m["modulus"] = rc.Modulus
		}
		if rc.Replacement != nil {
			m["replacement"] = *rc.Replacement
		}
		if rc.Action != "" {
			m["action"] = strings.ToLower(rc.Action)
		}
		out = append(out, m)
	}
	return out
}

// TestServiceMonitorScrape scrapes a real modelwatch pod the way the
// Prometheus Operator does for the chart's ServiceMonitor: the target comes
// with the labels the Operator's own relabelling gives an endpoint of a
// Service (job named after the Service, endpoint after the port, namespace,
// service, pod, container), then the ServiceMonitor's relabelings run, as
// the Operator appends them. The shipped rules must then find their series:
// job="modelwatch", and modelwatch's own endpoint label, which the
// Operator's would otherwise displace.
func TestServiceMonitorScrape(t *testing.T) {
	r := mustRender(t, "fraud", "ml", values(t, fullValues))
	sm, svc := r.serviceMonitors[0], r.services[0]
	ep := sm.Spec.Endpoints[0]
	c := r.deployments[0].Spec.Template.Spec.Containers[0]
	bin, err := testenv.BuildModelwatch("../..", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	prometheustest.Each(t, func(t *testing.T, v prometheustest.Version) {
		addr, admin := testenv.FreePort(t), testenv.FreePortOn(t, "127.0.0.1")
		args := []string{"serve", "--listen-address=" + addr}
		for _, a := range c.Args[1:] {
			// This pod serves the embedded model; the chart's points at a volume.
			if !strings.HasPrefix(a, "--listen-address=") && !strings.HasPrefix(a, "--model-repository=") && !strings.HasPrefix(a, "--embedded-model=") {
				if strings.HasPrefix(a, "--admin-listen-address=127.0.0.1:") {
					a = "--admin-listen-address=" + admin
				}
				if strings.HasPrefix(a, "--grpc-listen-address=") {
					a = "--grpc-listen-address=" + testenv.FreePort(t)
				}
				args = append(args, a)
			}
		}
		p := testenv.Start(t, bin, args...)
		testenv.WaitHTTP(t, "http://"+addr+"/ready", p)
		// The chart's control plane: refused on the API the Service
		// reaches, served on the pod's loopback.
		resp, err := http.Post("http://"+addr+"/v2/repository/models/fraud_model/unload", "application/json", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("unload through the Service's port: %d, want 403", resp.StatusCode)
		}
		resp, err = http.Get("http://" + admin + "/health")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET /health on the admin listener: %d, want 200", resp.StatusCode)
		}

		dir := t.TempDir()
		pod := svc.Name + "-7f9c4-x2"
		targets, _ := json.Marshal([]map[string]any{{
			"targets": []string{addr},
			"labels": map[string]string{
				"job": svc.Name, "endpoint": ep.Port, "namespace": sm.Namespace, "service": svc.Name, "pod": pod, "container": c.Name,
			},
		}})
		os.WriteFile(filepath.Join(dir, "targets.json"), targets, 0o644)
		rulesDir, _ := filepath.Abs("../prometheus/rules")
		cfg, _ := yaml.Marshal(map[string]any{
			"global":     map[string]any{"scrape_interval": "1s", "evaluation_interval": "1s"},
			"rule_files": []string{filepath.Join(rulesDir, "*.yml")},
			"scrape_configs": []any{map[string]any{
				"job_name":        fmt.Sprintf("serviceMonitor/%s/%s/0", sm.Namespace, sm.Name),
				"metrics_path":    ep.Path,
				"file_sd_configs": []any{map[string]any{"files": []string{filepath.Join(dir, "targets.json")}, "refresh_interval": "1s"}},
				"relabel_configs": relabelConfigs(ep.RelabelConfigs),
			}},
		})
		prom := v.Start(t, testenv.FreePort(t), string(cfg))

		predict := func(n int) {
			t.Helper()
			for i := 0; i < n; i++ {
				resp, err := http.Post("http://"+addr+"/predict", "application/json", strings.NewReader(`{"inputs": [[950.0, 2, 8, 120.5, 11, 12]]}`))
				if err != nil || resp.StatusCode != 200 {
					t.Fatalf("predict: %v %v", resp, err)
				}
				resp.Body.Close()
			}
		}
		wait := func(expr string, ok func([]testenv.Sample) bool) []testenv.Sample {
			t.Helper()
			var got []testenv.Sample
			testenv.WaitFor(t, expr, 30*time.Second, func() (bool, string) {
				var err error
				got, err = prom.Query(expr)
				return err == nil && ok(got), fmt.Sprint(got, err)
			})
			return got
		}
		up := wait(`up{job="modelwatch"}`, func(s []testenv.Sample) bool { return len(s) == 1 && s[0].Value == 1 })[0]
		want := map[string]string{"job": "modelwatch", "namespace": "ml", "service": svc.Name, "pod": pod, "container": "modelwatch", "instance": addr, "__name__": "up"}
		if fmt.Sprint(up.Labels) != fmt.Sprint(want) {
			t.Errorf("target labels %v, want %v", up.Labels, want)
		}
		// Two scrapes that see requests, so that their rate is defined.
		predict(5)
		wait(`http_requests_total{job="modelwatch",endpoint="/predict",status="200"}`, func(s []testenv.Sample) bool { return len(s) == 1 && s[0].Value == 5 })
		predict(5)
		wait(`http_requests_total{job="modelwatch",endpoint="/predict",status="200"}`, func(s []testenv.Sample) bool { return len(s) == 1 && s[0].Value == 10 })
		if s, err := prom.Query(`{exported_endpoint!=""}`); err != nil || len(s) != 0 {
			t.Errorf("series with exported_endpoint: %v %v", s, err)
		}
		// The SLO ratios select on endpoint; with the label displaced they are empty.
		for _, rule := range []string{"slo:inference_errors:ratio_rate5m", "slo:inference_slow:ratio_rate5m"} {
			s := wait(rule, func(s []testenv.Sample) bool { return len(s) == 1 && !math.IsNaN(s[0].Value) })
			if s[0].Labels["job"] != "modelwatch" || s[0].Value != 0 {
				t.Errorf("%s = %v, want 0 for job modelwatch", rule, s)
			}
		}
	})
}
