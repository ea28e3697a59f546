package server

import (
	"embed"
	"io/fs"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// web holds the status page and the chart library it uses (uPlot, MIT,
// fetched by scripts/fetch-uplot.sh): nothing is loaded from a CDN.
//
//go:embed web
var web embed.FS

// statusWindow is the span the status page's rates and quantiles cover.
const statusWindow = 10 * time.Second

// sampler keeps recent snapshots of the counters the status page reads, at
// most one a second for two minutes, so rates need no background work.
type sampler struct {
	mu    sync.Mutex
	snaps []snapshot
}

type snapshot struct {
	at   time.Time
	vals map[string]float64
}

// modelStatus is one model version on the status page.
type modelStatus struct {
	Name         string             `json:"name"`
	Version      string             `json:"version"`
	Type         string             `json:"type,omitempty"`
	State        string             `json:"state"`
	Reason       string             `json:"reason,omitempty"`
	Requests     float64            `json:"requests_total"`
	RPS          float64            `json:"requests_per_second"`
	ErrorRatio   float64            `json:"error_ratio"`
	P50          float64            `json:"p50_seconds"`
	P99          float64            `json:"p99_seconds"`
	Classes      map[string]float64 `json:"class_mix,omitempty"`
	Drift        map[string]float64 `json:"feature_drift_psi,omitempty"`
	PredDrift    *float64           `json:"prediction_drift_psi,omitempty"`
	Accuracy     *float64           `json:"accuracy,omitempty"`
	WindowSecond float64            `json:"window_seconds"`
}

type gpuStatus struct {
	ID          string  `json:"gpu_id"`
	Name        string  `json:"gpu_name"`
	Utilization float64 `json:"utilization_percent"`
	MemoryUsed  float64 `json:"memory_used_bytes"`
	MemoryTotal float64 `json:"memory_total_bytes"`
	Temperature float64 `json:"temperature_celsius"`
	Power       float64 `json:"power_watts"`
}

type statusBody struct {
	Time          time.Time     `json:"time"`
	Unix          float64       `json:"time_unix"`
	UptimeSeconds float64       `json:"uptime_seconds"`
	Requests      float64       `json:"requests_total"`
	Models        []modelStatus `json:"models"`
	GPUs          []gpuStatus   `json:"gpus"`
}

// status serves GET /status.json: what the status page shows, computed from
// the server's own metrics with one Gather, as a scrape costs.
func (s *Server) status(*http.Request) (any, *apiError) {
	if s.opts.Gatherer == nil {
		return nil, newError(errNotFound, "this server has no status data")
	}
	mfs, err := s.opts.Gatherer.Gather()
	if err != nil && len(mfs) == 0 {
		return nil, wrapError(errInternal, err, "gathering metrics failed: %v", err)
	}
	now := s.opts.Now()
	cur := map[string]float64{}
	byName := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		byName[mf.GetName()] = mf
		switch mf.GetName() {
		case "model_requests_total", "model_prediction_errors_total", "model_predicted_class_total":
			for _, m := range mf.GetMetric() {
				cur[mf.GetName()+"|"+labelKey(m)] = m.GetCounter().GetValue()
			}
		case "model_prediction_duration_seconds":
			for _, m := range mf.GetMetric() {
				for _, b := range m.GetHistogram().GetBucket() {
					cur[mf.GetName()+"|"+labelKey(m)+"|"+formatLE(b.GetUpperBound())] = float64(b.GetCumulativeCount())
				}
			}
		}
	}
	base := s.sampler.record(now, cur)
	dt := now.Sub(base.at).Seconds()
	delta := func(key string) float64 {
		d := cur[key] - base.vals[key]
		if d < 0 { // a counter that restarted (a reloaded version)
			return cur[key]
		}
		return d
	}

	body := statusBody{Time: now, Unix: float64(now.UnixMilli()) / 1000, UptimeSeconds: now.Sub(s.started).Seconds(), Models: []modelStatus{}, GPUs: []gpuStatus{}}
	var states []modelStatus
	if s.opts.Repository != nil {
		for _, st := range s.opts.Repository.Index() {
			states = append(states, modelStatus{Name: st.Name, Version: st.Version, Type: st.Type, State: string(st.State), Reason: st.Reason})
		}
	} else {
		for _, m := range s.models.Models() {
			states = append(states, modelStatus{Name: m.Name, Version: m.Version, Type: m.Type, State: "READY"})
		}
	}
	for _, ms := range states {
		if ms.Version == "" {
			body.Models = append(body.Models, ms)
			continue
		}
		lv := "model_name=" + ms.Name + ",model_version=" + ms.Version
		ok := cur["model_requests_total|"+lv+",status=success"]
		failed := cur["model_requests_total|"+lv+",status=error"]
		ms.Requests = ok + failed
		body.Requests += ms.Requests
		reqs := delta("model_requests_total|"+lv+",status=success") + delta("model_requests_total|"+lv+",status=error")
		errs := 0.0
		for k := range cur {
			if strings.HasPrefix(k, "model_prediction_errors_total|error_type=") && strings.HasSuffix(k, ",model_name="+ms.Name) {
				errs += delta(k)
			}
		}
		if dt > 0 {
			ms.RPS = reqs / dt
			ms.WindowSecond = dt
		}
		if reqs+errs > 0 {
			ms.ErrorRatio = errs / (reqs + errs)
		}
		ms.P50 = quantile(0.5, cur, delta, "model_prediction_duration_seconds|"+lv+"|")
		ms.P99 = quantile(0.99, cur, delta, "model_prediction_duration_seconds|"+lv+"|")
		ms.Classes = map[string]float64{}
		total := 0.0
		for k, v := range cur {
			if strings.HasPrefix(k, "model_predicted_class_total|class=") && strings.HasSuffix(k, ","+lv) {
				class := strings.TrimSuffix(strings.TrimPrefix(k, "model_predicted_class_total|class="), ","+lv)
				ms.Classes[class] = v
				total += v
			}
		}
		for c := range ms.Classes {
			if total > 0 {
				ms.Classes[c] /= total
			}
		}
		if mf := byName["model_feature_drift_psi"]; mf != nil {
			for _, m := range mf.GetMetric() {
				if l := labels(m); l["model_name"] == ms.Name && l["model_version"] == ms.Version {
					if ms.Drift == nil {
						ms.Drift = map[string]float64{}
					}
					ms.Drift[l["feature"]] = m.GetGauge().GetValue()
				}
			}
		}
		ms.PredDrift = gaugeFor(byName["model_prediction_drift_psi"], ms.Name, ms.Version)
		ms.Accuracy = gaugeFor(byName["model_accuracy_ratio"], ms.Name, ms.Version)
		body.Models = append(body.Models, ms)
	}
	gpus := map[string]*gpuStatus{}
	for name, set := range map[string]func(*gpuStatus, float64){
		"gpu_utilization_percent": func(g *gpuStatus, v float64) { g.Utilization = v },
		"gpu_memory_used_bytes":   func(g *gpuStatus, v float64) { g.MemoryUsed = v },
		"gpu_memory_total_bytes":  func(g *gpuStatus, v float64) { g.MemoryTotal = v },
		"gpu_temperature_celsius": func(g *gpuStatus, v float64) { g.Temperature = v },
		"gpu_power_watts":         func(g *gpuStatus, v float64) { g.Power = v },
	} {
		if mf := byName[name]; mf != nil {
			for _, m := range mf.GetMetric() {
				l := labels(m)
				g := gpus[l["gpu_id"]]
				if g == nil {
					g = &gpuStatus{ID: l["gpu_id"], Name: l["gpu_name"]}
					gpus[l["gpu_id"]] = g
				}
				set(g, m.GetGauge().GetValue())
			}
		}
	}
	for _, g := range gpus {
		body.GPUs = append(body.GPUs, *g)
	}
	sort.Slice(body.GPUs, func(i, j int) bool { return body.GPUs[i].ID < body.GPUs[j].ID })
	return body, nil
}

// record keeps cur as a snapshot (at most one a second, for two minutes)
// and returns the one to compute rates against: the newest at least
// statusWindow old, or the oldest there is.
func (sm *sampler) record(now time.Time, cur map[string]float64) snapshot {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	if n := len(sm.snaps); n == 0 || now.Sub(sm.snaps[n-1].at) >= time.Second {
		sm.snaps = append(sm.snaps, snapshot{at: now, vals: cur})
	}
	for len(sm.snaps) > 1 && now.Sub(sm.snaps[0].at) > 2*time.Minute {
		sm.snaps = sm.snaps[1:]
	}
	base := sm.snaps[0]
	for _, s := range sm.snaps {
		if now.Sub(s.at) >= statusWindow {
			base = s
		}
	}
	return base
}

// quantile estimates a quantile from the bucket increases of a histogram,
// as Prometheus's histogram_quantile does; 0 when nothing was observed.
func quantile(q float64, cur map[string]float64, delta func(string) float64, prefix string) float64 {
	type bucket struct{ le, count float64 }
	var bs []bucket
	for k := range cur {
		if strings.HasPrefix(k, prefix) {
			le := parseLE(strings.TrimPrefix(k, prefix))
			bs = append(bs, bucket{le, delta(k)})
		}
	}
	if len(bs) == 0 {
		return 0
	}
	slices.SortFunc(bs, func(a, b bucket) int {
		switch {
		case a.le < b.le:
			return -1
		case a.le > b.le:
			return 1
		}
		return 0
	})
	// Bucket increases can go down from one bucket to the next (a reload
	// resets a histogram's buckets one at a time between two readings):
	// as histogram_quantile does, each bucket counts at least what the
	// buckets below it count.
	for i := 1; i < len(bs); i++ {
		bs[i].count = max(bs[i].count, bs[i-1].count)
	}
	total := bs[len(bs)-1].count // the +Inf bucket, or the largest
	if total == 0 {
		return 0
	}
	rank := q * total
	prevLE, prevCount := 0.0, 0.0
	for _, b := range bs {
		if b.count >= rank {
			if math.IsInf(b.le, 1) {
				return prevLE
			}
			if b.count == prevCount {
				return b.le
			}
			return prevLE + (b.le-prevLE)*(rank-prevCount)/(b.count-prevCount)
		}
		prevLE, prevCount = b.le, b.count
	}
	return prevLE
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// labelKey renders a metric's labels (sorted by name, as Gather returns them).
func labelKey(m *dto.Metric) string {
	var b strings.Builder
	for i, l := range m.GetLabel() {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(l.GetName())
		b.WriteByte('=')
		b.WriteString(l.GetValue())
	}
	return b.String()
}

func gaugeFor(mf *dto.MetricFamily, name, version string) *float64 {
	if mf == nil {
		return nil
	}
	for _, m := range mf.GetMetric() {
		if l := labels(m); l["model_name"] == name && l["model_version"] == version {
			v := m.GetGauge().GetValue()
			return &v
		}
	}
	return nil
}

func formatLE(le float64) string {
	if math.IsInf(le, 1) {
		return "+Inf"
	}
	return strconv.FormatFloat(le, 'g', -1, 64)
}

func parseLE(s string) float64 {
	if s == "+Inf" {
		return math.Inf(1)
	}
	v, _ := strconv.ParseFloat(s, 64)
	return v
}

// page serves the status page and its assets.
func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	sub, _ := fs.Sub(web, "web")
	name := strings.TrimPrefix(r.URL.Path, "/static/")
	if st, err := fs.Stat(sub, name); err != nil || st.IsDir() {
		s.writeError(w, r, newError(errNotFound, "no such file of the status page"), false)
		return
	}
	w.Header().Set("Cache-Control", "no-cache")
	http.StripPrefix("/static/", http.FileServerFS(sub)).ServeHTTP(w, r)
}

// wantsHTML reports whether a request prefers HTML to JSON (a browser).
func wantsHTML(r *http.Request) bool {
	a := r.Header.Get("Accept")
	return strings.Contains(a, "text/html") && !strings.HasPrefix(a, "application/json")
}
