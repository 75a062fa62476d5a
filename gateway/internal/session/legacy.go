package session

import (
	"fmt"
	"time"

	"github.com/natter-chat/natter/gateway/internal/netconn"
	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/wire"
)

// The original C++ client reads one 1024-byte buffer per frame
// (netconn's legacy records; docs/protocol.md, "The original client"):
// every frame to it must fit legacyMaxFrame bytes before its NUL.
const legacyMaxFrame = netconn.RecordSize - 1

// legacyLoginAck builds the original LOGIN_ACK within legacyMaxFrame bytes:
// the friends that fit, then the groups (each with the members that fit),
// then the offline messages that fit (in seq order, none after one that
// does not). Lists are left out when empty, elements are JSON-encoded
// strings, as the original client parses them. It returns the frame and the
// offline messages it carries.
func legacyLoginAck(uid int64, name string, friends []api.Profile, groups []api.Group, msgs []api.InboxMessage) ([]byte, []api.InboxMessage, error) {
	ack := map[string]any{"msgid": wire.LoginAck, "errno": wire.OK, "id": uid, "name": name}
	fits := func() (bool, error) {
		b, err := api.Marshal(ack)
		return len(b) <= legacyMaxFrame, err
	}
	var fs []string
	for _, f := range friendObjects(friends) {
		enc, err := api.Marshal(f)
		if err != nil {
			return nil, nil, fmt.Errorf("encode friend: %w", err)
		}
		fs = append(fs, string(enc))
		ack["friends"] = fs
		ok, err := fits()
		if err != nil {
			return nil, nil, fmt.Errorf("encode login ack: %w", err)
		}
		if !ok {
			fs = fs[:len(fs)-1]
			break
		}
	}
	if len(fs) == 0 {
		delete(ack, "friends")
	} else {
		ack["friends"] = fs
	}
	var gs []string
	for _, g := range groups {
		obj := groupObject(g)
		users, err := legacyStrings(obj["users"].([]map[string]any))
		if err != nil {
			return nil, nil, fmt.Errorf("encode group %d: %w", g.ID, err)
		}
		var enc []byte
		placed := false
		// A member costs at least 40 bytes: no more than 25 can fit.
		for n := min(len(users), 25); n >= 0 && !placed; n-- {
			obj["users"] = users[:n]
			if enc, err = api.Marshal(obj); err != nil {
				return nil, nil, fmt.Errorf("encode group %d: %w", g.ID, err)
			}
			ack["groups"] = append(gs, string(enc))
			if placed, err = fits(); err != nil {
				return nil, nil, fmt.Errorf("encode login ack: %w", err)
			}
		}
		if !placed {
			break
		}
		gs = append(gs, string(enc))
	}
	if len(gs) == 0 {
		delete(ack, "groups")
	} else {
		ack["groups"] = gs
	}
	var offline []string
	n := 0
	for _, m := range msgs {
		ack["offlinemsg"] = append(offline, string(m.Body))
		ok, err := fits()
		if err != nil {
			return nil, nil, fmt.Errorf("encode login ack: %w", err)
		}
		if !ok {
			break
		}
		offline = append(offline, string(m.Body))
		n++
	}
	if len(offline) == 0 {
		delete(ack, "offlinemsg")
	} else {
		ack["offlinemsg"] = offline
	}
	frame, err := api.Marshal(ack)
	if err != nil {
		return nil, nil, fmt.Errorf("encode login ack: %w", err)
	}
	return frame, msgs[:n], nil
}

// legacyNotice is a frame the original client shows as it shows a chat:
// "<time> [0]natter said: <text>". It knows no other frame it would print
// on its own.
func legacyNotice(text string) []byte {
	o := wire.Object{}
	o.SetInt("msgid", int64(wire.OneChat))
	o.SetInt("id", 0)
	o.SetString("name", "natter")
	o.SetString("msg", text)
	o.SetString("time", time.Now().Format(time.DateTime))
	return o.Encode()
}

// legacyStrings encodes each element as a JSON string of its own, as the
// original's LOGIN_ACK carries friends, groups and their users.
func legacyStrings(objs []map[string]any) ([]string, error) {
	out := make([]string, len(objs))
	for i, o := range objs {
		b, err := api.Marshal(o)
		if err != nil {
			return nil, err
		}
		out[i] = string(b)
	}
	return out, nil
}
