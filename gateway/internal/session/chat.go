package session

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natter-chat/natter/gateway/internal/codec"
	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/subject"
	"github.com/natter-chat/natter/shared/wire"
)

// Chats go to the inbox through a pipeline per connection: a client may
// send many without waiting for the answers, but one sender's chats must be
// stored in the order sent (several offline or group service instances
// would otherwise store them in any order). So a connection has one store
// in flight; the chats sent meanwhile wait in its queue and go together in
// the next (subject.OfflineStoreMany: the offline service stores them in
// the order given), and each is answered, in order, once stored. No
// goroutine waits on a store: the answer comes on the requester's
// goroutine, which sends the next.

// A connection whose chats pile up waiting for the inbox is paused (its
// frames wait in the socket, so a fast sender is slowed down by TCP) until
// the queue drains; maxQueuedChats is a hard bound behind that.
const (
	pauseChats     = 256
	resumeChats    = 64
	maxQueuedChats = 1024
)

// chatQueue is a connection's chats on their way to the inbox. Guarded by
// Session.mu.
type chatQueue struct {
	inflight bool
	q        []chatReq
	nextCID  uint64 // for the cids the gateway gives chats that have none
}

func (q *chatQueue) pending() int {
	if q.inflight {
		return len(q.q) + 1
	}
	return len(q.q)
}

// chatReq is a chat ready to be stored.
type chatReq struct {
	msgid  wire.MsgID // OneChat or GroupChat
	reqid  []byte
	to     int64 // OneChat: the recipient, checked to exist before the store
	subj   string
	data   []byte // the encoded store request
	ownCID bool   // the cid is the gateway's: a duplicate is not reported
}

// handleChat checks a ONE_CHAT or GROUP_CHAT frame and queues it for the
// inbox. The sender's id and name come from the session.
func (s *Session) handleChat(msgid wire.MsgID, f *codec.Frame, reqid []byte, uid int64, name string) {
	chat, err := f.CheckChat(msgid)
	if err != nil {
		s.sendError(msgid, reqid, wire.BadField, err.Error(), false)
		return
	}
	to, cid := chat.To, chat.CID
	body := codec.AppendChatBody(nil, f, msgid, uid, name, time.Now())
	s.mu.Lock()
	if s.chats == nil {
		s.chats = &chatQueue{}
	}
	q := s.chats
	if len(q.q) >= maxQueuedChats {
		s.mu.Unlock()
		s.hub.m.rateLimited.Inc()
		s.sendError(msgid, reqid, wire.Flood, "too many chats waiting to be stored; slow down", false)
		return
	}
	r := chatReq{msgid: msgid, reqid: append([]byte(nil), reqid...), to: to}
	if cid == "" {
		// Every store carries a cid, so that one sent again (after a lost
		// NATS node or service instance) is stored once.
		q.nextCID++
		cid = "~" + hex.EncodeToString(s.sid[:6]) + strconv.FormatUint(q.nextCID, 36)
		r.ownCID = true
	}
	r.subj = subject.OfflineStore
	if msgid == wire.GroupChat {
		r.subj = subject.GroupSend
		if r.data, err = api.Marshal(api.GroupSendRequest{UserID: uid, GroupID: to, CID: cid, Body: body}); err != nil {
			s.mu.Unlock()
			s.sendError(msgid, reqid, wire.Internal, "internal error", false)
			return
		}
	} else {
		// The body is compact already: written once, without a JSON pass.
		r.data = api.AppendStoreRequest(make([]byte, 0, len(body)+64+len(cid)), uid, []int64{to}, cid, body)
	}
	q.q = append(q.q, r)
	start := !q.inflight
	q.inflight = true
	if len(q.q) >= pauseChats {
		s.conn.Pause()
	}
	s.mu.Unlock()
	if start {
		s.nextChat()
	}
}

// nextChat stores the next queued chat, if any; its answer stores the one
// after.
func (s *Session) nextChat() {
	s.mu.Lock()
	q := s.chats
	if len(q.q) == 0 {
		q.inflight = false
		last := s.ended && s.busy == 0
		s.mu.Unlock()
		if last {
			s.conn.SendLast(nil)
		}
		return
	}
	// The one-to-one chats at the head whose recipients are known go
	// together; a group chat, or a recipient to look up, goes alone.
	n := 0
	for n < len(q.q) && n < api.MaxStoreMany && q.q[n].msgid == wire.OneChat && s.hub.users.isKnown(q.q[n].to) {
		n++
	}
	batch := append([]chatReq(nil), q.q[:max(n, 1)]...)
	clear(q.q[:len(batch)])
	q.q = q.q[len(batch):]
	if len(q.q) == 0 {
		q.q = nil
	}
	s.resumeLocked()
	s.mu.Unlock()
	switch r := batch[0]; {
	case len(batch) > 1:
		s.storeMany(batch)
	case r.msgid == wire.OneChat && !s.hub.users.isKnown(r.to):
		s.lookupThenStore(r)
	default:
		s.store(r)
	}
}

// storeMany stores chats together and answers each, in order. Offline
// instances that do not know the store of several (an older version during
// an upgrade) get them one by one.
func (s *Session) storeMany(batch []chatReq) {
	reqs := make([][]byte, len(batch))
	for i, r := range batch {
		reqs[i] = r.data
	}
	data := api.AppendStoreMany(nil, reqs)
	s.hub.c.goCall(subject.OfflineStoreMany, data, true, s.hub.opts.RequestTimeout, func(msg *nats.Msg, err error) {
		var res []api.StoreResult
		if err == nil {
			res, err = api.DecodeStoreManyResponse(msg.Data, len(batch))
		}
		if errors.Is(err, nats.ErrNoResponders) {
			s.storeEach(batch)
			return
		}
		for i, r := range batch {
			switch {
			case err != nil:
				s.answerStore(r, api.StoreResponse{}, err)
			default:
				s.answerStore(r, api.StoreResponse{MID: res[i].MID, Duplicate: res[i].Duplicate}, res[i].Err())
			}
		}
		s.nextChat()
	})
}

// storeEach stores chats one after the other (each one's answer sends the
// next), then goes on with the queue.
func (s *Session) storeEach(batch []chatReq) {
	if len(batch) == 0 {
		s.nextChat()
		return
	}
	r := batch[0]
	s.hub.c.goCall(r.subj, r.data, true, s.hub.opts.RequestTimeout, func(msg *nats.Msg, err error) {
		var resp api.StoreResponse
		if err == nil {
			resp, err = api.DecodeStoreResponse(msg.Data)
		}
		s.answerStore(r, resp, err)
		s.storeEach(batch[1:])
	})
}

// answerStore answers a chat with its store's outcome.
func (s *Session) answerStore(r chatReq, resp api.StoreResponse, err error) {
	if err != nil {
		errno, text := s.socialError("store chat", err)
		s.sendError(r.msgid, r.reqid, errno, text, false)
		return
	}
	s.sendReply(&codec.Reply{Re: r.msgid, ReqID: r.reqid, MID: resp.MID, HasMID: true,
		Duplicate: resp.Duplicate && !r.ownCID, Refused: resp.Refused})
}

// lookupThenStore checks that a chat's recipient exists, then stores it.
func (s *Session) lookupThenStore(r chatReq) {
	data, _ := api.Marshal(api.LookupRequest{IDs: []int64{r.to}})
	s.hub.c.goCall(subject.UserLookup, data, true, s.hub.opts.RequestTimeout, func(msg *nats.Msg, err error) {
		var resp api.LookupResponse
		if err == nil {
			err = json.Unmarshal(msg.Data, &resp)
		}
		if err != nil {
			errno, text := s.serviceError("lookup recipient", err)
			s.sendError(r.msgid, r.reqid, errno, text, false)
			s.nextChat()
			return
		}
		for _, u := range resp.Users {
			if u.ID == r.to {
				s.hub.users.remember(r.to)
				s.store(r)
				return
			}
		}
		s.sendError(r.msgid, r.reqid, wire.NoSuchUser, fmt.Sprintf("no such user: %d", r.to), false)
		s.nextChat()
	})
}

// store sends a chat to the inbox and answers it once it is committed.
func (s *Session) store(r chatReq) {
	s.hub.c.goCall(r.subj, r.data, true, s.hub.opts.RequestTimeout, func(msg *nats.Msg, err error) {
		var resp api.StoreResponse
		if err == nil {
			resp, err = api.DecodeStoreResponse(msg.Data)
		}
		s.answerStore(r, resp, err)
		s.nextChat()
	})
}

// handleAck records a cumulative delivery acknowledgement. An ack beyond what
// this session delivered is clamped to it.
func (s *Session) handleAck(f *codec.Frame, reqid []byte, uid int64) {
	seq, err := f.Int("seq")
	if err == nil && seq < 0 {
		err = &wire.FieldError{Field: "seq", Reason: "must not be negative"}
	}
	if err != nil {
		s.sendError(wire.Ack, reqid, wire.BadField, err.Error(), false)
		return
	}
	s.mu.Lock()
	if s.cur != nil {
		seq = s.cur.Ack(seq)
	} else {
		seq = 0
	}
	s.mu.Unlock()
	s.hub.acks.ack(uid, seq)
	if len(reqid) == 0 {
		return
	}
	// An ack with a reqid is answered once it is stored: the client may then
	// forget everything up to seq.
	reqid = append([]byte(nil), reqid...)
	s.goRequest(func() {
		ctx, cancel := s.requestCtx()
		defer cancel()
		if err := s.hub.acks.flushUsers(ctx, []int64{uid}); err != nil {
			errno, msg := s.serviceError("ack", err)
			s.sendError(wire.Ack, reqid, errno, msg, false)
			return
		}
		s.sendReply(&codec.Reply{Re: wire.Ack, ReqID: reqid, Seq: seq, HasSeq: true})
	})
}
