# arcmill. `make test` is what CI runs (.ci/run).
GO ?= go
# The GORM plugin is a nested module (GORM stays out of the core go.mod):
# ./... at the root does not reach it, so test and check name it.
GORM_MODULE := crud/gormevents

.PHONY: test services check quickstart bench fuzz

## test: bring up Redis, PostgreSQL and MySQL/MariaDB, then vet and race-test everything
test: services check
	$(GO) test -race -count=1 -p 4 ./...
	cd $(GORM_MODULE) && $(GO) test -race -count=1 -p 4 ./...

## services: make sure the test servers answer on loopback (see scripts/services.sh)
services:
	@bash scripts/services.sh

## check: gofmt and go vet
check:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	@grep -q '^go 1\.25' go.mod || { echo "go.mod must keep 'go 1.25' (DESIGN.md): a dependency upgrade raised it"; exit 1; }
	@grep -q '^go 1\.25' $(GORM_MODULE)/go.mod || { echo "$(GORM_MODULE)/go.mod must keep 'go 1.25'"; exit 1; }
	$(GO) vet ./...
	cd $(GORM_MODULE) && $(GO) vet ./...

## quickstart: the front door, no server needed
quickstart:
	$(GO) run ./examples/quickstart

## bench: every benchmark, once (numbers go to BENCHMARKS.md)
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

## fuzz: each decoder's fuzz target for FUZZTIME (default 30s)
FUZZTIME ?= 30s
fuzz:
	for f in FuzzUnmarshal FuzzFromMessage FuzzValidJSON; do \
	  $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) ./arc || exit 1; done
	$(GO) test -run '^$$' -fuzz '^FuzzUnmarshalEntry$$' -fuzztime $(FUZZTIME) ./adapters/redisstream
	$(GO) test -run '^$$' -fuzz '^FuzzReadDeadLetter$$' -fuzztime $(FUZZTIME) ./adapters/redisstream
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./adapters/redispubsub
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeMetadata$$' -fuzztime $(FUZZTIME) ./outbox
	$(GO) test -run '^$$' -fuzz '^FuzzUnmarshalStructured$$' -fuzztime $(FUZZTIME) ./cloudevents
