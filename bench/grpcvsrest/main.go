// Command grpcvsrest compares the Open Inference Protocol over gRPC
// (ModelInfer with raw_input_contents) with REST (POST /v2/models/{m}/infer,
// JSON) on one running modelwatch serve, at the same concurrency and batch
// size, in alternating rounds, and prints a Markdown table of requests/s,
// rows/s and latency percentiles per protocol and batch size.
//
//	go run ./bench/grpcvsrest --http 127.0.0.1:8000 --grpc 127.0.0.1:8001 \
//	    --batches 1,64 --concurrency 8 --duration 10s --rounds 3
//
// Each worker has a connection of its own (an HTTP/1.1 keep-alive one, or a
// gRPC channel), sends one request at a time and checks each answer. The
// rows are random values of the embedded fraud_model's six features.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/modelwatch/modelwatch/internal/grpc/inferencepb"
	"github.com/modelwatch/modelwatch/internal/grpc/rawtensor"
	"github.com/modelwatch/modelwatch/internal/model"
)

func main() {
	httpAddr := flag.String("http", "127.0.0.1:8000", "modelwatch's HTTP API address")
	grpcAddr := flag.String("grpc", "127.0.0.1:8001", "modelwatch's gRPC address")
	batches := flag.String("batches", "1,64", "batch sizes (rows per request), comma-separated")
	conc := flag.Int("concurrency", 8, "workers, each with a connection of its own")
	dur := flag.Duration("duration", 10*time.Second, "length of one run")
	warm := flag.Duration("warmup", 2*time.Second, "unmeasured load before each run")
	rounds := flag.Int("rounds", 3, "alternating rounds per protocol and batch size")
	modelName := flag.String("model", "fraud_model", "model to call: one FP32 input named input of shape [-1, 6]")
	pid := flag.Int("pid", 0, "the server's process id, to report its CPU time per request (Linux /proc); 0 for none")
	flag.Parse()

	type key struct {
		proto string
		batch int
	}
	results := map[key][]result{}
	var sizes []int
	for _, s := range strings.Split(*batches, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			log.Fatalf("bad batch size %q", s)
		}
		sizes = append(sizes, n)
	}
	for r := 0; r < *rounds; r++ {
		for _, b := range sizes {
			for _, p := range []string{"REST", "gRPC"} {
				var mk func() (func() error, func())
				if p == "REST" {
					mk = restWorker(*httpAddr, *modelName, b)
				} else {
					mk = grpcWorker(*grpcAddr, *modelName, b)
				}
				res := load(mk, *conc, *warm, *dur, *pid)
				fmt.Fprintf(os.Stderr, "round %d %s batch %d: %.0f req/s p50 %.3f ms p99 %.3f ms server CPU %.1f µs/request errors %d\n", r+1, p, b, res.rps, ms(res.p50), ms(res.p99), res.cpu, res.errors)
				results[key{p, b}] = append(results[key{p, b}], res)
			}
		}
	}
	fmt.Println("| protocol | batch | requests/s | rows/s | p50 ms | p99 ms | server CPU µs/request | rounds (requests/s) |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	for _, b := range sizes {
		for _, p := range []string{"REST", "gRPC"} {
			rs := results[key{p, b}]
			med := median(rs)
			var each []string
			for _, r := range rs {
				each = append(each, fmt.Sprintf("%.0f", r.rps))
			}
			cpus := make([]float64, len(rs))
			for i, r := range rs {
				cpus[i] = r.cpu
			}
			slices.Sort(cpus)
			fmt.Printf("| %s | %d | %.0f | %.0f | %.3f | %.3f | %.1f | %s |\n", p, b, med.rps, med.rps*float64(b), ms(med.p50), ms(med.p99), cpus[len(cpus)/2], strings.Join(each, " / "))
		}
	}
}

type result struct {
	rps      float64
	p50, p99 time.Duration
	errors   int
	// cpu is the server's CPU time (user and system) per request, in µs.
	cpu float64
}

// cpuTicks reads a process's user and system time, in clock ticks (1/100 s
// on Linux), from /proc.
func cpuTicks(pid int) float64 {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		log.Fatal(err)
	}
	// The fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return u + st
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// median returns the round with the median requests/s.
func median(rs []result) result {
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b result) int { return int(a.rps - b.rps) })
	return s[len(s)/2]
}

// load runs conc workers made by mk for warm, then for dur, and measures
// the second part.
func load(mk func() (func() error, func()), conc int, warm, dur time.Duration, pid int) result {
	var mu sync.Mutex
	var lat []time.Duration
	errs := 0
	var wg sync.WaitGroup
	start := time.Now()
	measureFrom, end := start.Add(warm), start.Add(warm+dur)
	for i := 0; i < conc; i++ {
		call, closeFn := mk()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer closeFn()
			var mine []time.Duration
			bad := 0
			for {
				t0 := time.Now()
				if !t0.Before(end) {
					break
				}
				err := call()
				if t0.After(measureFrom) {
					if err != nil {
						bad++
					} else {
						mine = append(mine, time.Since(t0))
					}
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			errs += bad
			mu.Unlock()
		}()
	}
	var ticks0 float64
	time.AfterFunc(time.Until(measureFrom), func() { ticks0 = cpuTicks(pid) })
	time.Sleep(time.Until(end))
	ticks1 := cpuTicks(pid)
	wg.Wait()
	slices.Sort(lat)
	if len(lat) == 0 {
		return result{errors: errs}
	}
	return result{rps: float64(len(lat)) / dur.Seconds(), p50: lat[len(lat)/2], p99: lat[len(lat)*99/100], errors: errs,
		cpu: (ticks1 - ticks0) * 1e4 / float64(len(lat))}
}

// rows returns n random rows of the fraud model's six features.
func rows(n int) []float32 {
	out := make([]float32, 6*n)
	for i := range out {
		out[i] = float32(rand.IntN(100000)) / 100
	}
	return out
}

func restWorker(addr, name string, batch int) func() (func() error, func()) {
	return func() (func() error, func()) {
		vals := rows(batch)
		data, _ := json.Marshal(vals)
		body := []byte(fmt.Sprintf(`{"inputs": [{"name": "input", "datatype": "FP32", "shape": [%d, 6], "data": %s}]}`, batch, data))
		url := "http://" + addr + "/v2/models/" + name + "/infer"
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
		buf := make([]byte, 0, 64<<10)
		return func() error {
				resp, err := client.Post(url, "application/json", bytes.NewReader(body))
				if err != nil {
					return err
				}
				b := bytes.NewBuffer(buf[:0])
				_, err = io.Copy(b, resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode != 200 {
					err = fmt.Errorf("status %d: %s", resp.StatusCode, b)
				}
				return err
			}, func() {
				client.CloseIdleConnections()
			}
	}
}

func grpcWorker(addr, name string, batch int) func() (func() error, func()) {
	return func() (func() error, func()) {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			log.Fatal(err)
		}
		c := inferencepb.NewGRPCInferenceServiceClient(conn)
		raw, _ := rawtensor.EncodeRaw(model.Tensor{DataType: model.FP32, Shape: []int64{int64(batch), 6}, Data: rows(batch)})
		req := &inferencepb.ModelInferRequest{ModelName: name, RawInputContents: [][]byte{raw},
			Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{{Name: "input", Datatype: "FP32", Shape: []int64{int64(batch), 6}}}}
		return func() error {
			resp, err := c.ModelInfer(context.Background(), req)
			if err == nil && len(resp.GetRawOutputContents()) == 0 {
				err = fmt.Errorf("no raw outputs")
			}
			return err
		}, func() { conn.Close() }
	}
}
