package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Concept is concept drift: it changes the true labels loadgen sends while
// the inputs it sends stay the same, so that the model's accuracy drops.
// The zero Concept is the process the model was trained on.
type Concept struct {
	// Flip is the share of true labels turned to the other class (0..1).
	// A model of accuracy a then scores a(1-Flip) + (1-a)Flip.
	Flip float64
	// Logit is added to the fraud log-odds of every row: fraud becomes
	// more (positive) or less (negative) likely for the same inputs.
	Logit float64
}

// ParseConcept reads concept drift such as "flip=0.3" or "logit=+1.5" (both
// may be given, separated by a comma). It returns an error naming the part
// it cannot read.
func ParseConcept(s string) (Concept, error) {
	var c Concept
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, value, ok := strings.Cut(part, "=")
		v, err := strconv.ParseFloat(value, 64)
		if !ok || err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return Concept{}, fmt.Errorf("concept drift %q: want flip=share or logit=+delta", part)
		}
		switch name {
		case "flip":
			if v < 0 || v > 1 {
				return Concept{}, fmt.Errorf("concept drift %q: the share is outside 0..1", part)
			}
			c.Flip = v
		case "logit":
			c.Logit = v
		default:
			return Concept{}, fmt.Errorf("concept drift %q: want flip=share or logit=+delta", part)
		}
	}
	return c, nil
}

// FeedbackResult is what a run's labels did (Config.FeedbackShare > 0).
type FeedbackResult struct {
	// Requests counts POST /feedback requests sent, one per labelled
	// prediction, and Labels the rows they labelled.
	Requests int `json:"requests"`
	Labels   int `json:"labels"`
	// OK counts requests answered 200, ByStatus every answer by status
	// and Transport the requests that got no answer.
	OK        int            `json:"ok"`
	ByStatus  map[string]int `json:"by_status"`
	Transport int            `json:"transport_errors"`
	// Dropped counts labels not queued because Config.FeedbackMaxPending
	// were already waiting; Unsent those still waiting when the run ended.
	Dropped int `json:"dropped"`
	Unsent  int `json:"unsent"`
	// Flipped counts the labels of requests answered 200 that concept
	// drift changed.
	Flipped int `json:"flipped"`
	// Correct and Incorrect count the rows of requests answered 200 whose
	// true label equals, or does not equal, the class the server
	// predicted; Accuracy is Correct/(Correct+Incorrect), the accuracy the
	// server's model_feedback_total counts for them.
	Correct   int     `json:"correct"`
	Incorrect int     `json:"incorrect"`
	Accuracy  float64 `json:"accuracy"`
}

// fraudClasses are the embedded fraud_model's classes, in its order.
var fraudClasses = []string{"safe", "fraud"}

// categoryRisk is the training process's log-odds per merchant category.
var categoryRisk = []float64{-0.8, -0.3, 0.9, 0.6, 1.1, -0.6, 0.0, -0.5, 1.4, 0.8}

// fraudLogit is the log-odds of fraud that models/train_fraud_model.py
// draws its labels from, for one row of fraudFeatures. A merchant category
// outside 0..9 (only --drift makes one) has no risk of its own.
func fraudLogit(row []float64) float64 {
	amount, hour, category, distance, tx24, cardAge := row[0], row[1], row[2], row[3], row[4], row[5]
	night := 0.0
	if hour <= 4 || hour >= 23 {
		night = 1
	}
	risk := 0.0
	if c := int(category); c >= 0 && c < len(categoryRisk) && float64(c) == category {
		risk = categoryRisk[c]
	}
	return 1.6 + 1.8*(-2.4+
		0.9*math.Log1p(amount/100)+
		1.3*night+
		risk+
		0.045*math.Min(distance, 200)+
		0.22*math.Max(tx24-4, 0)-
		0.6*math.Log1p(cardAge/90))
}

// trueLabel draws one row's true class as the training script does (fraud
// with probability sigmoid(logit)), with concept drift applied. It takes
// two draws from r whatever the drift, so that the labels of a seed differ
// only where the drift changes them; flipped says whether Flip changed it.
func trueLabel(r *rand.Rand, row []float64, c Concept) (label string, flipped bool) {
	p := 1 / (1 + math.Exp(-(fraudLogit(row) + c.Logit)))
	fraud := r.Float64() < p
	if r.Float64() < c.Flip {
		fraud, flipped = !fraud, true
	}
	if fraud {
		return fraudClasses[1], flipped
	}
	return fraudClasses[0], flipped
}

// feedbackSalt separates the labels' random streams from the traffic's, so
// that turning feedback on leaves the traffic of a seed unchanged.
const feedbackSalt = 0x6c6162656c73

// pendingLabel is one prediction's labels waiting for their time.
type pendingLabel struct {
	due                time.Time
	id                 string
	labels             []string
	correct, incorrect int
	flipped            int
}

// labelQueue queues labels and posts each to /feedback once it is due. The
// queue is first in, first out: every label waits the same delay from its
// prediction's answer, so the head is always the first due.
type labelQueue struct {
	client *http.Client
	url    string
	delay  time.Duration
	max    int

	mu     sync.Mutex
	queue  []pendingLabel
	head   int
	closed bool
	wake   chan struct{}
	res    FeedbackResult
}

func newLabelQueue(cfg Config, client *http.Client, base string) *labelQueue {
	return &labelQueue{client: client, url: base + "/feedback", delay: cfg.FeedbackDelay, max: cfg.FeedbackMaxPending,
		wake: make(chan struct{}, 1), res: FeedbackResult{ByStatus: map[string]int{}}}
}

// add queues one prediction's labels, due FeedbackDelay from now, or drops
// and counts them when the queue is full.
func (f *labelQueue) add(p pendingLabel) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.queue)-f.head >= f.max {
		f.res.Dropped++
		return
	}
	p.due = time.Now().Add(f.delay)
	if f.head > 1024 && f.head*2 > len(f.queue) {
		f.queue = f.queue[:copy(f.queue, f.queue[f.head:])]
		f.head = 0
	}
	f.queue = append(f.queue, p)
	if len(f.queue)-f.head == 1 {
		f.signal()
	}
}

func (f *labelQueue) signal() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// close says no more labels come; the dispatcher ends once the queue is
// empty.
func (f *labelQueue) close() {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	f.signal()
}

// dispatch hands each label to out when it is due, until the queue is
// closed and empty or stop ends; it then closes out. Labels it could not
// hand out are counted as unsent.
func (f *labelQueue) dispatch(stop context.Context, out chan<- pendingLabel) {
	defer close(out)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		f.mu.Lock()
		if f.head == len(f.queue) {
			closed := f.closed
			f.mu.Unlock()
			if closed {
				return
			}
			select {
			case <-f.wake:
				continue
			case <-stop.Done():
				return
			}
		}
		p := f.queue[f.head]
		wait := time.Until(p.due)
		if wait <= 0 {
			f.queue[f.head] = pendingLabel{}
			f.head++
		}
		f.mu.Unlock()
		if wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-stop.Done():
				return
			}
			continue
		}
		select {
		case out <- p:
		case <-stop.Done():
			f.mu.Lock()
			f.res.Unsent++
			f.mu.Unlock()
			return
		}
	}
}

// post sends labels to /feedback until in is closed.
func (f *labelQueue) post(ctx context.Context, in <-chan pendingLabel) {
	for p := range in {
		item := map[string]any{"request_id": p.id}
		if len(p.labels) == 1 {
			item["label"] = p.labels[0]
		} else {
			item["labels"] = p.labels
		}
		body, _ := json.Marshal(item)
		status, err := postJSON(ctx, f.client, f.url, body)
		f.mu.Lock()
		f.res.Requests++
		f.res.Labels += len(p.labels)
		if err != nil {
			f.res.Transport++
		} else {
			f.res.ByStatus[strconv.Itoa(status)]++
			if status == http.StatusOK {
				f.res.OK++
				f.res.Correct += p.correct
				f.res.Incorrect += p.incorrect
				f.res.Flipped += p.flipped
			}
		}
		f.mu.Unlock()
	}
}

// result returns the counts, with the labels still queued as unsent.
func (f *labelQueue) result() FeedbackResult {
	f.mu.Lock()
	defer f.mu.Unlock()
	res := f.res
	res.ByStatus = maps.Clone(f.res.ByStatus)
	res.Unsent += len(f.queue) - f.head
	if n := res.Correct + res.Incorrect; n > 0 {
		res.Accuracy = float64(res.Correct) / float64(n)
	}
	return res
}

func postJSON(ctx context.Context, client *http.Client, url string, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0, err
	}
	return resp.StatusCode, nil
}

// hasTruth says whether loadgen knows the process behind a model's labels:
// the embedded fraud_model's features and classes.
func hasTruth(info modelInfo) bool {
	return slices.Equal(info.features, fraudFeatures) && slices.Equal(info.classes, fraudClasses)
}
