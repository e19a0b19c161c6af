# wardgate: `make` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

GO        ?= go
PKG       := github.com/wardgate/wardgate
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
BUILDTIME ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS   := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.buildTime=$(BUILDTIME)
# Nothing speaks HTTP/2 (the admin API is HTTP/1.1 on a UNIX socket, the CA
# client sets ForceAttemptHTTP2: false): leaving net/http's bundled HTTP/2
# out saves about 0.6 MB of the gateway binary.
TAGS      := nethttpomithttp2
# Inlining is kept only where bytes and handshakes flow; the rest is built
# without it, which keeps the arm64 gateway binary under its 10 MB budget
# (scripts/gcflags.sh says which packages and why).
GCFLAGS   := $(shell scripts/gcflags.sh)
BUILD     := CGO_ENABLED=0 $(GO) build -trimpath -tags '$(TAGS)' $(GCFLAGS) -ldflags '$(LDFLAGS)'
# Central serves browsers and API clients, which may speak HTTP/2: it keeps
# net/http's HTTP/2 (no nethttpomithttp2). SQLite is pure Go (no cgo).
CENTRAL_BUILD := CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)'
export WARDGATE_CACHE ?= $(HOME)/.cache/wardgate
TEST_TIMEOUT ?= 30m

.PHONY: help build test check cross test-arm demo bench deps deb release

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-9s %s\n", $$1, $$2}'

# The gateway binary carries production code only; the demo (embedded MQTT
# broker, simulated devices, pseudo-terminals) is bin/wardgate-demo, which
# `wardgate demo` runs from next to itself or from PATH.
build: ## build bin/wardgate, bin/wardgate-demo and bin/wardgate-central for this machine (static)
	$(BUILD) -o bin/wardgate ./cmd/wardgate
	$(BUILD) -o bin/wardgate-demo ./cmd/wardgate-demo
	$(CENTRAL_BUILD) -o bin/wardgate-central ./cmd/wardgate-central

deps: ## install what the tests need (Debian packages, step-ca)
	scripts/deps.sh

test: deps ## install missing test dependencies, then run every test with -race
	$(GO) test -race -timeout $(TEST_TIMEOUT) ./...

check: ## gofmt, go vet, staticcheck, go mod tidy leaves no diff
	@out=$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...
	@cp go.mod /tmp/wardgate-go.mod.bak; cp go.sum /tmp/wardgate-go.sum.bak; \
	  $(GO) mod tidy; \
	  if ! cmp -s go.mod /tmp/wardgate-go.mod.bak || ! cmp -s go.sum /tmp/wardgate-go.sum.bak; then \
	    echo "go mod tidy changed go.mod/go.sum; commit the tidied files"; \
	    cp /tmp/wardgate-go.mod.bak go.mod; cp /tmp/wardgate-go.sum.bak go.sum; exit 1; fi

cross: ## static gateway and demo binaries for linux/amd64, arm64 and armv7, central for amd64 and arm64, into bin/
	@echo "building wardgate and wardgate-demo for linux/amd64, arm64, arm (GOARM=7): make -n cross shows the commands"
	@for cmd in wardgate wardgate-demo; do \
	  GOOS=linux GOARCH=amd64 $(BUILD) -o bin/$$cmd-linux-amd64 ./cmd/$$cmd && \
	  GOOS=linux GOARCH=arm64 $(BUILD) -o bin/$$cmd-linux-arm64 ./cmd/$$cmd && \
	  GOOS=linux GOARCH=arm GOARM=7 $(BUILD) -o bin/$$cmd-linux-arm ./cmd/$$cmd || exit 1; \
	done
	GOOS=linux GOARCH=amd64 $(CENTRAL_BUILD) -o bin/wardgate-central-linux-amd64 ./cmd/wardgate-central
	GOOS=linux GOARCH=arm64 $(CENTRAL_BUILD) -o bin/wardgate-central-linux-arm64 ./cmd/wardgate-central
	@file bin/wardgate-linux-* bin/wardgate-demo-linux-* bin/wardgate-central-linux-* 2>/dev/null || ls -l bin/
	@size=$$(stat -c %s bin/wardgate-linux-arm64); \
	  if [ "$$size" -gt 10000000 ]; then \
	    echo "bin/wardgate-linux-arm64 is $$size bytes, over its 10,000,000-byte budget (docs/architecture.md, Building the gateway binary)"; exit 1; fi; \
	  echo "bin/wardgate-linux-arm64: $$size bytes (budget 10,000,000)"

test-arm: deps ## unit tests of every package for arm64 and armv7 under qemu-user
	CGO_ENABLED=0 GOARCH=arm64 $(GO) test -short -timeout $(TEST_TIMEOUT) -exec qemu-aarch64-static ./...
	CGO_ENABLED=0 GOARCH=arm GOARM=7 $(GO) test -short -timeout $(TEST_TIMEOUT) -exec qemu-arm-static ./...

demo: build ## the whole product in one process on loopback: `wardgate demo` (runs bin/wardgate-demo)
	bin/wardgate demo

bench: deps ## benchmarks side by side with their baselines; tables into docs/BENCHMARKS.md
	WARDGATE_TAGS=$(TAGS) scripts/bench.sh

deb: cross ## .deb packages for arm64 and armhf into dist/
	scripts/package/deb.sh arm64 armhf

# The release signing key stays off the build host's repository: pass its
# path (make release RELEASE_KEY=/secure/release.key VERSION=v1.3.0). Make a
# key with: go run ./scripts/releasesign -genkey release.key
RELEASE_KEY ?= release.key
release: cross ## signed update bundles (COSE_Sign1 manifest) for arm64, armv7, amd64 into dist/
	@test -f "$(RELEASE_KEY)" || { echo "release: RELEASE_KEY=$(RELEASE_KEY) not found (go run ./scripts/releasesign -genkey FILE)"; exit 1; }
	mkdir -p dist
	$(GO) run ./scripts/releasesign -key $(RELEASE_KEY) -version $(VERSION) -arch arm64 -bin bin/wardgate-linux-arm64 -out dist/wardgate-$(VERSION)-linux-arm64.bundle
	$(GO) run ./scripts/releasesign -key $(RELEASE_KEY) -version $(VERSION) -arch arm/v7 -bin bin/wardgate-linux-arm -out dist/wardgate-$(VERSION)-linux-arm-v7.bundle
	$(GO) run ./scripts/releasesign -key $(RELEASE_KEY) -version $(VERSION) -arch amd64 -bin bin/wardgate-linux-amd64 -out dist/wardgate-$(VERSION)-linux-amd64.bundle
