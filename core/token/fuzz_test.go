package token_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pipeweave/pipeweave/core/token"
)

// The fuzz targets below feed arbitrary strings to every token parser. Without -fuzz,
// `go test` runs their seeds (the Node.js test vectors above plus hostile inputs) as
// ordinary tests. Properties: no panic; a refusal wraps ErrInvalid or ErrExpired; an
// accepted token carries what the signer always puts in it.

// hostileTokens are inputs every token parser gets as seeds.
var hostileTokens = []string{
	"",
	".",
	"..",
	"a.b.c",
	"\x00",
	"\xff\xfe\xfd",
	"e30.e30.",
	"eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", // alg none
	"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4IiwiZXhwIjoxZTMwOH0.AAAA", // exp 1e308
	"eyJhbGciOiJIUzI1NiJ9." + strings.Repeat("W", 4096) + ".x",
	strings.Repeat("A", 10000),
	strings.Repeat(":", 3),
	"::",
	"====",
	"AAAA:AAAA:AAAA",
	"oKGio6Slpqeoqaqr:nCsWFj2AgOUc7eblPgSKgw==:",
}

func fuzzKeys(f *testing.F) token.Keys {
	f.Helper()
	k, err := token.DeriveKeys(asciiSecret)
	if err != nil {
		f.Fatal(err)
	}
	return k
}

func refusedProperly(err error) bool {
	return errors.Is(err, token.ErrInvalid) || errors.Is(err, token.ErrExpired)
}

func FuzzVerifyRun(f *testing.F) {
	keys := fuzzKeys(f)
	f.Add(vecRunTok, int64(60))
	f.Add(vecRunTok, int64(-3600))
	f.Add(vecRunTok, int64(1<<62))
	f.Add(vecRegTok, int64(60))
	for _, s := range hostileTokens {
		f.Add(s, int64(0))
	}
	f.Fuzz(func(t *testing.T, tok string, offset int64) {
		now := vecIat.Add(time.Duration(offset) * time.Second)
		c, err := keys.VerifyRun(tok, now)
		if err != nil {
			if !refusedProperly(err) {
				t.Fatalf("VerifyRun(%q): error %v wraps neither ErrInvalid nor ErrExpired", tok, err)
			}
			return
		}
		if c.RunID == "" || c.IssuedAt.IsZero() || c.ExpiresAt.IsZero() {
			t.Fatalf("VerifyRun(%q) accepted claims without sub, iat or exp: %+v", tok, c)
		}
	})
}

func FuzzVerifyRegistration(f *testing.F) {
	ring, err := token.NewKeyring(asciiSecret, hexSecret)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(vecRegTok, int64(60))
	f.Add(vecV1RegTok, int64(60))
	f.Add(vecRegTok, int64(100000))
	f.Add(vecRunTok, int64(60))
	for _, s := range hostileTokens {
		f.Add(s, int64(0))
	}
	f.Fuzz(func(t *testing.T, tok string, offset int64) {
		now := vecIat.Add(time.Duration(offset) * time.Second)
		c, err := ring.VerifyRegistration(tok, now)
		if err != nil {
			if !refusedProperly(err) {
				t.Fatalf("VerifyRegistration(%q): error %v wraps neither ErrInvalid nor ErrExpired", tok, err)
			}
			return
		}
		if c.ServiceID == "" || c.BodyHash == "" || c.KeyID == "" {
			t.Fatalf("VerifyRegistration(%q) accepted an empty subject", tok)
		}
	})
}

func FuzzOpenBackend(f *testing.F) {
	keys := fuzzKeys(f)
	f.Add(vecRunID, vecSto)
	f.Add("run_other", vecSto)
	f.Add(vecRunID, vecSto+"==")
	f.Add(vecRunID, vecSto[:40])
	for _, s := range hostileTokens {
		f.Add(vecRunID, s)
	}
	f.Fuzz(func(t *testing.T, runID, sto string) {
		plain, err := keys.OpenBackend(runID, sto)
		if err != nil {
			if !errors.Is(err, token.ErrInvalid) {
				t.Fatalf("OpenBackend(%q, %q): error %v does not wrap ErrInvalid", runID, sto, err)
			}
			return
		}
		// Whatever opens must survive a seal/open round trip under the same run only.
		again, err := keys.SealBackend(runID, plain)
		if err != nil {
			t.Fatal(err)
		}
		back, err := keys.OpenBackend(runID, again)
		if err != nil || !bytes.Equal(back, plain) {
			t.Fatalf("round trip of %q: %q, %v", plain, back, err)
		}
		if _, err := keys.OpenBackend(runID+"x", again); err == nil {
			t.Fatalf("sealed value for %q opened for another run", runID)
		}
	})
}

func FuzzOpenCompat(f *testing.F) {
	f.Add("pw-secret!", "oKGio6Slpqeoqaqr:nCsWFj2AgOUc7eblPgSKgw==:H6zCL2xRlUIRrl7J0XiJGPAL4VjEa46SS8X54V7jDmrjh4MkFUX92NvBUrVRP24i7d3OHTE=")
	f.Add("abcdefghijklmnopqrstuvwxyz0123456789ABCD", "oKGio6Slpqeoqaqr:YCClb77WN8Svi6BRGNGgbQ==:WnLyukqBb+XSHYyeXOdR0ihMg4GoLl8V+QwZJ7kDT6Nr9ceSZDKnOPUxgvQTfrGKuYcHwFQ=")
	f.Add("wrong", "oKGio6Slpqeoqaqr:YCClb77WN8Svi6BRGNGgbQ==:WnLyukqBb+XSHYyeXOdR0ihMg4GoLl8V+QwZJ7kDT6Nr9ceSZDKnOPUxgvQTfrGKuYcHwFQ=")
	f.Add("", "oKGio6Slpqeoqaqr:nCsWFj2AgOUc7eblPgSKgw==:")
	f.Add("\xff", "::")
	for _, s := range hostileTokens {
		f.Add("pw-secret!", s)
	}
	f.Fuzz(func(t *testing.T, secret, tok string) {
		plain, err := token.OpenCompat(secret, tok)
		if err != nil {
			if !errors.Is(err, token.ErrInvalid) && !errors.Is(err, token.ErrWeakSecret) {
				t.Fatalf("OpenCompat(%q, %q): error %v wraps neither ErrInvalid nor ErrWeakSecret", secret, tok, err)
			}
			return
		}
		again, err := token.SealCompat(secret, plain)
		if err != nil {
			t.Fatal(err)
		}
		back, err := token.OpenCompat(secret, again)
		if err != nil || !bytes.Equal(back, plain) {
			t.Fatalf("round trip of %q: %q, %v", plain, back, err)
		}
	})
}
