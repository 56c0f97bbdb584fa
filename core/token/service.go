package token

import (
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Info labels of the per-service derivations (protocol v2).
const (
	// infoServicePrefix + serviceId is the HKDF info of a service key.
	infoServicePrefix = "pipeweave/v1/service/"
	// infoKeyID is the HKDF info of a secret's key id.
	infoKeyID = "pipeweave/v1/key-id"
)

// ErrBodyMismatch reports a registration whose body is not the one its token was signed
// for (the "bsh" claim). It means HTTP 401.
var ErrBodyMismatch = errors.New("token: the registration body is not the one the token was signed for")

// ServiceKey derives the key of service serviceID from the master secret: HKDF-SHA256 with
// the secret's bytes (SecretBytes) as input key material, no salt, info
// "pipeweave/v1/service/" + serviceID, 32 bytes. A worker of that service holds this key
// instead of the master secret (`pipeweave token service` prints it as hex).
func ServiceKey(secret, serviceID string) ([]byte, error) {
	ikm, err := SecretBytes(secret)
	if err != nil {
		return nil, fmt.Errorf("derive service key: %w", err)
	}
	return serviceKeyFrom(ikm, serviceID)
}

// serviceKeyFrom derives the service key of serviceID from the secret's bytes ikm.
func serviceKeyFrom(ikm []byte, serviceID string) ([]byte, error) {
	if serviceID == "" {
		return nil, errors.New("derive service key: empty service id")
	}
	k, err := hkdf.Key(sha256.New, ikm, nil, infoServicePrefix+serviceID, keySize)
	if err != nil {
		return nil, fmt.Errorf("derive service key: %w", err)
	}
	return k, nil
}

// ParseServiceKey decodes a service key given as exactly 64 hexadecimal characters (either
// case; surrounding white space is ignored).
func ParseServiceKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if len(s) != 2*keySize {
		return nil, fmt.Errorf("a service key is 64 hexadecimal characters, got %d characters", len(s))
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, errors.New("a service key is 64 hexadecimal characters: not hexadecimal")
	}
	return b, nil
}

// ServiceKeys derives a worker's keys from its service key K_svc with the same HKDF
// derivation as DeriveKeys (K_svc as input key material): the registration key K_reg' and the
// storage key K_enc'. The result has no run-token key: workers neither sign nor verify run
// tokens (SignRun and VerifyRun fail on it).
func ServiceKeys(serviceKey []byte) (Keys, error) {
	if len(serviceKey) != keySize {
		return Keys{}, fmt.Errorf("service keys: the service key has %d bytes, want %d", len(serviceKey), keySize)
	}
	k, err := deriveFrom(serviceKey)
	if err != nil {
		return Keys{}, fmt.Errorf("service keys: %w", err)
	}
	k.run = nil
	return k, nil
}

// KeyID names a master secret without revealing it: the first 8 bytes, as 16 lowercase hex
// characters, of HKDF-SHA256(S, no salt, info "pipeweave/v1/key-id"). The orchestrator records
// which secret each service registered with.
func KeyID(secret string) (string, error) {
	ikm, err := SecretBytesAnyLength(secret)
	if err != nil {
		return "", fmt.Errorf("key id: %w", err)
	}
	return keyIDFrom(ikm)
}

func keyIDFrom(ikm []byte) (string, error) {
	b, err := hkdf.Key(sha256.New, ikm, nil, infoKeyID, 8)
	if err != nil {
		return "", fmt.Errorf("key id: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// BodyHash is the "bsh" claim of a registration token for body: base64url without padding
// of the SHA-256 of the exact request body bytes.
func BodyHash(body []byte) string {
	sum := sha256.Sum256(body)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// SignServiceRegistration signs the registration of service serviceID with request body body
// under the service key derived from the master secret: what a worker holding that service's
// key sends, for tools and tests that hold the master secret.
func SignServiceRegistration(secret, serviceID string, body []byte, now time.Time) (string, error) {
	svc, err := ServiceKey(secret, serviceID)
	if err != nil {
		return "", err
	}
	k, err := ServiceKeys(svc)
	if err != nil {
		return "", err
	}
	return k.SignRegistration(serviceID, body, now)
}
