package engine

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/pipeweave/pipeweave/core/storage"
)

// MaxObjectView bounds the objects GET /api/storage returns (larger ones are 413).
const MaxObjectView = 16 << 20

// ErrTooLarge marks an object too large to return through the API.
var ErrTooLarge = errors.New("object too large")

// Object is a stored object for the API: JSON parsed, text as a string, anything else base64
// with its content type (the API answers it as protocol.StoredObject).
type Object struct {
	Path        string
	Backend     string
	Content     any
	ContentType string
	Size        int64
	Encoding    string // json, text or base64
}

// ReadObject reads path from the backend with id backendID (the default one when empty).
func (e *Engine) ReadObject(ctx context.Context, backendID, path string) (Object, error) {
	if err := storage.ValidateKey(path); err != nil {
		return Object{}, invalid("INVALID_PATH", "path %q is not a valid storage key: relative, without '..', '.' or empty segments", path)
	}
	cfg, backend := e.storage.Default()
	if backendID != "" {
		var ok bool
		if cfg, backend, ok = e.storage.Get(backendID); !ok {
			return Object{}, notFound("BACKEND_NOT_FOUND", "no storage backend %q", backendID)
		}
	}
	attrs, err := backend.Stat(ctx, path)
	if errors.Is(err, storage.ErrNotFound) {
		return Object{}, notFound("OBJECT_NOT_FOUND", "no object at %q", path)
	}
	if errors.Is(err, storage.ErrInvalidKey) {
		return Object{}, invalid("INVALID_PATH", "path is not a valid key for backend %q: %v", cfg.ID, err)
	}
	if err != nil {
		return Object{}, storageFailed(fmt.Errorf("stat %s: %w", path, err))
	}
	if attrs.Size > MaxObjectView {
		return Object{}, &Error{Kind: ErrTooLarge, Code: "OBJECT_TOO_LARGE",
			Msg: fmt.Sprintf("object %q has %d bytes; the API returns objects up to %d bytes", path, attrs.Size, MaxObjectView)}
	}
	r, err := backend.Get(ctx, path)
	if errors.Is(err, storage.ErrNotFound) {
		return Object{}, notFound("OBJECT_NOT_FOUND", "no object at %q", path)
	}
	if err != nil {
		return Object{}, storageFailed(fmt.Errorf("read %s: %w", path, err))
	}
	defer r.Close()
	data, err := io.ReadAll(io.LimitReader(r, MaxObjectView+1))
	if err != nil {
		return Object{}, storageFailed(fmt.Errorf("read %s: %w", path, err))
	}
	obj := Object{Path: path, Backend: cfg.ID, ContentType: attrs.ContentType, Size: int64(len(data))}
	textual := strings.HasPrefix(attrs.ContentType, "text/") || strings.Contains(attrs.ContentType, "json") ||
		strings.HasSuffix(path, ".jsonl") || strings.HasSuffix(path, ".txt") || strings.HasSuffix(path, ".log")
	switch {
	case strings.Contains(attrs.ContentType, "application/json") && json.Valid(data):
		obj.Content, obj.Encoding = json.RawMessage(data), "json"
	case textual && utf8.Valid(data):
		obj.Content, obj.Encoding = string(data), "text"
	default:
		obj.Content, obj.Encoding = base64.StdEncoding.EncodeToString(data), "base64"
	}
	return obj, nil
}
