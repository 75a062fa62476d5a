# natter: `make run` starts the whole system (embedded NATS + SQLite) on
# 127.0.0.1:6000; `make test` runs every test with -race.

GO       ?= go
BIN      := bin
CMDS     := ./tools/cmd/natter ./gateway/cmd/natter-gateway ./services/user/cmd/natter-user \
            ./services/offline/cmd/natter-offline ./services/friend/cmd/natter-friend ./services/group/cmd/natter-group
MODULES  := shared gateway services/user services/offline services/friend services/group tools deployments/k8s
FUZZTIME ?= 10s
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: build run test test-deps test-go test-cluster cluster-up cluster-down vet shellcheck shell-scripts rules fuzz bench tidy clean

# -v names each package as it compiles: a first build (NATS, SQLite, the
# MySQL driver; a minute or two on a small machine) is not a silent wait.
build:
	@mkdir -p $(BIN)
	@if [ ! -x $(BIN)/natter ]; then echo "building ./bin: the first build compiles NATS, SQLite and the MySQL driver (a minute or two on a small machine); each package is named as it compiles"; fi
	$(GO) build -v -o $(BIN)/ $(CMDS)

run: build
	@echo "starting natter serve: TCP on 127.0.0.1:6000, the web page on http://127.0.0.1:6080/, data in ./natter-data (Ctrl+C stops it)"
	./$(BIN)/natter serve

# Every shell script in the repository (by name or by its #! line).
SHELL_SCRIPTS = $(sort $(shell git ls-files '*.sh'; git ls-files -z | xargs -0 awk 'FNR == 1 && /^\#!.*(\/|env )(ba|da)?sh([ \t]|$$)/ { print FILENAME } { nextfile }' 2>/dev/null))

shell-scripts:
	@echo $(SHELL_SCRIPTS)

shellcheck:
	@command -v shellcheck >/dev/null || { echo "shellcheck is not installed: apt-get install shellcheck (make test installs it)"; exit 1; }
	shellcheck $(SHELL_SCRIPTS)

# The alerting rules (deployments/prometheus): syntax and unit tests.
rules:
	@command -v promtool >/dev/null || { echo "promtool is not installed: apt-get install prometheus (make test installs it)"; exit 1; }
	promtool check rules deployments/prometheus/natter-rules.yml
	promtool test rules deployments/prometheus/natter-rules.test.yml

vet: shellcheck
	$(GO) vet work
	$(GO) vet -tags cluster ./tools/internal/clustertest
	@for m in $(MODULES); do (cd $$m && GOWORK=off $(GO) build ./... && $(GO) run $(STATICCHECK) ./...) || exit 1; done

# Every test: what the tests need (installed with apt and started when
# missing: deployments/local/test-deps.sh), the Go tests, then the cluster
# fault test.
test:
	@deps=$$(deployments/local/test-deps.sh) && eval "$$deps" && $(MAKE) --no-print-directory test-go test-cluster

# Only the installation and start of what the tests need.
test-deps:
	@deployments/local/test-deps.sh >/dev/null

# The Go tests with the race detector; then a short fuzz of the frame decoder
# and one iteration of every benchmark so they keep working.
test-go: vet rules
	$(GO) test -race -count=1 -timeout 20m work
	$(GO) test -run '^$$' -fuzz '^FuzzDecoder$$' -fuzztime $(FUZZTIME) ./shared/wire
	$(GO) test -run '^$$' -bench . -benchtime 1x work

# The fault test: a whole cluster on loopback (deployments/local/cluster.sh:
# 3 NATS nodes, a private MariaDB, 2 of each service and gateway, nginx),
# natter bench through nginx, one component killed and restarted per round.
# cluster.sh installs nginx and MariaDB with apt when they are missing.
test-cluster: build
	$(GO) test -race -count=1 -tags cluster -timeout 40m -v -run '^(TestClusterFaults|TestClusterHalfClosedClient)$$' ./tools/internal/clustertest

# A local cluster to try by hand (deployments/local/README.md).
cluster-up: build
	deployments/local/cluster.sh up

cluster-down:
	deployments/local/cluster.sh down

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecoder$$' -fuzztime 5m ./shared/wire

bench:
	$(GO) test -run '^$$' -bench . -benchmem work

tidy:
	@for m in $(MODULES); do (cd $$m && $(GO) mod tidy) || exit 1; done

clean:
	rm -rf $(BIN)
