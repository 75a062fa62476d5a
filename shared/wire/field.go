package wire

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
)

// Object is a decoded frame: its fields, still encoded. Keeping values raw
// lets the gateway pass unknown fields through untouched.
type Object map[string]json.RawMessage

// FieldError says which field of a frame is wrong and how. Its text is safe
// to show to the client.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return fmt.Sprintf("field %q %s", e.Field, e.Reason) }

// Parse decodes a frame into an Object. It fails unless the frame is exactly
// one JSON object.
func Parse(frame []byte) (Object, error) {
	var o Object
	if err := json.Unmarshal(frame, &o); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	if o == nil {
		return nil, fmt.Errorf("not a JSON object: null")
	}
	return o, nil
}

// Has reports whether field is present and not null.
func (o Object) Has(field string) bool {
	v, ok := o[field]
	return ok && string(v) != "null"
}

// Int reads a required integer field.
func (o Object) Int(field string) (int64, error) {
	v, ok := o[field]
	if !ok || string(v) == "null" {
		return 0, &FieldError{field, "is missing"}
	}
	var n int64
	if err := json.Unmarshal(v, &n); err != nil {
		return 0, &FieldError{field, "must be an integer"}
	}
	return n, nil
}

// OptInt reads an optional integer field; ok is false when it is absent.
func (o Object) OptInt(field string) (n int64, ok bool, err error) {
	if !o.Has(field) {
		return 0, false, nil
	}
	n, err = o.Int(field)
	return n, err == nil, err
}

// String reads a required string field.
func (o Object) String(field string) (string, error) {
	v, ok := o[field]
	if !ok || string(v) == "null" {
		return "", &FieldError{field, "is missing"}
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", &FieldError{field, "must be a string"}
	}
	return s, nil
}

// OptString reads an optional string field.
func (o Object) OptString(field string) (s string, ok bool, err error) {
	if !o.Has(field) {
		return "", false, nil
	}
	s, err = o.String(field)
	return s, err == nil, err
}

// SetString stores s, JSON-encoded, under field.
func (o Object) SetString(field, s string) {
	o[field] = AppendString(nil, s)
}

// SetInt stores n under field.
func (o Object) SetInt(field string, n int64) {
	o[field] = strconv.AppendInt(nil, n, 10)
}

// Encode returns the object as compact JSON with its keys in sorted order
// (as the original system's ordered map wrote them) and nothing
// HTML-escaped: the bytes api.Marshal writes for the same map. Its values
// must be valid JSON, as Parse and the setters leave them; a missing (nil)
// value is written as null.
func (o Object) Encode() []byte {
	keys := make([]string, 0, len(o))
	n := 2
	for k, v := range o {
		keys = append(keys, k)
		n += len(k) + len(v) + 4
	}
	slices.Sort(keys)
	b := make([]byte, 1, n)
	b[0] = '{'
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(AppendString(b, k), ':')
		if v := o[k]; len(v) == 0 {
			b = append(b, "null"...)
		} else {
			b = AppendCompact(b, v)
		}
	}
	return append(b, '}')
}
