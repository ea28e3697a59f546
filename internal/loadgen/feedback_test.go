package loadgen

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/modelwatch/modelwatch/internal/feedback"
	"github.com/modelwatch/modelwatch/internal/metrics"
	"github.com/modelwatch/modelwatch/internal/model"
	"github.com/modelwatch/modelwatch/internal/model/modeltest"
	"github.com/modelwatch/modelwatch/internal/model/xgboost"
	"github.com/modelwatch/modelwatch/internal/server"
	"github.com/modelwatch/modelwatch/models"
)

// fraudModel loads the embedded fraud_model.
func fraudModel(t *testing.T) model.Model {
	t.Helper()
	loaded, _, err := model.LoadDir(models.FS, models.Default, []model.Runtime{xgboost.Runtime})
	if err != nil || loaded[0].Err != nil {
		t.Fatal(err)
	}
	return loaded[0].Model
}

// readCSV returns a CSV file's rows after its header, as numbers; an empty
// cell is NaN.
func readCSV(t *testing.T, path string) [][]float64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var out [][]float64
	for _, rec := range recs[1:] {
		row := make([]float64, len(rec))
		for j, s := range rec {
			row[j] = math.NaN()
			if s != "" {
				if row[j], err = strconv.ParseFloat(s, 64); err != nil {
					t.Fatal(err)
				}
			}
		}
		out = append(out, row)
	}
	return out
}

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

// TestTruthFormula: the label rule ported from models/train_fraud_model.py
// gives the fraud rate of the script's own training labels, overall and in
// every group of rows that one term of the rule singles out. The script drew
// each of train.csv's 16,000 labels as a coin of probability p(row); if the
// port is right, a group's labels add up to a sum of independent
// Bernoulli(p) and differ from the sum of p by less than 4 standard
// deviations (sqrt(sum p(1-p))). The file is fixed, so the check is too. A
// weight off by a fifth in the amount, night, distance or card-age term
// moves its group past the bound; the rarer terms (more than 4 transactions,
// the safest categories) are checked with less power.
func TestTruthFormula(t *testing.T) {
	rows := readCSV(t, "../../models/fraud_model/testdata/train.csv")
	if len(rows) != 16000 {
		t.Fatalf("%d training rows", len(rows))
	}
	groups := map[string]func(row []float64) bool{
		"all":                 func([]float64) bool { return true },
		"night":               func(r []float64) bool { return r[1] <= 4 || r[1] >= 23 },
		"amount >= 100":       func(r []float64) bool { return r[0] >= 100 },
		"distance >= 30":      func(r []float64) bool { return r[3] >= 30 },
		"transactions > 4":    func(r []float64) bool { return r[4] > 4 },
		"card age < 180 days": func(r []float64) bool { return r[5] < 180 },
	}
	for c := range categoryRisk {
		groups[fmt.Sprintf("category %d", c)] = func(r []float64) bool { return r[2] == float64(c) }
	}
	for name, in := range groups {
		var labels, expected, variance float64
		for _, row := range rows {
			if !in(row) {
				continue
			}
			p := sigmoid(fraudLogit(row[:6]))
			labels += row[6]
			expected += p
			variance += p * (1 - p)
		}
		if sd := math.Sqrt(variance); math.Abs(labels-expected) > 4*sd {
			t.Errorf("%s: %v fraud labels, the ported rule expects %.1f ± %.1f", name, labels, expected, sd)
		}
	}
}

// TestTruthAccuracyMatchesHeldout: the embedded model is as accurate on the
// rows and labels loadgen draws as on the training script's held-out rows.
//
// The held-out file has no labels, but each was drawn as a coin of
// probability p(row) from the rule, so the model's expected accuracy there
// is the mean over its rows of p (when XGBoost's probability says fraud) or
// 1-p; rows the script blanked a value in are left out, since their labels
// came from the value before it was blanked. That mean, over ~280 rows, is
// known to within its standard error sd(c)/sqrt(m); loadgen's accuracy over
// n rows is known to within sqrt(a(1-a)/n). The two agree within 3.5
// combined standard errors, a bound that fails once in ~2,000 seeds for a
// right port and that a label process off by a few points of accuracy
// exceeds. The same rows with flip=0.3 score a*0.7 + (1-a)*0.3.
func TestTruthAccuracyMatchesHeldout(t *testing.T) {
	var c []float64
	for _, row := range readCSV(t, "../../models/fraud_model/testdata/heldout.csv") {
		if math.IsNaN(row[0]) || math.IsNaN(row[3]) {
			continue
		}
		p := sigmoid(fraudLogit(row[:6]))
		if row[6] > 0.5 {
			c = append(c, p)
		} else {
			c = append(c, 1-p)
		}
	}
	heldout, heldoutSE := meanSE(c)

	m := fraudModel(t)
	const n = 20000
	info := modelInfo{features: fraudFeatures, gen: fraudValue}
	_, _, rows := request(rand.New(rand.NewPCG(5, 6)), Config{Batch: n}, Target{}, info, false)
	in := model.Batch{Rows: n, Cols: len(fraudFeatures)}
	for _, row := range rows {
		in.Values = append(in.Values, row...)
	}
	out, err := m.Predict(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	accuracy := func(concept Concept) float64 {
		r := rand.New(rand.NewPCG(7, 8))
		correct := 0
		for i, row := range rows {
			label, _ := trueLabel(r, row, concept)
			predicted := fraudClasses[0]
			if p := out.Row(i); p[1] > p[0] {
				predicted = fraudClasses[1]
			}
			if label == predicted {
				correct++
			}
		}
		return float64(correct) / n
	}
	a := accuracy(Concept{})
	se := math.Sqrt(heldoutSE*heldoutSE + a*(1-a)/n)
	t.Logf("accuracy: held-out %.4f ± %.4f (%d rows), loadgen %.4f (%d rows)", heldout, heldoutSE, len(c), a, n)
	if math.Abs(a-heldout) > 3.5*se {
		t.Errorf("accuracy on loadgen's rows %.4f, on the held-out rows %.4f: more than 3.5 × %.4f apart", a, heldout, se)
	}
	// Flipping 30% of the labels: an expected a*0.7 + (1-a)*0.3, within 4
	// standard errors of the flips (a binomial share of n).
	flipped := accuracy(Concept{Flip: 0.3})
	if want := a*0.7 + (1-a)*0.3; math.Abs(flipped-want) > 4*math.Sqrt(0.3*0.7/n) {
		t.Errorf("accuracy with flip=0.3: %.4f, want %.4f", flipped, want)
	}
	// Shifting the log-odds by +3 makes fraud about twenty times as likely
	// for the same inputs, while the model still predicts what it learnt:
	// accuracy falls by more than 0.2 (to ~0.62 for these rows).
	if shifted := accuracy(Concept{Logit: 3}); shifted > a-0.2 {
		t.Errorf("accuracy with logit=+3: %.4f, %.4f without", shifted, a)
	}
}

func meanSE(xs []float64) (mean, se float64) {
	for _, x := range xs {
		mean += x
	}
	mean /= float64(len(xs))
	var ss float64
	for _, x := range xs {
		ss += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(ss / float64(len(xs)-1) / float64(len(xs)))
}

// labelServer is the real server with the embedded model and a feedback
// store, wrapped to note when each prediction was answered and when each
// label arrived.
type labelServer struct {
	*httptest.Server
	met *metrics.Metrics

	mu        sync.Mutex
	answered  map[string]time.Time // request id -> when its prediction was answered
	arrived   map[string]time.Time // request id -> when its label arrived
	feedbacks int                  // POST /feedback requests
}

func newLabelServer(t *testing.T) *labelServer {
	t.Helper()
	reg := prometheus.NewRegistry()
	met := metrics.New(reg)
	registry := model.NewRegistry(models.Default)
	m := fraudModel(t)
	registry.Add(m)
	met.ModelLoaded(m.Metadata(), 0)
	srv := server.New(server.Options{Models: registry, Metrics: met,
		Feedback:       feedback.New(feedback.Options{}, met.FeedbackTotal, met.LabelledRows),
		MetricsHandler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{})})
	srv.SetReady(true)
	ls := &labelServer{met: met, answered: map[string]time.Time{}, arrived: map[string]time.Time{}}
	ls.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/feedback" {
			var item struct {
				RequestID string `json:"request_id"`
			}
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			if err := json.Unmarshal(body, &item); err != nil {
				t.Errorf("feedback %s: %v", body, err)
			}
			ls.mu.Lock()
			ls.feedbacks++
			ls.arrived[item.RequestID] = time.Now()
			ls.mu.Unlock()
		}
		srv.ServeHTTP(w, r)
		if r.URL.Path == "/predict" || strings.HasSuffix(r.URL.Path, "/infer") {
			ls.mu.Lock()
			ls.answered[w.Header().Get("X-Request-ID")] = time.Now()
			ls.mu.Unlock()
		}
	}))
	t.Cleanup(ls.Close)
	return ls
}

// feedbackCount returns model_feedback_total for fraud_model v1 and result.
func (ls *labelServer) feedbackCount(result string) int {
	return int(testutil.ToFloat64(ls.met.FeedbackTotal.WithLabelValues("fraud_model", "v1", result)))
}

// labelledRequests counts the requests of a run of n that the seed's label
// stream picks at share.
func labelledRequests(seed uint64, n int, share float64) int {
	k := 0
	for i := range n {
		if stream(seed^feedbackSalt, uint64(i)).Float64() < share {
			k++
		}
	}
	return k
}

// TestFeedback: for a fixed seed and share, loadgen labels the same
// predictions whatever its concurrency, no label arrives before the delay
// after its prediction's answer, and the accuracy it reports is the one the
// server counted in model_feedback_total; concept drift lowers it.
func TestFeedback(t *testing.T) {
	const (
		requests = 200
		share    = 0.3
		seed     = 11
		delay    = 150 * time.Millisecond
	)
	for _, tc := range []struct {
		api   string
		batch int
	}{{"predict", 1}, {"v2", 3}} {
		t.Run(tc.api, func(t *testing.T) {
			ls := newLabelServer(t)
			want := labelledRequests(seed, requests, share)
			var first FeedbackResult
			for _, concurrency := range []int{4, 1} {
				correct, incorrect := ls.feedbackCount("correct"), ls.feedbackCount("incorrect")
				ls.mu.Lock()
				calls := ls.feedbacks
				ls.mu.Unlock()
				res, err := Run(context.Background(), Config{URL: ls.URL, Requests: requests, Concurrency: concurrency, API: tc.api,
					Batch: tc.batch, Seed: seed, FeedbackShare: share, FeedbackDelay: delay}, nil)
				if err != nil {
					t.Fatal(err)
				}
				fb := res.Feedback
				if res.OK != requests || fb == nil {
					t.Fatalf("ok %d of %d, feedback %+v", res.OK, requests, fb)
				}
				ls.mu.Lock()
				calls = ls.feedbacks - calls
				ls.mu.Unlock()
				if fb.Requests != want || calls != want || fb.OK != want || fb.Labels != want*tc.batch ||
					len(fb.ByStatus) != 1 || fb.ByStatus["200"] != want || fb.Dropped != 0 || fb.Unsent != 0 || fb.Transport != 0 {
					t.Errorf("concurrency %d: want %d labelled predictions of %d rows, the server saw %d: %+v", concurrency, want, tc.batch, calls, *fb)
				}
				gotCorrect, gotIncorrect := ls.feedbackCount("correct")-correct, ls.feedbackCount("incorrect")-incorrect
				if fb.Correct != gotCorrect || fb.Incorrect != gotIncorrect || fb.Correct+fb.Incorrect != fb.Labels {
					t.Errorf("loadgen sent %d correct, %d incorrect; the server counted %d, %d", fb.Correct, fb.Incorrect, gotCorrect, gotIncorrect)
				}
				if wantAcc := float64(fb.Correct) / float64(fb.Labels); fb.Accuracy != wantAcc {
					t.Errorf("accuracy %v, want %v", fb.Accuracy, wantAcc)
				}
				if first.Requests == 0 {
					first = *fb
				} else if fb.Correct != first.Correct || fb.Incorrect != first.Incorrect {
					t.Errorf("concurrency 1 sent %d correct, %d incorrect; concurrency 4 %d, %d", fb.Correct, fb.Incorrect, first.Correct, first.Incorrect)
				}
			}
			ls.mu.Lock()
			for id, at := range ls.arrived {
				if answered, ok := ls.answered[id]; !ok || at.Sub(answered) < delay {
					t.Errorf("label of %s arrived %v after its prediction (answered: %v), before the delay of %v", id, at.Sub(answered), ok, delay)
				}
			}
			ls.mu.Unlock()
			if first.Accuracy < 0.8 {
				t.Errorf("accuracy %.3f on the training process", first.Accuracy)
			}

			// The same traffic and labels, 30% of them flipped: the
			// accuracy falls, by exactly the flips' balance.
			correct, incorrect := ls.feedbackCount("correct"), ls.feedbackCount("incorrect")
			res, err := Run(context.Background(), Config{URL: ls.URL, Requests: requests, Concurrency: 4, API: tc.api,
				Batch: tc.batch, Seed: seed, FeedbackShare: share, FeedbackDelay: delay, Concept: Concept{Flip: 0.3}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			fb := res.Feedback
			if fb.Correct != ls.feedbackCount("correct")-correct || fb.Incorrect != ls.feedbackCount("incorrect")-incorrect {
				t.Errorf("flip: loadgen sent %d correct, %d incorrect; the server counted otherwise", fb.Correct, fb.Incorrect)
			}
			if fb.Labels != first.Labels || fb.Flipped == 0 || fb.Accuracy > first.Accuracy-0.1 {
				t.Errorf("flip=0.3: %d labels, %d flipped, accuracy %.3f; without %.3f", fb.Labels, fb.Flipped, fb.Accuracy, first.Accuracy)
			}
			t.Logf("accuracy %.3f, with flip=0.3 %.3f (%d of %d labels flipped)", first.Accuracy, fb.Accuracy, fb.Flipped, fb.Labels)
		})
	}
}

// TestFeedbackUnsent: labels still waiting when the traffic ends are waited
// for up to the delay and a second more, then reported unsent; every
// labelled prediction is either posted or reported. The server here takes
// 300ms per label, so posting all ~30 labels would take 9s: an unbounded
// wait would leave none unsent.
func TestFeedbackUnsent(t *testing.T) {
	ls := newLabelServer(t)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/feedback" {
			time.Sleep(300 * time.Millisecond)
		}
		ls.Config.Handler.ServeHTTP(w, r)
	}))
	defer slow.Close()
	const requests, share, seed = 100, 0.3, 3
	res, err := Run(context.Background(), Config{URL: slow.URL, Requests: requests, Concurrency: 1, Seed: seed,
		FeedbackShare: share, FeedbackDelay: 100 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	fb := res.Feedback
	ls.mu.Lock()
	calls := ls.feedbacks
	ls.mu.Unlock()
	if want := labelledRequests(seed, requests, share); fb.Unsent == 0 || fb.Requests+fb.Unsent != want || fb.Requests != calls || fb.OK != calls {
		t.Errorf("%d labelled predictions: %d posted (the server saw %d), %d unsent", want, fb.Requests, calls, fb.Unsent)
	}
}

// TestFeedbackNeedsTheTruth: a model whose classes loadgen does not know
// the process of gets no labels; the run is refused before it starts.
func TestFeedbackNeedsTheTruth(t *testing.T) {
	real := fraudModel(t)
	meta := real.Metadata()
	meta.Classes = []string{"ok", "chargeback"}
	reg := prometheus.NewRegistry()
	met := metrics.New(reg)
	registry := model.NewRegistry(models.Default)
	registry.Add(&modeltest.Model{Meta: meta, PredictFunc: real.Predict})
	srv := server.New(server.Options{Models: registry, Metrics: met, MetricsHandler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{})})
	srv.SetReady(true)
	ts := httptest.NewServer(srv)
	defer ts.Close()
	_, err := Run(context.Background(), Config{URL: ts.URL, Requests: 1, FeedbackShare: 0.5}, nil)
	if err == nil || !strings.Contains(err.Error(), "loadgen knows true labels for the fraud_model's features") {
		t.Errorf("labels for a model of classes %v: %v", meta.Classes, err)
	}
	if got := testutil.ToFloat64(met.ModelRequests.WithLabelValues("fraud_model", "v1", "success")); got != 0 {
		t.Errorf("%v predictions made", got)
	}
}

// TestLabelQueueBounds: past FeedbackMaxPending waiting predictions, labels
// are dropped and counted; labels still waiting when the dispatcher is
// stopped are reported unsent.
func TestLabelQueueBounds(t *testing.T) {
	q := newLabelQueue(Config{FeedbackDelay: time.Hour, FeedbackMaxPending: 3}, http.DefaultClient, "http://127.0.0.1:1")
	for i := range 5 {
		q.add(pendingLabel{id: strconv.Itoa(i), labels: []string{"safe"}})
	}
	stop, cancel := context.WithCancel(context.Background())
	out := make(chan pendingLabel)
	done := make(chan struct{})
	go func() { q.dispatch(stop, out); close(done) }()
	cancel()
	<-done
	if _, open := <-out; open {
		t.Error("the dispatcher handed out a label an hour early")
	}
	res := q.result()
	if res.Dropped != 2 || res.Unsent != 3 || res.Requests != 0 {
		t.Errorf("dropped %d, unsent %d, sent %d; want 2, 3, 0", res.Dropped, res.Unsent, res.Requests)
	}
}

func TestParseConcept(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Concept
	}{{"", Concept{}}, {"flip=0.3", Concept{Flip: 0.3}}, {"logit=+1.5, flip=1", Concept{Flip: 1, Logit: 1.5}}, {"logit=-2", Concept{Logit: -2}}} {
		if got, err := ParseConcept(tc.in); err != nil || got != tc.want {
			t.Errorf("ParseConcept(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"flip", "flip=1.5", "flip=-0.1", "logit=x", "logit=NaN", "shift=1", "=1"} {
		if _, err := ParseConcept(bad); err == nil {
			t.Errorf("ParseConcept(%q) accepted", bad)
		}
	}
}
