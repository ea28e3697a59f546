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

.PHONY: all build test fmt-check vet race nocgo fuzz chart bench fixtures clean onnxruntime chart-files prometheus3 deploy-test

all: build

build:
	$(GO) build -o bin/modelwatch ./cmd/modelwatch

## test: everything CI checks: formatting, vet, the race-enabled test suite,
## a build without cgo, a short fuzzing run of every request decoder, and the
## Helm chart's tests; deploy/ against Debian's Prometheus 2.x and Prometheus 3.
test: onnxruntime prometheus3 fmt-check vet race nocgo fuzz chart

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

## deploy-test: the deploy/ tests and the chart's, against both Prometheus
## versions, without the rest of the suite.
deploy-test: onnxruntime prometheus3
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

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecodePredict$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./internal/server
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeV2$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./internal/server
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./internal/model/xgboost
	$(GO) test -run '^$$' -fuzz '^FuzzToJSON$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./internal/model/xgboost/ubjson
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./internal/model/lightgbm
	$(GO) test -run '^$$' -fuzz '^FuzzReadGraph$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./internal/model/onnx
	$(GO) test -run '^$$' -fuzz '^FuzzParseConfig$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./internal/model
	$(GO) test -run '^$$' -fuzz '^FuzzParseProfile$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./internal/drift

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
