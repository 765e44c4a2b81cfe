# popmigrate — build, test, demo, benchmarks.
GO       ?= go
BIN      := bin
PKGS     := ./...
# Packages with concurrency run under the race detector in `make test`;
# PLAIN_PKGS, every other package of the module, run without it. Each
# package runs once.
RACE_PKGS := ./config/... ./pop3/... ./pipeline/... ./journal/... ./exporters/... ./cmd/... ./e2e/...
PLAIN_PKGS = $(filter-out $(shell $(GO) list $(RACE_PKGS)),$(shell $(GO) list $(PKGS)))

# make lint runs this staticcheck (honnef.co/go/tools), installing it into
# $(go env GOPATH)/bin when that one is missing or another version.
STATICCHECK_VERSION ?= v0.8.2
STATICCHECK = $(firstword $(subst :, ,$(shell $(GO) env GOPATH)))/bin/staticcheck

.PHONY: all build test test-unit test-race fuzz demo bench bench-run soak lint staticcheck fmt clean deps

# FUZZTIME is how long make test runs each fuzz target; make soak runs
# them for SOAK_FUZZTIME.
FUZZTIME      ?= 3s
SOAK_FUZZTIME ?= 60s

# BENCH_ARGS are passed to the comparison of make bench, e.g.
# BENCH_ARGS='-bench-scale 0.05' for a smoke run of about a minute, or
# '-bench-reps 5' (see bench/doc.go).
BENCH_ARGS ?=

all: build

build:
	$(GO) build -o $(BIN)/popmigrate ./cmd/popmigrate

# deps installs what the tests need on a fresh Debian machine: Dovecot,
# PostgreSQL, Chromium, and the POP3 clients whose state journal import
# adopts (mpop, getmail6, fetchmail) (apt-get, as root). It fails loudly
# when it cannot; tests never skip.
deps:
	bash scripts/ensure-dovecot.sh
	bash scripts/ensure-postgres.sh
	bash scripts/ensure-chromium.sh
	bash scripts/ensure-switch-tools.sh

test: deps
	$(GO) vet $(PKGS)
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) test -count=1 -race -timeout 15m $(RACE_PKGS)
	$(GO) test -count=1 -timeout 15m $(PLAIN_PKGS)
	bash scripts/fuzz.sh $(FUZZTIME)

# fuzz runs every fuzz target of the module for FUZZTIME each.
fuzz:
	bash scripts/fuzz.sh $(FUZZTIME)

demo: build
	bash scripts/demo.sh

# bench: Go benchmarks, then the comparison table (popmigrate vs mpop, and
# vs mpop + mbsync into IMAP, against the same private Dovecot, with a
# reference reader), then what the server's side of an account costs at
# least, then 1, 2 and 4 workers sharing one journal, then the
# journal at the scale of 100 000 accounts and 10 million messages, on
# SQLite and PostgreSQL (see README, "Benchmarks").
#
# Everything runs with TMPDIR on a fresh journaled ext4 of its own when run
# as root (scripts/bench-fs.sh says why; BENCH_FS=host measures in TMPDIR as
# it is).
bench: deps build
	bash scripts/ensure-bench-tools.sh
	bash scripts/bench-fs.sh $(MAKE) --no-print-directory bench-run

bench-run:
	$(GO) test -run '^$$' -bench . -benchmem -count=1 ./pop3/... ./journal/... ./exporters/... ./pipeline/...
	$(GO) test -count=1 -run '^TestBenchCompare$$' -v -timeout 60m ./bench/ -args -bench-compare $(BENCH_ARGS)
	$(GO) test -count=1 -run '^TestBenchServerFloor$$' -v -timeout 30m ./bench/ -args -bench-floor
	$(GO) test -count=1 -run '^TestBenchScaleOut$$' -v -timeout 30m ./bench/ -args -bench-scaleout
	$(GO) test -count=1 -run '^TestJournalAtScale$$' -v -timeout 60m ./journal/ -args -journal-scale

soak: deps
	$(GO) test -count=1 -run 'Soak' -v -timeout 60m ./pipeline/... -args -soak
	bash scripts/fuzz.sh $(SOAK_FUZZTIME)

lint: staticcheck
	$(GO) vet $(PKGS)
	@test -z "$$(gofmt -l .)" || (gofmt -l .; exit 1)
	$(STATICCHECK) $(PKGS)

# staticcheck installs STATICCHECK_VERSION at $(STATICCHECK) unless it is
# there already; it fails loudly when it cannot.
staticcheck:
	@v='$(STATICCHECK_VERSION)'; \
	if ! "$(STATICCHECK)" -version 2>/dev/null | grep -qF "($${v#v})"; then \
	  echo "installing staticcheck $$v into $(dir $(STATICCHECK))"; \
	  GOBIN='$(dir $(STATICCHECK))' $(GO) install honnef.co/go/tools/cmd/staticcheck@$$v || \
	    { echo "make lint: cannot install staticcheck $$v (go install honnef.co/go/tools/cmd/staticcheck@$$v failed)" >&2; exit 1; }; \
	fi

fmt:
	gofmt -w .

clean:
	rm -rf $(BIN) demo-out demo-state
