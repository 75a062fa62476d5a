package routebench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/bcrypt"

	"github.com/natter-chat/natter/gateway"
	"github.com/natter-chat/natter/services/friend"
	"github.com/natter-chat/natter/services/group"
	"github.com/natter-chat/natter/services/offline"
	"github.com/natter-chat/natter/services/user"
	"github.com/natter-chat/natter/shared/dbtest"
	"github.com/natter-chat/natter/shared/natstest"
	"github.com/natter-chat/natter/shared/subject"
)

// window is how many pushes may be on their way to the client at once,
// well under the gateway's write queue (a client that far behind is cut off).
const window = 256

// BenchmarkRoutePush measures one push from NATS to a logged-in
// full-dialect client: the gateway's router decodes it, the session checks
// its seq, re-encodes the frame with mid and seq, and its writer writes it to
// the socket, where the benchmark reads it. The services are real (they are
// needed for the login) but out of the measured path.
func BenchmarkRoutePush(b *testing.B) {
	log := slog.New(slog.DiscardHandler)
	ns := natstest.Run(b)
	db := dbtest.SQLite(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ucfg := user.DefaultConfig()
	ucfg.BcryptCost = bcrypt.MinCost
	us, err := user.Start(ctx, natstest.Connect(b, ns), db, ucfg, log)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { us.Stop() })
	offs, err := offline.Start(ctx, natstest.Connect(b, ns), db, offline.DefaultConfig(), log)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { offs.Stop() })
	fs, err := friend.Start(ctx, natstest.Connect(b, ns), db, friend.DefaultConfig(), log)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { fs.Stop() })
	gs, err := group.Start(ctx, natstest.Connect(b, ns), db, group.DefaultConfig(), log)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { gs.Stop() })
	gcfg := gateway.DefaultConfig()
	gcfg.Listen = "127.0.0.1:0"
	g, err := gateway.Start(ctx, natstest.Connect(b, ns), gcfg, log)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		g.Stop(ctx)
	})

	conn, err := net.Dial("tcp", g.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReaderSize(conn, 64<<10)
	call := func(req string) map[string]any {
		if _, err := conn.Write([]byte(req + "\n")); err != nil {
			b.Fatal(err)
		}
		line, err := r.ReadBytes('\n')
		if err != nil {
			b.Fatal(err)
		}
		var f map[string]any
		if err := json.Unmarshal(line, &f); err != nil {
			b.Fatalf("%q: %v", line, err)
		}
		if f["errno"] != nil && f["errno"].(float64) != 0 {
			b.Fatalf("%s: %v", req, f)
		}
		return f
	}
	uid := int64(call(`{"msgid":4,"name":"bench","password":"pw"}`)["id"].(float64))
	call(`{"msgid":1,"id":` + strconv.FormatInt(uid, 10) + `,"password":"pw"}`)

	pub := natstest.Connect(b, ns)
	hdr := nats.Header{subject.KindHeader: []string{subject.KindMsg}}
	body := `{"msgid":6,"id":2,"from":"alice","toid":` + strconv.FormatInt(uid, 10) +
		`,"msg":"` + string(bytes.Repeat([]byte("x"), 120)) + `","time":"2026-11-21 12:00:00"}`
	credit := make(chan struct{}, window)
	for range window {
		credit <- struct{}{}
	}
	published := make(chan error, 1)
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	go func() {
		for i := 1; i <= b.N; i++ {
			<-credit
			data := fmt.Appendf(nil, `{"seq":%d,"mid":"00000000-0000-4000-8000-%012d","from":2,"body":%s}`, i, i, body)
			if err := pub.PublishMsg(&nats.Msg{Subject: subject.User(uid), Header: hdr, Data: data}); err != nil {
				published <- err
				return
			}
		}
		published <- pub.Flush()
	}()
	want := []byte(`"seq":`)
	for got := 0; got < b.N; {
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, err := r.ReadBytes('\n')
		if err != nil {
			b.Fatalf("after %d of %d pushes: %v", got, b.N, err)
		}
		if !bytes.Contains(line, want) {
			continue // a presence notice or the like
		}
		got++
		credit <- struct{}{}
	}
	b.StopTimer()
	if err := <-published; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pushes/s")
}
