# natter: `make run` starts the whole system (embedded NATS + SQLite) on
# 127.0.0.1:6000; `make test` runs every test with -race.

GO       ?= go
BIN      := bin
CMDS     := ./tools/cmd/natter ./gateway/cmd/natter-gateway ./services/user/cmd/natter-user \
            ./services/offline/cmd/natter-offline ./services/friend/cmd/natter-friend ./services/group/cmd/natter-group
MODULES  := shared gateway services/user services/offline services/friend services/group tools
FUZZTIME ?= 10s
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: build run test vet fuzz bench tidy clean

build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ $(CMDS)

run: build
	./$(BIN)/natter serve

vet:
	$(GO) vet work
	@for m in $(MODULES); do (cd $$m && GOWORK=off $(GO) build ./... && $(GO) run $(STATICCHECK) ./...) || exit 1; done

# Every test, with the race detector; then a short fuzz of the frame decoder
# and one iteration of every benchmark so they keep working.
test: vet
	$(GO) test -race -count=1 -timeout 20m work
	$(GO) test -run '^$$' -fuzz '^FuzzDecoder$$' -fuzztime $(FUZZTIME) ./shared/wire
	$(GO) test -run '^$$' -bench . -benchtime 1x work

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecoder$$' -fuzztime 5m ./shared/wire

bench:
	$(GO) test -run '^$$' -bench . -benchmem work

tidy:
	@for m in $(MODULES); do (cd $$m && $(GO) mod tidy) || exit 1; done

clean:
	rm -rf $(BIN)
