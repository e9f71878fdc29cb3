# lvs-director — build, test, lab.
#   make demo   boot the lab VM and run the example config with real traffic (the product's main job)
#   make test   everything: lint, unit tests, tests against real BGP peers, the lab's end-to-end tests

SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
BIN := $(CURDIR)/bin
export CGO_ENABLED := 0
export GOFLAGS := -mod=mod

.PHONY: all build lint test test-unit test-deps lab-setup lab-bins test-lab test-packaging deb install demo bench bench-lab clean
PREFIX ?= /usr/local
DEB_ARCH ?= amd64

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/lvs-director ./cmd/lvs-director

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt wants to change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags lab ./lab/...
	cd packaging && $(GO) vet ./...

# Real, independent daemons the unit tests talk to (BIRD 2, gobgpd) from Debian packages.
test-deps:
	bash scripts/install-test-deps.sh
	bash scripts/kube-binaries.sh

test-unit:
	LVS_REQUIRE_EXTERNAL=$${LVS_REQUIRE_EXTERNAL:-1} $(GO) test -count=1 ./...
	cd packaging && $(GO) test -count=1 ./...

lab-setup:
	bash lab/setup.sh

# Static binaries that go into the VM: the director, the lab's helper, the benchmark's floor.
lab-bins: build
	$(GO) build -o $(BIN)/labexec ./lab/cmd/labexec
	mkdir -p $(BIN)/vm
	cp $(BIN)/lvs-director examples/director.yaml $(BIN)/vm/
	$(GO) build -o $(BIN)/vm/labnode ./lab/cmd/labnode
	$(GO) build -o $(BIN)/vm/ipvsbatch ./lab/cmd/ipvsbatch

test-lab: lab-setup lab-bins
	kube=$$(bash scripts/kube-binaries.sh) || exit 1; LAB_KUBE=$$kube LAB_BIN_DIR=$(BIN)/vm LAB_CLUSTER_RUNS=$${LAB_CLUSTER_RUNS:-1} $(GO) test -count=1 -tags lab -timeout 40m -exec $(BIN)/labexec -v ./lab/e2e/ 2>&1 | tee $(BIN)/lab-test.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic|\s+\S+_test.go)' ; exit $${PIPESTATUS[0]}

# The .deb: binary, unit, modules-load.d, sysctl.d, conffile, man page, completion.
deb: build
	cd packaging && $(GO) run ./cmd/mkdeb --repo $(CURDIR) --binary $(BIN)/lvs-director --version $(VERSION) --arch $(DEB_ARCH) --out $(CURDIR)/dist

install: build
	DESTDIR='$(DESTDIR)' PREFIX='$(PREFIX)' bash packaging/install.sh

test-packaging: build
	bash packaging/install-test-deps.sh
	bash scripts/test-packaging.sh

test: lint test-deps test-unit test-packaging test-lab

demo: lab-setup lab-bins
	@LAB_BIN_DIR=$(BIN)/vm $(GO) test -count=1 -tags lab -exec $(BIN)/labexec -run '^TestDemo$$' -v ./lab/e2e/ > $(BIN)/demo.log 2>&1; rc=$$?; \
	  sed -n 's/^DEMO //p' $(BIN)/demo.log; \
	  if [ $$rc != 0 ]; then echo "demo failed, full output in $(BIN)/demo.log:"; tail -40 $(BIN)/demo.log; fi; exit $$rc

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# Performance in the lab VM vs ipvsadm --restore and keepalived; writes docs/benchmarks.md (~10 min).
bench-lab: lab-setup lab-bins
	bash scripts/bench-lab.sh

clean:
	rm -rf $(BIN) dist
