// Package storage is PipeWeave's object storage: the place where run inputs,
// outputs, assets and logs live while PostgreSQL keeps only their keys.
//
// A [Backend] is one storage location (a local directory now; AWS S3, GCS and
// MinIO later) addressed by slash-separated keys such as
// "runs/{runId}/output.json". Every backend refuses the same keys
// ([ValidateKey]), reports a missing object with [ErrNotFound] and passes the
// conformance suite in package storagetest, so callers never need to know which
// provider they are talking to.
//
// Backends are described by [Config] entries (the STORAGE_BACKENDS JSON array,
// see [ParseConfigs]), opened with [Open] and grouped, with one default, in a
// [Set].
package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// ErrNotFound is the error every backend returns (wrapped) when an object does
// not exist. Test for it with errors.Is.
var ErrNotFound = errors.New("storage: object not found")

// ErrInvalidKey is the error (wrapped, with the reason) returned for a key that
// [ValidateKey] or a backend refuses. Test for it with errors.Is.
var ErrInvalidKey = errors.New("storage: invalid key")

// MaxKeyLength is the longest key, in bytes, that [ValidateKey] accepts. It is
// the limit S3 and GCS share.
const MaxKeyLength = 1024

// ValidateKey reports whether key is acceptable to every backend. It refuses the
// empty key, absolute keys ("/x"), keys with an empty ("a//b", "a/"), "." or
// ".." segment, backslashes, NUL and other control characters, invalid UTF-8 and
// keys longer than [MaxKeyLength] bytes. The returned error wraps
// [ErrInvalidKey].
func ValidateKey(key string) error {
	reason := keyProblem(key)
	if reason == "" {
		return nil
	}
	shown := key
	if len(shown) > 64 {
		shown = shown[:64] + "..."
	}
	return fmt.Errorf("%w %q: %s", ErrInvalidKey, shown, reason)
}

func keyProblem(key string) string {
	switch {
	case key == "":
		return "key is empty"
	case len(key) > MaxKeyLength:
		return fmt.Sprintf("key is %d bytes long, the limit is %d", len(key), MaxKeyLength)
	case !utf8.ValidString(key):
		return "key is not valid UTF-8"
	case strings.HasPrefix(key, "/"):
		return "key must be relative (no leading slash)"
	}
	for _, r := range key {
		switch {
		case r == '\\':
			return "key contains a backslash"
		case r == 0:
			return "key contains a NUL byte"
		case unicode.IsControl(r):
			return fmt.Sprintf("key contains control character %U", r)
		}
	}
	for seg := range strings.SplitSeq(key, "/") {
		switch seg {
		case "":
			return "key contains an empty path segment"
		case ".", "..":
			return fmt.Sprintf("key contains a %q path segment", seg)
		}
	}
	return ""
}

// Attributes describe a stored object.
type Attributes struct {
	// Size is the object's length in bytes.
	Size int64
	// ContentType is the object's MIME type (see [Backend.Stat]).
	ContentType string
	// ModTime is when the object was last written.
	ModTime time.Time
}

// PutOptions tune [Backend.Put].
type PutOptions struct {
	// ContentType is the MIME type to record for the object. Backends that
	// keep object metadata (the cloud providers) store it; when it is empty, or
	// for backends that keep no metadata (Local), the type is derived from the
	// key's extension and the object's first bytes.
	ContentType string
}

// Backend is one storage location. Implementations are safe for concurrent use.
//
// Every method validates the key with [ValidateKey] first (errors wrap
// [ErrInvalidKey]), returns an error wrapping [ErrNotFound] for a missing
// object, and returns an error wrapping the context's error when ctx is done.
type Backend interface {
	// Get opens the object for reading. The caller must close the reader. A
	// reader never returns part of one version followed by part of another:
	// it sees the object as it was when Get was called.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// Put stores everything read from r under key, replacing any previous
	// object. Put is atomic: readers see either the old object or the whole
	// new one, and a failed Put (r returned an error, ctx was cancelled)
	// leaves the previous object, or no object, in place.
	Put(ctx context.Context, key string, r io.Reader, opts PutOptions) error
	// Stat returns the object's attributes. ContentType is the type recorded
	// at Put, or else the one derived from the key's extension (".json" is
	// "application/json", ".jsonl" is "application/x-ndjson") or, failing
	// that, sniffed from the first 512 bytes.
	Stat(ctx context.Context, key string) (Attributes, error)
	// Delete removes the object. Deleting a missing key returns ErrNotFound.
	Delete(ctx context.Context, key string) error
}

// ReadAll returns the whole content of the object stored under key in b.
func ReadAll(ctx context.Context, b Backend, key string) ([]byte, error) {
	rc, err := b.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("storage: read %q: %w", key, err)
	}
	data, err := io.ReadAll(rc)
	closeErr := rc.Close()
	if err != nil {
		return nil, fmt.Errorf("storage: read %q: %w", key, err)
	}
	if closeErr != nil {
		return nil, fmt.Errorf("storage: read %q: close: %w", key, closeErr)
	}
	return data, nil
}

// PutBytes stores data under key in b with the given content type (which may be
// empty, see [PutOptions]).
func PutBytes(ctx context.Context, b Backend, key string, data []byte, contentType string) error {
	if err := b.Put(ctx, key, bytes.NewReader(data), PutOptions{ContentType: contentType}); err != nil {
		return fmt.Errorf("storage: write %q: %w", key, err)
	}
	return nil
}

// sniffLen is how many leading bytes detectContentType looks at.
const sniffLen = 512

// detectContentType is the content type of an object stored under key whose
// first bytes are head, for backends that do not record one: the key's
// extension first, the content second.
func detectContentType(key string, head []byte) string {
	ext := strings.ToLower(path.Ext(key))
	switch ext {
	case ".json":
		return "application/json"
	case ".jsonl", ".ndjson":
		return "application/x-ndjson"
	case "":
	default:
		if t := mime.TypeByExtension(ext); t != "" {
			return t
		}
	}
	if len(head) > sniffLen {
		head = head[:sniffLen]
	}
	return http.DetectContentType(head)
}

// ctxReader fails reads once ctx is done, so long copies honour cancellation.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
