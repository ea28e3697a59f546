package predlog

import (
	"testing"
	"time"
)

// BenchmarkJournalAppend is the journal's cost on the request path: encoding
// a one-row request's record (8 features, 2 classes) and copying it into the
// mapped segment. Segments are rotated every 2,000 appends (a 100 ms batch at
// 20,000 requests a second), with the next one prepared and the old one
// sealed off the clock, as the Log's writer does.
func BenchmarkJournalAppend(b *testing.B) {
	j, _, _, err := OpenJournal(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer j.close(true)
	recs := []Record{{RequestID: "7QWERTYUIOPASDFGHJKLZXCV", Time: time.Now(), Model: "fraud_model", Version: "v1",
		Input: []float64{950, 2, 8, 120.5, 11, 12, 0.5, 1}, Class: "fraud", Output: []float64{0.07, 0.93}}}
	n := uint64(0)
	b.ReportAllocs()
	for b.Loop() {
		if err := j.append(recs, n); err != nil {
			b.Fatal(err)
		}
		n++
		if n%2000 == 0 {
			b.StopTimer()
			m, err := j.newSegment(j.seq, segmentSize)
			if err != nil {
				b.Fatal(err)
			}
			j.seq++
			j.next = &m
			j.rotate(n)
			sealAll(j.unsealed)
			j.unsealed = nil
			j.remove(j.release(n))
			b.StartTimer()
		}
	}
}
