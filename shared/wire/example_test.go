package wire_test

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/natter-chat/natter/shared/wire"
)

// A client's byte stream split into frames (newline or NUL ends one), each
// read as a JSON object with typed fields.
func ExampleDecoder() {
	stream := strings.NewReader("{\"msgid\":1,\"id\":7,\"password\":\"pw\"}\n\n{\"msgid\":11}\x00")
	d := wire.NewDecoder(stream, 0)
	for {
		frame, term, err := d.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			fmt.Println(err)
			return
		}
		o, err := wire.Parse(frame)
		if err != nil {
			fmt.Println(err)
			return
		}
		msgid, _ := o.Int("msgid")
		fmt.Printf("%s (terminator %q)\n", wire.MsgID(msgid), term)
	}
	// Output:
	// login (terminator '\n')
	// ping (terminator '\x00')
}
