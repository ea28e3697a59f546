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
		store = feedback.New(feedback.Options{MinLabels: 1}, o.Metrics.FeedbackTotal)
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
