package token

import (
	"crypto/cipher"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Keyring is the orchestrator's view of the master secrets: the current one
// (PIPEWEAVE_SECRET_KEY) and, while a rotation is under way, the previous one
// (PIPEWEAVE_SECRET_KEY_PREVIOUS). New run tokens are signed under the current
// secret; run tokens and registrations made under either are accepted until they
// expire. Each service's dispatches are sealed under the service key of the secret
// it registered with, while that secret is configured. A Keyring formats as
// "token.Keyring{…}" with every fmt verb; it never prints a key.
type Keyring struct {
	secrets []ringSecret // [0] current, then previous
	// sealers caches the storage AEAD of each (secret, service) pair SealBackend used: the
	// derivation (four HKDFs and an AES key schedule) is the same for every dispatch of a
	// service. Keys are key id + "\x00" + service id; registered services bound it.
	sealers sync.Map
}

// ringSecret is one master secret: its key id, bytes and master-derived keys.
type ringSecret struct {
	id   string
	ikm  []byte
	keys Keys
}

// NewKeyring builds the keyring of the current and (optional, "" for none) previous
// master secret; each must have at least 32 bytes (SecretBytes).
func NewKeyring(current, previous string) (*Keyring, error) {
	return newKeyring(current, previous, SecretBytes)
}

// NewKeyringAnyLength is NewKeyring over SecretBytesAnyLength, for
// PIPEWEAVE_COMPAT=node-sdk-v1.
func NewKeyringAnyLength(current, previous string) (*Keyring, error) {
	return newKeyring(current, previous, SecretBytesAnyLength)
}

func newKeyring(current, previous string, bytesOf func(string) ([]byte, error)) (*Keyring, error) {
	r := &Keyring{}
	for i, s := range []string{current, previous} {
		if i == 1 && s == "" {
			break
		}
		name := []string{"current", "previous"}[i]
		ikm, err := bytesOf(s)
		if err != nil {
			return nil, fmt.Errorf("keyring: %s secret: %w", name, err)
		}
		keys, err := deriveFrom(ikm)
		if err != nil {
			return nil, fmt.Errorf("keyring: %s secret: %w", name, err)
		}
		id, err := keyIDFrom(ikm)
		if err != nil {
			return nil, fmt.Errorf("keyring: %s secret: %w", name, err)
		}
		if i == 1 && id == r.secrets[0].id {
			return nil, errors.New("keyring: the previous secret is the current one")
		}
		r.secrets = append(r.secrets, ringSecret{id: id, ikm: ikm, keys: keys})
	}
	return r, nil
}

const keyringString = "token.Keyring{…}"

// String returns "token.Keyring{…}", never a key.
func (r *Keyring) String() string { return keyringString }

// GoString returns "token.Keyring{…}", never a key.
func (r *Keyring) GoString() string { return keyringString }

// Format writes "token.Keyring{…}" for every verb.
func (r *Keyring) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(keyringString)) }

// usable reports an error for a nil or empty keyring.
func (r *Keyring) usable() error {
	if r == nil || len(r.secrets) == 0 {
		return errors.New("keyring has no secret (use NewKeyring)")
	}
	return nil
}

// CurrentKeyID is the key id (KeyID) of the current secret.
func (r *Keyring) CurrentKeyID() string {
	if r.usable() != nil {
		return ""
	}
	return r.secrets[0].id
}

// Current returns the keys derived from the current secret (K_reg, K_run, K_enc).
func (r *Keyring) Current() Keys {
	if r.usable() != nil {
		return Keys{}
	}
	return r.secrets[0].keys
}

// SignRun signs a run token under the current secret's run-token key.
func (r *Keyring) SignRun(c RunClaims) (string, error) {
	if err := r.usable(); err != nil {
		return "", fmt.Errorf("sign run token: %w", err)
	}
	return r.secrets[0].keys.SignRun(c)
}

// VerifyRun checks a run token under the run-token key of the current secret, then of the
// previous one. A token expired under one of them (so genuinely signed) gives ErrExpired.
func (r *Keyring) VerifyRun(tok string, now time.Time) (RunClaims, error) {
	if err := r.usable(); err != nil {
		return RunClaims{}, fmt.Errorf("verify run token: %w", err)
	}
	// The fast path under each key first: during a rotation a token of the previous secret is
	// then checked twice (two HMACs), not once by the parser in between.
	for _, s := range r.secrets {
		if c, ok := fastVerifyRun(s.keys.run, tok, now); ok {
			return c.public(), nil
		}
	}
	var firstErr error
	for _, s := range r.secrets {
		c, err := s.keys.verifyRunGeneral(tok, now)
		if err == nil || errors.Is(err, ErrExpired) {
			return c, err
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return RunClaims{}, firstErr
}

// Generation names the configured secret whose key id is keyID: "current", "previous", or
// "unknown" when it is neither (or keyID is empty).
func (r *Keyring) Generation(keyID string) string {
	for i, s := range r.secrets {
		if keyID != "" && s.id == keyID {
			return []string{"current", "previous"}[i]
		}
	}
	return "unknown"
}

// ServiceKeys returns the keys of service serviceID (ServiceKeys of its ServiceKey) under the
// secret named keyID, or under the current secret when keyID names none of them. It also
// returns the key id it used.
func (r *Keyring) ServiceKeys(keyID, serviceID string) (Keys, string, error) {
	if err := r.usable(); err != nil {
		return Keys{}, "", err
	}
	s := r.pick(keyID)
	svc, err := serviceKeyFrom(s.ikm, serviceID)
	if err != nil {
		return Keys{}, "", err
	}
	k, err := ServiceKeys(svc)
	return k, s.id, err
}

// SealBackend seals the storage backend JSON for run runID of service serviceID (the service
// that registered the run's task) under that service's storage key K_enc', derived from the
// secret named keyID (the one the service registered with) while it is configured, else from
// the current secret. Only a worker holding that service's key can open it.
func (r *Keyring) SealBackend(keyID, serviceID, runID string, backendJSON []byte) (string, error) {
	aead, err := r.sealer(keyID, serviceID)
	if err != nil {
		return "", fmt.Errorf("seal backend: %w", err)
	}
	return sealWith(aead, runID, backendJSON), nil
}

// pick is the configured secret named keyID, else the current one. r must be usable.
func (r *Keyring) pick(keyID string) ringSecret {
	for _, s := range r.secrets {
		if s.id == keyID {
			return s
		}
	}
	return r.secrets[0]
}

// sealer is the storage AEAD of service serviceID under the secret ServiceKeys picks for
// keyID, derived once per pair.
func (r *Keyring) sealer(keyID, serviceID string) (cipher.AEAD, error) {
	if err := r.usable(); err != nil {
		return nil, err
	}
	id := r.pick(keyID).id
	cacheKey := id + "\x00" + serviceID
	if a, ok := r.sealers.Load(cacheKey); ok {
		return a.(cipher.AEAD), nil
	}
	k, _, err := r.ServiceKeys(id, serviceID)
	if err != nil {
		return nil, err
	}
	aead, err := k.stoAEAD()
	if err != nil {
		return nil, err
	}
	r.sealers.Store(cacheKey, aead)
	return aead, nil
}

// VerifyRegistration checks a registration token from its header alone: it reads the sub
// claim unverified to pick the service, then verifies the token under that service's
// registration key K_reg' derived from the current secret, then from the previous one. The
// returned claims name the secret that verified it (KeyID). A token signed with a
// master-derived K_reg (protocol v1), or under any other service's key, is ErrInvalid; a
// genuine but expired one ErrExpired; a well-formed one that no secret's key verifies also
// ErrWrongKey, with the (unverified) ServiceID set in the claims for the error message alone.
// The caller then checks the body (CheckBody) and that the body's serviceId is ServiceID.
func (r *Keyring) VerifyRegistration(tok string, now time.Time) (RegistrationClaims, error) {
	if err := r.usable(); err != nil {
		return RegistrationClaims{}, fmt.Errorf("verify registration token: %w", err)
	}
	sub, err := registrationSubject(tok)
	if err != nil {
		return RegistrationClaims{}, fmt.Errorf("verify registration token: %w", err)
	}
	var firstErr error
	for _, s := range r.secrets {
		svc, err := serviceKeyFrom(s.ikm, sub)
		if err != nil {
			return RegistrationClaims{}, fmt.Errorf("verify registration token: %w: %v", ErrInvalid, err)
		}
		k, err := ServiceKeys(svc)
		if err != nil {
			return RegistrationClaims{}, fmt.Errorf("verify registration token: %w", err)
		}
		c, err := k.VerifyRegistration(tok, now)
		if err == nil || errors.Is(err, ErrExpired) {
			c.KeyID = s.id
			return c, err
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	// The unverified service id goes with the error only so that the caller can name it.
	return RegistrationClaims{ServiceID: sub}, firstErr
}
