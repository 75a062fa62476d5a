package natsreq_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natter-chat/natter/shared/natsreq"
	"github.com/natter-chat/natter/shared/natstest"
)

// BenchmarkRoundTrip compares a request and its reply through a
// Requester with nats.go's RequestWithContext (what api.Call uses), on an
// in-process nats-server over loopback TCP with an echo responder on its
// own connection, 200-byte payloads. "serial" sends one request at a time;
// "64" keeps 64 requests in flight (64 goroutines for RequestWithContext
// and Request, one goroutine and a window of 64 for Go).
func BenchmarkRoundTrip(b *testing.B) {
	s := natstest.Run(b)
	svc := natstest.Connect(b, s)
	natstest.Subscribe(b, svc, "svc.echo", func(m *nats.Msg) { m.Respond(m.Data) })
	nc := natstest.Connect(b, s)
	r, err := natsreq.New(nc, natsreq.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	data := make([]byte, 200)
	opts := natsreq.CallOpts{Idempotent: true}
	const window = 64

	b.Run("serial/natsreq.Go", func(b *testing.B) {
		got := make(chan error, 1)
		done := func(_ *nats.Msg, err error) { got <- err }
		b.ReportAllocs()
		for b.Loop() {
			if err := r.Go("svc.echo", data, opts, done); err != nil {
				b.Fatal(err)
			}
			if err := <-got; err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("serial/natsreq.Request", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := r.Request(ctx, "svc.echo", data, opts)
			cancel()
			if err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("serial/nats.RequestWithContext", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := nc.RequestWithContext(ctx, "svc.echo", data)
			cancel()
			if err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("64/natsreq.Go", func(b *testing.B) {
		slots := make(chan struct{}, window)
		errs := make(chan error, 1)
		done := func(_ *nats.Msg, err error) {
			if err != nil {
				select {
				case errs <- err:
				default:
				}
			}
			<-slots
		}
		b.ReportAllocs()
		for b.Loop() {
			slots <- struct{}{}
			if err := r.Go("svc.echo", data, opts, done); err != nil {
				b.Fatal(err)
			}
		}
		for range window {
			slots <- struct{}{}
		}
		select {
		case err := <-errs:
			b.Fatal(err)
		default:
		}
	})
	parallel := func(call func(ctx context.Context) error) func(b *testing.B) {
		return func(b *testing.B) {
			b.SetParallelism((window + 1) / 2) // x GOMAXPROCS (2 here) goroutines
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					err := call(ctx)
					cancel()
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
	}
	b.Run("64/natsreq.Request", parallel(func(ctx context.Context) error {
		_, err := r.Request(ctx, "svc.echo", data, opts)
		return err
	}))
	b.Run("64/nats.RequestWithContext", parallel(func(ctx context.Context) error {
		_, err := nc.RequestWithContext(ctx, "svc.echo", data)
		return err
	}))
}
