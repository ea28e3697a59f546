package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/modelwatch/modelwatch/internal/model"
)

// errorType is the error_type label of model_prediction_errors_total. The
// set is closed: every value is one of the constants below.
type errorType string

const (
	errInvalidJSON      errorType = "invalid_json"           // 400: the body is not JSON
	errInvalidRequest   errorType = "invalid_request"        // 400: JSON of the wrong shape or types
	errInvalidInput     errorType = "invalid_input"          // 422: well-formed, but values the model cannot take
	errShapeMismatch    errorType = "shape_mismatch"         // 422: ragged rows or a wrong number of features
	errEmptyBatch       errorType = "empty_batch"            // 422: no rows
	errBatchTooLarge    errorType = "batch_too_large"        // 413: more rows than --max-batch-rows
	errBodyTooLarge     errorType = "body_too_large"         // 413: body over --max-body-bytes
	errMediaType        errorType = "unsupported_media_type" // 415: not application/json
	errModelNotFound    errorType = "model_not_found"        // 404
	errVersionNotFound  errorType = "version_not_found"      // 404
	errMethodNotAllowed errorType = "method_not_allowed"     // 405
	errNotFound         errorType = "not_found"              // 404: no such endpoint (never counted: not an inference route)
	errLoadFailed       errorType = "load_failed"            // 400: a model load on request failed (repository extension; not counted)
	errUnknownRequest   errorType = "unknown_request"        // 404: feedback for a request id no prediction waits for (not counted)
	errUnavailable      errorType = "unavailable"            // 503: an inference request while the server starts and its models load; feedback while the prediction log's store cannot be read or written (not counted)
	errUnauthorized     errorType = "unauthorized"           // 401: no valid bearer token (counted in modelwatch_http_auth_refused_total instead)
	errForbidden        errorType = "forbidden"              // 403: the credential does not allow the endpoint on this listener (counted likewise)
	errTimeout          errorType = "timeout"                // 504: --request-timeout passed
	errOverloaded       errorType = "overloaded"             // 429: the model's queue is full; 503: too many requests in flight
	errCanceled         errorType = "canceled"               // 499: the client went away
	errModelFailed      errorType = "model_error"            // 500: the model returned an error
	errInternal         errorType = "internal"               // 500: a panic or a bug
)

// errorStatus is the one table from error type to HTTP status.
var errorStatus = map[errorType]int{
	errInvalidJSON:      http.StatusBadRequest,
	errInvalidRequest:   http.StatusBadRequest,
	errInvalidInput:     http.StatusUnprocessableEntity,
	errShapeMismatch:    http.StatusUnprocessableEntity,
	errEmptyBatch:       http.StatusUnprocessableEntity,
	errBatchTooLarge:    http.StatusRequestEntityTooLarge,
	errBodyTooLarge:     http.StatusRequestEntityTooLarge,
	errMediaType:        http.StatusUnsupportedMediaType,
	errModelNotFound:    http.StatusNotFound,
	errVersionNotFound:  http.StatusNotFound,
	errMethodNotAllowed: http.StatusMethodNotAllowed,
	errNotFound:         http.StatusNotFound,
	errLoadFailed:       http.StatusBadRequest,
	errUnknownRequest:   http.StatusNotFound,
	errUnavailable:      http.StatusServiceUnavailable,
	errUnauthorized:     http.StatusUnauthorized,
	errForbidden:        http.StatusForbidden,
	errTimeout:          http.StatusGatewayTimeout,
	errOverloaded:       http.StatusTooManyRequests,
	errCanceled:         499, // the status nginx and Envoy log for a client that closed the request
	errModelFailed:      http.StatusInternalServerError,
	errInternal:         http.StatusInternalServerError,
}

// errorTypes lists every error type, for tests and documentation.
func errorTypes() []errorType {
	out := make([]errorType, 0, len(errorStatus))
	for t := range errorStatus {
		out = append(out, t)
	}
	return out
}

// apiError is what a handler returns when it cannot answer. Its message is
// for the client; it may quote client input, since it never becomes a label.
type apiError struct {
	typ errorType
	msg string
	// status overrides the table's status when not 0.
	statusCode int
	// retryAfter, in seconds, is sent as Retry-After when not 0.
	retryAfter int
	// model is the loaded model the request was for, or "" when there is
	// none (no such model, or the request did not get far enough to say). It
	// becomes the model_name label, so it is never taken from the request
	// without checking that the model is loaded.
	model string
	// cause is the error behind it, when there is one: logged with the
	// error's chain intact, while the client gets msg.
	cause error
}

func (e *apiError) Error() string { return string(e.typ) + ": " + e.msg }

func (e *apiError) status() int {
	if e.statusCode != 0 {
		return e.statusCode
	}
	return errorStatus[e.typ]
}

func newError(typ errorType, format string, args ...any) *apiError {
	return &apiError{typ: typ, msg: fmt.Sprintf(format, args...)}
}

// wrapError is newError keeping the error that caused it, as Prometheus's
// apiError does: the client gets the worded message, the log and errors.Is
// the cause.
func wrapError(typ errorType, cause error, format string, args ...any) *apiError {
	e := newError(typ, format, args...)
	e.cause = cause
	return e
}

// Unwrap returns the error behind e, nil when there is none.
func (e *apiError) Unwrap() error { return e.cause }

// fromModelError maps an error from the model package or a model's Predict
// to an apiError.
func fromModelError(err error) *apiError {
	var pe *model.PanicError
	switch {
	case errors.Is(err, model.ErrModelNotFound):
		return newError(errModelNotFound, "no model of that name is loaded")
	case errors.Is(err, model.ErrVersionNotFound):
		return newError(errVersionNotFound, "the model has no version of that name loaded")
	case errors.Is(err, context.DeadlineExceeded):
		return newError(errTimeout, "inference did not finish within the request timeout")
	case errors.Is(err, context.Canceled):
		return newError(errCanceled, "the client closed the request")
	case errors.As(err, &pe):
		return wrapError(errInternal, err, "the model failed unexpectedly")
	case errors.Is(err, model.ErrOverloaded):
		e := newError(errOverloaded, "the model's queue is full; retry shortly")
		e.retryAfter = 1
		return e
	case errors.Is(err, model.ErrInvalidInput):
		return newError(errInvalidInput, "%v", err)
	default:
		return wrapError(errModelFailed, err, "the model failed: %v", err)
	}
}
