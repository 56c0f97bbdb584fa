// Package storage is PipeWeave's object storage: the place where run inputs,
// outputs, assets and logs live while PostgreSQL keeps only their keys.
//
// A [Backend] is one storage location (a local directory, an AWS S3, GCS or
// MinIO bucket) addressed by slash-separated keys such as
// "runs/{runId}/output.json". Backend is the portable type: it refuses the same
// keys for every provider ([ValidateKey]), checks the context, reports a missing
// object with [ErrNotFound] and wraps every error with the provider, operation
// and key, once for all providers. Each provider is a driver (package driver's
// interface of raw operations) in its own package, registered by import:
//
//	import _ "github.com/pipeweave/pipeweave/core/storage/s3"
//
// so that a binary links only the providers it imports (core/storage/drivers
// imports them all). Every driver passes the conformance suite in package
// storagetest, so callers never need to know which provider they are talking
// to.
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
	"strings"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/pipeweave/pipeweave/core/storage/driver"
)

// ErrNotFound is the error every backend returns (wrapped) when an object does
// not exist. Test for it with errors.Is.
var ErrNotFound = errors.New("storage: object not found")

// ErrInvalidKey is the error (wrapped, with the reason) returned for a key that
// [ValidateKey] or a backend refuses. Test for it with errors.Is.
var ErrInvalidKey = errors.New("storage: invalid key")

// ErrClosed is the error (wrapped) every method of a closed [Backend] returns.
var ErrClosed = errors.New("storage: backend is closed")

// MaxKeyLength is the longest key, in bytes, that [ValidateKey] accepts. It is
// the limit S3 and GCS share.
const MaxKeyLength = 1024

// ValidateKey reports whether key is acceptable to every backend. It refuses the
// empty key, absolute keys ("/x"), keys with an empty ("a//b", "a/"), "." or
// ".." segment, backslashes, NUL and other control characters, invalid UTF-8 and
// keys longer than [MaxKeyLength] bytes. The returned error wraps
// [ErrInvalidKey].
func ValidateKey(key string) error {
	if reason := keyProblem(key); reason != "" {
		return invalidKey(key, reason)
	}
	return nil
}

// invalidKey is the error refusing key for reason; long keys are shortened.
func invalidKey(key, reason string) error {
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
	// for backends that keep no metadata (local), the type is derived from the
	// key's extension and the object's first bytes.
	ContentType string
}

// Backend is one storage location: the portable type in front of one
// provider's driver. It is safe for concurrent use. Get one from [Open], a
// [Set], or a driver package's constructor ([NewBackend] wraps a driver).
//
// Every method checks, in this order, that the backend is not closed (errors
// wrap [ErrClosed]), that ctx is not done (errors wrap the context's error) and
// the key ([ValidateKey], then the provider's own limits; errors wrap
// [ErrInvalidKey]) before it reaches the driver. A missing object is an error
// wrapping [ErrNotFound]; a call that fails because ctx ended wraps the
// context's error. Messages start with "storage: <provider> <operation>
// <key>".
type Backend struct {
	provider string
	drv      driver.Backend
	closed   atomic.Bool
}

// NewBackend returns the portable Backend in front of d, a driver of the named
// provider. Driver packages call it; most code gets its backends from [Open].
func NewBackend(provider string, d driver.Backend) *Backend {
	return &Backend{provider: provider, drv: d}
}

// Provider returns the name of the backend's provider ("local", "aws-s3", ...).
func (b *Backend) Provider() string { return b.provider }

// String names the backend's provider and, when the driver describes itself,
// the driver; never a credential.
func (b *Backend) String() string {
	if s, ok := b.drv.(fmt.Stringer); ok {
		return fmt.Sprintf("storage.Backend{provider: %q, driver: %s}", b.provider, s)
	}
	return fmt.Sprintf("storage.Backend{provider: %q}", b.provider)
}

// GoString is String, so that %#v prints no credential either.
func (b *Backend) GoString() string { return b.String() }

// begin checks that b is open, ctx and key: the common start of every method.
func (b *Backend) begin(ctx context.Context, op, key string) error {
	if b.closed.Load() {
		return fmt.Errorf("storage: %s %s %q: %w", b.provider, op, key, ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("storage: %s %s %q: %w", b.provider, op, key, err)
	}
	err := ValidateKey(key)
	if err == nil {
		if reason := b.drv.KeyProblem(key); reason != "" {
			err = invalidKey(key, reason)
		}
	}
	if err != nil {
		return fmt.Errorf("storage: %s %s: %w", b.provider, op, err)
	}
	return nil
}

// fail wraps err, the driver's failure of op on key: with the context's error
// when ctx is done (drivers' SDKs do not always keep it in the chain), with
// [ErrNotFound] when the driver says the object does not exist.
func (b *Backend) fail(ctx context.Context, op, key string, err error) error {
	prefix := fmt.Sprintf("storage: %s %s %q", b.provider, op, key)
	if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
		return fmt.Errorf("%s: %w: %w", prefix, ctxErr, err)
	}
	if b.drv.IsNotFound(err) {
		return fmt.Errorf("%s: %w: %w", prefix, ErrNotFound, err)
	}
	return fmt.Errorf("%s: %w", prefix, err)
}

// Get opens the object for reading. The caller must close the reader, whose
// reads fail once ctx is done. A reader never returns part of one version
// followed by part of another: it sees the object as it was when Get was
// called.
func (b *Backend) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := b.begin(ctx, "get", key); err != nil {
		return nil, err
	}
	rc, err := b.drv.Get(ctx, key)
	if err != nil {
		return nil, b.fail(ctx, "get", key, err)
	}
	return &reader{ctx: ctx, rc: rc}, nil
}

// reader is the reader Get returns; reads fail once ctx is done.
type reader struct {
	ctx context.Context
	rc  io.ReadCloser
}

// Read implements io.Reader.
func (r *reader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.rc.Read(p)
}

// Close implements io.Closer.
func (r *reader) Close() error { return r.rc.Close() }

// Put stores everything read from r under key, replacing any previous object.
// Put is atomic: readers see either the old object or the whole new one, and a
// failed Put (r returned an error, ctx was cancelled) leaves the previous
// object, or no object, in place.
func (b *Backend) Put(ctx context.Context, key string, r io.Reader, opts PutOptions) error {
	if err := b.begin(ctx, "put", key); err != nil {
		return err
	}
	if err := b.drv.Put(ctx, key, r, opts.ContentType); err != nil {
		return b.fail(ctx, "put", key, err)
	}
	puts.Add(1)
	return nil
}

// puts counts the objects stored by every Backend of the process (see [Puts]).
var puts atomic.Int64

// Puts returns how many objects the Backends of this process have stored so far (successful
// [Backend.Put] calls, whatever the provider): `pipeweave bench` reads it before and after its
// measurement to report object-store writes per task. It costs one atomic addition per Put.
func Puts() int64 { return puts.Load() }

// Stat returns the object's attributes. ContentType is the type recorded at
// Put, or else the one derived from the key's extension (".json" is
// "application/json", ".jsonl" is "application/x-ndjson") or, failing that,
// sniffed from the first 512 bytes.
func (b *Backend) Stat(ctx context.Context, key string) (Attributes, error) {
	if err := b.begin(ctx, "stat", key); err != nil {
		return Attributes{}, err
	}
	a, err := b.drv.Stat(ctx, key)
	if err != nil {
		return Attributes{}, b.fail(ctx, "stat", key, err)
	}
	return Attributes{Size: a.Size, ContentType: a.ContentType, ModTime: a.ModTime}, nil
}

// Delete removes the object. Deleting a missing key returns ErrNotFound.
func (b *Backend) Delete(ctx context.Context, key string) error {
	if err := b.begin(ctx, "delete", key); err != nil {
		return err
	}
	if err := b.drv.Delete(ctx, key); err != nil {
		return b.fail(ctx, "delete", key, err)
	}
	return nil
}

// Close releases the driver's resources (clients, idle connections). Calls
// made afterwards fail with [ErrClosed]; closing again does nothing. Close must
// not be called while other calls are in progress.
func (b *Backend) Close() error {
	if b.closed.Swap(true) {
		return nil
	}
	if err := b.drv.Close(); err != nil {
		return fmt.Errorf("storage: %s: close: %w", b.provider, err)
	}
	return nil
}

// ReadAll returns the whole content of the object stored under key in b.
func ReadAll(ctx context.Context, b *Backend, key string) ([]byte, error) {
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
func PutBytes(ctx context.Context, b *Backend, key string, data []byte, contentType string) error {
	if err := b.Put(ctx, key, bytes.NewReader(data), PutOptions{ContentType: contentType}); err != nil {
		return fmt.Errorf("storage: write %q: %w", key, err)
	}
	return nil
}
