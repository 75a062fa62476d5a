package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// decodeSlow is what DecodeStoreRequest must agree with: encoding/json,
// then the body compacted.
func decodeSlow(data []byte) (StoreRequest, bool) {
	var req StoreRequest
	if json.Unmarshal(data, &req) != nil {
		return req, false
	}
	var c bytes.Buffer
	if json.Compact(&c, req.Body) != nil {
		return req, false
	}
	req.Body = c.Bytes()
	return req, true
}

func TestStoreRequestRoundTrip(t *testing.T) {
	bodies := []string{
		`{}`,
		`{"msgid":5,"id":1,"name":"alice","toid":2,"msg":"hi"}`,
		`{"t":"quotes \" and \\ back\\slash, \u2028, <b>&amp;</b>, 漢字 😀"}`,
		`{"a":[1,2.5e10,-3,true,false,null],"b":{"c":"}"}}`,
	}
	cids := []string{"", "c1", "漢字", `with "quotes" and \`, "tab\there", "\x01\x1f", "line\u2028sep", "bad \xff utf-8"}
	tos := [][]int64{{2}, {2, 3, 4}, {9223372036854775807}}
	for _, body := range bodies {
		for _, cid := range cids {
			for _, to := range tos {
				data := AppendStoreRequest(nil, 1, to, cid, []byte(body))
				want, err := Marshal(StoreRequest{From: 1, To: to, CID: cid, Body: json.RawMessage(body)})
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(data, want) {
					t.Errorf("AppendStoreRequest:\n got %s\nwant %s", data, want)
				}
				got, err := DecodeStoreRequest(data)
				if err != nil {
					t.Fatalf("decode %s: %v", data, err)
				}
				slow, _ := decodeSlow(data)
				if got.From != slow.From || !slices.Equal(got.To, slow.To) || got.CID != slow.CID || !bytes.Equal(got.Body, slow.Body) {
					t.Errorf("decode %s:\n got %+v\nwant %+v", data, got, slow)
				}
			}
		}
	}
}

// TestDecodeStoreRequestShapes feeds requests the scan does not take
// (another field order, spaces, escapes, extra fields, a body to compact)
// and checks the answer is encoding/json's.
func TestDecodeStoreRequestShapes(t *testing.T) {
	for _, data := range []string{
		`{"to":[2],"from":1,"body":{"a":1}}`,
		`{"from":1, "to":[2,3],"body":{"a":1}}`,
		`{"from":1,"to":[2],"cid":"a\"b","body":{"a":1}}`,
		`{"from":1,"to":[2],"cid":"a\u0041","body":{"a":1}}`,
		`{"from":1,"to":[2],"body":{"a":1},"extra":{"b":2}}`,
		`{"from":1,"to":[2],"body":{"a":1}} `,
		`{"from":1,"to":[2],"body": { "a" : [ 1 , 2 ] ,"s":" x "}}`,
		"{\"from\":1,\"to\":[2],\"body\":{\"a\":\n1}}",
		`{"from":1,"to":[],"body":{"a":1}}`,
		`{"from":1,"to":[2],"body":{"a":1},"body":{"b":2}}`,
	} {
		got, err := DecodeStoreRequest([]byte(data))
		want, ok := decodeSlow([]byte(data))
		if !ok || err != nil {
			t.Errorf("%s: %v", data, err)
			continue
		}
		if got.From != want.From || !slices.Equal(got.To, want.To) || got.CID != want.CID || !bytes.Equal(got.Body, want.Body) {
			t.Errorf("%s:\n got %+v\nwant %+v", data, got, want)
		}
	}
}

func TestDecodeStoreRequestErrors(t *testing.T) {
	for name, data := range map[string]string{
		"malformed":        `{"from":1,`,
		"not an object":    `[1,2]`,
		"wrong type":       `{"from":"x","to":[2],"body":{}}`,
		"trailing comma":   `{"from":1,"to":[2,],"body":{}}`,
		"no body":          `{"from":1,"to":[2]}`,
		"body a string":    `{"from":1,"to":[2],"body":"hi"}`,
		"body an array":    `{"from":1,"to":[2],"body":[{}]}`,
		"body null":        `{"from":1,"to":[2],"body":null}`,
		"body not UTF-8":   "{\"from\":1,\"to\":[2],\"body\":{\"t\":\"\xff\xfe\"}}",
		"body too long":    `{"from":1,"to":[2],"body":{"t":"` + strings.Repeat("x", MaxBodyLen) + `"}}`,
		"cid too long":     `{"from":1,"to":[2],"cid":"` + strings.Repeat("c", MaxCIDLen+1) + `","body":{}}`,
		"body two objects": `{"from":1,"to":[2],"body":{}{}}`,
	} {
		_, err := DecodeStoreRequest([]byte(data))
		if !errors.Is(err, ErrBadRequest) {
			t.Errorf("%s: %v, want bad request", name, err)
		}
	}
}

func TestStoreResponse(t *testing.T) {
	const mid = "0190f2a4-0000-7000-8000-000000000000"
	for _, dup := range []bool{false, true} {
		data := AppendStoreResponse(nil, mid, dup)
		want, _ := Marshal(StoreResponse{MID: mid, Duplicate: dup})
		if !bytes.Equal(data, want) {
			t.Errorf("AppendStoreResponse: %s, want %s", data, want)
		}
		got, err := DecodeStoreResponse(data)
		if err != nil || !reflect.DeepEqual(got, StoreResponse{MID: mid, Duplicate: dup}) {
			t.Errorf("DecodeStoreResponse(%s) = %+v, %v", data, got, err)
		}
	}
	got, err := DecodeStoreResponse([]byte(`{"duplicate":false,"mid":"m\u0031"}`))
	if err != nil || !reflect.DeepEqual(got, StoreResponse{MID: "m1"}) {
		t.Errorf("another shape: %+v, %v", got, err)
	}
	// A group message stored for some of its recipients.
	got, err = DecodeStoreResponse([]byte(`{"mid":"m1","refused":[2,3]}`))
	if err != nil || !reflect.DeepEqual(got, StoreResponse{MID: "m1", Refused: []int64{2, 3}}) {
		t.Errorf("refused recipients: %+v, %v", got, err)
	}
	if _, err := DecodeStoreResponse([]byte(`{"mid":`)); err == nil {
		t.Error("malformed response decoded")
	}
}

// FuzzDecodeStoreRequest checks DecodeStoreRequest against encoding/json
// on any input: it accepts what encoding/json accepts (when the body is a
// valid object within the limits) with the same fields, and refuses what
// encoding/json refuses.
func FuzzDecodeStoreRequest(f *testing.F) {
	f.Add([]byte(`{"from":1,"to":[2,3],"cid":"c","body":{"a":"b"}}`))
	f.Add([]byte(`{"from":1,"to":[2],"body":{"a":[1,{"b":null}]}}`))
	f.Add([]byte(`{"from":-1,"to":[],"cid":"","body":{ }}`))
	f.Add([]byte(`{"from":1,"to":[2],"body":{},"x":{}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := DecodeStoreRequest(data)
		want, ok := decodeSlow(data)
		if !ok {
			if err == nil {
				t.Fatalf("%q: accepted %+v; encoding/json refuses it", data, got)
			}
			return
		}
		if err != nil {
			return // a check of the codec's (body object, UTF-8, lengths)
		}
		if got.From != want.From || !slices.Equal(got.To, want.To) || got.CID != want.CID || !bytes.Equal(got.Body, want.Body) {
			t.Fatalf("%q:\n got %+v\nwant %+v", data, got, want)
		}
	})
}

func BenchmarkDecodeStoreRequest(b *testing.B) {
	body := []byte(`{"msgid":5,"id":1000,"name":"b1-s0","toid":2000,"msg":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`)
	data := AppendStoreRequest(nil, 1000, []int64{2000}, "c12345", body)
	b.Run("scan", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := DecodeStoreRequest(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := decodeSlow(data); !ok {
				b.Fatal("decode")
			}
		}
	})
}

func BenchmarkAppendStoreRequest(b *testing.B) {
	body := []byte(`{"msgid":5,"id":1000,"name":"b1-s0","toid":2000,"msg":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`)
	to := []int64{2000}
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendStoreRequest(buf[:0], 1000, to, "c12345", body)
	}
}
