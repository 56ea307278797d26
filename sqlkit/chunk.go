package sqlkit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// The capture trigger writes the rows a statement changed as one outbox
// row, a chunk: a JSON array of row images (to_json of each row, as json_agg
// writes it), for updates a second array of the old images, and the names
// of the primary-key columns. These functions cut a chunk into events
// without decoding the values: each event's data is a slice of the chunk's
// bytes, and an update's changes are found by comparing JSON text.

// maxChunkEvents is how many event ids one outbox row may take: the id
// sequence steps by this much, and the events of the row with id c have ids
// from c up (see appendChunk).
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

// eachMember calls fn with the key (the quoted JSON string, as written) and
// the value of each member of the JSON object obj, in order, until fn
// returns false.
func eachMember(obj []byte, fn func(key, value []byte) bool) error {
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return errMalformedChunk
	}
	i = skipSpace(obj, i+1)
	if i < len(obj) && obj[i] == '}' {
		return trailing(obj, i+1)
	}
	for {
		if i >= len(obj) || obj[i] != '"' {
			return errMalformedChunk
		}
		kend, err := stringEnd(obj, i)
		if err != nil {
			return err
		}
		key := obj[i:kend]
		i = skipSpace(obj, kend)
		if i >= len(obj) || obj[i] != ':' {
			return errMalformedChunk
		}
		i = skipSpace(obj, i+1)
		vend, err := valueEnd(obj, i)
		if err != nil {
			return err
		}
		if !fn(key, obj[i:vend]) {
			return nil
		}
		i = skipSpace(obj, vend)
		if i >= len(obj) {
			return errMalformedChunk
		}
		switch obj[i] {
		case ',':
			i = skipSpace(obj, i+1)
		case '}':
			return trailing(obj, i+1)
		default:
			return errMalformedChunk
		}
	}
}

// objectField returns the value of member name of the JSON object obj, and
// whether there is one.
func objectField(obj []byte, name string) (value []byte, found bool, err error) {
	var keyErr error
	err = eachMember(obj, func(k, v []byte) bool {
		match, err := keyEquals(k, name)
		if err != nil {
			keyErr = err
			return false
		}
		if match {
			value, found = v, true
		}
		return !match
	})
	if err == nil {
		err = keyErr
	}
	if err != nil {
		return nil, false, err
	}
	return value, found, nil
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

// keySpec is a table's primary key as a chunk records it, prepared once per
// chunk: the column names, and for a composite key each name as a JSON
// string for the key object.
type keySpec struct {
	columns []string
	quoted  [][]byte
}

func newKeySpec(columns []string) keySpec {
	k := keySpec{columns: columns}
	if len(columns) > 1 {
		for _, c := range columns {
			q, _ := json.Marshal(c) // a string always marshals
			k.quoted = append(k.quoted, q)
		}
	}
	return k
}

// of returns the key of the event whose row image is data: the value of the
// one primary-key column, or an object of column to value for a composite
// key, in key order; nil (SQL NULL) when the table had no primary key. A
// key column missing from the row gives null. The row is read once.
func (k keySpec) of(data []byte) ([]byte, error) {
	switch len(k.columns) {
	case 0:
		return nil, nil
	case 1:
		v, ok, err := objectField(data, k.columns[0])
		if err != nil || !ok {
			return []byte("null"), err
		}
		return v, nil
	}
	values := make([][]byte, len(k.columns))
	var keyErr error
	err := eachMember(data, func(name, v []byte) bool {
		for i, c := range k.columns {
			if values[i] != nil {
				continue
			}
			match, err := keyEquals(name, c)
			if err != nil {
				keyErr = err
				return false
			}
			if match {
				values[i] = v
				break
			}
		}
		return true
	})
	if err == nil {
		err = keyErr
	}
	if err != nil {
		return nil, err
	}
	key := []byte{'{'}
	for i, v := range values {
		if i > 0 {
			key = append(key, ',')
		}
		if v == nil {
			v = []byte("null")
		}
		key = append(append(append(key, k.quoted[i]...), ':'), v...)
	}
	return append(key, '}'), nil
}

// appendChunk appends the events of outbox row r, whose rows column holds
// the chunk (and old_rows the old images, for updates), to rows. events is
// the outbox row's count of event ids, which sizes the split.
func appendChunk(rows []Row, r Row, chunk, oldChunk []byte, keyColumns []string, events int) ([]Row, error) {
	n := min(max(events, 0), maxChunkEvents)
	if oldChunk != nil {
		n /= 2
	}
	var (
		news, olds [][]byte
		err        error
	)
	news, err = splitArray(chunk, make([][]byte, 0, n))
	if err == nil && oldChunk != nil {
		olds, err = splitArray(oldChunk, make([][]byte, 0, n))
		if err == nil && len(olds) != len(news) {
			err = fmt.Errorf("%d new rows but %d old ones", len(news), len(olds))
		}
	}
	if err == nil && ids(len(news), oldChunk != nil) > maxChunkEvents {
		err = fmt.Errorf("%d rows, more than %d event ids", len(news), maxChunkEvents)
	}
	if err == nil {
		key := newKeySpec(keyColumns)
		if oldChunk == nil {
			rows, err = appendRowEvents(rows, r, news, key)
		} else {
			rows, err = appendUpdateEvents(rows, r, olds, news, key)
		}
	}
	if err != nil {
		return rows, fmt.Errorf("outbox row %d: %w", r.ID, err)
	}
	return rows, nil
}

// ids is how many event ids a chunk of n rows takes: two per updated row.
func ids(n int, update bool) int {
	if update {
		return 2 * n
	}
	return n
}

// appendRowEvents appends an event per row image: inserts or deletes.
func appendRowEvents(rows []Row, r Row, images [][]byte, key keySpec) ([]Row, error) {
	for i, data := range images {
		e := r
		e.ID = r.ID + int64(i)
		e.Data = data
		var err error
		if e.Key, err = key.of(data); err != nil {
			return rows, fmt.Errorf("key of event %d: %w", i, err)
		}
		rows = append(rows, e)
	}
	return rows, nil
}

// appendUpdateEvents pairs the old and new images of updated rows, in
// step, and appends their events: nothing for a row that did not change,
// an update with its changed columns for a row that kept its key, and a
// delete of the old key and an insert of the new one for a row whose key
// changed. Row i's events have ids r.ID+2i and r.ID+2i+1.
func appendUpdateEvents(rows []Row, r Row, olds, news [][]byte, key keySpec) ([]Row, error) {
	for i := range news {
		oldData, newData := olds[i], news[i]
		if bytes.Equal(oldData, newData) {
			continue
		}
		oldKey, err := key.of(oldData)
		if err != nil {
			return rows, fmt.Errorf("key of old row %d: %w", i, err)
		}
		newKey, err := key.of(newData)
		if err != nil {
			return rows, fmt.Errorf("key of new row %d: %w", i, err)
		}
		e := r
		e.ID = r.ID + 2*int64(i)
		if !bytes.Equal(oldKey, newKey) {
			e.Action, e.Key, e.Data = "delete", oldKey, oldData
			rows = append(rows, e)
			e.ID++
			e.Action, e.Key, e.Data = "insert", newKey, newData
			rows = append(rows, e)
			continue
		}
		changes, err := rowChanges(oldData, newData)
		if err != nil {
			return rows, fmt.Errorf("changes of row %d: %w", i, err)
		}
		if changes == nil {
			continue // the same values, written differently
		}
		e.Action, e.Key, e.Data, e.Changes = "update", newKey, newData, changes
		rows = append(rows, e)
	}
	return rows, nil
}

// rowChanges returns the columns whose JSON differs between the old and new
// image of a row, as [{"field":…,"old":…,"new":…},…] in column order, or nil
// when none does. Both images come from the same statement, so their
// members are the same columns in the same order; a member missing from
// the old image counts as null.
func rowChanges(oldData, newData []byte) ([]byte, error) {
	var olds [][2][]byte
	if err := eachMember(oldData, func(k, v []byte) bool {
		olds = append(olds, [2][]byte{k, v})
		return true
	}); err != nil {
		return nil, err
	}
	var changes []byte
	i := 0
	err := eachMember(newData, func(k, v []byte) bool {
		old := []byte("null")
		if i < len(olds) && bytes.Equal(olds[i][0], k) {
			old = olds[i][1]
		} else {
			for _, o := range olds {
				if bytes.Equal(o[0], k) {
					old = o[1]
					break
				}
			}
		}
		i++
		if bytes.Equal(old, v) {
			return true
		}
		if changes == nil {
			changes = append(make([]byte, 0, 64), '[')
		} else {
			changes = append(changes, ',')
		}
		changes = append(changes, `{"field":`...)
		changes = append(changes, k...)
		changes = append(changes, `,"old":`...)
		changes = append(changes, old...)
		changes = append(changes, `,"new":`...)
		changes = append(changes, v...)
		changes = append(changes, '}')
		return true
	})
	if err != nil || changes == nil {
		return nil, err
	}
	return append(changes, ']'), nil
}
