package token

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
)

// SealBackend encrypts the storage backend JSON for run runID into the "sto"
// claim: base64url (unpadded) of a random 12-byte nonce followed by the
// AES-256-GCM ciphertext and tag under the storage key, with runID as the
// additional data.
func (k Keys) SealBackend(runID string, backendJSON []byte) (string, error) {
	aead, err := k.stoAEAD()
	if err != nil {
		return "", fmt.Errorf("seal backend: %w", err)
	}
	return sealWith(aead, runID, backendJSON), nil
}

// sealWith seals backendJSON for runID with aead (a stoAEAD): the "sto" claim's format.
func sealWith(aead cipher.AEAD, runID string, backendJSON []byte) string {
	return base64.RawURLEncoding.EncodeToString(aead.Seal(nil, nil, backendJSON, []byte(runID)))
}

// OpenBackend decrypts a "sto" value made by SealBackend for runID (padded
// base64url is accepted too). A malformed or tampered value, or one sealed for
// another run or under another key, gives ErrInvalid.
func (k Keys) OpenBackend(runID, sto string) ([]byte, error) {
	aead, err := k.stoAEAD()
	if err != nil {
		return nil, fmt.Errorf("open backend: %w", err)
	}
	blob, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(sto, "="))
	if err != nil {
		return nil, fmt.Errorf("open backend: %w: bad base64url: %v", ErrInvalid, err)
	}
	if len(blob) < aead.NonceSize()+aead.Overhead() {
		return nil, fmt.Errorf("open backend: %w: %d bytes is too short", ErrInvalid, len(blob))
	}
	plain, err := aead.Open(nil, nil, blob, []byte(runID))
	if err != nil {
		return nil, fmt.Errorf("open backend: %w: %v", ErrInvalid, err)
	}
	return plain, nil
}

// stoAEAD is AES-256-GCM under the storage key with a random 12-byte nonce
// prepended to the ciphertext.
func (k Keys) stoAEAD() (cipher.AEAD, error) {
	key, err := keyOf(k.storage, "storage")
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCMWithRandomNonce(block)
}

// CompatKey returns the Node.js SDK 1.x key (PIPEWEAVE_COMPAT=node-sdk-v1): the
// UTF-8 bytes of secret repeated cyclically, or cut, to exactly 32 bytes. An
// empty secret gives nil.
func CompatKey(secret string) []byte {
	if secret == "" {
		return nil
	}
	key := make([]byte, 0, keySize)
	for len(key) < keySize {
		key = append(key, secret[:min(len(secret), keySize-len(key))]...)
	}
	return key
}

// SealCompat encrypts plaintext into a Node.js SDK 1.x storage token:
// base64(iv) ":" base64(tag) ":" base64(ciphertext), standard padded base64,
// AES-256-GCM under CompatKey(secret) with a random 12-byte IV and no
// additional data. An empty secret gives ErrWeakSecret.
func SealCompat(secret string, plaintext []byte) (string, error) {
	aead, err := compatAEAD(secret)
	if err != nil {
		return "", fmt.Errorf("seal compat token: %w", err)
	}
	iv := make([]byte, aead.NonceSize())
	_, _ = rand.Read(iv) // crypto/rand.Read never fails
	sealed := aead.Seal(nil, iv, plaintext, nil)
	ct, tag := sealed[:len(plaintext)], sealed[len(plaintext):]
	enc := base64.StdEncoding.EncodeToString
	return enc(iv) + ":" + enc(tag) + ":" + enc(ct), nil
}

// OpenCompat decrypts a token made by SealCompat or the Node.js SDK 1.x. A
// malformed or tampered token, or a wrong secret, gives ErrInvalid.
func OpenCompat(secret string, tok string) ([]byte, error) {
	aead, err := compatAEAD(secret)
	if err != nil {
		return nil, fmt.Errorf("open compat token: %w", err)
	}
	parts := strings.Split(tok, ":")
	if len(parts) != 3 {
		return nil, fmt.Errorf("open compat token: %w: want iv:tag:ciphertext", ErrInvalid)
	}
	var raw [3][]byte
	for i, p := range parts {
		if raw[i], err = base64.StdEncoding.DecodeString(p); err != nil {
			return nil, fmt.Errorf("open compat token: %w: bad base64: %v", ErrInvalid, err)
		}
	}
	iv, tag, ct := raw[0], raw[1], raw[2]
	if len(iv) != aead.NonceSize() || len(tag) != aead.Overhead() {
		return nil, fmt.Errorf("open compat token: %w: iv or tag has the wrong length", ErrInvalid)
	}
	plain, err := aead.Open(nil, iv, append(ct, tag...), nil)
	if err != nil {
		return nil, fmt.Errorf("open compat token: %w: %v", ErrInvalid, err)
	}
	return plain, nil
}

// compatAEAD is AES-256-GCM under CompatKey(secret).
func compatAEAD(secret string) (cipher.AEAD, error) {
	key := CompatKey(secret)
	if key == nil {
		return nil, fmt.Errorf("empty secret: %w", ErrWeakSecret)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}
