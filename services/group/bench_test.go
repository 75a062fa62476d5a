package group

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/dbtest"
	"github.com/natter-chat/natter/shared/subject"
)

// BenchmarkGroupSend2000 sends b.N group chats, one after the other, to a
// 2,000-member group on SQLite, through NATS, the group service (member
// cache) and the offline service (one transaction of 1,999 inbox entries per
// message). It reports the inbox entries committed per second.
//
//	go test -run '^$' -bench GroupSend2000 -benchtime 50x ./services/group
func BenchmarkGroupSend2000(b *testing.B) {
	const n = 2000
	e := newEnv(b, dbtest.SQLite(b))
	setup := time.Now()
	gid, ids := e.bigGroup(b, n)
	b.Logf("setup: %d joins in %s", n-1, time.Since(setup).Round(time.Millisecond))
	sender, member := ids[0], ids[n-1]
	e.mustSend(b, sender, gid, "warm up") // the member cache
	before := e.lastSeq(b, member)

	b.ResetTimer()
	start := time.Now()
	for i := 0; b.Loop(); i++ {
		resp, err := e.send(sender, gid, "", fmt.Sprintf("message %d", i))
		if err != nil || resp.MID == "" {
			b.Fatalf("send %d: %+v, %v", i, resp, err)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()

	b.ReportMetric(float64(b.N)*(n-1)/elapsed.Seconds(), "entries/s")
	if got := e.lastSeq(b, member) - before; got != int64(b.N) {
		b.Fatalf("member %d got %d of %d messages", member, got, b.N)
	}
}

// BenchmarkGroupSend2000Parallel is BenchmarkGroupSend2000 with many members
// sending at once (b.RunParallel), which lets the offline service batch
// several group messages into one transaction.
func BenchmarkGroupSend2000Parallel(b *testing.B) {
	const n = 2000
	e := newEnv(b, dbtest.SQLite(b))
	gid, ids := e.bigGroup(b, n)
	e.mustSend(b, ids[0], gid, "warm up")
	var next atomic.Int64
	b.SetParallelism(8)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		sender := ids[next.Add(1)%n]
		for i := 0; pb.Next(); i++ {
			var resp api.StoreResponse
			err := e.call(subject.GroupSend, api.GroupSendRequest{UserID: sender, GroupID: gid,
				Body: textBody(fmt.Sprintf("message %d", i))}, &resp)
			if err != nil {
				b.Errorf("send: %v", err)
				return
			}
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)*(n-1)/elapsed.Seconds(), "entries/s")
}

// BenchmarkMemberSet2000 measures the group service's own share of a send
// to a 2,000-member group: the version query, the cache lookup and the
// recipient list (cached), or the version query and a read of the members
// (reload, what a send does after a membership change).
func BenchmarkMemberSet2000(b *testing.B) {
	const n = 2000
	e := newEnv(b, dbtest.SQLite(b))
	gid, ids := e.bigGroup(b, n)
	ctx := b.Context()
	b.Run("cached", func(b *testing.B) {
		for b.Loop() {
			set, err := e.grp.memberSet(ctx, gid)
			if err != nil {
				b.Fatal(err)
			}
			if to := set.others(ids[0]); len(to) != n-1 {
				b.Fatalf("%d recipients", len(to))
			}
		}
	})
	b.Run("reload", func(b *testing.B) {
		for b.Loop() {
			if _, err := e.grp.store.Version(ctx, gid); err != nil {
				b.Fatal(err)
			}
			got, err := e.grp.store.MemberIDs(ctx, gid)
			if err != nil {
				b.Fatal(err)
			}
			set := &memberSet{ids: got}
			if to := set.others(ids[0]); len(to) != n-1 {
				b.Fatalf("%d recipients", len(to))
			}
		}
	})
}
