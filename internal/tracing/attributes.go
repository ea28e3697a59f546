package tracing

import "go.opentelemetry.io/otel/attribute"

// modelwatch's own span attributes, beside OpenTelemetry's semantic
// conventions (docs/TRACING.md lists where each appears).
const (
	// ModelNameKey is the model a request or a load is for.
	ModelNameKey = attribute.Key("modelwatch.model.name")
	// ModelVersionKey is the model version a request or a load is for.
	ModelVersionKey = attribute.Key("modelwatch.model.version")
	// ModelTypeKey is the runtime of a loaded version (xgboost, onnx, ...).
	ModelTypeKey = attribute.Key("modelwatch.model.type")
	// RowsKey is the number of rows (the batch size) of an inference
	// request.
	RowsKey = attribute.Key("modelwatch.rows")
	// RequestIDKey is the request's id: its X-Request-ID, the request_id
	// of its answer, its exemplars, its logs and POST /feedback.
	RequestIDKey = attribute.Key("modelwatch.request_id")
	// ErrorTypeKey is the error_type of a failed request, from the closed
	// list of docs/METRICS.md (the value of error.type too).
	ErrorTypeKey = attribute.Key("modelwatch.error_type")
	// LoadOutcomeKey is how a model version load ended: loaded, reloaded
	// or failed.
	LoadOutcomeKey = attribute.Key("modelwatch.load.outcome")
	// ModelSourceKey is where a loaded version comes from: the model
	// repository or the embedded models.
	ModelSourceKey = attribute.Key("modelwatch.model.source")
)
