// Package loadgen drives realistic traffic at a modelwatch server (or any
// server of the same API): a rate or a number of concurrent clients, for a
// duration or a number of requests, over a mix of models and versions, with a
// share of deliberately bad requests and optional drift of chosen features,
// and optionally the true labels of a share of its predictions, drawn from
// the process that made the embedded model's training data, after a delay.
package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Target is one model (and optionally version) in the traffic mix.
type Target struct {
	Model, Version string
	Weight         float64
}

// Shift changes one feature's values: x*Mul + Add.
type Shift struct {
	Mul, Add float64
}

// Config says what traffic to send. Zero values take the defaults noted.
type Config struct {
	// URL is the server's base URL, such as http://127.0.0.1:8000.
	URL string
	// Rate is the target rate in requests per second across all clients; 0
	// sends as fast as Concurrency allows.
	Rate float64
	// Concurrency is the number of clients (default 4).
	Concurrency int
	// Duration bounds the run (default 10s); Requests bounds it by count
	// (0: no bound but Duration). The run stops at whichever comes first.
	Duration time.Duration
	Requests int
	// Targets is the mix of models (default: the server's default model).
	Targets []Target
	// BadShare is the share of requests that are deliberately bad, in turn:
	// an unknown model, a wrong number of features, malformed JSON, a NaN.
	BadShare float64
	// Drift shifts named features (or "f3" by index).
	Drift map[string]Shift
	// Batch is the number of rows per request (default 1).
	Batch int
	// API is "predict" (default) or "v2".
	API string
	// Seed makes the traffic and the labels repeatable: request n draws
	// its rows from a stream of its own, whichever client sends it.
	Seed uint64
	// Timeout bounds one request (default 10s).
	Timeout time.Duration
	// FeedbackShare is the share of successful predictions whose true
	// labels are posted to /feedback (0: none). Loadgen knows the true
	// labels of the embedded fraud_model only: every target must have its
	// features and classes. A row's label is drawn from the row as sent
	// (after Drift), as models/train_fraud_model.py draws its labels.
	FeedbackShare float64
	// FeedbackDelay is how long after its prediction's answer a label is
	// posted (default 0: at once).
	FeedbackDelay time.Duration
	// FeedbackMaxPending bounds the predictions whose labels wait for their
	// time (default 100000); past it labels are dropped and counted.
	FeedbackMaxPending int
	// Concept drift changes the true labels, not the inputs.
	Concept Concept
	// Answered, if set, is called for every request answered 200 with the
	// request id the server gave it and the rows sent (after Drift), from
	// the clients' goroutines: for a test that checks what the server did
	// with every prediction it acknowledged.
	Answered func(requestID string, rows [][]float64)
}

// Result is what a run did.
type Result struct {
	Sent      int            `json:"sent"`
	OK        int            `json:"ok"`
	Rows      int            `json:"rows_ok"`
	Bad       int            `json:"bad_sent"`
	ByStatus  map[string]int `json:"by_status"`
	Transport int            `json:"transport_errors"`
	Seconds   float64        `json:"seconds"`
	Rate      float64        `json:"rate"`
	P50       float64        `json:"p50_ms"`
	P95       float64        `json:"p95_ms"`
	P99       float64        `json:"p99_ms"`
	// PerTarget counts successful requests per model/version as requested.
	PerTarget map[string]int `json:"per_target"`
	// Feedback is what the labels did; nil when none were asked for.
	Feedback *FeedbackResult `json:"feedback,omitempty"`
}

// ErrUnreachable means the server did not answer GET /health.
var ErrUnreachable = errors.New("server unreachable")

// maxSamples bounds the latencies kept for percentiles; past it, a
// reservoir sample keeps memory flat however long the run.
const maxSamples = 200_000

type modelInfo struct {
	name     string // the model's name, also when the target names none (the default model)
	features []string
	classes  []string
	gen      func(r *rand.Rand, feature string, i int) float64
	// input and datatype are the name and element type of the model's one
	// input tensor, for the Open Inference Protocol.
	input, datatype string
}

// Run sends the traffic and returns what happened. It returns
// ErrUnreachable when the server does not answer before the run.
func Run(ctx context.Context, cfg Config, client *http.Client) (Result, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return Result{}, err
	}
	if client == nil {
		client = &http.Client{Timeout: cfg.Timeout, Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Concurrency * 2}}
	}
	base := strings.TrimSuffix(cfg.URL, "/")
	if err := ping(ctx, client, base); err != nil {
		return Result{}, fmt.Errorf("%w: %v", ErrUnreachable, err)
	}
	infos, totalWeight, err := describeTargets(ctx, cfg, client, base)
	if err != nil {
		return Result{}, err
	}

	// The duration ends the issuing of requests; requests already sent are
	// answered, so that Sent counts every request the server saw.
	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	permits := make(chan uint64)
	go issuePermits(runCtx, cfg, permits)
	var labels *labelSender
	if cfg.FeedbackShare > 0 {
		labels = startLabels(ctx, cfg, client, base)
		defer labels.cancel()
	}

	tally := &tally{res: Result{ByStatus: map[string]int{}, PerTarget: map[string]int{}}}
	start := time.Now()
	var wg sync.WaitGroup
	for range cfg.Concurrency {
		wg.Go(func() {
			for n := range permits {
				sendOne(ctx, cfg, client, base, n, infos, totalWeight, labels, tally)
			}
		})
	}
	wg.Wait()
	res := tally.res
	res.Seconds = time.Since(start).Seconds()
	if res.Seconds > 0 {
		res.Rate = float64(res.Sent) / res.Seconds
	}
	if labels != nil {
		fr := labels.finish(cfg.FeedbackDelay)
		res.Feedback = &fr
	}
	sort.Float64s(tally.samples)
	res.P50, res.P95, res.P99 = percentile(tally.samples, 0.50), percentile(tally.samples, 0.95), percentile(tally.samples, 0.99)
	if res.Sent > 0 && res.Transport == res.Sent {
		return res, fmt.Errorf("%w: every request failed", ErrUnreachable)
	}
	return res, nil
}

// withDefaults fills the zero values of a Config with their defaults and
// checks what cannot work.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 10 * time.Second
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 1
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.API == "" {
		cfg.API = "predict"
	}
	if cfg.API != "predict" && cfg.API != "v2" {
		return cfg, fmt.Errorf("api %q is neither predict nor v2", cfg.API)
	}
	if cfg.FeedbackShare < 0 || cfg.FeedbackShare > 1 || math.IsNaN(cfg.FeedbackShare) {
		return cfg, fmt.Errorf("feedback share %v is outside 0..1", cfg.FeedbackShare)
	}
	if cfg.FeedbackDelay < 0 {
		return cfg, fmt.Errorf("feedback delay %v is negative", cfg.FeedbackDelay)
	}
	if cfg.FeedbackMaxPending <= 0 {
		cfg.FeedbackMaxPending = 100_000
	}
	if len(cfg.Targets) == 0 {
		cfg.Targets = []Target{{Weight: 1}}
	}
	return cfg, nil
}

// describeTargets asks the server what each target model takes, and returns
// it with the targets' total weight.
func describeTargets(ctx context.Context, cfg Config, client *http.Client, base string) ([]modelInfo, float64, error) {
	infos := make([]modelInfo, len(cfg.Targets))
	totalWeight := 0.0
	for i, t := range cfg.Targets {
		info, err := describe(ctx, client, base, t)
		if err != nil {
			return nil, 0, err
		}
		if cfg.FeedbackShare > 0 && !hasTruth(info) {
			return nil, 0, fmt.Errorf("model %s: loadgen knows true labels for the fraud_model's features %v and classes %v only, not %v and %v",
				targetKey(Target{Model: info.name, Version: t.Version}), fraudFeatures, fraudClasses, info.features, info.classes)
		}
		infos[i] = info
		totalWeight += max(t.Weight, 0)
	}
	if totalWeight == 0 {
		return nil, 0, errors.New("the targets' weights add up to 0")
	}
	return infos, totalWeight, nil
}

// labelSender posts the labels of answered predictions when they are due,
// from goroutines of its own.
type labelSender struct {
	queue  *labelQueue
	done   sync.WaitGroup
	cancel context.CancelFunc
}

// startLabels starts the goroutines that post labels: one hands them out
// when due, Concurrency post them.
func startLabels(ctx context.Context, cfg Config, client *http.Client, base string) *labelSender {
	l := &labelSender{queue: newLabelQueue(cfg, client, base)}
	stop, cancel := context.WithCancel(ctx)
	l.cancel = cancel
	work := make(chan pendingLabel)
	l.done.Go(func() { l.queue.dispatch(stop, work) })
	for range cfg.Concurrency {
		l.done.Go(func() { l.queue.post(ctx, work) })
	}
	return l
}

// finish waits for the labels still waiting, which are due within delay,
// and a second more for the last to be handed out, then reports.
func (l *labelSender) finish(delay time.Duration) FeedbackResult {
	l.queue.close()
	done := make(chan struct{})
	go func() { l.done.Wait(); close(done) }()
	wait := time.NewTimer(delay + time.Second)
	select {
	case <-done:
	case <-wait.C:
		l.cancel()
		<-done
	}
	wait.Stop()
	return l.queue.result()
}

// tally is what the clients found, under its lock: the result's counts and
// a reservoir of latencies for the percentiles.
type tally struct {
	mu      sync.Mutex
	res     Result
	samples []float64
	seen    int
}

// sendOne sends request n (drawn from its own stream, so the same whoever
// sends it), queues its labels, and counts its answer.
func sendOne(ctx context.Context, cfg Config, client *http.Client, base string, n uint64, infos []modelInfo, totalWeight float64,
	labels *labelSender, t *tally) {
	r := stream(cfg.Seed, n)
	i := pick(r, cfg.Targets, totalWeight)
	target := cfg.Targets[i]
	bad := cfg.BadShare > 0 && r.Float64() < cfg.BadShare
	path, body, sent := request(r, cfg, target, infos[i], bad)
	t0 := time.Now()
	status, ans, err := send(ctx, client, base+path, body)
	elapsed := time.Since(t0).Seconds() * 1000
	if err == nil && status == http.StatusOK {
		if labels != nil {
			if p, ok := labelled(cfg, n, sent, ans); ok {
				labels.queue.add(p)
			}
		}
		if cfg.Answered != nil {
			cfg.Answered(ans.requestID, sent)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.res.Sent++
	if bad {
		t.res.Bad++
	}
	if err != nil {
		t.res.Transport++
		return
	}
	t.res.ByStatus[strconv.Itoa(status)]++
	if status == http.StatusOK {
		t.res.OK++
		t.res.Rows += len(ans.classes)
		t.res.PerTarget[targetKey(target)]++
	}
	t.seen++
	if len(t.samples) < maxSamples {
		t.samples = append(t.samples, elapsed)
	} else if j := r.IntN(t.seen); j < maxSamples {
		t.samples[j] = elapsed
	}
}

// stream returns request n's random numbers for seed. n goes through
// SplitMix64's finalizer first, so that neighbouring requests start from
// unrelated states of the generator.
func stream(seed, n uint64) *rand.Rand {
	n += 0x9e3779b97f4a7c15
	n = (n ^ n>>30) * 0xbf58476d1ce4e5b9
	n = (n ^ n>>27) * 0x94d049bb133111eb
	return rand.New(rand.NewPCG(seed, n^n>>31))
}

func targetKey(t Target) string {
	if t.Version != "" {
		return t.Model + ":" + t.Version
	}
	return t.Model
}

// issuePermits hands out one permit per request, the request's number: at cfg.Rate, or as fast as
// they are taken; it stops at cfg.Requests or when ctx ends.
func issuePermits(ctx context.Context, cfg Config, permits chan<- uint64) {
	defer close(permits)
	var interval time.Duration
	if cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) / cfg.Rate)
	}
	next := time.Now()
	for n := 0; cfg.Requests <= 0 || n < cfg.Requests; n++ {
		if interval > 0 {
			if d := time.Until(next); d > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(d):
				}
			}
			next = next.Add(interval)
		}
		select {
		case <-ctx.Done():
			return
		case permits <- uint64(n):
		}
	}
}

func pick(r *rand.Rand, ts []Target, total float64) int {
	x := r.Float64() * total
	for i, t := range ts {
		x -= max(t.Weight, 0)
		if x < 0 {
			return i
		}
	}
	return len(ts) - 1
}

func percentile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return math.Round(sorted[max(i, 0)]*1000) / 1000
}

func ping(ctx context.Context, client *http.Client, base string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/health", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /health: %s", resp.Status)
	}
	return nil
}

// describe asks the server for a model's features through the Open
// Inference Protocol's metadata endpoint.
func describe(ctx context.Context, client *http.Client, base string, t Target) (modelInfo, error) {
	name := t.Model
	if name == "" {
		var info struct {
			DefaultModel string `json:"default_model"`
		}
		if err := getJSON(ctx, client, base+"/", &info); err != nil || info.DefaultModel == "" {
			return modelInfo{}, fmt.Errorf("find the default model: %v", err)
		}
		name = info.DefaultModel
	}
	path := "/v2/models/" + name
	if t.Version != "" {
		path += "/versions/" + t.Version
	}
	var meta struct {
		Inputs []struct {
			Name     string  `json:"name"`
			Datatype string  `json:"datatype"`
			Shape    []int64 `json:"shape"`
		} `json:"inputs"`
		Parameters struct {
			Features []string `json:"features"`
			Classes  []string `json:"classes"`
		} `json:"parameters"`
	}
	if err := getJSON(ctx, client, base+path, &meta); err != nil {
		return modelInfo{}, fmt.Errorf("model %s: %v", targetKey(Target{Model: name, Version: t.Version}), err)
	}
	features := meta.Parameters.Features
	if len(features) == 0 {
		if len(meta.Inputs) != 1 || len(meta.Inputs[0].Shape) != 2 || meta.Inputs[0].Shape[1] < 1 {
			return modelInfo{}, fmt.Errorf("model %s takes no rows of features; loadgen sends rows", name)
		}
		for i := range meta.Inputs[0].Shape[1] {
			features = append(features, "f"+strconv.FormatInt(i, 10))
		}
	}
	gen := normal
	if slices.Equal(features, fraudFeatures) {
		gen = fraudValue
	}
	info := modelInfo{name: name, features: features, classes: meta.Parameters.Classes, gen: gen, input: "input", datatype: "FP64"}
	if len(meta.Inputs) == 1 {
		info.input = meta.Inputs[0].Name
		if dt := meta.Inputs[0].Datatype; dt == "FP32" || dt == "FP64" {
			info.datatype = dt
		}
	}
	return info, nil
}

func getJSON(ctx context.Context, client *http.Client, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: %s %s", url, resp.Status, bytes.TrimSpace(b))
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// request builds one request's path and body, and returns the rows it
// holds.
func request(r *rand.Rand, cfg Config, t Target, info modelInfo, bad bool) (string, []byte, [][]float64) {
	rows := make([][]float64, cfg.Batch)
	for i := range rows {
		row := make([]float64, len(info.features))
		for j, f := range info.features {
			v := info.gen(r, f, j)
			if s, ok := cfg.Drift[f]; ok {
				v = v*nonZero(s.Mul) + s.Add
			}
			row[j] = v
		}
		rows[i] = row
	}
	model, version := t.Model, t.Version
	kind := -1
	if bad {
		kind = r.IntN(4)
		switch kind {
		case 0:
			model = "loadgen_no_such_model"
		case 1:
			for i := range rows {
				rows[i] = rows[i][:len(rows[i])-1]
			}
		}
	}
	var path string
	var body []byte
	if cfg.API == "v2" {
		if model == "" {
			model = info.name
		}
		path = "/v2/models/" + model
		if version != "" {
			path += "/versions/" + version
		}
		path += "/infer"
		flat := make([]float64, 0, len(rows)*len(info.features))
		for _, row := range rows {
			flat = append(flat, row...)
		}
		body, _ = json.Marshal(map[string]any{"inputs": []map[string]any{{
			"name": info.input, "datatype": info.datatype, "shape": []int{len(rows), len(rows[0])}, "data": flat,
		}}})
	} else {
		path = "/predict"
		req := map[string]any{"inputs": rows}
		if model != "" {
			req["model_name"] = model
		}
		if version != "" {
			req["model_version"] = version
		}
		body, _ = json.Marshal(req)
	}
	switch kind {
	case 2:
		body = body[:len(body)/2]
	case 3:
		body = bytes.Replace(body, []byte("["), []byte("[NaN,"), 2)
	}
	return path, body, rows
}

func nonZero(x float64) float64 {
	if x == 0 {
		return 1
	}
	return x
}

// answer is what loadgen reads from a successful prediction: the request id
// the server gave it and, per row, the predicted class (empty for a
// regressor's rows).
type answer struct {
	requestID string
	classes   []string
}

// send posts one request and returns its status and, for a success, what
// the server answered.
func send(ctx context.Context, client *http.Client, url string, body []byte) (int, answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, answer{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, answer{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, answer{}, err
	}
	var ans answer
	if resp.StatusCode == http.StatusOK {
		ans = parseAnswer(data)
		if ans.requestID == "" {
			ans.requestID = resp.Header.Get("X-Request-ID")
		}
	}
	return resp.StatusCode, ans, nil
}

// parseAnswer reads a /predict answer (predictions with their class) or an
// Open Inference Protocol answer (the rows of the first output, classes
// from a BYTES output).
func parseAnswer(data []byte) answer {
	var body struct {
		RequestID   string `json:"request_id"`
		Predictions []struct {
			Class string `json:"class"`
		} `json:"predictions"`
		Outputs []struct {
			Datatype string          `json:"datatype"`
			Shape    []int           `json:"shape"`
			Data     json.RawMessage `json:"data"`
		} `json:"outputs"`
	}
	if json.Unmarshal(data, &body) != nil {
		return answer{}
	}
	ans := answer{requestID: body.RequestID}
	if body.Outputs == nil {
		ans.classes = make([]string, len(body.Predictions))
		for i, p := range body.Predictions {
			ans.classes[i] = p.Class
		}
		return ans
	}
	if len(body.Outputs[0].Shape) > 0 {
		ans.classes = make([]string, body.Outputs[0].Shape[0])
	}
	for _, o := range body.Outputs {
		var labels []string
		if o.Datatype == "BYTES" && json.Unmarshal(o.Data, &labels) == nil && len(labels) == len(ans.classes) {
			ans.classes = labels
			break
		}
	}
	return ans
}

// labelled decides, from request n's own stream, whether its prediction is
// labelled and draws the true label of each row sent; false when it is not
// labelled or the answer lacks what a label needs.
func labelled(cfg Config, n uint64, rows [][]float64, ans answer) (pendingLabel, bool) {
	r := stream(cfg.Seed^feedbackSalt, n)
	if r.Float64() >= cfg.FeedbackShare || ans.requestID == "" || len(ans.classes) != len(rows) {
		return pendingLabel{}, false
	}
	p := pendingLabel{id: ans.requestID, labels: make([]string, len(rows))}
	for i, row := range rows {
		label, flipped := trueLabel(r, row, cfg.Concept)
		p.labels[i] = label
		if flipped {
			p.flipped++
		}
		if label == ans.classes[i] {
			p.correct++
		} else {
			p.incorrect++
		}
	}
	return p, true
}

func normal(r *rand.Rand, _ string, _ int) float64 { return math.Round(r.NormFloat64()*1e4) / 1e4 }

// fraudFeatures are the embedded fraud_model's features; rows for it follow
// the distributions of its training data (models/train_fraud_model.py).
var fraudFeatures = []string{"amount", "hour_of_day", "merchant_category", "distance_from_home_km", "transactions_last_24h", "card_age_days"}

var hourWeights = []float64{1, 0.6, 0.4, 0.3, 0.3, 0.5, 1, 2, 3, 3.5, 4, 4.5, 5, 4.5, 4, 4, 4.2, 4.8, 5, 4.5, 3.5, 2.5, 2, 1.5}

func fraudValue(r *rand.Rand, feature string, _ int) float64 {
	switch feature {
	case "amount":
		return math.Round(math.Exp(3.6+1.1*r.NormFloat64())*100) / 100
	case "hour_of_day":
		total := 0.0
		for _, w := range hourWeights {
			total += w
		}
		x := r.Float64() * total
		for h, w := range hourWeights {
			if x -= w; x < 0 {
				return float64(h)
			}
		}
		return 23
	case "merchant_category":
		return float64(r.IntN(10))
	case "distance_from_home_km":
		return math.Round(r.ExpFloat64()*12*10) / 10
	case "transactions_last_24h":
		return float64(poisson(r, 3))
	case "card_age_days":
		return float64(1 + r.IntN(3649))
	}
	return r.NormFloat64()
}

func poisson(r *rand.Rand, lambda float64) int {
	l, k, p := math.Exp(-lambda), 0, 1.0
	for {
		p *= r.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

// ParseTargets reads a mix such as "fraud_model:v1=3,churn=1" (weights
// default to 1).
func ParseTargets(s string) ([]Target, error) {
	var out []Target
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		t := Target{Weight: 1}
		if name, w, ok := strings.Cut(part, "="); ok {
			weight, err := strconv.ParseFloat(w, 64)
			if err != nil || weight < 0 {
				return nil, fmt.Errorf("target %q: weight %q is not a non-negative number", part, w)
			}
			t.Weight, part = weight, name
		}
		t.Model, t.Version, _ = strings.Cut(part, ":")
		if t.Model == "" {
			return nil, fmt.Errorf("target %q names no model", part)
		}
		out = append(out, t)
	}
	return out, nil
}

// ParseDrift reads shifts such as "amount=*3,distance_from_home_km=+50".
func ParseDrift(s string) (map[string]Shift, error) {
	out := map[string]Shift{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, expr, ok := strings.Cut(part, "=")
		if !ok || name == "" || len(expr) < 2 {
			return nil, fmt.Errorf("drift %q: want feature=*factor or feature=+offset", part)
		}
		v, err := strconv.ParseFloat(expr[1:], 64)
		if err != nil {
			return nil, fmt.Errorf("drift %q: %q is not a number", part, expr[1:])
		}
		switch expr[0] {
		case '*':
			out[name] = Shift{Mul: v}
		case '+':
			out[name] = Shift{Mul: 1, Add: v}
		case '-':
			out[name] = Shift{Mul: 1, Add: -v}
		default:
			return nil, fmt.Errorf("drift %q: want feature=*factor or feature=+offset", part)
		}
	}
	return out, nil
}
