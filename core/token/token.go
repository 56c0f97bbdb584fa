// Package token implements PipeWeave's shared-secret cryptography, as fixed by
// the wire contract (docs/protocol.md, whose test vectors are checked here): the
// secret's bytes, the HKDF-SHA256 keys derived from it, the HS256 registration
// and run JWTs, the AES-256-GCM sealed storage backend carried in a run token's
// "sto" claim, and the Node.js SDK 1.x compatibility storage token.
//
// Protocol v2 (service.go, keyring.go): each worker service holds only its
// service key, ServiceKey(secret, serviceID), from which ServiceKeys derives its
// registration and storage keys; the orchestrator's Keyring holds the current
// and previous master secrets, signs and verifies run tokens, verifies
// registrations under the service key their sub names, and seals each run's
// backend for the task's service.
//
// Verification failures are reported as ErrInvalid or ErrExpired (wrapped with
// context); both mean HTTP 401 to a caller. No error, String or fmt output of
// this package ever contains key or secret bytes.
package token

import (
	"encoding/hex"
	"errors"
	"fmt"
)

// Sentinel errors; test with errors.Is.
var (
	// ErrWeakSecret reports a secret whose bytes are fewer than 32.
	ErrWeakSecret = errors.New("token: secret is shorter than 32 bytes")
	// ErrInvalid reports a missing, malformed, forged, wrong-key, wrong-algorithm
	// or wrong-subject token or ciphertext. It means HTTP 401.
	ErrInvalid = errors.New("token: invalid")
	// ErrExpired reports a correctly signed token whose exp has passed. It is
	// distinct from ErrInvalid but, like it, means HTTP 401.
	ErrExpired = errors.New("token: expired")
	// ErrWrongKey reports a well-formed token whose signature does not verify: it was signed
	// with another key (for a registration: a service key that does not match this
	// orchestrator's secret). Errors that wrap it wrap ErrInvalid too.
	ErrWrongKey = errors.New("token: signed with another key")
)

// Info labels of the HKDF-SHA256 derivations.
const (
	infoRegister = "pipeweave/v1/register"
	infoRun      = "pipeweave/v1/run-token"
	infoStorage  = "pipeweave/v1/storage"
)

// keySize is the size of every derived key and of the compat key.
const keySize = 32

// SecretBytes returns the bytes of the shared secret s: the hex-decoded value
// when s is exactly 64 hex characters, otherwise its UTF-8 bytes. Fewer than 32
// bytes gives ErrWeakSecret.
func SecretBytes(s string) ([]byte, error) {
	if len(s) == 2*keySize {
		if b, err := hex.DecodeString(s); err == nil {
			return b, nil
		}
	}
	if len(s) < keySize {
		return nil, fmt.Errorf("secret has %d bytes: %w", len(s), ErrWeakSecret)
	}
	return []byte(s), nil
}

// Keys holds the three keys derived from the shared secret. Its zero value
// holds no keys and every method on it fails. The keys are unexported and Keys
// formats as "token.Keys{…}" with every fmt verb, so they cannot leak into logs.
type Keys struct {
	register, run, storage []byte
}

// DeriveKeys derives the registration, run-token and storage keys from the
// shared secret with HKDF-SHA256 (no salt, 32 bytes each, one info label each).
func DeriveKeys(secret string) (Keys, error) {
	ikm, err := SecretBytes(secret)
	if err != nil {
		return Keys{}, fmt.Errorf("derive keys: %w", err)
	}
	return deriveFrom(ikm)
}

const keysString = "token.Keys{…}"

// String returns "token.Keys{…}", never the keys.
func (k Keys) String() string { return keysString }

// GoString returns "token.Keys{…}", never the keys.
func (k Keys) GoString() string { return keysString }

// Format writes "token.Keys{…}" for every verb, so that no fmt verb (%x, %d, …)
// prints the keys.
func (k Keys) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(keysString)) }

// key returns b if it is a usable key, or an error naming which one is missing.
func keyOf(b []byte, name string) ([]byte, error) {
	if len(b) != keySize {
		return nil, fmt.Errorf("%s key not set (use DeriveKeys)", name)
	}
	return b, nil
}
