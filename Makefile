# modelwatch: build and test. `make test` is what CI runs (.ci/run).
GO ?= go
# Fuzzing runs a number of executions, not a duration: with a duration, Go 1.26's fuzz
# coordinator can report its own deadline as a failure (go.dev/issue/75804).
FUZZTIME ?= 50000x
FUZZMINIMIZE ?= 200x

ONNXRUNTIME_VERSION ?= 1.24.1
ONNXRUNTIME_LIB := .cache/onnxruntime/$(ONNXRUNTIME_VERSION)/libonnxruntime.so.1

# Prometheus 3, built from the Go module proxy: the module version of a
# release and the release it is (v0.316.0 is 3.16.0).
PROMETHEUS3_MODULE ?= v0.316.0
PROMETHEUS3_RELEASE ?= 3.16.0
PROMETHEUS3_DIR := .cache/prometheus/$(PROMETHEUS3_MODULE)
# Of the service discoveries only Kubernetes' (static and file discovery are
# built in): the others' cloud SDKs take most of a full build's time.
PROMETHEUS3_TAGS ?= remove_all_sd,enable_kubernetes_sd
# Where the deploy and chart tests find it; Debian's 2.x is on PATH.
export MODELWATCH_TEST_PROMETHEUS3 ?= $(CURDIR)/$(PROMETHEUS3_DIR)

# Jaeger v2 all-in-one for the tracing tests, from the Go module proxy:
# module v1.76.0 is release 2.13.0 (the Compose file's image). Its go.mod
# has a replace directive, which `go install pkg@version` refuses, so it is
# built inside the downloaded module, with that module's own go.mod and go.sum.
JAEGER_MODULE ?= v1.76.0
JAEGER_RELEASE ?= 2.13.0
JAEGER_DIR := .cache/jaeger/$(JAEGER_MODULE)
export MODELWATCH_TEST_JAEGER ?= $(CURDIR)/$(JAEGER_DIR)/jaeger

# The gRPC API: Go code generated from api/inference/v2/*.proto by Debian's
# protoc (protobuf-compiler) and two plugins built from the Go module proxy,
# protoc-gen-go at go.mod's google.golang.org/protobuf version.
MODULE := github.com/modelwatch/modelwatch
PROTOC ?= protoc
PROTOC_GEN_GO_VERSION ?= v1.36.12
PROTOC_GEN_GO_GRPC_VERSION ?= v1.6.2
PROTO_PLUGINS := .cache/protoc-plugins/go-$(PROTOC_GEN_GO_VERSION)-grpc-$(PROTOC_GEN_GO_GRPC_VERSION)
PROTO_FILES := api/inference/v2/grpc_predict_v2.proto
PROTO_GO_DIR := internal/grpc/inferencepb
PROTOC_FLAGS = -I api \
	--plugin=protoc-gen-go=$(PROTO_PLUGINS)/protoc-gen-go \
	--plugin=protoc-gen-go-grpc=$(PROTO_PLUGINS)/protoc-gen-go-grpc \
	--go_opt=module=$(MODULE) --go-grpc_opt=module=$(MODULE)

# gRPC command-line tools, built from the Go module proxy into
# .cache/<tool>/<version>/; the tests find them through these variables.
GRPCURL_VERSION ?= v1.9.4
GRPC_HEALTH_PROBE_VERSION ?= v0.4.63
GHZ_VERSION ?= v0.93.0
GRPCURL := .cache/grpcurl/$(GRPCURL_VERSION)/grpcurl
GRPC_HEALTH_PROBE := .cache/grpc-health-probe/$(GRPC_HEALTH_PROBE_VERSION)/grpc-health-probe
GHZ := .cache/ghz/$(GHZ_VERSION)/ghz
export MODELWATCH_TEST_GRPCURL ?= $(CURDIR)/$(GRPCURL)
export MODELWATCH_TEST_GRPC_HEALTH_PROBE ?= $(CURDIR)/$(GRPC_HEALTH_PROBE)
export MODELWATCH_TEST_GHZ ?= $(CURDIR)/$(GHZ)

.PHONY: all build test fmt-check vet race nocgo fuzz chart bench fixtures clean onnxruntime chart-files prometheus3 deploy-test jaeger
.PHONY: proto proto-check proto-plugins grpc-tools tools

all: build

build:
	$(GO) build -o bin/modelwatch ./cmd/modelwatch

## test: everything CI checks: formatting, vet, the race-enabled test suite,
## a build without cgo, a short fuzzing run of every request decoder, and the
## Helm chart's tests; deploy/ against Debian's Prometheus 2.x and Prometheus 3.
test: tools proto-check fmt-check vet race nocgo fuzz chart

## tools: what the tests run beside the server, fetched or built into .cache/
## once per version. `make -j3 tools` builds them side by side (.ci/run does):
## Jaeger's build is the longest, and the others fit in beside it.
tools: onnxruntime prometheus3 jaeger $(GRPCURL) $(GRPC_HEALTH_PROBE) proto-plugins

## onnxruntime: ONNX Runtime's shared library for the tests, from the
## onnxruntime-node npm package (npm pack; needs npm).
onnxruntime: $(ONNXRUNTIME_LIB)

$(ONNXRUNTIME_LIB):
	ONNXRUNTIME_VERSION=$(ONNXRUNTIME_VERSION) scripts/fetch-onnxruntime.sh

## prometheus3: Prometheus 3's server and promtool from the Go module proxy,
## built once per version into .cache/prometheus/<module version>/.
prometheus3: $(PROMETHEUS3_DIR)/prometheus $(PROMETHEUS3_DIR)/promtool

$(PROMETHEUS3_DIR)/prometheus $(PROMETHEUS3_DIR)/promtool:
	GOBIN=$(CURDIR)/$(PROMETHEUS3_DIR) $(GO) install -tags $(PROMETHEUS3_TAGS) \
		-ldflags '-X github.com/prometheus/common/version.Version=$(PROMETHEUS3_RELEASE)' \
		github.com/prometheus/prometheus/cmd/$(@F)@$(PROMETHEUS3_MODULE)

## proto: regenerate the gRPC API's Go code (internal/grpc/inferencepb) from
## api/inference/v2/ (needs protoc: Debian's protobuf-compiler).
proto: proto-plugins
	$(PROTOC) $(PROTOC_FLAGS) --go_out=. --go-grpc_out=. $(PROTO_FILES)

## proto-check: fail when the checked-in generated code differs from what
## `make proto` would write (the protoc version line aside), or when a
## generated file has no .proto left behind it.
proto-check: proto-plugins
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PROTOC) $(PROTOC_FLAGS) --go_out=$$tmp --go-grpc_out=$$tmp $(PROTO_FILES) && \
	status=0 && \
	for f in $$tmp/$(PROTO_GO_DIR)/*.go; do \
		diff -u -I '^// 	protoc  ' $(PROTO_GO_DIR)/$${f##*/} $$f || status=1; \
	done && \
	for f in $$(grep -l '^// Code generated by protoc-gen-go' $(PROTO_GO_DIR)/*.go); do \
		[ -e $$tmp/$$f ] || { echo "$$f: generated from no current .proto"; status=1; }; \
	done && \
	if [ $$status -ne 0 ]; then echo "the generated gRPC code is stale: run make proto"; exit 1; fi

## proto-plugins: protoc-gen-go and protoc-gen-go-grpc, built once per version.
proto-plugins: $(PROTO_PLUGINS)/protoc-gen-go $(PROTO_PLUGINS)/protoc-gen-go-grpc

$(PROTO_PLUGINS)/protoc-gen-go:
	GOBIN=$(CURDIR)/$(@D) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)

$(PROTO_PLUGINS)/protoc-gen-go-grpc:
	GOBIN=$(CURDIR)/$(@D) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

## grpc-tools: grpcurl, grpc-health-probe and ghz, built once per version.
grpc-tools: $(GRPCURL) $(GRPC_HEALTH_PROBE) $(GHZ)

$(GRPCURL):
	GOBIN=$(CURDIR)/$(@D) $(GO) install -ldflags '-X main.version=$(GRPCURL_VERSION)' \
		github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)

$(GRPC_HEALTH_PROBE):
	GOBIN=$(CURDIR)/$(@D) $(GO) install github.com/grpc-ecosystem/grpc-health-probe@$(GRPC_HEALTH_PROBE_VERSION)

$(GHZ):
	GOBIN=$(CURDIR)/$(@D) $(GO) install -ldflags '-X main.version=$(GHZ_VERSION)' \
		github.com/bojand/ghz/cmd/ghz@$(GHZ_VERSION)

## jaeger: Jaeger v2's all-in-one binary from the Go module proxy, built
## once per version into .cache/jaeger/<module version>/ (some 15 minutes
## cold on two busy cores: it is a whole OpenTelemetry Collector).
jaeger: $(JAEGER_DIR)/jaeger

$(JAEGER_DIR)/jaeger:
	dir=$$(cd / && $(GO) mod download -json github.com/jaegertracing/jaeger@$(JAEGER_MODULE) | \
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p') && test -n "$$dir" && cd "$$dir" && \
		$(GO) build -trimpath -o $(CURDIR)/$@ \
		-ldflags '-X github.com/jaegertracing/jaeger/internal/version.latestVersion=v$(JAEGER_RELEASE)' \
		./cmd/jaeger

## deploy-test: the deploy/ tests and the chart's, against both Prometheus
## versions, without the rest of the suite.
deploy-test: onnxruntime prometheus3 jaeger
	$(GO) test -count=1 ./deploy/...
	cd deploy/helm && $(GO) test -count=1 ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

race:
	$(GO) test -race -count=1 -timeout 15m ./...

nocgo:
	CGO_ENABLED=0 $(GO) build -o /dev/null ./...
	# The server builds where users run it: macOS, and Windows (no journal there).
	CGO_ENABLED=0 GOOS=darwin GOARCH=arm64 $(GO) build -o /dev/null ./cmd/modelwatch
	CGO_ENABLED=0 GOOS=windows GOARCH=amd64 $(GO) build -o /dev/null ./cmd/modelwatch

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecodePredict$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./internal/server
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeV2$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./internal/server
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeGRPC$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./internal/server
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./internal/model/xgboost
	$(GO) test -run '^$$' -fuzz '^FuzzToJSON$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./internal/model/xgboost/ubjson
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./internal/model/lightgbm
	$(GO) test -run '^$$' -fuzz '^FuzzReadGraph$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./internal/model/onnx
	$(GO) test -run '^$$' -fuzz '^FuzzParseConfig$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./internal/model
	$(GO) test -run '^$$' -fuzz '^FuzzParseProfile$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./internal/drift
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeRaw$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./internal/grpc/rawtensor

## chart: the Helm chart, prometheus-adapter rules and Kubernetes scrape job
## (deploy/helm, a module of its own so Helm's libraries stay out of the server's).
chart:
	cd deploy/helm && $(GO) vet ./... && $(GO) test -count=1 ./...

## chart-files: copy the rules and dashboards into the chart, which cannot read
## files outside itself; the chart's tests fail while the copies differ.
chart-files:
	rm -f deploy/helm/modelwatch/files/rules/*.yml deploy/helm/modelwatch/files/dashboards/*.json
	cp deploy/prometheus/rules/*.yml deploy/helm/modelwatch/files/rules/
	cp deploy/grafana/dashboards/*.json deploy/helm/modelwatch/files/dashboards/

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

## fixtures: regenerate the model files and their expected predictions
## (needs Debian's python3-xgboost, python3-numpy, python3-torch, python3-onnx).
fixtures:
	/usr/bin/python3 models/train_fraud_model.py
	$(GO) run ./cmd/modelwatch profile --model fraud_model --data models/fraud_model/testdata/train.csv --out models/fraud_model/v1/profile.json
	/usr/bin/python3 internal/model/xgboost/testdata/generate.py
	/usr/bin/python3 internal/model/onnx/testdata/generate.py

clean:
	rm -rf bin
