// Package metrics holds modelwatch's metric catalogue: every series the
// server exports about HTTP traffic, inference and model state, built on a
// Registerer that the caller passes in. Names, types and labels are a user
// contract (docs/METRICS.md); dashboards and rules depend on them.
package metrics

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelwatch/modelwatch/internal/model"
	"github.com/modelwatch/modelwatch/internal/version"
)

// Bucket layouts of the classic histograms. Every histogram is also a native
// histogram (bucket factor 1.1), which Prometheus scrapes when its
// native-histograms feature is on.
var (
	// LatencyBuckets resolve a sub-millisecond server: 100µs to 10s.
	LatencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	// StageBuckets are coarser, for the three or four stage series of every
	// model version: 100µs to 5s by factors of 2 and 5.
	StageBuckets = []float64{.0001, .0005, .001, .005, .01, .05, .1, .5, 1, 5}
	// SizeBuckets cover payloads from 64 bytes to 16 MiB, by powers of four.
	SizeBuckets = prometheus.ExponentialBuckets(64, 4, 10)
	// BatchBuckets are powers of two from 1 to 1024 rows.
	BatchBuckets = prometheus.ExponentialBuckets(1, 2, 11)
	// ConfidenceBuckets are finer near 1, where a good model's confidence lives.
	ConfidenceBuckets = []float64{.1, .2, .3, .4, .5, .6, .7, .8, .9, .95, .99}
)

// Stages of model_stage_duration_seconds.
const (
	StageQueue       = "queue"
	StagePreprocess  = "preprocess"
	StageInfer       = "infer"
	StagePostprocess = "postprocess"
)

// ExemplarLabel is the exemplar label that carries a request's id.
const ExemplarLabel = "request_id"

// Metrics is the catalogue. Create it once with New.
type Metrics struct {
	HTTPRequests       *prometheus.CounterVec
	HTTPDuration       *prometheus.HistogramVec
	ModelRequests      *prometheus.CounterVec
	Predictions        *prometheus.CounterVec
	PredictionDuration *prometheus.HistogramVec
	StageDuration      *prometheus.HistogramVec
	BatchSize          *prometheus.HistogramVec
	PredictionErrors   *prometheus.CounterVec
	LoadedInfo         *prometheus.GaugeVec
	LoadTime           *prometheus.GaugeVec
	LoadFailures       *prometheus.CounterVec
	ActiveRequests     *prometheus.GaugeVec
	QueueSize          *prometheus.GaugeVec
	InputSize          *prometheus.HistogramVec
	OutputSize         *prometheus.HistogramVec
	PredictedClass     *prometheus.CounterVec
	Confidence         *prometheus.HistogramVec
	FeedbackTotal      *prometheus.CounterVec
	LabelledRows       *prometheus.CounterVec

	mu     sync.Mutex
	series sync.Map // seriesKey -> *ModelSeries
}

type seriesKey struct{ name, version string }

func histogram(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:                            name,
		Help:                            help,
		Buckets:                         buckets,
		NativeHistogramBucketFactor:     1.1,
		NativeHistogramMaxBucketNumber:  160,
		NativeHistogramMinResetDuration: time.Hour,
	}, labels)
}

// New builds the catalogue and registers it, with modelwatch_build_info, on
// reg. It panics if a metric is already registered there, as registering the
// catalogue twice is a programming error.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		HTTPRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_requests_total",
			Help: "HTTP requests served, by method, route pattern and status code.",
		}, []string{"method", "endpoint", "status"}),
		HTTPDuration: histogram("http_request_duration_seconds",
			"Wall time of HTTP requests, from the first byte read to the last byte written.",
			LatencyBuckets, "method", "endpoint"),
		ModelRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "model_requests_total",
			Help: "Inference requests that reached a model, by outcome (success or error).",
		}, []string{"model_name", "model_version", "status"}),
		Predictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "model_predictions_total",
			Help: "Rows predicted; a request with a batch of 8 rows adds 8.",
		}, []string{"model_name", "model_version"}),
		PredictionDuration: histogram("model_prediction_duration_seconds",
			"Time a successful inference request spent in the model path: preprocessing, inference and postprocessing.",
			LatencyBuckets, "model_name", "model_version"),
		StageDuration: histogram("model_stage_duration_seconds",
			"Time successful inference requests spent in each stage (queue, preprocess, infer, postprocess).",
			StageBuckets, "model_name", "model_version", "stage"),
		BatchSize: histogram("model_batch_size",
			"Rows per batch executed by the model.",
			BatchBuckets, "model_name"),
		PredictionErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "model_prediction_errors_total",
			Help: "Failed inference requests by reason; a request for an unknown model counts under model_name=\"\".",
		}, []string{"model_name", "error_type"}),
		LoadedInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "model_loaded_info",
			Help: "1 for each model version that is loaded and serving, 0 for one that is known but not loaded.",
		}, []string{"model_name", "model_version", "model_type"}),
		LoadTime: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "model_load_time_seconds",
			Help: "Time the last load of the model version took.",
		}, []string{"model_name", "model_version"}),
		LoadFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "model_load_failures_total",
			Help: "Failed loads and reloads of a model.",
		}, []string{"model_name"}),
		ActiveRequests: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "active_requests",
			Help: "Inference requests in progress.",
		}, []string{"model_name"}),
		QueueSize: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "model_queue_size",
			Help: "Requests waiting for a batch slot (models with dynamic batching).",
		}, []string{"model_name"}),
		InputSize: histogram("model_input_size_bytes",
			"Size of the request bodies of successful inference requests.",
			SizeBuckets, "model_name"),
		OutputSize: histogram("model_output_size_bytes",
			"Size of the response bodies of successful inference requests.",
			SizeBuckets, "model_name"),
		PredictedClass: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "model_predicted_class_total",
			Help: "Rows predicted as each class (the class of highest probability).",
		}, []string{"model_name", "model_version", "class"}),
		Confidence: histogram("model_prediction_confidence",
			"Probability of the predicted class, one observation per row.",
			ConfidenceBuckets, "model_name", "model_version"),
		FeedbackTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "model_feedback_total",
			Help: "Labelled rows from POST /feedback by result (correct, incorrect), and labels for unknown or expired requests (unknown_request, model_name=\"\").",
		}, []string{"model_name", "model_version", "result"}),
		LabelledRows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "model_labelled_rows_total",
			Help: "Labelled rows of classifiers with at most 20 classes, by true class (the label) and predicted class: the confusion matrix.",
		}, []string{"model_name", "model_version", "true_class", "predicted_class"}),
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "modelwatch_build_info",
		Help:        "Build information of the running modelwatch; always 1.",
		ConstLabels: buildLabels(version.Get()),
	})
	build.Set(1)
	reg.MustRegister(
		m.HTTPRequests, m.HTTPDuration, m.ModelRequests, m.Predictions, m.PredictionDuration,
		m.StageDuration, m.BatchSize, m.PredictionErrors, m.LoadedInfo, m.LoadTime, m.LoadFailures,
		m.ActiveRequests, m.QueueSize, m.InputSize, m.OutputSize, m.PredictedClass, m.Confidence, m.FeedbackTotal, m.LabelledRows, build,
	)
	return m
}

func buildLabels(i version.Info) prometheus.Labels {
	return prometheus.Labels{"version": i.Version, "revision": i.Revision, "goversion": i.GoVersion}
}

// ModelSeries holds one model version's series, resolved once so the request
// path does no label lookups.
type ModelSeries struct {
	Success, Error     prometheus.Counter
	Predictions        prometheus.Counter
	PredictionDuration *SampledObserver
	Stages             map[string]prometheus.Observer
	BatchSize          prometheus.Observer
	Active             prometheus.Gauge
	InputSize          prometheus.Observer
	OutputSize         prometheus.Observer
	// Classes holds model_predicted_class_total per class, in the order of
	// the model's classes; nil for a regressor.
	Classes    []prometheus.Counter
	Confidence prometheus.Observer

	queueOnce  sync.Once
	queue      prometheus.Observer
	stageVec   *prometheus.HistogramVec
	name, vers string
}

// QueueStage returns the queue stage of model_stage_duration_seconds,
// created on first use: only models with dynamic batching queue.
func (s *ModelSeries) QueueStage() prometheus.Observer {
	s.queueOnce.Do(func() { s.queue = s.stageVec.WithLabelValues(s.name, s.vers, StageQueue) })
	return s.queue
}

// ModelLoaded records that a model version is loaded and took loadTime to
// load, and creates its series at zero, so rates and ratios exist from the
// first scrape.
func (m *Metrics) ModelLoaded(meta model.Metadata, loadTime time.Duration) *ModelSeries {
	m.LoadedInfo.WithLabelValues(meta.Name, meta.Version, meta.Type).Set(1)
	m.LoadTime.WithLabelValues(meta.Name, meta.Version).Set(loadTime.Seconds())
	m.LoadFailures.WithLabelValues(meta.Name)
	m.QueueSize.WithLabelValues(meta.Name)
	return m.Series(meta)
}

// ModelUnloaded deletes a model version's series; with lastVersion it also
// deletes the model's per-name series, so nothing freezes at its last value.
func (m *Metrics) ModelUnloaded(meta model.Metadata, lastVersion bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.series.Delete(seriesKey{meta.Name, meta.Version})
	byVersion := prometheus.Labels{"model_name": meta.Name, "model_version": meta.Version}
	for _, v := range []interface{ DeletePartialMatch(prometheus.Labels) int }{
		m.ModelRequests, m.Predictions, m.PredictionDuration, m.StageDuration, m.LoadedInfo, m.LoadTime,
		m.PredictedClass, m.Confidence, m.FeedbackTotal, m.LabelledRows,
	} {
		v.DeletePartialMatch(byVersion)
	}
	if lastVersion {
		byName := prometheus.Labels{"model_name": meta.Name}
		for _, v := range []interface{ DeletePartialMatch(prometheus.Labels) int }{
			m.BatchSize, m.PredictionErrors, m.ActiveRequests, m.QueueSize, m.InputSize, m.OutputSize, m.LoadFailures,
		} {
			v.DeletePartialMatch(byName)
		}
	}
}

// Series returns the series of a loaded model version, creating them on
// first use.
func (m *Metrics) Series(meta model.Metadata) *ModelSeries {
	key := seriesKey{meta.Name, meta.Version}
	if s, ok := m.series.Load(key); ok {
		return s.(*ModelSeries)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.series.Load(key); ok {
		return s.(*ModelSeries)
	}
	n, v := meta.Name, meta.Version
	s := &ModelSeries{
		Success:            m.ModelRequests.WithLabelValues(n, v, "success"),
		Error:              m.ModelRequests.WithLabelValues(n, v, "error"),
		Predictions:        m.Predictions.WithLabelValues(n, v),
		PredictionDuration: NewSampledObserver(m.PredictionDuration.WithLabelValues(n, v)),
		Stages:             map[string]prometheus.Observer{},
		BatchSize:          m.BatchSize.WithLabelValues(n),
		Active:             m.ActiveRequests.WithLabelValues(n),
		InputSize:          m.InputSize.WithLabelValues(n),
		OutputSize:         m.OutputSize.WithLabelValues(n),
		stageVec:           m.StageDuration,
		name:               n,
		vers:               v,
	}
	for _, st := range []string{StagePreprocess, StageInfer, StagePostprocess} {
		s.Stages[st] = m.StageDuration.WithLabelValues(n, v, st)
	}
	if meta.IsClassifier() {
		m.FeedbackTotal.WithLabelValues(n, v, "correct")
		m.FeedbackTotal.WithLabelValues(n, v, "incorrect")
		s.Confidence = m.Confidence.WithLabelValues(n, v)
		for _, c := range meta.Classes {
			s.Classes = append(s.Classes, m.PredictedClass.WithLabelValues(n, v, c))
		}
		if len(meta.Classes) <= maxConfusionClasses {
			for _, t := range meta.Classes {
				for _, p := range meta.Classes {
					m.LabelledRows.WithLabelValues(n, v, t, p)
				}
			}
		}
	}
	m.series.Store(key, s)
	return s
}

// maxConfusionClasses is feedback.MaxConfusionClasses: the most classes of a
// model whose labelled rows are counted by true and predicted class.
const maxConfusionClasses = 20

// Observe records v on o, with the request id as exemplar when o supports
// exemplars and id is not empty.
func Observe(o prometheus.Observer, v float64, requestID string) {
	if eo, ok := o.(prometheus.ExemplarObserver); ok && requestID != "" {
		eo.ObserveWithExemplar(v, prometheus.Labels{ExemplarLabel: requestID})
		return
	}
	o.Observe(v)
}

// Exemplar sampling: a histogram keeps only the latest exemplar of each
// bucket, and Prometheus reads them once a scrape, so attaching one to every
// observation costs time (an allocation-heavy call in client_golang) for
// exemplars nobody sees. A series gets an exemplar at most every
// ExemplarInterval, and always for an observation of at least
// ExemplarAlways seconds: slow requests are the ones people look up.
var (
	ExemplarInterval = 100 * time.Millisecond
	ExemplarAlways   = 0.1
)

// SampledObserver observes into a histogram with sampled exemplars.
type SampledObserver struct {
	prometheus.Observer
	last atomic.Int64 // unix nanoseconds of the last exemplar
}

// NewSampledObserver wraps o.
func NewSampledObserver(o prometheus.Observer) *SampledObserver {
	return &SampledObserver{Observer: o}
}

// ObserveAt records v at time now, with the request id as exemplar when the
// sampling allows.
func (s *SampledObserver) ObserveAt(v float64, requestID string, now time.Time) {
	if requestID != "" && s.Sample(v, now) {
		Observe(s.Observer, v, requestID)
		return
	}
	s.Observer.Observe(v)
}

// Sample reports whether an observation of v at now is to carry an
// exemplar (at most one every ExemplarInterval, and every one of at least
// ExemplarAlways seconds), and takes the series' turn when it is; the caller
// then observes with ObserveWithExemplar, otherwise with Observe. ObserveAt
// is the two together for an exemplar of the request id alone.
func (s *SampledObserver) Sample(v float64, now time.Time) bool {
	last, t := s.last.Load(), now.UnixNano()
	return (t-last >= int64(ExemplarInterval) || v >= ExemplarAlways) && s.last.CompareAndSwap(last, t)
}

// ObserveWithExemplar records v with the exemplar labels, which must keep
// to OpenMetrics' 128 characters of names and values in all (client_golang
// panics otherwise). An observer without exemplars records v alone.
func (s *SampledObserver) ObserveWithExemplar(v float64, labels prometheus.Labels) {
	if eo, ok := s.Observer.(prometheus.ExemplarObserver); ok {
		eo.ObserveWithExemplar(v, labels)
		return
	}
	s.Observer.Observe(v)
}

// StatusLabel returns the status label value for an HTTP status code.
func StatusLabel(code int) string {
	if code >= 100 && code < 600 {
		return strconv.Itoa(code)
	}
	return "other"
}
