// Command otlpsink is the trace receiver of the tracing benchmark: an OTLP
// HTTP endpoint whose POST /v1/traces reads the batch and accepts it (an
// empty ExportTraceServiceResponse), keeping nothing, so that what the
// benchmark measures is modelwatch's cost of tracing rather than a
// backend's.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"sync/atomic"
)

func main() {
	addr := flag.String("listen-address", "127.0.0.1:4318", "address to listen on")
	flag.Parse()
	var batches, bytes atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		batches.Add(1)
		bytes.Add(n)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%d %d\n", batches.Load(), bytes.Load())
	})
	log.Fatal(http.ListenAndServe(*addr, mux))
}
