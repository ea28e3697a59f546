package predlog_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelwatch/modelwatch/internal/predlog"
	"github.com/modelwatch/modelwatch/internal/predlog/predlogtest"
)

// BenchmarkAppend is the prediction log's cost on the request path: queuing
// the record of a one-row request (8 features, 2 classes), with the writer
// draining into a store that takes everything at once.
func BenchmarkAppend(b *testing.B) {
	for _, c := range []struct {
		share   float64
		journal bool
	}{{1, false}, {1, true}, {0, false}} {
		b.Run(fmt.Sprintf("sample=%v/journal=%v", c.share, c.journal), func(b *testing.B) {
			opts := predlog.DefaultOptions()
			opts.Sample = c.share
			if c.journal {
				opts.JournalDir = b.TempDir()
			}
			reg := prometheus.NewRegistry()
			l, err := predlog.New(&predlogtest.Store{}, opts, reg)
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close(context.Background())
			recs := records(1, time.Now())
			b.ReportAllocs()
			for b.Loop() {
				l.Append(recs)
			}
			reportDropped(b, reg)
		})
	}
	b.Run("parallel", func(b *testing.B) {
		reg := prometheus.NewRegistry()
		l, err := predlog.New(&predlogtest.Store{}, predlog.DefaultOptions(), reg)
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close(context.Background())
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			recs := records(1, time.Now())
			for pb.Next() {
				l.Append(recs)
			}
		})
		reportDropped(b, reg)
	})
}

// reportDropped reports the share of appended records dropped because the
// queue was full: the benchmark appends faster than any store writes.
func reportDropped(b *testing.B, reg *prometheus.Registry) {
	b.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "model_prediction_log_dropped_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == predlog.DropQueueFull {
				b.ReportMetric(m.GetCounter().GetValue()/float64(b.N), "dropped/op")
			}
		}
	}
}

// BenchmarkSQLiteWrite is the embedded store's sustained write rate, in
// batches of one-row records (8 features, 2 classes), as the Log writes
// them. The rate falls as the file grows: request ids are random, so each
// batch dirties pages all over the request_id index; run it with
// -benchtime 1000x (a million rows) to see the rate of a full file.
func BenchmarkSQLiteWrite(b *testing.B) {
	for _, size := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			ctx := context.Background()
			s, err := predlog.OpenSQLite(ctx, filepath.Join(b.TempDir(), predlog.SQLiteFileName), predlog.SQLiteOptions{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			batch := records(size, time.Now())
			for i := 0; b.Loop(); i++ {
				for j := range batch {
					batch[j].RequestID = fmt.Sprintf("%024x", predlog.HashID(fmt.Sprintf("b%d-%d", i, j)))
				}
				if err := s.Write(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

// BenchmarkLogSQLite is the whole embedded pipeline's sustained rate: each
// op queues 100,000 one-row requests at once and closes the Log, which
// returns when all are in the file. Past this rate the queue fills and
// requests are dropped (queue_full).
func BenchmarkLogSQLite(b *testing.B) {
	ctx := context.Background()
	s, err := predlog.OpenSQLite(ctx, filepath.Join(b.TempDir(), predlog.SQLiteFileName), predlog.SQLiteOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const n = 100000
	recs := records(n, time.Now())
	for i := 0; b.Loop(); i++ {
		for j := range recs {
			recs[j].RequestID = fmt.Sprintf("l%d-%d", i, j)
		}
		opts := predlog.DefaultOptions()
		opts.QueueSize = n
		l, err := predlog.New(s, opts, prometheus.NewRegistry())
		if err != nil {
			b.Fatal(err)
		}
		for j := range recs {
			l.Append(recs[j : j+1])
		}
		if err := l.Close(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "rows/s")
}
