package group

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/natter-chat/natter/shared/dbtest"
)

// TestMetrics counts groups created, joins and leaves, and group messages
// with their recipients (a retried cid once).
func TestMetrics(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	u := e.users(t, "m", 4)
	gid := e.create(t, u[0], "metered", "")
	e.join(t, gid, u[1], u[2], u[3])
	e.leave(t, gid, u[3])
	for _, cid := range []string{"c1", "c2", "c2"} {
		if _, err := e.send(u[0], gid, cid, "hi"); err != nil {
			t.Fatal(err)
		}
	}
	m := e.grp.metrics
	for name, c := range map[string]struct{ got, want float64 }{
		"created":    {testutil.ToFloat64(m.created), 1},
		"joins":      {testutil.ToFloat64(m.membership.WithLabelValues("join")), 3},
		"leaves":     {testutil.ToFloat64(m.membership.WithLabelValues("leave")), 1},
		"messages":   {testutil.ToFloat64(m.messages), 2},
		"recipients": {testutil.ToFloat64(m.recipients), 4},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", name, c.got, c.want)
		}
	}
}
