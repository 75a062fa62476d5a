package wire

import (
	"bytes"
	"encoding/json"
	"testing"
)

// stdEncode is what Encode must write: encoding/json without HTML escaping.
func stdEncode(t *testing.T, o Object) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(map[string]json.RawMessage(o)); err != nil {
		t.Fatalf("encoding/json: %v", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'})
}

var encodeSeeds = []string{
	`{}`,
	`{"z":1,"a":"<b>&"}`,
	"{ \"b\" : [ 1 , 2 ,\t{ \"c\" : \" x y \" } ] ,\n\"a\":null }",
	`{"k\u2028":"\u2029 \u0007 \b \f \n \r \t \" \\ \u007f","é":"你好"}`,
	"{\"bad\":\"\xff\xfe\",\"\xc3\":true}",
	`{"n":-1.5e3,"o":{"z":{},"a":[]}}`,
}

func TestEncodeIsEncodingJSON(t *testing.T) {
	for _, in := range encodeSeeds {
		o, err := Parse([]byte(in))
		if err != nil {
			t.Fatalf("Parse(%q): %v", in, err)
		}
		o.SetString("s", "a\"b\\c\x01\u2028<>&\xff")
		o.SetInt("i", -42)
		o["nil"] = nil
		if got, want := o.Encode(), stdEncode(t, o); !bytes.Equal(got, want) {
			t.Errorf("Encode(%q)\n got %s\nwant %s", in, got, want)
		}
	}
}

// FuzzEncode holds Encode (and SetString) against encoding/json for any
// object Parse accepts.
func FuzzEncode(f *testing.F) {
	for _, s := range encodeSeeds {
		f.Add([]byte(s), "x")
	}
	f.Fuzz(func(t *testing.T, in []byte, s string) {
		o, err := Parse(in)
		if err != nil {
			return
		}
		o.SetString("s", s)
		if got, want := o.Encode(), stdEncode(t, o); !bytes.Equal(got, want) {
			t.Fatalf("Encode(%q)\n got %s\nwant %s", in, got, want)
		}
	})
}
