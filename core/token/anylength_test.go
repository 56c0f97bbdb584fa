package token_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/token"
)

// A secret of 32 bytes or more gives the same keys whichever derivation is used; a shorter one
// only through DeriveKeysAnyLength; an empty one never.
func TestDeriveKeysAnyLength(t *testing.T) {
	t.Parallel()
	now := time.Now()
	for _, secret := range []string{strings.Repeat("k", 32), strings.Repeat("ab", 32), "a much longer secret than thirty-two bytes, surely"} {
		strict, err := token.DeriveKeys(secret)
		require.NoError(t, err)
		lenient, err := token.DeriveKeysAnyLength(secret)
		require.NoError(t, err)
		tok, err := strict.SignRegistration("svc", nil, now)
		require.NoError(t, err)
		c, err := lenient.VerifyRegistration(tok, now)
		require.NoError(t, err, secret)
		require.Equal(t, "svc", c.ServiceID)
	}

	const short = "dev-secret-key-32-bytes-long!!"
	_, err := token.DeriveKeys(short)
	require.ErrorIs(t, err, token.ErrWeakSecret)
	keys, err := token.DeriveKeysAnyLength(short)
	require.NoError(t, err)
	tok, err := keys.SignRegistration("svc", nil, now)
	require.NoError(t, err)
	c, err := keys.VerifyRegistration(tok, now)
	require.NoError(t, err)
	require.Equal(t, "svc", c.ServiceID)
	// Another short secret makes other keys.
	other, err := token.DeriveKeysAnyLength("dev-secret-key-32-bytes-long!?")
	require.NoError(t, err)
	_, err = other.VerifyRegistration(tok, now)
	require.ErrorIs(t, err, token.ErrInvalid)

	b, err := token.SecretBytesAnyLength(short)
	require.NoError(t, err)
	require.Equal(t, []byte(short), b)
	_, err = token.SecretBytesAnyLength("")
	require.ErrorIs(t, err, token.ErrWeakSecret)
	_, err = token.DeriveKeysAnyLength("")
	require.ErrorIs(t, err, token.ErrWeakSecret)

	// The compat storage token takes the short secret too (its UTF-8 bytes repeated to 32).
	sealed, err := token.SealCompat(short, []byte(`{"id":"primary"}`))
	require.NoError(t, err)
	plain, err := token.OpenCompat(short, sealed)
	require.NoError(t, err)
	require.Equal(t, `{"id":"primary"}`, string(plain))
}
