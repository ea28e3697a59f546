package predlog

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a record is dropped, the closed set of values of the reason label
// of model_prediction_log_dropped_total.
const (
	// DropQueueFull: the queue was full when the request was appended.
	DropQueueFull = "queue_full"
	// DropStoreError: the store refused the batch after every retry and
	// there is no spool to keep it.
	DropStoreError = "store_error"
	// DropSpoolFull: the store was down and the spool had no room left.
	DropSpoolFull = "spool_full"
	// DropSpoolCorrupt: a spooled batch, or a journal frame cut short by a
	// machine's crash, could not be read back.
	DropSpoolCorrupt = "spool_corrupt"
	// DropShutdown: the log was closed, or Close's deadline passed before
	// the record was written and no journal keeps it for the next start.
	DropShutdown = "shutdown"
	// DropRejected: the store refused the batch's data (ErrRejected).
	DropRejected = "rejected"
)

// DropReasons lists every reason a record is dropped.
var DropReasons = []string{DropQueueFull, DropStoreError, DropSpoolFull, DropSpoolCorrupt, DropShutdown, DropRejected}

// Reasons Prune deletes records, the values of the reason label of
// model_prediction_log_pruned_total.
const (
	PruneRetention = "retention"
	PruneSize      = "size"
)

// metrics are a Log's metric families.
type metrics struct {
	dropped    *prometheus.CounterVec
	written    prometheus.Counter
	spooled    prometheus.Counter
	sampledOut prometheus.Counter
	pruned     *prometheus.CounterVec
	up         prometheus.Gauge
	duration   prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, l *Log) *metrics {
	m := &metrics{
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "model_prediction_log_dropped_total",
			Help: "Prediction records not written to the prediction log, by reason.",
		}, []string{"reason"}),
		written: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "model_prediction_log_written_total",
			Help: "Prediction records the prediction log's store accepted, replayed ones from the spool included.",
		}),
		spooled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "model_prediction_log_spooled_total",
			Help: "Prediction records put in the on-disk spool while the store could not take them.",
		}),
		sampledOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "model_prediction_log_sampled_out_total",
			Help: "Prediction records not logged because their request fell outside the sample share.",
		}),
		pruned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "model_prediction_log_pruned_total",
			Help: "Prediction records deleted from the store, by reason (retention, size).",
		}, []string{"reason"}),
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "model_prediction_log_store_up",
			Help: "1 when the prediction log's last write to its store succeeded, 0 when it failed.",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:                        "model_prediction_log_write_duration_seconds",
			Help:                        "Time to write one batch of records to the prediction log's store, failed attempts included.",
			Buckets:                     []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
			NativeHistogramBucketFactor: 1.1,
		}),
	}
	for _, r := range DropReasons {
		m.dropped.WithLabelValues(r)
	}
	m.pruned.WithLabelValues(PruneRetention)
	m.pruned.WithLabelValues(PruneSize)
	m.up.Set(1)
	queueLength := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "model_prediction_log_queue_length",
		Help: "Prediction records waiting in the queue to be written.",
	}, func() float64 { return float64(l.QueueLen()) })
	queueCapacity := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "model_prediction_log_queue_capacity",
		Help: "Prediction records the queue holds at most; past it records are dropped (reason queue_full).",
	}, func() float64 { return float64(l.opts.QueueSize) })
	lag := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "model_prediction_log_lag_seconds",
		Help: "Age of the oldest record waiting in the queue, 0 when it is empty.",
	}, func() float64 { return l.Lag().Seconds() })
	spoolBytes := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "model_prediction_log_spool_bytes",
		Help: "Bytes of batches waiting in the on-disk spool for the store to come back.",
	}, func() float64 {
		if l.opts.Spool == nil {
			return 0
		}
		return float64(l.opts.Spool.Bytes())
	})
	reg.MustRegister(m.dropped, m.written, m.spooled, m.sampledOut, m.pruned, m.up, m.duration,
		queueLength, queueCapacity, lag, spoolBytes)
	return m
}
