package sqlkit

import (
	"encoding/json"
	"errors"
	"fmt"
)

// The capture trigger writes the inserted or deleted rows of a statement as
// one outbox row, a chunk: a JSON array of row images (to_json of each row,
// as json_agg writes it) and the names of the primary-key columns. These
// functions cut a chunk into events without decoding the values: each
// event's data is a slice of the chunk's bytes.

// maxChunkEvents is how many events one outbox row may hold: the id sequence
// steps by this much, and the events of the row with id c are c, c+1, ...
const maxChunkEvents = 1024

// errMalformedChunk means an outbox chunk is not the JSON the trigger writes.
var errMalformedChunk = errors.New("malformed outbox chunk")

// isSpace reports whether c is JSON whitespace.
func isSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\t' || c == '\r' }

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// valueEnd returns the index just past the JSON value that starts at b[i].
// It checks only as much syntax as it needs to find the end: the values
// come from PostgreSQL's own JSON output.
func valueEnd(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errMalformedChunk
	}
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				end, err := stringEnd(b, i)
				if err != nil {
					return 0, err
				}
				i = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, nil
				}
			}
		}
		return 0, errMalformedChunk
	default:
		start := i
		for i < len(b) && b[i] != ',' && b[i] != ']' && b[i] != '}' && b[i] != ':' && !isSpace(b[i]) {
			i++
		}
		if i == start {
			return 0, errMalformedChunk
		}
		return i, nil
	}
}

// stringEnd returns the index just past the JSON string that starts at b[i].
func stringEnd(b []byte, i int) (int, error) {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1, nil
		}
	}
	return 0, errMalformedChunk
}

// splitArray appends the elements of the JSON array a to out.
func splitArray(a []byte, out [][]byte) ([][]byte, error) {
	i := skipSpace(a, 0)
	if i >= len(a) || a[i] != '[' {
		return out, errMalformedChunk
	}
	i = skipSpace(a, i+1)
	if i < len(a) && a[i] == ']' {
		return out, trailing(a, i+1)
	}
	for {
		end, err := valueEnd(a, i)
		if err != nil {
			return out, err
		}
		out = append(out, a[i:end])
		i = skipSpace(a, end)
		if i >= len(a) {
			return out, errMalformedChunk
		}
		switch a[i] {
		case ',':
			i = skipSpace(a, i+1)
		case ']':
			return out, trailing(a, i+1)
		default:
			return out, errMalformedChunk
		}
	}
}

func trailing(b []byte, i int) error {
	if skipSpace(b, i) != len(b) {
		return errMalformedChunk
	}
	return nil
}

// objectField returns the value of member name of the JSON object obj, and
// whether there is one.
func objectField(obj []byte, name string) ([]byte, bool, error) {
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return nil, false, errMalformedChunk
	}
	i = skipSpace(obj, i+1)
	if i < len(obj) && obj[i] == '}' {
		return nil, false, nil
	}
	for {
		if i >= len(obj) || obj[i] != '"' {
			return nil, false, errMalformedChunk
		}
		kend, err := stringEnd(obj, i)
		if err != nil {
			return nil, false, err
		}
		match, err := keyEquals(obj[i:kend], name)
		if err != nil {
			return nil, false, err
		}
		i = skipSpace(obj, kend)
		if i >= len(obj) || obj[i] != ':' {
			return nil, false, errMalformedChunk
		}
		i = skipSpace(obj, i+1)
		vend, err := valueEnd(obj, i)
		if err != nil {
			return nil, false, err
		}
		if match {
			return obj[i:vend], true, nil
		}
		i = skipSpace(obj, vend)
		if i >= len(obj) {
			return nil, false, errMalformedChunk
		}
		switch obj[i] {
		case ',':
			i = skipSpace(obj, i+1)
		case '}':
			return nil, false, nil
		default:
			return nil, false, errMalformedChunk
		}
	}
}

// keyEquals reports whether the quoted JSON string q decodes to name.
// Column names rarely need escapes, so the common case compares bytes.
func keyEquals(q []byte, name string) (bool, error) {
	raw := q[1 : len(q)-1]
	for _, c := range raw {
		if c == '\\' {
			var s string
			if err := json.Unmarshal(q, &s); err != nil {
				return false, errMalformedChunk
			}
			return s == name, nil
		}
	}
	return string(raw) == name, nil
}

// eventKey returns the key of the event whose row image is data: the value
// of the one primary-key column, or an object of column to value for a
// composite key; nil (SQL NULL) when the table had no primary key. A key
// column missing from the row gives null.
func eventKey(data []byte, columns []string) ([]byte, error) {
	switch len(columns) {
	case 0:
		return nil, nil
	case 1:
		v, ok, err := objectField(data, columns[0])
		if err != nil || !ok {
			return []byte("null"), err
		}
		return v, nil
	}
	key := []byte{'{'}
	for i, c := range columns {
		if i > 0 {
			key = append(key, ',')
		}
		name, err := json.Marshal(c)
		if err != nil {
			return nil, err
		}
		key = append(append(key, name...), ':')
		v, ok, err := objectField(data, c)
		if err != nil {
			return nil, err
		}
		if !ok {
			v = []byte("null")
		}
		key = append(key, v...)
	}
	return append(key, '}'), nil
}

// appendChunk appends the events of outbox row r, whose rows column holds
// the chunk, to rows.
func appendChunk(rows []Row, r Row, chunk []byte, keyColumns []string) ([]Row, error) {
	var elems [][]byte
	elems, err := splitArray(chunk, elems)
	if err == nil && len(elems) > maxChunkEvents {
		err = fmt.Errorf("%d events, more than %d", len(elems), maxChunkEvents)
	}
	if err != nil {
		return rows, fmt.Errorf("outbox row %d: %w", r.ID, err)
	}
	base := r.ID
	for i, data := range elems {
		e := r
		e.ID = base + int64(i)
		e.Data = data
		if e.Key, err = eventKey(data, keyColumns); err != nil {
			return rows, fmt.Errorf("outbox row %d: key of event %d: %w", base, i, err)
		}
		rows = append(rows, e)
	}
	return rows, nil
}
