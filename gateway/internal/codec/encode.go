package codec

import (
	"strconv"

	"github.com/natter-chat/natter/shared/wire"
)

// appendField appends `"key":` (key needing no escapes) with a comma first
// unless it opens the object.
func appendKey(dst []byte, key string) []byte {
	if dst[len(dst)-1] != '{' {
		dst = append(dst, ',')
	}
	dst = append(dst, '"')
	dst = append(dst, key...)
	return append(dst, '"', ':')
}

func appendIntField(dst []byte, key string, n int64) []byte {
	return strconv.AppendInt(appendKey(dst, key), n, 10)
}

func appendStringField(dst []byte, key, s string) []byte {
	return wire.AppendString(appendKey(dst, key), s)
}
