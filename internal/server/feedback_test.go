package server

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/modelwatch/modelwatch/internal/feedback"
)

func newFeedbackHarness(t *testing.T) *harness {
	var store *feedback.Store
	h := newHarness(t, func(o *Options) {
		store = feedback.New(feedback.Options{MinLabels: 1}, o.Metrics.FeedbackTotal, o.Metrics.LabelledRows)
		o.Feedback = store
	})
	h.reg.MustRegister(store)
	return h
}

func TestFeedbackEndpoint(t *testing.T) {
	h := newFeedbackHarness(t)
	one := decodeResponse(t, h.predict(`{"inputs": [`+fraudRow+`]}`))
	batch := decodeResponse(t, h.predict(`{"inputs": [`+safeRow+`,`+fraudRow+`]}`))

	for _, tc := range []struct {
		name, body string
		status     int
		says       string
	}{
		{"malformed", `{"request_id": `, 400, "invalid JSON"},
		{"no request id", `{"label": "fraud"}`, 400, `has no "request_id"`},
		{"label and labels", fmt.Sprintf(`{"request_id": %q, "label": "fraud", "labels": ["fraud"]}`, one.RequestID), 400, `needs "label" (one row) or "labels"`},
		{"unknown field", fmt.Sprintf(`{"request_id": %q, "lable": "fraud"}`, one.RequestID), 400, `unknown field "lable"`},
		{"not a class", fmt.Sprintf(`{"request_id": %q, "label": "maybe"}`, one.RequestID), 422, `"maybe" is not a class of model fraud_model`},
		{"wrong count", fmt.Sprintf(`{"request_id": %q, "labels": ["safe"]}`, batch.RequestID), 422, "the prediction has 2 rows, the feedback 1 labels"},
		{"stray closing brackets", fmt.Sprintf(`{"request_id": %q, "label": "fraud"}]]}}`, one.RequestID), 400, "data after the JSON value"},
		{"stray bracket after a list", fmt.Sprintf(`[{"request_id": %q, "label": "fraud"}]]`, one.RequestID), 400, "data after the JSON value"},
		{"empty list", `[]`, 422, "no feedback given"},
		{"unknown request", `{"request_id": "nope", "label": "safe"}`, 404, "unknown, expired, or already labelled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := h.do("POST", "/feedback", "application/json", tc.body)
			var e errorResponse
			json.Unmarshal(rec.Body.Bytes(), &e)
			if rec.Code != tc.status || !strings.Contains(e.Error, tc.says) {
				t.Errorf("%d %s, want %d saying %q", rec.Code, rec.Body, tc.status, tc.says)
			}
		})
	}
	// The refused feedback changed nothing: both predictions still take labels.
	rec := h.do("POST", "/feedback", "application/json", fmt.Sprintf(`[{"request_id": %q, "label": "fraud"}, {"request_id": %q, "labels": ["safe", "safe"]}, {"request_id": "gone", "label": "safe"}]`, one.RequestID, batch.RequestID))
	var out struct {
		Results []feedback.Outcome `json:"results"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	if got := fmt.Sprint(out.Results); got != fmt.Sprintf("[{%s correct 1 0 fraud_model v1} {%s incorrect 1 1 fraud_model v1} {gone unknown_request 0 0  }]", one.RequestID, batch.RequestID) {
		t.Errorf("results %s", got)
	}
	s := h.snapshot()
	for k, v := range map[string]float64{
		`model_feedback_total{model_name="fraud_model",model_version="v1",result="correct"}`:   2,
		`model_feedback_total{model_name="fraud_model",model_version="v1",result="incorrect"}`: 1,
		`model_feedback_total{model_name="",model_version="",result="unknown_request"}`:        2,
		`model_accuracy_ratio{model_name="fraud_model",model_version="v1"}`:                    2.0 / 3,
	} {
		if s[k] != v {
			t.Errorf("%s = %v, want %v", k, s[k], v)
		}
	}
	for k := range s {
		if strings.Contains(k, "nope") || strings.Contains(k, "gone") {
			t.Errorf("series %s carries a client's request id", k)
		}
	}
}

func TestStatusJSON(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Gatherer = nil })
	h.srv.opts.Gatherer = h.reg
	for i := range 8 {
		row := safeRow
		if i%4 == 0 {
			row = fraudRow
		}
		h.predict(`{"inputs": [` + row + `]}`)
	}
	h.predict(`{"inputs": [[1]]}`) // a shape mismatch
	rec := h.do("GET", "/status.json", "", "")
	var s statusBody
	if err := json.Unmarshal(rec.Body.Bytes(), &s); err != nil || rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	var fm modelStatus
	for _, m := range s.Models {
		if m.Name == "fraud_model" {
			fm = m
		}
	}
	// 8 served and 1 rejected since start: the window reaches back to start.
	if fm.Requests != 8 || fm.Classes["fraud"] != 0.25 || fm.ErrorRatio != 1.0/9 || fm.RPS <= 0 || fm.P50 <= 0 || fm.P99 < fm.P50 || fm.State != "READY" {
		t.Errorf("status %+v", fm)
	}
	if s.Requests != 8 {
		t.Errorf("total %v", s.Requests)
	}
	// A browser gets the page; curl (Accept: */*) the JSON.
	if rec := h.do("GET", "/", "", "", "Accept", "text/html,application/xhtml+xml"); !strings.Contains(rec.Body.String(), "<title>modelwatch</title>") {
		t.Errorf("page: %.100s", rec.Body)
	}
	if rec := h.do("GET", "/", "", "", "Accept", "*/*"); !strings.Contains(rec.Body.String(), `"service":"modelwatch"`) {
		t.Errorf("JSON: %.100s", rec.Body)
	}
	if rec := h.do("GET", "/static/uPlot.iife.min.js", "", ""); rec.Code != 200 || rec.Body.Len() < 40000 {
		t.Errorf("uPlot: %d, %d bytes", rec.Code, rec.Body.Len())
	}
}

func TestQuantile(t *testing.T) {
	cur := map[string]float64{"h|0.1": 50, "h|0.2": 90, "h|0.4": 100, "h|+Inf": 100}
	same := func(k string) float64 { return cur[k] }
	for q, want := range map[float64]float64{0.5: 0.1, 0.7: 0.15000000000000002, 0.95: 0.30000000000000004} {
		if got := quantile(q, cur, same, "h|"); got != want {
			t.Errorf("quantile(%v) = %v, want %v", q, got, want)
		}
	}
}
