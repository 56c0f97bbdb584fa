package token

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
)

// generalSignRun is SignRun through the JWT library, the fast path bypassed.
func generalSignRun(t *testing.T, k Keys, c RunClaims) string {
	t.Helper()
	rc := runClaims{Subject: c.RunID, TaskID: c.TaskID, Attempt: c.Attempt, Lease: c.Lease,
		window: window{jwt.NewNumericDate(c.IssuedAt), jwt.NewNumericDate(c.ExpiresAt)}, Storage: c.Storage}
	tok, err := sign(k.run, "run-token", &rc)
	require.NoError(t, err)
	return tok
}

// TestFastSignRunWritesTheLibrarysToken: SignRun's tokens are byte for byte the JWT library's,
// for plain claims (which take the fast path) and for claims with characters JSON escapes,
// times before 1970 or with fractions of a second, and negative or large numbers.
func TestFastSignRunWritesTheLibrarysToken(t *testing.T) {
	t.Parallel()
	k, err := DeriveKeys(strings.Repeat("s", 32))
	require.NoError(t, err)
	iat := time.Unix(1_800_000_000, 0)
	cases := map[string]RunClaims{
		"plain":            {RunID: "trun_01m8zn5qwfv0x2363v76g4khze", TaskID: "noop", Attempt: 1, Lease: 3, IssuedAt: iat, ExpiresAt: iat.Add(time.Hour)},
		"storage":          {RunID: "trun_1", TaskID: "t", Attempt: 2, Lease: 7, IssuedAt: iat, ExpiresAt: iat.Add(time.Minute), Storage: "v1.abc-DEF_123"},
		"fractions":        {RunID: "r", TaskID: "t", IssuedAt: iat.Add(999 * time.Millisecond), ExpiresAt: iat.Add(1500 * time.Millisecond)},
		"before 1970":      {RunID: "r", TaskID: "t", IssuedAt: time.Unix(-86_401, 500), ExpiresAt: time.Unix(-5, 0)},
		"extremes":         {RunID: "r", TaskID: "", Attempt: -1, Lease: 1<<63 - 1, IssuedAt: iat, ExpiresAt: iat},
		"html and quotes":  {RunID: `r<&>"\`, TaskID: "t", IssuedAt: iat, ExpiresAt: iat},
		"control and utf8": {RunID: "r\n\u2028é", TaskID: "t\x7f", IssuedAt: iat, ExpiresAt: iat, Storage: "s\x00"},
		"invalid utf8":     {RunID: "r\xff", TaskID: "t", IssuedAt: iat, ExpiresAt: iat},
	}
	for name, c := range cases {
		got, err := k.SignRun(c)
		require.NoError(t, err, name)
		require.Equal(t, generalSignRun(t, k, c), got, name)
		back, err := k.VerifyRun(got, c.IssuedAt)
		require.NoError(t, err, name)
		require.Equal(t, strings.ToValidUTF8(c.RunID, "\uFFFD"), back.RunID, name, "json writes invalid UTF-8 as U+FFFD")
		require.Equal(t, c.Lease, back.Lease, name)
	}
	rc := runClaims{Subject: "trun_1", TaskID: "noop", window: window{jwt.NewNumericDate(iat), jwt.NewNumericDate(iat)}}
	_, ok := fastSignRun(k.run, &rc)
	require.True(t, ok, "plain claims take the fast path")
}

// FuzzRunPayload: a payload parseRunPayload reads is one json.Unmarshal reads to the same
// claims, and what appendRunPayload writes is what json.Marshal writes and parseRunPayload
// reads back.
func FuzzRunPayload(f *testing.F) {
	f.Add(`{"sub":"trun_1","tid":"t","att":2,"lse":7,"iat":1800000000,"exp":1800000600}`, "trun_1", "t", "", 2, int64(7), int64(1_800_000_000))
	f.Add(`{"sub":"r","tid":"t","att":-0,"lse":01,"iat":1.5,"exp":1e9,"sto":"x"}`, "r<", "t", "sto", -1, int64(-1), int64(-86_400))
	f.Add(`{"sub":"r","tid":"t","att":0,"lse":0,"iat":0,"exp":0,"sto":""}`, "", "\u00e9", "s", 0, int64(1<<62), int64(1<<40))
	f.Add(`{"sub":"a\"b","tid":"t","att":99999999999999999999,"lse":0,"iat":0,"exp":0} `, "a", "b", "c", 1, int64(0), int64(0))
	f.Fuzz(func(t *testing.T, payload, sub, tid, sto string, att int, lse, iat int64) {
		if fast, ok := parseRunPayload([]byte(payload)); ok {
			var slow wholeRunClaims
			require.NoError(t, json.Unmarshal([]byte(payload), &slow), "parseRunPayload read %q", payload)
			require.Equal(t, slow, fast, payload)
		}
		at := time.Unix(iat%(1<<40), 0)
		c := runClaims{Subject: sub, TaskID: tid, Attempt: att, Lease: lse, Storage: sto,
			window: window{jwt.NewNumericDate(at), jwt.NewNumericDate(at.Add(time.Hour))}}
		written, ok := appendRunPayload(nil, &c)
		if !ok {
			return
		}
		want, err := json.Marshal(&c)
		require.NoError(t, err)
		require.Equal(t, string(want), string(written))
		back, ok := parseRunPayload(written)
		require.True(t, ok, "parseRunPayload reads what appendRunPayload wrote: %s", written)
		require.Equal(t, sub, back.Subject)
		require.Equal(t, lse, back.Lease)
		require.Equal(t, at.Unix(), *back.IssuedAt)
		_, err = base64.RawURLEncoding.DecodeString(base64.RawURLEncoding.EncodeToString(written))
		require.NoError(t, err)
	})
}

// BenchmarkSignRun is the orchestrator's signing of one dispatch's run token (with a sealed
// backend of a realistic size), the fast path against the JWT library.
func BenchmarkSignRun(b *testing.B) {
	k, err := DeriveKeys(strings.Repeat("s", 32))
	require.NoError(b, err)
	now := time.Now()
	c := RunClaims{RunID: "trun_01m8vwv7n6xe1navz6kh49kmje", TaskID: "noop", Attempt: 1, Lease: 1, IssuedAt: now, ExpiresAt: now.Add(time.Hour), Storage: strings.Repeat("A", 300)}
	rc := runClaims{Subject: c.RunID, TaskID: c.TaskID, Attempt: c.Attempt, Lease: c.Lease,
		window: window{jwt.NewNumericDate(c.IssuedAt), jwt.NewNumericDate(c.ExpiresAt)}, Storage: c.Storage}
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := k.SignRun(c); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("library", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := sign(k.run, "run-token", &rc); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// benchRunToken is a dispatch's run token, with a sealed backend of a realistic size, its keys
// and the time it was signed.
func benchRunToken(b *testing.B) (Keys, string, time.Time) {
	k, err := DeriveKeys(strings.Repeat("s", 32))
	require.NoError(b, err)
	now := time.Now()
	tok, err := k.SignRun(RunClaims{RunID: "trun_01m8vwv7n6xe1navz6kh49kmje", TaskID: "noop", Attempt: 1, Lease: 1, IssuedAt: now, ExpiresAt: now.Add(time.Hour), Storage: strings.Repeat("A", 300)})
	require.NoError(b, err)
	return k, tok, now
}

// BenchmarkReadRun is the worker's reading of a dispatch's run token.
func BenchmarkReadRun(b *testing.B) {
	_, tok, now := benchRunToken(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ReadRun(tok, now); err != nil {
			b.Fatal(err)
		}
	}
}
