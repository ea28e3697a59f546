// Command baseline is the ceiling of the throughput benchmark: a bare Go
// net/http server whose POST /predict reads the body and answers a fixed JSON
// prediction, with no model, no validation and no metrics.
package main

import (
	"flag"
	"io"
	"log"
	"net/http"
)

const answer = `{"model_name":"fraud_model","model_version":"v1","request_id":"fixed","prediction":"safe","confidence":0.99,"predictions":[{"class":"safe","confidence":0.99}],"latency_ms":0.01}` + "\n"

func main() {
	addr := flag.String("listen-address", "127.0.0.1:8002", "address to listen on")
	flag.Parse()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /predict", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, answer)
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "# none\n") })
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"status":"healthy"}`) })
	log.Fatal(http.ListenAndServe(*addr, mux))
}
