package token

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// generalVerify is the general parser's answer, the fast path bypassed.
func generalVerify(k Keys, tok string, now time.Time) (runClaims, error) {
	var c runClaims
	err := verify(k.run, "run-token", tok, now, &c)
	return c, err
}

// signRaw makes a token with header and payload JSON as given, HS256 under key.
func signRaw(key []byte, header, payload string) string {
	enc := base64.RawURLEncoding
	s := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload))
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(s))
	return s + "." + enc.EncodeToString(mac.Sum(nil))
}

// TestFastPathsAgreeWithParser: on valid tokens, tokens refused for every reason, and
// tokens of other shapes, the fast paths accept exactly what the general parser accepts, with
// the same claims, and they do take the tokens SignRun makes.
func TestFastPathsAgreeWithParser(t *testing.T) {
	t.Parallel()
	k, err := DeriveKeys(strings.Repeat("s", 32))
	require.NoError(t, err)
	other, err := DeriveKeys(strings.Repeat("o", 32))
	require.NoError(t, err)
	iat := time.Unix(1_800_000_000, 0)
	claims := RunClaims{RunID: "trun_1", TaskID: "t", Attempt: 2, Lease: 7, IssuedAt: iat, ExpiresAt: iat.Add(10 * time.Minute), Storage: "sealed"}
	valid, err := k.SignRun(claims)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(valid, hs256Header+"."), "SignRun writes the header the fast paths expect")
	foreign, err := other.SignRun(claims)
	require.NoError(t, err)
	header := `{"alg":"HS256","typ":"JWT"}`
	payload := `{"sub":"trun_1","tid":"t","att":2,"lse":7,"iat":1800000000,"exp":1800000600}`
	toks := map[string]string{
		"valid":           valid,
		"other key":       foreign,
		"same claims raw": signRaw(k.run, header, payload),
		"trailing data":   signRaw(k.run, header, payload+` {"x":1}`),
		"missing sub":     signRaw(k.run, header, `{"iat":1800000000,"exp":1800000600}`),
		"missing exp":     signRaw(k.run, header, `{"sub":"r","iat":1800000000}`),
		"missing iat":     signRaw(k.run, header, `{"sub":"r","exp":1800000600}`),
		"bad json":        signRaw(k.run, header, `{"sub":`),
		"float times":     signRaw(k.run, header, `{"sub":"r","iat":1800000000.5,"exp":1800000600.9}`),
		"exponent times":  signRaw(k.run, header, `{"sub":"r","iat":1.8e9,"exp":1.8000006e9}`),
		"quoted times":    signRaw(k.run, header, `{"sub":"r","iat":"1800000000","exp":"1800000600"}`),
		"null times":      signRaw(k.run, header, `{"sub":"r","iat":null,"exp":null}`),
		"huge exp":        signRaw(k.run, header, `{"sub":"r","iat":1800000000,"exp":9007199254740993}`),
		"negative iat":    signRaw(k.run, header, `{"sub":"r","iat":-9007199254740993,"exp":1800000600}`),
		"upper-case keys": signRaw(k.run, header, `{"SUB":"r","IAT":1800000000,"Exp":1800000600,"LSE":3}`),
		"duplicate exp":   signRaw(k.run, header, `{"sub":"r","iat":1800000000,"exp":1,"exp":1800000600}`),
		"wrong types":     signRaw(k.run, header, `{"sub":"r","iat":1800000000,"exp":1800000600,"att":"2"}`),
		"other header":    signRaw(k.run, `{"typ":"JWT","alg":"HS256"}`, payload),
		"kid header":      signRaw(k.run, `{"alg":"HS256","kid":"x","typ":"JWT"}`, payload),
		"none alg":        base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + base64.RawURLEncoding.EncodeToString([]byte(payload)) + ".",
		"extra segment":   valid + ".x",
		"no signature":    valid[:strings.LastIndex(valid, ".")],
		"padded sig":      valid + "=",
		"bad sig chars":   valid[:len(valid)-2] + "*A",
		"flipped payload": strings.Replace(valid, ".eyJ", ".eyK", 1),
		"empty":           "",
		"header only":     hs256Header + ".",
	}
	offsets := []time.Duration{-time.Hour, -Leeway - time.Second, -Leeway, -Leeway + time.Second, 0, time.Minute,
		10*time.Minute + Leeway - time.Second, 10*time.Minute + Leeway, 10*time.Minute + Leeway + time.Second, 24 * time.Hour}
	fastTook, readTook := 0, 0
	for name, tok := range toks {
		for _, off := range offsets {
			now := iat.Add(off)
			fc, fok := fastVerifyRun(k.run, tok, now)
			gc, gerr := generalVerify(k, tok, now)
			if fok {
				fastTook++
				require.NoError(t, gerr, "%s at %v: the fast path accepted what the parser refuses", name, off)
				require.Equal(t, gc.public(), fc.public(), "%s at %v", name, off)
			} else if gerr == nil && (name == "valid" || name == "same claims raw") {
				t.Fatalf("%s at %v: the fast path left a token of ours to the parser", name, off)
			}
			rc, rok := fastReadRun(tok, now)
			gr, grerr := readRunGeneral(tok, now)
			if rok {
				readTook++
				require.NoError(t, grerr, "%s at %v: the fast read accepted what the parser refuses", name, off)
				require.Equal(t, gr.public(), rc.public(), "%s at %v", name, off)
			} else if grerr == nil && (name == "valid" || name == "same claims raw" || name == "other key") {
				t.Fatalf("%s at %v: the fast read left a token of ours to the parser", name, off)
			}
		}
	}
	require.Positive(t, fastTook)
	require.Positive(t, readTook)
}

func BenchmarkVerifyRun(b *testing.B) {
	k, tok, now := benchRunToken(b)
	b.Run("fast", func(b *testing.B) {
		for b.Loop() {
			if _, err := k.VerifyRun(tok, now); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parser", func(b *testing.B) {
		for b.Loop() {
			if _, err := generalVerify(k, tok, now); err != nil {
				b.Fatal(err)
			}
		}
	})
}
