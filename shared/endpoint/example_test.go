package endpoint_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/endpoint"
)

type greetRequest struct {
	Name string `json:"name"`
}

type greetResponse struct {
	Greeting string `json:"greeting"`
}

// A service with one typed endpoint: the handler gets the decoded request
// and returns the answer or an *api.Error, on a bounded runner; Stop stops
// the service and waits for the handlers.
func Example() {
	ns, _ := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	go ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(10 * time.Second) {
		return
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer nc.Close()

	log := slog.New(slog.DiscardHandler)
	runner := endpoint.NewRunner(4, 5*time.Second, log)
	svc, err := endpoint.AddService(nc, micro.Config{Name: "greeter", Version: "1.0.0", QueueGroup: "greeter"})
	if err != nil {
		fmt.Println(err)
		return
	}
	greet := func(ctx context.Context, req *greetRequest) (*greetResponse, error) {
		if strings.TrimSpace(req.Name) == "" {
			return nil, api.Errorf(api.CodeBadRequest, "name is empty")
		}
		return &greetResponse{Greeting: "hello, " + req.Name}, nil
	}
	err = endpoint.Add(svc, nc, nil, endpoint.Spec{
		Name: "greet", Subject: "example.greet", Description: "{name} -> {greeting}",
		Handler: endpoint.JSON(runner, "greet", greet),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer endpoint.Stop(svc, nc, runner)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var resp greetResponse
	if err := api.Call(ctx, nc, "example.greet", greetRequest{Name: "ada"}, &resp); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(resp.Greeting)
	err = api.Call(ctx, nc, "example.greet", greetRequest{}, nil)
	fmt.Println(err)
	// Output:
	// hello, ada
	// bad_request: name is empty
}
