package sqlkit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSplitArray(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"empty", `[]`, nil},
		{"json_agg layout", "[{\"a\":1}, \n {\"a\":2}]", []string{`{"a":1}`, `{"a":2}`}},
		{"nested and strings", `[{"s":"],}\"{[","n":[1,[2]]},"x",3,null]`,
			[]string{`{"s":"],}\"{[","n":[1,[2]]}`, `"x"`, `3`, `null`}},
		{"spaces everywhere", " [ 1 , 2 ] ", []string{`1`, `2`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := splitArray([]byte(tt.in), nil)
			require.NoError(t, err)
			var s []string
			for _, g := range got {
				s = append(s, string(g))
			}
			require.Equal(t, tt.want, s)
		})
	}
	for _, bad := range []string{``, `{}`, `[`, `[1`, `[1,`, `[1 2]`, `["x]`, `[{"a":1]`, `[1] x`, `[,]`} {
		_, err := splitArray([]byte(bad), nil)
		require.ErrorIs(t, err, errMalformedChunk, "%q", bad)
	}
}

func TestKeySpec(t *testing.T) {
	t.Parallel()
	row := []byte(`{"id":7,"Tenant \"A\"":"t1","é":{"x":[1,2]},"nothing":null}`)
	tests := []struct {
		name    string
		columns []string
		want    string // "" means SQL NULL
	}{
		{"no primary key", nil, ""},
		{"one column", []string{"id"}, `7`},
		{"escaped name", []string{`Tenant "A"`}, `"t1"`},
		{"unicode name, object value", []string{"é"}, `{"x":[1,2]}`},
		{"null value", []string{"nothing"}, `null`},
		{"missing column", []string{"gone"}, `null`},
		{"composite, in key order", []string{`Tenant "A"`, "id"}, `{"Tenant \"A\"":"t1","id":7}`},
		{"composite with a missing column", []string{"id", "gone"}, `{"id":7,"gone":null}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := newKeySpec(tt.columns).of(row)
			require.NoError(t, err)
			require.Equal(t, tt.want, string(got))
		})
	}
}

// FuzzSplitArray checks the chunk splitter against encoding/json: on any
// array encoding/json accepts, the elements are the same values; on
// anything else it may fail but must not panic.
func FuzzSplitArray(f *testing.F) {
	for _, s := range []string{`[]`, `[1, {"a":"b\"}"}, [null]]`, "[{\"k\":\"\\u00e9\"}, \n {}]", `[1`, `["\\"]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := splitArray(in, nil)
		var want []json.RawMessage
		if json.Unmarshal(in, &want) != nil {
			return
		}
		require.NoError(t, err, "valid JSON array %q", in)
		require.Len(t, got, len(want))
		for i := range want {
			require.True(t, bytes.Equal(bytes.TrimSpace(want[i]), got[i]), "element %d of %q", i, in)
			if len(got[i]) > 0 && got[i][0] == '{' {
				// Every member that encoding/json finds, objectField finds.
				var members map[string]json.RawMessage
				require.NoError(t, json.Unmarshal(got[i], &members))
				for name := range members {
					_, ok, err := objectField(got[i], name)
					require.NoError(t, err)
					require.True(t, ok, "member %q of %q", name, got[i])
				}
			}
		}
	})
}

func TestAppendUpdateEvents(t *testing.T) {
	t.Parallel()
	type ev struct{ ID, Action, Key, Changes string }
	tests := []struct {
		name       string
		keys       []string
		olds, news []string
		want       []ev
	}{
		{"changed column", []string{"id"},
			[]string{`{"id":1,"a":"x","b":2}`}, []string{`{"id":1,"a":"y","b":2}`},
			[]ev{{"100", "update", `1`, `[{"field":"a","old":"x","new":"y"}]`}}},
		{"unchanged row gives nothing", []string{"id"},
			[]string{`{"id":1,"a":"x"}`, `{"id":2,"a":"x"}`}, []string{`{"id":1,"a":"x"}`, `{"id":2,"a":"z"}`},
			[]ev{{"102", "update", `2`, `[{"field":"a","old":"x","new":"z"}]`}}},
		{"key change is a delete and an insert", []string{"id"},
			[]string{`{"id":1,"a":"x"}`}, []string{`{"id":7,"a":"x"}`},
			[]ev{{"100", "delete", `1`, ""}, {"101", "insert", `7`, ""}}},
		{"composite key, escaped names", []string{`k "1"`, "k2"},
			[]string{`{"k \"1\"":1,"k2":"a","v":null}`}, []string{`{"k \"1\"":1,"k2":"a","v":[1,2]}`},
			[]ev{{"100", "update", `{"k \"1\"":1,"k2":"a"}`, `[{"field":"v","old":null,"new":[1,2]}]`}}},
		{"no primary key: paired by position", nil,
			[]string{`{"a":1}`, `{"a":2}`}, []string{`{"a":10}`, `{"a":2}`},
			[]ev{{"100", "update", ``, `[{"field":"a","old":1,"new":10}]`}}},
		{"several columns, in column order", []string{"id"},
			[]string{`{"id":1,"b":1,"a":1}`}, []string{`{"id":1,"b":2,"a":3}`},
			[]ev{{"100", "update", `1`, `[{"field":"b","old":1,"new":2},{"field":"a","old":1,"new":3}]`}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var olds, news [][]byte
			for i := range tt.olds {
				olds, news = append(olds, []byte(tt.olds[i])), append(news, []byte(tt.news[i]))
			}
			rows, err := appendUpdateEvents(nil, Row{ID: 100, Txid: 5}, olds, news, newKeySpec(tt.keys))
			require.NoError(t, err)
			var got []ev
			for _, r := range rows {
				require.EqualValues(t, 5, r.Txid)
				got = append(got, ev{fmt.Sprint(r.ID), r.Action, string(r.Key), string(r.Changes)})
			}
			require.Equal(t, tt.want, got)
		})
	}
}
