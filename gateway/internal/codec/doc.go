// Package codec reads and writes the client protocol's hot frames by hand.
// A client frame is scanned once into a Frame (the spans of its top-level
// keys and values), without a map and, once the caller's Frame has grown,
// without an allocation; the frames the gateway writes most (a chat's
// stored body, pushes in both dialects, replies, pongs) are appended to a
// caller's buffer, allocating nothing.
//
// Every encoder writes exactly the bytes of the generic path (wire.Parse,
// wire.Object's setters and Encode, api.Marshal of a map: keys sorted,
// values compacted, no HTML escaping), and every reader accepts and refuses
// exactly what wire.Parse and wire.Object's readers do, with the same
// wire.FieldError texts. The tests hold each function against a reference
// built the generic way, in tables and under go test -fuzz.
//
// The session's use, in the reader (one Frame per reader, reused):
//
//	if err := codec.Scan(frame, &f); err != nil {
//		// errno wire.BadJSON, errmsg codec.MsgMalformed
//	}
//	id, err := f.Int("msgid")
//	chat, err := f.CheckChat(wire.OneChat) // errno wire.BadField on error
//	body := codec.AppendChatBody(nil, &f, wire.OneChat, uid, name, time.Now())
//	out = codec.AppendReply(out, &codec.Reply{Re: wire.OneChat, ReqID: f.Raw("reqid"), MID: mid, HasMID: true})
//
// and in delivery:
//
//	out, msgid, err := codec.AppendPush(out, m.Body, m.MID, m.Seq) // or AppendLegacyPush(out, m.Body)
//
// A Frame aliases the scanned bytes: copy what must outlive them (the
// body is built in its own buffer; Raw and StringBytes alias the frame).
package codec
