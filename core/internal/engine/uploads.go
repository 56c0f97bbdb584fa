package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/sync/errgroup"

	"github.com/pipeweave/pipeweave/core/internal/ids"
	"github.com/pipeweave/pipeweave/core/storage"
	"github.com/pipeweave/pipeweave/internal/database"
	"github.com/pipeweave/pipeweave/internal/dbsqlc"
)

// TempUploadTTL is how long an upload that no run claimed is kept.
const TempUploadTTL = 24 * time.Hour

// TempUploadPrefix starts the storage key of every temporary upload:
// temp-uploads/{uploadId}/{filename}.
const TempUploadPrefix = "temp-uploads/"

// maxUploadName bounds, in bytes, the file name part of an upload's storage key.
const maxUploadName = 200

// tempCleanupBatch is the most expired uploads one cleanup round deletes.
const tempCleanupBatch = 100

// ErrGone: the thing named existed but was deleted (410).
var ErrGone = errors.New("gone")

// UploadFile is one file to store as a temporary upload.
type UploadFile struct {
	// Filename is the name the client gave (may be empty); the storage key uses a cleaned copy.
	Filename string
	// MimeType is the content type the client gave (default application/octet-stream).
	MimeType string
	// Body is the file's content. It is streamed into storage, never held in memory whole.
	Body io.Reader
	// MaxBytes caps the file's size: a longer body fails with 413 and leaves nothing behind.
	MaxBytes int64
	// Rest, when set, runs once the object is stored and before the upload is recorded (the
	// HTTP layer reads the rest of the request there); an error discards the object.
	Rest func() error
}

// TempUpload is the answer to a stored upload (upstream's POST /api/upload/temp shape).
type TempUpload struct {
	UploadID    string
	StoragePath string
	Filename    string
	Size        int64
	MimeType    string
	ExpiresAt   time.Time
}

// TempUploadInfo is one upload as GET /api/upload/temp/{id} shows it (upstream's shape).
type TempUploadInfo struct {
	UploadID         string
	StoragePath      string
	StorageBackendID string
	UploadedAt       time.Time
	ExpiresAt        time.Time
	ClaimedByRunID   *string
	DeletedAt        *time.Time
	Filename         string
	MimeType         string
	Size             int64
	// Expired: past its expiry and not claimed (a claimed upload no longer expires).
	Expired bool
	Claimed bool
	Deleted bool
}

// TempUploadStats counts the uploads (GET /api/upload/stats). Expired counts the expired,
// unclaimed uploads that the next cleanup deletes.
type TempUploadStats struct {
	Total   int64
	Expired int64
	Claimed int64
	Deleted int64
}

// capReader counts what it reads, fails once more than max bytes came, and remembers the
// first error of the reader below (whatever the storage backend makes of it).
type capReader struct {
	r        io.Reader
	n, max   int64
	exceeded bool
	err      error
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.exceeded {
		return 0, errUploadTooLarge
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.max {
		c.exceeded = true
		return 0, errUploadTooLarge
	}
	if err != nil && err != io.EOF && c.err == nil {
		c.err = err
	}
	return n, err
}

var errUploadTooLarge = errors.New("upload exceeds the size cap")

func tooLarge(max int64) *Error {
	return &Error{Kind: ErrTooLarge, Code: "UPLOAD_TOO_LARGE",
		Msg: fmt.Sprintf("the file exceeds the upload cap of %d bytes (MAX_UPLOAD_BYTES)", max)}
}

// UploadName turns a client's file name into the last segment of a valid storage key: no '/',
// '\\' or control characters, valid UTF-8, not "." or "..", at most 200 bytes (the extension
// kept when the name is cut), "upload" when nothing is left.
func UploadName(name string) string {
	name = strings.ToValidUTF8(name, "")
	name = strings.Map(func(r rune) rune {
		switch {
		case r == '/' || r == '\\':
			return '_'
		case unicode.IsControl(r) || r == utf8.RuneError:
			return -1
		}
		return r
	}, name)
	name = strings.TrimSpace(name)
	if len(name) > maxUploadName {
		ext := ""
		if i := strings.LastIndexByte(name, '.'); i > 0 && len(name)-i <= 16 {
			ext = name[i:]
		}
		stem := name[:maxUploadName-len(ext)]
		for !utf8.ValidString(stem) {
			stem = stem[:len(stem)-1]
		}
		name = stem + ext
	}
	if name == "" || name == "." || name == ".." {
		return "upload"
	}
	return name
}

// StoreTempUpload streams f into the default backend under temp-uploads/{id}/{name} and
// records it with an expiry of TempUploadTTL. A file over f.MaxBytes is 413; an upload that
// fails for any reason leaves neither object nor row.
func (e *Engine) StoreTempUpload(ctx context.Context, f UploadFile) (TempUpload, error) {
	cfg, backend := e.storage.Default()
	id := ids.New(ids.TempUpload)
	key := TempUploadPrefix + id + "/" + UploadName(f.Filename)
	if storage.ValidateKey(key) != nil {
		key = TempUploadPrefix + id + "/upload"
	}
	mimeType := f.MimeType
	if mimeType == "" {
		mimeType = "application/octet-stream"
	}
	body := &capReader{r: f.Body, max: f.MaxBytes}
	if err := backend.Put(ctx, key, body, storage.PutOptions{ContentType: mimeType}); err != nil {
		var mbe *http.MaxBytesError
		switch {
		case body.exceeded:
			return TempUpload{}, tooLarge(f.MaxBytes)
		case errors.As(body.err, &mbe):
			return TempUpload{}, &Error{Kind: ErrTooLarge, Code: "BODY_TOO_LARGE",
				Msg: fmt.Sprintf("request body exceeds %d bytes", mbe.Limit)}
		case body.err != nil && ctx.Err() == nil:
			return TempUpload{}, invalid("UPLOAD_INCOMPLETE", "the file could not be read to its end: %v", body.err)
		}
		return TempUpload{}, storageFailed(fmt.Errorf("store upload %s: %w", id, err))
	}
	discard := func() {
		if err := backend.Delete(context.WithoutCancel(ctx), key); err != nil && !isNotFound(err) {
			e.log.Warn("could not remove a discarded upload", "path", key, "err", err)
		}
	}
	if f.Rest != nil {
		if err := f.Rest(); err != nil {
			discard()
			return TempUpload{}, err
		}
	}
	filename := strings.ToValidUTF8(strings.ReplaceAll(f.Filename, "\x00", ""), "")
	if filename == "" {
		filename = UploadName("")
	}
	up := TempUpload{UploadID: id, StoragePath: key, Filename: filename, Size: body.n, MimeType: mimeType}
	rec, err := queries.InsertTempUpload(ctx, e.db, dbsqlc.InsertTempUploadParams{ID: id, StoragePath: key, StorageBackendID: cfg.ID,
		OriginalFilename: filename, MimeType: mimeType, SizeBytes: body.n, TtlMs: TempUploadTTL.Milliseconds()})
	if err != nil {
		discard()
		return TempUpload{}, fmt.Errorf("record upload %s: %w", id, err)
	}
	up.ExpiresAt = rec.ExpiresAt
	return up, nil
}

// GetTempUpload returns upload id.
func (e *Engine) GetTempUpload(ctx context.Context, id string) (TempUploadInfo, error) {
	r, err := queries.TempUploadGet(ctx, e.db, id)
	if errors.Is(err, database.ErrNotFound) {
		return TempUploadInfo{}, notFound("UPLOAD_NOT_FOUND", "temporary upload %q not found", id)
	}
	if err != nil {
		return TempUploadInfo{}, fmt.Errorf("read upload %s: %w", id, err)
	}
	return TempUploadInfo{UploadID: r.ID, StoragePath: r.StoragePath, StorageBackendID: r.StorageBackendID, UploadedAt: r.UploadedAt,
		ExpiresAt: r.ExpiresAt, ClaimedByRunID: r.ClaimedBy, DeletedAt: r.DeletedAt, Filename: r.OriginalFilename,
		MimeType: r.MimeType, Size: r.SizeBytes, Expired: r.Expired, Claimed: r.ClaimedBy != nil, Deleted: r.DeletedAt != nil}, nil
}

// TempUploadStats counts the uploads.
func (e *Engine) TempUploadStats(ctx context.Context) (TempUploadStats, error) {
	s, err := queries.TempUploadStats(ctx, e.db)
	if err != nil {
		return TempUploadStats{}, fmt.Errorf("count uploads: %w", err)
	}
	return TempUploadStats(s), nil
}

// DeleteTempUpload deletes upload id: its object, and its row is kept as a tombstone (GET shows
// deleted: true). An unknown id is 404, an upload claimed by a run 409 UPLOAD_CLAIMED, one
// already deleted 410 UPLOAD_DELETED. It races safely with an enqueue that claims the upload:
// exactly one of them wins.
func (e *Engine) DeleteTempUpload(ctx context.Context, id string) error {
	del, err := queries.TempUploadDelete(ctx, e.db, id)
	if errors.Is(err, database.ErrNotFound) {
		u, gerr := e.GetTempUpload(ctx, id)
		switch {
		case gerr != nil:
			return gerr
		case u.Deleted:
			return &Error{Kind: ErrGone, Code: "UPLOAD_DELETED", Msg: fmt.Sprintf("temporary upload %q was already deleted", id)}
		case u.Claimed:
			err := conflict("UPLOAD_CLAIMED", "temporary upload %q is claimed by run %s and cannot be deleted", id, *u.ClaimedByRunID)
			err.Details = map[string]any{"claimedByRunId": *u.ClaimedByRunID}
			return err
		}
		return conflict("UPLOAD_BUSY", "temporary upload %q changed meanwhile; try again", id)
	}
	if err != nil {
		return fmt.Errorf("delete upload %s: %w", id, err)
	}
	if err := e.removeUploadObject(ctx, del.StorageBackendID, del.StoragePath); err != nil {
		if rerr := queries.TempUploadRestore(context.WithoutCancel(ctx), e.db, []string{id}); rerr != nil {
			e.log.Warn("could not undo the deletion mark of an upload whose object remains", "uploadId", id, "err", rerr)
		}
		return fmt.Errorf("delete upload %s: %w", id, err)
	}
	return nil
}

// removeUploadObject deletes an upload's object; a missing object is not an error, and
// neither is a backend no longer configured (nothing can reach the object then).
func (e *Engine) removeUploadObject(ctx context.Context, backendID, key string) error {
	_, backend, ok := e.storage.Get(backendID)
	if !ok {
		e.log.Warn("upload's storage backend is no longer configured; its object is left", "backend", backendID, "path", key)
		return nil
	}
	if err := backend.Delete(ctx, key); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete object %s: %w", key, err)
	}
	return nil
}

// cleanupTempUploads deletes expired, unclaimed uploads (object, then the row becomes a
// tombstone), at most tempCleanupBatch per round, until none is left or deadline passed (zero:
// none), then removes tombstones older than retention in chunks. It returns how many uploads
// it deleted.
func (e *Engine) cleanupTempUploads(ctx context.Context, retention time.Duration, chunk int, deadline time.Time) (int64, error) {
	var n int64
	for {
		objs, err := queries.ExpireTempUploads(ctx, e.db, tempCleanupBatch)
		if err != nil {
			return n, fmt.Errorf("expire uploads: %w", err)
		}
		var mu sync.Mutex
		var failed []string
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(8)
		for _, o := range objs {
			g.Go(func() error {
				if err := e.removeUploadObject(gctx, o.StorageBackendID, o.StoragePath); err != nil {
					e.log.Warn("could not delete an expired upload; the next cleanup tries again", "uploadId", o.ID, "err", err)
					mu.Lock()
					failed = append(failed, o.ID)
					mu.Unlock()
				}
				return nil
			})
		}
		_ = g.Wait()
		if len(failed) > 0 {
			if err := queries.TempUploadRestore(context.WithoutCancel(ctx), e.db, failed); err != nil {
				return n, fmt.Errorf("restore uploads whose objects remain: %w", err)
			}
		}
		n += int64(len(objs) - len(failed))
		if len(objs) < tempCleanupBatch || len(failed) > 0 || (!deadline.IsZero() && time.Now().After(deadline)) {
			break
		}
	}
	_, err := e.deleteChunks(ctx, "upload tombstones", func(ctx context.Context) (int64, error) {
		return queries.PurgeTempUploadTombstones(ctx, e.db, dbsqlc.PurgeTempUploadTombstonesParams{OlderThanMs: retention.Milliseconds(),
			Max: chunk, Now: e.now()})
	}, chunk, deadline)
	return n, err
}

// uploadIDForm is the form of an upload id: tmp_ and a lower-case ULID. Only strings of this
// exact form count as references, so that an input value such as "tmp_dir" is left alone.
var uploadIDForm = regexp.MustCompile(`^tmp_[0-9a-hjkmnp-tv-z]{26}$`)

// TempUploadRefs returns, in order of first appearance and without repeats, the upload ids
// that input names: every JSON string value anywhere in it (not object keys) that has the
// form of an upload id, as upstream's extractTempUploadIds. An input with no "tmp_" in it is
// not parsed.
func TempUploadRefs(input json.RawMessage) []string {
	if !bytes.Contains(input, []byte("tmp_")) && !bytes.Contains(input, []byte(`\u`)) {
		return nil
	}
	var v any
	if json.Unmarshal(input, &v) != nil {
		return nil
	}
	var out []string
	seen := map[string]bool{}
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case string:
			if uploadIDForm.MatchString(x) && !seen[x] {
				seen[x] = true
				out = append(out, x)
			}
		case []any:
			for _, y := range x {
				walk(y)
			}
		case map[string]any:
			for _, y := range x {
				walk(y)
			}
		}
	}
	walk(v)
	return out
}

// uploadClaim is an upload an input names, the run that claims it, and where the input was
// (the index of a batch item, -1 for a single request or a trigger).
type uploadClaim struct {
	uploadID, runID string
	item            int
}

// badUpload is one reference that cannot be claimed.
type badUpload struct {
	UploadID string `json:"uploadId"`
	Reason   string `json:"reason"` // not_found, expired or deleted
	Index    *int   `json:"index,omitempty"`
}

// claimTempUploads claims, in tx, the uploads the claims name for their runs (pipeline runs
// when pipeline is set): it locks them, refuses the whole request (400 INVALID_TEMP_UPLOAD,
// naming each) when one does not exist, expired unclaimed or was deleted, and claims those no
// run claimed yet (the first claim of an upload wins; naming it again is allowed). With no
// claims it does nothing, so an input without upload ids costs no query.
func (e *Engine) claimTempUploads(ctx context.Context, tx dbtx, claims []uploadClaim, pipeline bool) error {
	if len(claims) == 0 {
		return nil
	}
	var uploadIDs, runIDs []string
	first := map[string]int{}
	for i, c := range claims {
		if _, dup := first[c.uploadID]; dup {
			continue
		}
		first[c.uploadID] = i
		uploadIDs = append(uploadIDs, c.uploadID)
		runIDs = append(runIDs, c.runID)
	}
	rows, err := queries.LockTempUploads(ctx, tx, uploadIDs)
	if err != nil {
		return fmt.Errorf("lock uploads: %w", err)
	}
	found := map[string]dbsqlc.LockTempUploadsRow{}
	for _, r := range rows {
		found[r.ID] = r
	}
	var bad []badUpload
	var msgs []string
	for _, id := range uploadIDs {
		s, ok := found[id]
		reason := ""
		switch {
		case !ok:
			reason = "not_found"
		case s.Deleted:
			reason = "deleted"
		case s.Expired && !s.Claimed:
			reason = "expired"
		default:
			continue
		}
		b := badUpload{UploadID: id, Reason: reason}
		where := ""
		if item := claims[first[id]].item; item >= 0 {
			b.Index = &item
			where = fmt.Sprintf("tasks[%d]: ", item)
		}
		bad = append(bad, b)
		what := map[string]string{"not_found": "does not exist", "deleted": "was deleted", "expired": "has expired"}[reason]
		msgs = append(msgs, fmt.Sprintf("%sinput names temporary upload %s, which %s", where, id, what))
	}
	if len(bad) > 0 {
		err := invalid("INVALID_TEMP_UPLOAD", "%s", strings.Join(msgs, "; "))
		err.Details = map[string]any{"uploads": bad}
		return err
	}
	if err := queries.ClaimTempUploads(ctx, tx, dbsqlc.ClaimTempUploadsParams{IDs: uploadIDs, RunIDs: runIDs, Pipeline: pipeline}); err != nil {
		return fmt.Errorf("claim uploads: %w", err)
	}
	return nil
}

// enqueueUploadRefs returns, per item, the upload ids its input names (nil for repeats of an
// earlier item, which make no run).
func enqueueUploadRefs(items []enqueueItem) [][]string {
	var out [][]string
	for i := range items {
		if items[i].firstOf >= 0 {
			continue
		}
		if refs := TempUploadRefs(items[i].req.Input); len(refs) > 0 {
			if out == nil {
				out = make([][]string, len(items))
			}
			out[i] = refs
		}
	}
	return out
}

// enqueueClaims lists the claims of the items that made a new run (not those whose
// idempotency key named an existing run).
func enqueueClaims(items []enqueueItem, refs [][]string) []uploadClaim {
	var out []uploadClaim
	for i := range refs {
		if items[i].result.RunID != items[i].runID {
			continue
		}
		item := -1
		if len(items) > 1 {
			item = i
		}
		for _, id := range refs[i] {
			out = append(out, uploadClaim{uploadID: id, runID: items[i].runID, item: item})
		}
	}
	return out
}

// triggerClaims lists the claims of a trigger's input for pipeline run runID.
func triggerClaims(runID string, refs []string) []uploadClaim {
	out := make([]uploadClaim, len(refs))
	for i, id := range refs {
		out[i] = uploadClaim{uploadID: id, runID: runID, item: -1}
	}
	return out
}
