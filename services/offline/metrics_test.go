package offline

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/dbtest"
	"github.com/natter-chat/natter/shared/natstest"
	"github.com/natter-chat/natter/shared/subject"
)

// TestMetrics counts messages stored, duplicates, inbox entries stored and
// pushed, batches, acks and the store requests answered.
func TestMetrics(t *testing.T) {
	ns := natstest.Run(t)
	s := start(t, ns, dbtest.SQLite(t), Config{})
	nc := natstest.Connect(t, ns)
	watchPushes(t, nc, s, 2, 3)
	for _, req := range []api.StoreRequest{
		{From: 1, To: []int64{2, 3}, CID: "a", Body: textBody("one")},
		{From: 1, To: []int64{2}, CID: "b", Body: textBody("two")},
		{From: 1, To: []int64{2}, CID: "b", Body: textBody("two")}, // a retry
	} {
		if _, err := store(nc, req); err != nil {
			t.Fatal(err)
		}
	}
	if err := call(nc, subject.OfflineAck, api.AckRequest{Acks: []api.Ack{{UserID: 2, Seq: 2}, {UserID: 3, Seq: 1}}}, nil); err != nil {
		t.Fatal(err)
	}
	m := s.metrics
	for name, c := range map[string]struct{ got, want float64 }{
		"stored":       {testutil.ToFloat64(m.stored), 2},
		"duplicates":   {testutil.ToFloat64(m.duplicates), 1},
		"entries":      {testutil.ToFloat64(m.entries), 3},
		"pushed":       {testutil.ToFloat64(m.pushed), 3},
		"failures":     {testutil.ToFloat64(m.storeFailures), 0},
		"ack requests": {testutil.ToFloat64(m.ackRequests), 1},
		"acks":         {testutil.ToFloat64(m.acks), 2},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", name, c.got, c.want)
		}
	}
	if busy := testutil.ToFloat64(m.writerBusy); busy <= 0 {
		t.Errorf("writer busy %v s after three batches", busy)
	}
	if n := testutil.CollectAndCount(m.batchSize); n != 1 {
		t.Errorf("batch size histogram has %d series, want 1", n)
	}
}
