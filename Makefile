# natter: `make run` starts the whole system (embedded NATS + SQLite) on
# 127.0.0.1:6000; `make test` runs every test with -race.

GO       ?= go
BIN      := bin
CMDS     := ./tools/cmd/natter ./gateway/cmd/natter-gateway ./services/user/cmd/natter-user \
            ./services/offline/cmd/natter-offline ./services/friend/cmd/natter-friend ./services/group/cmd/natter-group
MODULES  := shared gateway services/user services/offline services/friend services/group tools deployments/k8s
FUZZTIME ?= 10s
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: build run test test-go test-cluster cluster-up cluster-down vet fuzz bench tidy clean

build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ $(CMDS)

run: build
	./$(BIN)/natter serve

vet:
	$(GO) vet work
	$(GO) vet -tags cluster ./tools/internal/clustertest
	@if command -v shellcheck >/dev/null; then shellcheck deployments/local/cluster.sh; else echo "shellcheck not installed: deployments/local/cluster.sh not checked"; fi
	@for m in $(MODULES); do (cd $$m && GOWORK=off $(GO) build ./... && $(GO) run $(STATICCHECK) ./...) || exit 1; done

# Every test: the Go tests, then the cluster fault test.
test: test-go test-cluster

# The Go tests with the race detector; then a short fuzz of the frame decoder
# and one iteration of every benchmark so they keep working.
test-go: vet
	$(GO) test -race -count=1 -timeout 20m work
	$(GO) test -run '^$$' -fuzz '^FuzzDecoder$$' -fuzztime $(FUZZTIME) ./shared/wire
	$(GO) test -run '^$$' -bench . -benchtime 1x work

# The fault test: a whole cluster on loopback (deployments/local/cluster.sh:
# 3 NATS nodes, a private MariaDB, 2 of each service and gateway, nginx),
# natter bench through nginx, one component killed and restarted per round.
# cluster.sh installs nginx and MariaDB with apt when they are missing.
test-cluster: build
	$(GO) test -race -count=1 -tags cluster -timeout 40m -v -run '^TestClusterFaults$$' ./tools/internal/clustertest

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
