package token

import (
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"
)

// SecretBytesAnyLength is SecretBytes without the 32-byte minimum, for
// PIPEWEAVE_COMPAT=node-sdk-v1, where upstream's configuration (its
// .env.example secret has 30 bytes) must keep working: the hex-decoded value
// when s is exactly 64 hex characters, otherwise its UTF-8 bytes, however few.
// Only an empty secret gives ErrWeakSecret.
func SecretBytesAnyLength(s string) ([]byte, error) {
	if s == "" {
		return nil, fmt.Errorf("secret is empty: %w", ErrWeakSecret)
	}
	if b, err := SecretBytes(s); err == nil {
		return b, nil
	}
	return []byte(s), nil
}

// DeriveKeysAnyLength is DeriveKeys over SecretBytesAnyLength: the same three
// HKDF-SHA256 keys, from a secret of any non-empty length. A secret of 32 bytes
// or more gives exactly the keys DeriveKeys gives.
func DeriveKeysAnyLength(secret string) (Keys, error) {
	ikm, err := SecretBytesAnyLength(secret)
	if err != nil {
		return Keys{}, fmt.Errorf("derive keys: %w", err)
	}
	return deriveFrom(ikm)
}

// deriveFrom derives the three keys from the secret's bytes ikm.
func deriveFrom(ikm []byte) (Keys, error) {
	var k Keys
	for _, d := range []struct {
		dst  *[]byte
		info string
	}{{&k.register, infoRegister}, {&k.run, infoRun}, {&k.storage, infoStorage}} {
		var err error
		if *d.dst, err = hkdf.Key(sha256.New, ikm, nil, d.info, keySize); err != nil {
			return Keys{}, fmt.Errorf("derive key %q: %w", d.info, err)
		}
	}
	return k, nil
}
