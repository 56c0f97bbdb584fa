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

	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/core/storage"
	"github.com/pipeweave/pipeweave/internal/database"
	"github.com/pipeweave/pipeweave/internal/dbsqlc"
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

// ReadObject reads path from the backend with id backendID (the default one when empty). A
// payload kept inline in PostgreSQL (an input or output of at most INLINE_PAYLOAD_MAX_BYTES)
// is read from there, as if it were in the default backend.
func (e *Engine) ReadObject(ctx context.Context, backendID, path string) (Object, error) {
	if err := storage.ValidateKey(path); err != nil {
		return Object{}, invalid("INVALID_PATH", "path %q is not a valid storage key: relative, without '..', '.' or empty segments", path)
	}
	cfg, backend := e.storage.Default()
	if backendID != "" && backendID != cfg.ID {
		var ok bool
		if cfg, backend, ok = e.storage.Get(backendID); !ok {
			return Object{}, notFound("BACKEND_NOT_FOUND", "no storage backend %q", backendID)
		}
	} else if data, found, err := e.inlineObject(ctx, path); err != nil {
		return Object{}, err
	} else if found {
		return objectOf(path, cfg.ID, inlineContentType, data), nil
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
	return objectOf(path, cfg.ID, attrs.ContentType, data), nil
}

// objectOf is the object at path of backend with its content type and bytes, as the API shows
// it: JSON inline, text as a string, anything else in base64.
func objectOf(path, backend, contentType string, data []byte) Object {
	obj := Object{Path: path, Backend: backend, ContentType: contentType, Size: int64(len(data))}
	textual := strings.HasPrefix(contentType, "text/") || strings.Contains(contentType, "json") ||
		strings.HasSuffix(path, ".jsonl") || strings.HasSuffix(path, ".txt") || strings.HasSuffix(path, ".log")
	switch {
	case strings.Contains(contentType, "application/json") && json.Valid(data):
		obj.Content, obj.Encoding = json.RawMessage(data), "json"
	case textual && utf8.Valid(data):
		obj.Content, obj.Encoding = string(data), "text"
	default:
		obj.Content, obj.Encoding = base64.StdEncoding.EncodeToString(data), "base64"
	}
	return obj
}

// inlineContentType is the content type of inline payloads: inputs and outputs are JSON, stored
// in a backend with this type too.
const inlineContentType = "application/json"

// inlineObject reads the payload kept inline under path, if any. Only the paths of inputs and
// outputs (standalone/{runId}/input.json, pipelines/{id}/input.json, runs/{runId}/output.json)
// can be inline; any other path is not looked up.
func (e *Engine) inlineObject(ctx context.Context, path string) ([]byte, bool, error) {
	parts := strings.Split(path, "/")
	if len(parts) != 3 {
		return nil, false, nil
	}
	id := parts[1]
	if path != protocol.StandaloneInputPath(id) && path != protocol.PipelineInputPath(id) && path != protocol.OutputPath(id) {
		return nil, false, nil
	}
	data, err := queries.InlineObject(ctx, e.db, dbsqlc.InlineObjectParams{RunID: id, Path: path})
	switch {
	case errors.Is(err, database.ErrNotFound):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("read the inline object %s: %w", path, err)
	}
	return data, true, nil
}
