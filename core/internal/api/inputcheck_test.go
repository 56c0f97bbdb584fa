package api

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// checkJSON accepts what PostgreSQL stores and refuses, naming the place, what it refuses.
func TestCheckJSON(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in, code, field string
	}{
		{`{"a":"plain","b":[1,2.5,-3e10,true,null],"c":{}}`, "", ""},
		{`{"a":"\\u0000 is text here"}`, "", ""},
		{`{"a":"\\\u0000"}`, "INVALID_TEXT", "a"},
		{`{"a":"\ud83d\ude00 and \u00e9"}`, "", ""},
		{`{"a":"\ud83d"}`, "INVALID_TEXT", "a"},
		{`{"a":"\ud83d\u0041"}`, "INVALID_TEXT", "a"},
		{`{"a":"\ude00"}`, "INVALID_TEXT", "a"},
		{`{"a":"x\u0000"}`, "INVALID_TEXT", "a"},
		{`{"a":{"b":[{"c":"ok"},{"c":"\u0000"}]}}`, "INVALID_TEXT", "a.b[1].c"},
		{"{\"a\":\"\xff\"}", "INVALID_TEXT", "a"},
		{"{\"a\xff\":1}", "INVALID_TEXT", "body"},
		{`"\u0000"`, "INVALID_TEXT", "body"},
		{`{"n":1.7976931348623157e308,"m":-5e-324,"z":0e-99999,"w":-0.0e5}`, "", ""},
		{`{"n":1e309}`, "INVALID_NUMBER", "n"},
		{`{"n":[-1e999999]}`, "INVALID_NUMBER", "n[0]"},
		{`{"n":1e-400}`, "INVALID_NUMBER", "n"},
		{`[` + strings.Repeat("9", 310) + `]`, "INVALID_NUMBER", "[0]"},
		{`[` + strings.Repeat("1", 300) + `]`, "", ""},
		{`{"e":"1e999999 in a string","u":"\\u"}`, "", ""},
	}
	for _, c := range cases {
		require.True(t, json.Valid([]byte(c.in)), c.in)
		p := checkJSON([]byte(c.in))
		if c.code == "" {
			require.Nil(t, p, c.in)
			continue
		}
		require.NotNil(t, p, c.in)
		require.Equal(t, c.code, p.code, c.in)
		require.Equal(t, c.field, p.field, c.in)
	}
}

func TestCheckURL(t *testing.T) {
	t.Parallel()
	for in, field := range map[string]string{
		"/api/task-runs/trun_1?limit=5": "",
		"/api/task-runs/%00":            "path",
		"/api/task-runs/%ff":            "path",
		"/api/dlq?taskId=%ff":           "query parameter taskId",
		"/api/dlq?taskId=a&state=%00":   "query parameter state",
		"/api/dlq?%00=1":                "query parameter name",
		"/api/dlq?a=%zz":                "query",
	} {
		u, err := url.Parse(in)
		require.NoError(t, err)
		p := checkURL(u)
		if field == "" {
			require.Nil(t, p, in)
			continue
		}
		require.NotNil(t, p, in)
		require.Equal(t, field, p.field, in)
	}
}

// BenchmarkCheckJSON measures the input rules on a 1 MiB body: the common case (no escape, no
// exponent) and the slow path (every number with an exponent).
func BenchmarkCheckJSON(b *testing.B) {
	plain := []byte(`{"taskId":"t","input":[` + strings.Repeat(`{"name":"a plain string","n":12345},`, 29000) + `1]}`)
	exps := []byte(`{"taskId":"t","input":[` + strings.Repeat(`{"name":"a plain string","n":1.5e10},`, 29000) + `1]}`)
	for name, data := range map[string][]byte{"plain": plain, "exponents": exps} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if checkJSON(data) != nil {
					b.Fatal("refused")
				}
			}
		})
	}
}
