# arcmill. `make test` is what CI runs (.ci/run).
GO ?= go
# Nested modules (GORM stays out of the core go.mod): ./... at the root
# does not reach them, so test and check name them.
NESTED_MODULES := crud/gormevents examples/crud-gorm

.PHONY: test services check quickstart bench fuzz

## test: bring up Redis, PostgreSQL and MySQL/MariaDB, then vet and race-test everything
test: services check
	$(GO) test -race -count=1 -p 4 ./...
	for m in $(NESTED_MODULES); do (cd $$m && $(GO) test -race -count=1 -p 4 ./...) || exit 1; done

## services: make sure the test servers answer on loopback (see scripts/services.sh)
services:
	@bash scripts/services.sh

## check: gofmt and go vet
check:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	@grep -q '^go 1\.25' go.mod || { echo "go.mod must keep 'go 1.25' (DESIGN.md): a dependency upgrade raised it"; exit 1; }
	@for m in $(NESTED_MODULES); do grep -q '^go 1\.25' $$m/go.mod || { echo "$$m/go.mod must keep 'go 1.25'"; exit 1; }; done
	$(GO) vet ./...
	for m in $(NESTED_MODULES); do (cd $$m && $(GO) vet ./...) || exit 1; done

## quickstart: the front door, no server needed
quickstart:
	$(GO) run ./examples/quickstart

## bench: every benchmark, once (numbers go to BENCHMARKS.md)
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

## fuzz: each decoder's fuzz target for FUZZTIME (default 30s)
FUZZTIME ?= 30s
fuzz:
	for f in FuzzUnmarshal FuzzFromMessage FuzzValidJSON FuzzNodeDate FuzzAppendMessageJSON FuzzAppendMessageJSONMetadata; do \
	  $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) ./arc || exit 1; done
	for f in FuzzCheck FuzzParseCatalog FuzzAsyncAPIRefs; do \
	  $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) ./registry || exit 1; done
	$(GO) test -run '^$$' -fuzz '^FuzzUnmarshalEntry$$' -fuzztime $(FUZZTIME) ./adapters/redisstream
	$(GO) test -run '^$$' -fuzz '^FuzzReadDeadLetter$$' -fuzztime $(FUZZTIME) ./adapters/redisstream
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./adapters/redispubsub
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeMetadata$$' -fuzztime $(FUZZTIME) ./outbox
	$(GO) test -run '^$$' -fuzz '^FuzzColumnText$$' -fuzztime $(FUZZTIME) ./outbox
	$(GO) test -run '^$$' -fuzz '^FuzzUnmarshalStructured$$' -fuzztime $(FUZZTIME) ./cloudevents
