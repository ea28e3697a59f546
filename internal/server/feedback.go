package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/modelwatch/modelwatch/internal/feedback"
)

// maxFeedbackItems bounds the labels of one POST /feedback.
const maxFeedbackItems = 1000

type feedbackItem struct {
	RequestID string                         `json:"request_id"`
	Label     *string                        `json:"label"`
	Labels    boundedList[string, maxLabels] `json:"labels"`
}

// feedbackItems is a list of feedback decoded one item at a time, refusing
// more than maxFeedbackItems items or 65,536 labels in all before decoding
// them.
type feedbackItems []feedbackItem

// UnmarshalJSON implements json.Unmarshaler.
func (f *feedbackItems) UnmarshalJSON(raw []byte) error {
	labels := 0
	return decodeList(raw, "the feedback", func(dec *json.Decoder) error {
		if len(*f) == maxFeedbackItems {
			return &decodeError{typ: errBatchTooLarge, msg: fmt.Sprintf("more than %d feedback items", maxFeedbackItems)}
		}
		var it feedbackItem
		if err := dec.Decode(&it); err != nil {
			return err
		}
		if labels += len(it.Labels); labels > 1<<16 {
			return &decodeError{typ: errBatchTooLarge, msg: fmt.Sprintf("more than %d labels in all", 1<<16)}
		}
		*f = append(*f, it)
		return nil
	}, func() { *f = nil })
}

// feedback serves POST /feedback: {"request_id": ..., "label": ...} for a
// one-row prediction, "labels" for one per row, or a list of such objects.
// A single object for an unknown or expired request answers 404; a list
// answers 200 with each item's result.
func (s *Server) feedback(r *http.Request) (any, *apiError) {
	if s.opts.Feedback == nil {
		return nil, newError(errNotFound, "feedback is turned off on this server")
	}
	if err := checkJSONContent(r); err != nil {
		return nil, err
	}
	body, charged, aerr := s.readBody(r)
	if aerr != nil {
		return nil, aerr
	}
	defer s.bodyDone(charged)
	var items feedbackItems
	single := len(bytes.TrimSpace(body)) > 0 && bytes.TrimSpace(body)[0] == '{'
	var err error
	if single {
		var one feedbackItem
		err = strictDecode(body, &one)
		items = feedbackItems{one}
	} else {
		err = strictDecode(body, &items)
	}
	if err != nil {
		return nil, jsonError(err, body)
	}
	if len(items) == 0 {
		return nil, newError(errEmptyBatch, "no feedback given")
	}
	if len(items) > maxFeedbackItems {
		return nil, newError(errBatchTooLarge, "%d feedback items, over the limit of %d", len(items), maxFeedbackItems)
	}
	labels := make([]feedback.Label, len(items))
	for i, it := range items {
		switch {
		case it.RequestID == "":
			return nil, newError(errInvalidRequest, `feedback %d has no "request_id"`, i)
		case (it.Label == nil) == (it.Labels == nil):
			return nil, newError(errInvalidRequest, `feedback %d needs "label" (one row) or "labels" (one per row), not both`, i)
		case it.Label != nil:
			labels[i] = feedback.Label{RequestID: it.RequestID, Labels: []string{*it.Label}}
		default:
			labels[i] = feedback.Label{RequestID: it.RequestID, Labels: it.Labels}
		}
	}
	var out []feedback.Outcome
	if s.opts.PredictionLog != nil {
		var aerr *apiError
		if out, aerr = s.feedbackThroughLog(r.Context(), labels); aerr != nil {
			return nil, aerr
		}
	} else {
		var err error
		out, err = s.opts.Feedback.Apply(labels)
		if errors.Is(err, feedback.ErrInvalid) {
			return nil, newError(errInvalidInput, "%v", err)
		} else if err != nil {
			return nil, wrapError(errInternal, err, "%v", err)
		}
	}
	if single {
		if out[0].Result == feedback.UnknownRequest {
			if s.opts.PredictionLog != nil {
				return nil, newError(errUnknownRequest, "no prediction waits for that request id in the prediction log: never logged (or outside --prediction-log-sample), past --prediction-log-retention, or already labelled")
			}
			return nil, newError(errUnknownRequest, "no prediction waits for that request id: unknown, expired, or already labelled")
		}
		return out[0], nil
	}
	return map[string]any{"results": out}, nil
}

func strictDecode(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	// More() would pass a stray ']' or '}'; only the end of input may follow.
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON value")
	}
	return nil
}
