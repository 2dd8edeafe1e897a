# csr-agent — run `make help` for the targets.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO            ?= go
BIN           := $(CURDIR)/bin
CONTROLPLANE  := $(BIN)/etcd $(BIN)/kube-apiserver $(BIN)/kube-controller-manager
GOLANGCI_LINT := $(BIN)/golangci-lint
GOLANGCI_LINT_VERSION := v2.15.0
TEST_TIMEOUT  ?= 20m
NODE_BINS     := $(BIN)/kubelet $(BIN)/kube-proxy $(BIN)/kube-scheduler

export CSR_AGENT_BIN_DIR := $(BIN)

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build the agent and controller into bin/ (static, stripped).
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $(BIN)/ ./cmd/agent ./cmd/controller

.PHONY: controlplane
controlplane: $(CONTROLPLANE) ## Build etcd, kube-apiserver and kube-controller-manager (once; minutes the first time).

# The control plane is rebuilt only when its pinned versions or mains change.
$(BIN)/kube-apiserver $(BIN)/kube-controller-manager &: tools/kube/go.mod tools/kube/go.sum $(wildcard tools/kube/cmd/kube-apiserver/*.go tools/kube/cmd/kube-controller-manager/*.go tools/lifeline/*.go)
	@echo ">> building kube-apiserver and kube-controller-manager $$(grep -o "k8s.io/kubernetes v[^ ]*" tools/kube/go.mod | head -1) (first build takes several minutes)"
	@cd tools/kube && $(GO) build -v -trimpath -o $(BIN)/ ./cmd/kube-apiserver ./cmd/kube-controller-manager 2>&1 \
		| awk '{ n++; if (n % 200 == 0) { printf "   %d packages compiled\n", n; fflush() } } /\.go:|error|cannot/ { print }'
	@touch $(BIN)/kube-apiserver $(BIN)/kube-controller-manager

$(BIN)/etcd: tools/etcd/go.mod tools/etcd/go.sum $(wildcard tools/etcd/*.go tools/lifeline/*.go)
	@echo ">> building etcd $$(grep -o "go.etcd.io/etcd/server/v3 v[^ ]*" tools/etcd/go.mod | head -1)"
	@cd tools/etcd && $(GO) build -trimpath -o $(BIN)/etcd .

# --- Monitoring: promtool runs the alerts' unit tests (manifests/monitoring),
# promql-selectors lists what the alerts and the dashboard query; both from
# the Prometheus version pinned in tools/promtool, rebuilt only when it moves.
# remove_all_sd (Prometheus's own build tag) leaves out service discovery,
# which rule tests never use and whose cloud SDKs are most of the build.
PROMTOOL := $(BIN)/promtool $(BIN)/promql-selectors

.PHONY: promtool
promtool: $(PROMTOOL) ## Build promtool and promql-selectors for the monitoring tests (once; a few minutes the first time).

$(BIN)/promtool $(BIN)/promql-selectors &: tools/promtool/go.mod tools/promtool/go.sum $(wildcard tools/promtool/promql-selectors/*.go)
	@echo ">> building promtool $$(grep -o "github.com/prometheus/prometheus v[^ ]*" tools/promtool/go.mod | head -1)"
	@cd tools/promtool && $(GO) build -trimpath -tags remove_all_sd -o $(BIN)/ github.com/prometheus/prometheus/cmd/promtool ./promql-selectors
	@touch $(PROMTOOL)
# --- end of monitoring

.PHONY: test
test: $(CONTROLPLANE) $(PROMTOOL) ## Run unit and integration tests (-race) against a real local control plane.
	@hack/check-no-strays.sh $(BIN) list > $(BIN)/.running-before-test
	$(GO) test -race -timeout $(TEST_TIMEOUT) ./...
	@hack/check-no-strays.sh $(BIN) check $(BIN)/.running-before-test

.PHONY: node
node: $(NODE_BINS) ## Build kubelet, kube-proxy and kube-scheduler for the end-to-end node (once; minutes the first time).

# Built like the control plane, from the same pinned module.
$(BIN)/kubelet $(BIN)/kube-proxy $(BIN)/kube-scheduler &: tools/kube/go.mod tools/kube/go.sum $(wildcard tools/kube/cmd/kubelet/*.go tools/kube/cmd/kube-proxy/*.go tools/kube/cmd/kube-scheduler/*.go tools/lifeline/*.go)
	@echo ">> building kubelet, kube-proxy and kube-scheduler $$(grep -o "k8s.io/kubernetes v[^ ]*" tools/kube/go.mod | head -1) (first build takes several minutes)"
	@cd tools/kube && $(GO) build -trimpath -o $(BIN)/ ./cmd/kubelet ./cmd/kube-proxy ./cmd/kube-scheduler
	@touch $(NODE_BINS)

.PHONY: e2e
e2e: $(CONTROLPLANE) $(NODE_BINS) ## Run every shipped example in real pods on a real local node (root, Linux; see README).
	$(GO) test -tags e2e -count=1 -timeout 10m -v ./e2e/

.PHONY: lint
lint: $(GOLANGCI_LINT) ## gofmt check, go vet, golangci-lint, go mod tidy check.
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GOLANGCI_LINT) run ./...
	@for d in . tools/kube tools/etcd tools/lifeline tools/promtool; do (cd $$d && $(GO) mod tidy -diff) || { echo "go mod tidy needed in $$d"; exit 1; }; done

$(GOLANGCI_LINT):
	@echo ">> installing golangci-lint $(GOLANGCI_LINT_VERSION)"
	GOBIN=$(BIN) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

.PHONY: demo
demo: $(CONTROLPLANE) build $(if $(NODE),$(NODE_BINS)) ## Run csr-agent end to end on a local control plane (KEEP=1: keep it running to explore; NODE=1: in real pods on a real node, root).
ifdef NODE
	@# The same story in real pods: the controller Deployment, then the
	@# native-sidecar example serving, verified, renewed and reloaded with a
	@# client handshaking throughout (see README, End-to-end).
	$(GO) test -tags e2e -count=1 -timeout 10m -v -run '^(TestControllerDeploymentBecomesReadyAndPublishesItsTrustBundle|TestNativeSidecarServesTLSAClientPodVerifiesAndRenewsWithoutAFailedHandshake)$$' ./e2e/
else
	@$(GO) build -o $(BIN)/demo ./cmd/demo
	@$(BIN)/demo -bin $(BIN) $(if $(KEEP),-keep)
endif

.PHONY: bench
bench: $(CONTROLPLANE) ## Run every benchmark (about 30 min: the footprint idles 15) and write the results and charts (bench/*.svg) into BENCHMARKS.md.
	$(GO) run ./hack/bench -out BENCHMARKS.md

.PHONY: bench-smoke
bench-smoke: $(CONTROLPLANE) ## Run every benchmark at tiny sizes (under a minute; for CI, asserts no timing).
	$(GO) run ./hack/bench -short -out $(BIN)/bench-smoke.md

.PHONY: clean
clean: ## Remove built binaries (the control plane too).
	rm -rf $(BIN)
