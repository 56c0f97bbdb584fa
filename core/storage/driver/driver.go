// Package driver is the interface a storage provider implements to plug into
// package storage, and the helpers providers share.
//
// A driver implements only the raw operations of its provider. The portable
// type, [storage.Backend], does what is common to every provider once: it
// validates keys, checks the context before each call, fails calls on a closed
// backend, wraps errors with the provider, operation and key, maps the
// driver's not-found errors to storage.ErrNotFound and makes the readers of Get
// honour cancellation. A driver package registers an opener with
// storage.Register from its init function, so that a binary links only the
// drivers it imports.
//
// [storage.Backend]: https://pkg.go.dev/github.com/pipeweave/pipeweave/core/storage#Backend
package driver

import (
	"context"
	"io"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

// Attributes describe a stored object, as a driver reports them.
type Attributes struct {
	// Size is the object's length in bytes.
	Size int64
	// ContentType is the recorded MIME type, or the one [DetectContentType]
	// derives for an object stored without one.
	ContentType string
	// ModTime is when the object was last written.
	ModTime time.Time
}

// Backend is the raw operations of one storage provider. The portable type
// calls them only with a key that passed storage.ValidateKey and
// [Backend.KeyProblem], a context that is not done yet, and never after Close.
// Implementations must be safe for concurrent use.
type Backend interface {
	// KeyProblem returns why the provider refuses a key that passed
	// storage.ValidateKey (a reserved prefix, an over-long path segment), or ""
	// when it accepts the key.
	KeyProblem(key string) string
	// Get opens the object for reading. The reader must see the object as it
	// was when Get was called, never part of one version and part of another.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// Put stores everything read from r under key, atomically: readers see
	// the old object or the whole new one, and a failed Put leaves the
	// previous object, or no object, in place. contentType is the type to
	// record; when it is empty, a provider that records types derives one
	// with [DetectContentType].
	Put(ctx context.Context, key string, r io.Reader, contentType string) error
	// Stat returns the object's attributes.
	Stat(ctx context.Context, key string) (Attributes, error)
	// Delete removes the object; a missing object is an error for which
	// IsNotFound is true.
	Delete(ctx context.Context, key string) error
	// IsNotFound reports whether err, returned by one of the methods above,
	// means that the object does not exist.
	IsNotFound(err error) bool
	// Close releases the resources the backend holds.
	Close() error
}

// SniffLen is how many leading bytes [DetectContentType] looks at.
const SniffLen = 512

// DetectContentType is the content type of an object stored under key whose
// first bytes are head, for an object stored without one: the key's extension
// first (".json" is application/json, ".jsonl" and ".ndjson"
// application/x-ndjson), the content second.
func DetectContentType(key string, head []byte) string {
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
	if len(head) > SniffLen {
		head = head[:SniffLen]
	}
	return http.DetectContentType(head)
}

// ContextReader returns a reader of r whose reads fail with ctx's error once
// ctx is done, so that long copies honour cancellation.
func ContextReader(ctx context.Context, r io.Reader) io.Reader { return ctxReader{ctx: ctx, r: r} }

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
