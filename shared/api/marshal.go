package api

import (
	"bytes"
	"encoding/json"
)

// Marshal encodes v as JSON without escaping <, > and & (json.Marshal turns
// them into \u003c and friends, which would then reach chat clients). Every
// service message goes through it, so bodies travel byte for byte.
func Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}), nil
}
