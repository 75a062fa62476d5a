package loadgen

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/natter-chat/natter/shared/wire"
)

// groupRun is a group fan-out run in progress.
type groupRun struct {
	cfg     Config
	chk     *Checker
	run     string
	msg     string
	groups  []*benchGroup
	senders []*groupSender // of every group, in the order they are paced
	flood   atomic.Bool    // some send got errno 109
}

// benchGroup is one group: cfg.Members members, the first cfg.Senders of
// whom send; member 0 creates it.
type benchGroup struct {
	i       int
	members []*member
	route   atomic.Pointer[groupRoute] // nil until the group exists and everyone joined
}

// groupRoute is what a member's reader goroutine needs to place a push.
// It is published once, before the clock starts, and never changes.
type groupRoute struct {
	id      int64
	senders map[int64]*groupSender // by user id
}

// member is one member of a group, logged in on its own connection, which
// reads every other sender's messages.
type member struct {
	o     *groupRun
	g     *benchGroup
	j     int // index in the group
	user  *simUser
	rcpt  *Recipient
	inbox inbox
}

// groupSender is a member that sends to its group: one GroupConversation,
// whose recipients are the other members in group order.
type groupSender struct {
	m           *member
	k           int // index in groupRun.senders
	gid         int64
	conv        *GroupConversation
	outstanding atomic.Int64 // sent and not settled (every recipient got it, or it failed)
	box         *outbox      // reconnect mode: its messages not acknowledged yet
}

// Group runs the group fan-out workload: cfg.Groups groups of cfg.Members
// fresh users each; cfg.Senders members of every group send open loop,
// cfg.Rate group messages per second in total, for warmup + duration; then
// the run waits up to cfg.Drain for what is outstanding, and every delivery
// (message x recipient) is checked: each member must receive every other
// sender's message exactly once, in order. The users, the groups and the
// joins are all set up before the clock starts.
func Group(ctx context.Context, cfg Config, log *slog.Logger) (*Report, error) {
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithTimeoutCause(ctx, cfg.hardTimeout(), ErrHardTimeout)
	defer cancel()
	o := &groupRun{cfg: cfg, chk: NewChecker(), run: newRunID(), msg: strings.Repeat("x", cfg.MsgSize)}
	stray := o.chk.stray(cfg.Reconnect)
	specs := make([]userSpec, 0, cfg.Groups*cfg.Members)
	var members []*member
	for gi := range cfg.Groups {
		g := &benchGroup{i: gi}
		for j := range cfg.Members {
			m := &member{o: o, g: g, j: j, rcpt: o.chk.Recipient()}
			g.members = append(g.members, m)
			members = append(members, m)
			specs = append(specs, userSpec{
				name: fmt.Sprintf("b%s-g%d-%d", o.run, gi, j),
				addr: len(specs),
				h:    handlers{push: m.onPush, stray: stray},
			})
		}
		o.groups = append(o.groups, g)
	}

	setupStart := time.Now()
	d := newDialer(cfg, cfg.Groups*cfg.Members)
	users, err := connectUsers(ctx, d, cfg.Addrs, specs, cfg.Password, cfg.SetupConcurrency)
	if err != nil {
		return nil, fmt.Errorf("setup: %w", err)
	}
	defer closeUsers(users)
	boxes := make([]*inbox, len(members))
	for k, m := range members {
		m.user = users[k]
		m.inbox.user = m.user
		m.user.inbox = &m.inbox
		boxes[k] = &m.inbox
	}
	groupsStart := time.Now()
	if err := o.makeGroups(ctx); err != nil {
		return nil, fmt.Errorf("setup: %w", err)
	}
	var keep *sessions
	if cfg.Reconnect {
		keep = newSessions(cfg, log, d)
		for _, s := range o.senders {
			s.box = keep.outbox(s.m.user, s)
		}
	}
	setup, setupGroups := time.Since(setupStart), time.Since(groupsStart)
	log.Debug("bench setup done", "users", len(users), "groups", len(o.groups), "took", setup,
		"groups_took", setupGroups)

	r := &Report{
		Workload:     WorkloadGroup,
		Mode:         cfg.Mode,
		Rate:         cfg.Rate,
		Groups:       cfg.Groups,
		Members:      cfg.Members,
		Senders:      cfg.Senders,
		Addrs:        cfg.Addrs,
		RunID:        o.run,
		SourceAddrs:  d.names(),
		SetupS:       setup.Seconds(),
		SetupGroupsS: setupGroups.Seconds(),
	}
	err = runClock(ctx, clocked{
		cfg: cfg, log: log, chk: o.chk, users: users, boxes: boxes, keep: keep,
		send: func(tl timeline, stop <-chan struct{}, wg *sync.WaitGroup) {
			for _, s := range o.senders {
				wg.Go(func() { openLoop(tl, stop, s, s.k, len(o.senders), cfg.Rate) })
			}
		},
	}, r)
	r.FloodLimited = o.flood.Load()
	return r, err
}

// makeGroups has member 0 of every group create it and the others join,
// then publishes each group's route to its members' reader goroutines.
func (o *groupRun) makeGroups(ctx context.Context) error {
	cfg := o.cfg
	ids := make([]int64, len(o.groups))
	err := parallel(ctx, len(o.groups), cfg.SetupConcurrency, func(ctx context.Context, i int) error {
		ctx, cancel := context.WithTimeout(ctx, setupRequestTimeout)
		defer cancel()
		var err error
		ids[i], err = o.groups[i].members[0].user.conn().createGroup(ctx, fmt.Sprintf("bench %s %d", o.run, i))
		return err
	})
	if err != nil {
		return err
	}
	joiners := cfg.Members - 1
	err = parallel(ctx, len(o.groups)*joiners, cfg.SetupConcurrency, func(ctx context.Context, k int) error {
		g := o.groups[k/joiners]
		ctx, cancel := context.WithTimeout(ctx, setupRequestTimeout)
		defer cancel()
		return g.members[1+k%joiners].user.conn().joinGroup(ctx, ids[g.i])
	})
	if err != nil {
		return err
	}
	for _, g := range o.groups {
		rt := &groupRoute{id: ids[g.i], senders: make(map[int64]*groupSender, cfg.Senders)}
		for _, m := range g.members[:cfg.Senders] {
			s := &groupSender{m: m, k: len(o.senders), gid: rt.id, conv: o.chk.GroupConversation(cfg.Members - 1)}
			rt.senders[m.user.id] = s
			o.senders = append(o.senders, s)
		}
		g.route.Store(rt)
	}
	return nil
}

// onPush records a group message arriving at the member; it runs on the
// member's reader goroutine. In reconnect mode the member drops seqs it
// already processed first, as a real client does.
func (m *member) onPush(f *pushFrame, at time.Time) {
	reconnect := m.o.cfg.Reconnect
	if reconnect {
		if !m.rcpt.Push(f.Gen, f.Seq) {
			return
		}
	} else {
		m.rcpt.Seq(f.Seq)
	}
	m.inbox.saw(f.Seq)
	rt := m.g.route.Load()
	if rt == nil || f.MsgID != wire.GroupChat || f.GroupID != rt.id || !f.Bench || string(f.Run) != m.o.run {
		m.o.chk.Foreign()
		return
	}
	s := rt.senders[f.ID]
	if s == nil || s.m == m {
		m.o.chk.Foreign()
		return
	}
	r := m.j // the recipient index: the members but the sender, in group order
	if m.j > s.m.j {
		r--
	}
	if reconnect {
		m.rcpt.Delivered(at)
	}
	if s.conv.Received(r, f.N, time.Unix(0, f.T), at) {
		s.outstanding.Add(-1)
	}
}

// The group sender as an open-loop sender.

func (s *groupSender) broken() bool { return !s.m.o.cfg.Reconnect && s.m.user.conn().Err() != nil }
func (s *groupSender) full() bool   { return s.outstanding.Load() >= int64(s.m.o.cfg.MaxOutstanding) }
func (s *groupSender) skip()        { s.conv.Skip() }

// sendNext sends the next message of the sender's conversation
// (reconnect mode: queues it in its outbox).
func (s *groupSender) sendNext() {
	t := time.Now()
	n := s.conv.Send(t)
	s.outstanding.Add(1)
	if s.box != nil {
		s.box.push(n, t)
		return
	}
	s.m.user.conn().requestChat(func(reqid int64) any { return s.frame(n, t, reqid) },
		func(f *frame, err error) { s.onReply(n, f, err) })
}

// frame is message n, first sent at t; sent again, it is the same message
// with the same cid.
func (s *groupSender) frame(n int64, t time.Time, reqid int64) any {
	o := s.m.o
	return groupChatFrame{
		MsgID: wire.GroupChat, GroupID: s.gid, Msg: o.msg, ReqID: reqid,
		CID:   o.run + "-g" + strconv.Itoa(s.k) + "-" + strconv.FormatInt(n, 10),
		Bench: benchMeta{Run: o.run, N: n, T: t.UnixNano()},
	}
}

// The group sender as its outbox's sender (reconnect mode).

func (s *groupSender) acked(n int64) { s.conv.Acked(n) }

func (s *groupSender) gaveUp(n int64) {
	if s.conv.GiveUp(n) {
		s.outstanding.Add(-1)
	}
}

// onReply records the server's answer to message n.
func (s *groupSender) onReply(n int64, f *frame, err error) {
	errno, ok := replyErrno(f, err, &s.m.o.flood)
	if ok {
		s.conv.Acked(n)
	} else if s.conv.Failed(n, errno) {
		s.outstanding.Add(-1)
	}
}
