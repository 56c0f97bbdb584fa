package core_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/core/storage"
	"github.com/pipeweave/pipeweave/internal/fakes3"
)

// part is one part of a multipart body: a file when filename is set, else a plain field.
type part struct {
	field, filename, contentType string
	content                      []byte
}

func filePart(name string, content []byte, contentType string) part {
	return part{field: "file", filename: name, contentType: contentType, content: content}
}

// multipartBody encodes parts as multipart/form-data.
func multipartBody(t *testing.T, parts ...part) (string, []byte) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range parts {
		h := make(map[string][]string)
		disp := fmt.Sprintf(`form-data; name=%q`, p.field)
		if p.filename != "" {
			disp += fmt.Sprintf(`; filename=%q`, p.filename)
		}
		h["Content-Disposition"] = []string{disp}
		if p.contentType != "" {
			h["Content-Type"] = []string{p.contentType}
		}
		w, err := mw.CreatePart(h)
		require.NoError(t, err)
		_, err = w.Write(p.content)
		require.NoError(t, err)
	}
	require.NoError(t, mw.Close())
	return mw.FormDataContentType(), buf.Bytes()
}

// upload posts parts to /api/upload/temp.
func (e *env) upload(parts ...part) response {
	e.t.Helper()
	ct, body := multipartBody(e.t, parts...)
	req, err := http.NewRequest("POST", e.url+"/api/upload/temp", bytes.NewReader(body))
	require.NoError(e.t, err)
	req.Header.Set("Content-Type", ct)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	return response{Status: resp.StatusCode, Body: raw}
}

type uploaded struct {
	UploadID    string    `json:"uploadId"`
	StoragePath string    `json:"storagePath"`
	Filename    string    `json:"filename"`
	Size        int64     `json:"size"`
	MimeType    string    `json:"mimeType"`
	ExpiresAt   time.Time `json:"expiresAt"`
}

// uploadOK uploads one file and checks the answer's exact shape.
func (e *env) uploadOK(name string, content []byte, contentType string) uploaded {
	e.t.Helper()
	r := e.upload(filePart(name, content, contentType))
	require.Equal(e.t, http.StatusCreated, r.Status, "upload: %s", r.Body)
	var keys map[string]any
	r.json(e.t, &keys)
	require.ElementsMatch(e.t, []string{"uploadId", "storagePath", "filename", "size", "mimeType", "expiresAt"}, mapKeys(keys))
	var u uploaded
	r.json(e.t, &u)
	require.Regexp(e.t, `^tmp_[0-9a-z]{26}$`, u.UploadID)
	require.Equal(e.t, int64(len(content)), u.Size)
	return u
}

func mapKeys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func (e *env) uploadInfo(id string) protocol.TempUploadInfo {
	e.t.Helper()
	r := e.do("GET", "/api/upload/temp/"+id, nil, "")
	require.Equal(e.t, http.StatusOK, r.Status, "get upload: %s", r.Body)
	var keys map[string]any
	r.json(e.t, &keys)
	require.ElementsMatch(e.t, []string{"uploadId", "storagePath", "storageBackendId", "uploadedAt", "expiresAt", "claimedByRunId",
		"deletedAt", "filename", "mimeType", "size", "expired", "claimed", "deleted"}, mapKeys(keys))
	var u protocol.TempUploadInfo
	r.json(e.t, &u)
	return u
}

func (e *env) uploadStats() protocol.TempUploadStats {
	e.t.Helper()
	r := e.do("GET", "/api/upload/stats", nil, "")
	require.Equal(e.t, http.StatusOK, r.Status, "stats: %s", r.Body)
	var s protocol.TempUploadStats
	r.json(e.t, &s)
	return s
}

func (e *env) sql(query string, args ...any) {
	e.t.Helper()
	_, err := e.pool.Exec(context.Background(), query, args...)
	require.NoError(e.t, err)
}

// objectExists tells whether key is stored in the default backend (opened anew from the
// configuration, as a worker would).
func (e *env) objectExists(key string) bool {
	e.t.Helper()
	var cfg storage.Config
	for _, c := range e.cfg.StorageBackends {
		if c.IsDefault {
			cfg = c
		}
	}
	b, err := storage.Open(context.Background(), cfg)
	require.NoError(e.t, err)
	_, err = b.Stat(context.Background(), key)
	if errors.Is(err, storage.ErrNotFound) {
		return false
	}
	require.NoError(e.t, err)
	return true
}

func (e *env) objectContent(key string) []byte {
	e.t.Helper()
	var cfg storage.Config
	for _, c := range e.cfg.StorageBackends {
		if c.IsDefault {
			cfg = c
		}
	}
	b, err := storage.Open(context.Background(), cfg)
	require.NoError(e.t, err)
	data, err := storage.ReadAll(context.Background(), b, key)
	require.NoError(e.t, err)
	return data
}

// withS3Default makes an S3 bucket on the fake S3 server the default backend.
func withS3Default(t *testing.T) func(*core.Config) {
	srv := fakes3.Start(t, fakes3.Options{})
	srv.CreateBucket(t, "uploads")
	return func(cfg *core.Config) {
		for i := range cfg.StorageBackends {
			cfg.StorageBackends[i].IsDefault = false
		}
		cfg.StorageBackends = append(cfg.StorageBackends, storage.Config{ID: "s3", Provider: storage.ProviderAWSS3,
			Endpoint: srv.URL, Bucket: "uploads", Region: srv.Region, IsDefault: true,
			Credentials: map[string]any{"accessKeyId": srv.AccessKey, "secretAccessKey": srv.SecretKey}})
	}
}

// TestTempUploadLifeCycle runs the whole life of temporary uploads against the local backend
// and the fake S3 server: upload, read, stats, claims by enqueue, batch and trigger, refusals
// of unknown, expired and deleted ids with nothing written, delete, and the cleanup of expired
// uploads and of uploads whose run retention purged.
func TestTempUploadLifeCycle(t *testing.T) {
	t.Parallel()
	for name, mod := range map[string]func(t *testing.T) func(*core.Config){
		"local": func(*testing.T) func(*core.Config) { return func(*core.Config) {} },
		"s3":    withS3Default,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, mod(t))
			w := newWorker(t, e.url)
			e.register("docs", "1", w.URL(), task("ingest"))
			backendID := "local"
			if name == "s3" {
				backendID = "s3"
			}

			// Upload, then read it back.
			pdf := []byte("%PDF-1.7 a small document")
			a := e.uploadOK("report (final).pdf", pdf, "application/pdf")
			require.Equal(t, "temp-uploads/"+a.UploadID+"/report (final).pdf", a.StoragePath)
			require.Equal(t, "report (final).pdf", a.Filename)
			require.Equal(t, "application/pdf", a.MimeType)
			require.WithinDuration(t, time.Now().Add(24*time.Hour), a.ExpiresAt, time.Hour)
			require.Equal(t, pdf, e.objectContent(a.StoragePath))
			info := e.uploadInfo(a.UploadID)
			require.Equal(t, a.StoragePath, info.StoragePath)
			require.Equal(t, backendID, info.StorageBackendID)
			require.Equal(t, "report (final).pdf", info.Filename)
			require.Equal(t, int64(len(pdf)), info.Size)
			require.Nil(t, info.ClaimedByRunID)
			require.Nil(t, info.DeletedAt)
			require.False(t, info.Expired || info.Claimed || info.Deleted)
			require.Equal(t, protocol.TempUploadStats{Total: 1}, e.uploadStats())

			// An enqueue whose input names it (anywhere, as a string value) claims it for the run.
			run := e.enqueue(map[string]any{"taskId": "ingest", "input": map[string]any{"doc": map[string]any{"files": []string{a.UploadID}}}})
			info = e.uploadInfo(a.UploadID)
			require.True(t, info.Claimed)
			require.Equal(t, run.RunID, *info.ClaimedByRunID)
			require.False(t, info.Expired)
			// Naming a claimed upload again is allowed; it stays claimed by the first run.
			again := e.enqueue(map[string]any{"taskId": "ingest", "input": map[string]any{"file": a.UploadID}})
			require.Equal(t, run.RunID, *e.uploadInfo(a.UploadID).ClaimedByRunID)
			// A claimed upload cannot be deleted.
			r := e.do("DELETE", "/api/upload/temp/"+a.UploadID, nil, "")
			require.Equal(t, http.StatusConflict, r.Status, "%s", r.Body)
			require.Equal(t, "UPLOAD_CLAIMED", r.errorBody(t).Code)
			require.True(t, e.objectExists(a.StoragePath))

			// Unknown, expired and deleted ids are refused, naming them, and nothing is written.
			b := e.uploadOK("b.txt", []byte("bee"), "text/plain")
			c := e.uploadOK("c.txt", []byte("sea"), "")
			require.Equal(t, "application/octet-stream", c.MimeType)
			e.sql("UPDATE temp_uploads SET expires_at = now() - interval '1 minute' WHERE id = $1", b.UploadID)
			require.True(t, e.uploadInfo(b.UploadID).Expired)
			d := e.uploadOK("d.txt", []byte("dee"), "text/plain")
			r = e.do("DELETE", "/api/upload/temp/"+d.UploadID, nil, "")
			require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
			require.JSONEq(t, fmt.Sprintf(`{"success":true,"uploadId":%q}`, d.UploadID), string(r.Body))
			require.False(t, e.objectExists(d.StoragePath))
			info = e.uploadInfo(d.UploadID)
			require.True(t, info.Deleted)
			require.NotNil(t, info.DeletedAt)
			r = e.do("DELETE", "/api/upload/temp/"+d.UploadID, nil, "")
			require.Equal(t, http.StatusGone, r.Status, "%s", r.Body)
			require.Equal(t, "UPLOAD_DELETED", r.errorBody(t).Code)

			unknown := "tmp_01jz0000000000000000000000"
			runsBefore := e.count("SELECT count(*) FROM task_runs")
			for _, bad := range []struct{ id, reason, says string }{
				{unknown, "not_found", "does not exist"},
				{b.UploadID, "expired", "has expired"},
				{d.UploadID, "deleted", "was deleted"},
			} {
				r := e.do("POST", "/api/queue/task", map[string]any{"taskId": "ingest", "input": map[string]any{"a": c.UploadID, "b": bad.id}}, "")
				require.Equal(t, http.StatusBadRequest, r.Status, "%s", r.Body)
				eb := r.errorBody(t)
				require.Equal(t, "INVALID_TEMP_UPLOAD", eb.Code)
				require.Contains(t, eb.Error, bad.id)
				require.Contains(t, eb.Error, bad.says)
				require.NotContains(t, eb.Error, c.UploadID, "only the bad id is named")
				require.Contains(t, string(r.Body), `"reason":"`+bad.reason+`"`)

				// The batch names the item.
				r = e.do("POST", "/api/queue/batch", map[string]any{"tasks": []map[string]any{
					{"taskId": "ingest", "input": map[string]any{"a": c.UploadID}},
					{"taskId": "ingest", "input": []any{1, bad.id}},
				}}, "")
				require.Equal(t, http.StatusBadRequest, r.Status, "%s", r.Body)
				eb = r.errorBody(t)
				require.Equal(t, "INVALID_TEMP_UPLOAD", eb.Code)
				require.Contains(t, eb.Error, "tasks[1]: ")
				require.Contains(t, eb.Error, bad.id)

				// So does a trigger.
				r = e.do("POST", "/api/pipelines/docs/trigger", map[string]any{"input": map[string]any{"a": c.UploadID, "b": bad.id}}, "")
				require.Equal(t, http.StatusBadRequest, r.Status, "%s", r.Body)
				require.Contains(t, r.errorBody(t).Error, bad.id)
			}
			require.Equal(t, runsBefore, e.count("SELECT count(*) FROM task_runs"), "no run was written")
			require.Zero(t, e.count("SELECT count(*) FROM pipeline_runs"))
			require.False(t, e.uploadInfo(c.UploadID).Claimed, "the good upload of a refused request stays unclaimed")
			if name == "local" {
				// No input object of a refused request is left behind: only the two runs' inputs.
				var files []string
				for _, dir := range []string{"standalone", "pipelines"} {
					_ = filepath.WalkDir(filepath.Join(e.storageDir, dir), func(path string, d os.DirEntry, err error) error {
						if err == nil && !d.IsDir() {
							files = append(files, path)
						}
						return nil
					})
				}
				// With inline payloads (the default) not even those: small inputs live in PostgreSQL.
				var want []string
				if e.cfg.InlinePayloadMaxBytes == 0 {
					want = []string{filepath.Join(e.storageDir, "standalone", run.RunID, "input.json"),
						filepath.Join(e.storageDir, "standalone", again.RunID, "input.json")}
				}
				require.ElementsMatch(t, want, files)
			}

			// A trigger claims for the pipeline run.
			r = e.do("POST", "/api/pipelines/docs/trigger", map[string]any{"input": map[string]any{"file": c.UploadID}}, "")
			require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
			var trig struct {
				PipelineRunID string `json:"pipelineRunId"`
			}
			r.json(t, &trig)
			require.Equal(t, trig.PipelineRunID, *e.uploadInfo(c.UploadID).ClaimedByRunID)

			require.Equal(t, protocol.TempUploadStats{Total: 4, Expired: 1, Claimed: 2, Deleted: 1}, e.uploadStats())

			// Cleanup: expired, unclaimed uploads go (object and row as a tombstone); a claimed
			// upload past its expiry stays.
			f := e.uploadOK("f.bin", bytes.Repeat([]byte{7}, 4096), "application/octet-stream")
			e.sql("UPDATE temp_uploads SET expires_at = now() - interval '2 days' WHERE id = ANY($1)", []string{f.UploadID, a.UploadID, c.UploadID})
			s, err := e.orch.Purge(context.Background(), time.Minute)
			require.NoError(t, err)
			require.Equal(t, int64(2), s.TempUploads)
			for _, u := range []uploaded{b, f} {
				require.False(t, e.objectExists(u.StoragePath), u.UploadID)
				info := e.uploadInfo(u.UploadID)
				require.True(t, info.Deleted && info.Expired, u.UploadID)
			}
			for _, u := range []uploaded{a, c} {
				require.True(t, e.objectExists(u.StoragePath), u.UploadID)
				info := e.uploadInfo(u.UploadID)
				require.True(t, info.Claimed && !info.Deleted && !info.Expired, u.UploadID)
			}
			require.Equal(t, protocol.TempUploadStats{Total: 5, Expired: 0, Claimed: 2, Deleted: 3}, e.uploadStats())
			s, err = e.orch.Purge(context.Background(), time.Minute)
			require.NoError(t, err)
			require.Zero(t, s.TempUploads, "nothing left to clean")

			// When retention purges the run that claimed an upload, the claim is released and the
			// same purge deletes the upload, long expired; tombstones past retention go too.
			e.sql("UPDATE task_runs SET status = 'completed', completed_at = now() - interval '40 days' WHERE id = ANY($1)",
				[]string{run.RunID, again.RunID})
			e.sql("UPDATE temp_uploads SET deleted_at = now() - interval '40 days' WHERE id = $1", d.UploadID)
			s, err = e.orch.Purge(context.Background(), time.Minute)
			require.NoError(t, err)
			require.Equal(t, int64(2), s.Runs)
			require.Equal(t, int64(1), s.TempUploads)
			require.False(t, e.objectExists(a.StoragePath))
			info = e.uploadInfo(a.UploadID)
			require.True(t, info.Deleted && !info.Claimed)
			r = e.do("GET", "/api/upload/temp/"+d.UploadID, nil, "")
			require.Equal(t, http.StatusNotFound, r.Status, "the tombstone past retention is gone: %s", r.Body)
			require.True(t, e.objectExists(c.StoragePath), "the pipeline run's upload stays")
		})
	}
}

// TestTempUploadBadRequests: what is not exactly one file in field "file" is 400, a file over
// MAX_UPLOAD_BYTES 413, unknown ids 404, and none of them leaves an object or a row.
func TestTempUploadBadRequests(t *testing.T) {
	t.Parallel()
	const capBytes = 64 << 10
	e := newEnv(t, func(cfg *core.Config) {
		cfg.MaxBodyBytes = 1024
		cfg.MaxUploadBytes = capBytes
	})
	nothingLeft := func() {
		t.Helper()
		require.Zero(t, e.count("SELECT count(*) FROM temp_uploads"))
		entries, err := os.ReadDir(filepath.Join(e.storageDir, "temp-uploads"))
		if err == nil {
			for _, d := range entries {
				inner, err := os.ReadDir(filepath.Join(e.storageDir, "temp-uploads", d.Name()))
				require.NoError(t, err)
				require.Empty(t, inner, "objects left under %s", d.Name())
			}
		}
	}

	// Not multipart: refused before the body is read (guard.go).
	r := e.do("POST", "/api/upload/temp", `{"file": "x"}`, "")
	require.Equal(t, http.StatusUnsupportedMediaType, r.Status, "%s", r.Body)
	require.Equal(t, "UNSUPPORTED_MEDIA_TYPE", r.errorBody(t).Code)
	// Multipart without a file.
	r = e.upload(part{field: "note", content: []byte("hello")})
	require.Equal(t, http.StatusBadRequest, r.Status, "%s", r.Body)
	require.Equal(t, "NO_FILE", r.errorBody(t).Code)
	// A second file, in the same field or in another one.
	r = e.upload(filePart("a.txt", []byte("a"), "text/plain"), filePart("b.txt", []byte("b"), "text/plain"))
	require.Equal(t, http.StatusBadRequest, r.Status, "%s", r.Body)
	require.Equal(t, "TOO_MANY_FILES", r.errorBody(t).Code)
	r = e.upload(filePart("a.txt", []byte("a"), "text/plain"), part{field: "other", filename: "b.txt", content: []byte("b")})
	require.Equal(t, http.StatusBadRequest, r.Status, "%s", r.Body)
	require.Equal(t, "TOO_MANY_FILES", r.errorBody(t).Code)
	// A file in another field than "file".
	r = e.upload(part{field: "document", filename: "a.txt", content: []byte("a")})
	require.Equal(t, http.StatusBadRequest, r.Status, "%s", r.Body)
	require.Equal(t, "UNEXPECTED_FILE", r.errorBody(t).Code)
	// Over the cap: 413, and nothing left.
	r = e.upload(filePart("big.bin", bytes.Repeat([]byte("x"), capBytes+1), "application/octet-stream"))
	require.Equal(t, http.StatusRequestEntityTooLarge, r.Status, "%s", r.Body)
	require.Equal(t, "UPLOAD_TOO_LARGE", r.errorBody(t).Code)
	nothingLeft()
	// A form field beyond the body cap (the file's cap plus 1 MiB of framing); only a little
	// beyond, so that the client has written its body when the answer comes.
	r = e.upload(part{field: "note", content: bytes.Repeat([]byte("n"), 1<<20+capBytes+16<<10)}, filePart("a.txt", []byte("a"), "text/plain"))
	require.Equal(t, http.StatusRequestEntityTooLarge, r.Status, "%s", r.Body)
	require.Equal(t, "BODY_TOO_LARGE", r.errorBody(t).Code)
	nothingLeft()

	// Exactly the cap, far above MAX_BODY_BYTES: the upload route has its own limit. Plain
	// fields beside the file are ignored.
	u := e.uploadOK("ok.bin", bytes.Repeat([]byte("y"), capBytes), "")
	r = e.upload(part{field: "note", content: []byte("ignored")}, filePart("../../etc/passwd", []byte("root"), "text/plain"))
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	var p uploaded
	r.json(t, &p)
	require.Equal(t, "temp-uploads/"+p.UploadID+"/passwd", p.StoragePath, "no way out of the upload's folder")
	// Other routes keep MAX_BODY_BYTES.
	r = e.do("POST", "/api/queue/task", `{"taskId": "x", "input": "`+strings.Repeat("z", 2048)+`"}`, "")
	require.Equal(t, http.StatusRequestEntityTooLarge, r.Status, "%s", r.Body)

	// Unknown ids.
	for _, m := range []string{"GET", "DELETE"} {
		r = e.do(m, "/api/upload/temp/tmp_01jz0000000000000000000000", nil, "")
		require.Equal(t, http.StatusNotFound, r.Status, "%s", r.Body)
		require.Equal(t, "UPLOAD_NOT_FOUND", r.errorBody(t).Code)
	}
	require.Equal(t, protocol.TempUploadStats{Total: 2}, e.uploadStats())
	require.True(t, e.objectExists(u.StoragePath))
}

// TestTempUploadBatchClaims: each item of a batch claims the uploads its input names for its own
// run; an upload named by two items goes to the first; a request answered from its
// idempotency key claims nothing.
func TestTempUploadBatchClaims(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newWorker(t, e.url)
	e.register("svc", "1", w.URL(), task("use"))
	a := e.uploadOK("a.txt", []byte("a"), "text/plain")
	b := e.uploadOK("b.txt", []byte("b"), "text/plain")
	c := e.uploadOK("c.txt", []byte("c"), "text/plain")
	r := e.do("POST", "/api/queue/batch", map[string]any{"tasks": []map[string]any{
		{"taskId": "use", "input": map[string]any{"x": a.UploadID}},
		{"taskId": "use", "input": map[string]any{"x": []string{b.UploadID, a.UploadID}}},
	}}, "")
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	var out struct {
		Results []enqueued `json:"results"`
	}
	r.json(t, &out)
	require.Len(t, out.Results, 2)
	require.Equal(t, out.Results[0].RunID, *e.uploadInfo(a.UploadID).ClaimedByRunID)
	require.Equal(t, out.Results[1].RunID, *e.uploadInfo(b.UploadID).ClaimedByRunID)

	first := e.enqueue(map[string]any{"taskId": "use", "input": map[string]any{"x": "nothing"}, "idempotencyKey": "k"})
	r = e.do("POST", "/api/queue/task", map[string]any{"taskId": "use", "input": map[string]any{"x": c.UploadID}, "idempotencyKey": "k"}, "")
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	var dup enqueued
	r.json(t, &dup)
	require.Equal(t, first.RunID, dup.RunID)
	require.True(t, dup.Deduplicated)
	require.False(t, e.uploadInfo(c.UploadID).Claimed, "no new run, no claim")
}

// TestTempUploadsNeedAPIKey: the upload routes take the API key like their neighbours.
func TestTempUploadsNeedAPIKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(cfg *core.Config) { cfg.APIKeys = []string{"key-1"} })
	for _, c := range []struct{ method, path string }{
		{"POST", "/api/upload/temp"}, {"GET", "/api/upload/temp/tmp_x"}, {"DELETE", "/api/upload/temp/tmp_x"}, {"GET", "/api/upload/stats"},
	} {
		ct := "application/json"
		if c.method == "POST" {
			ct = "multipart/form-data; boundary=x" // else 415 comes first
		}
		r := e.guarded(guardRequest{method: c.method, path: c.path, contentType: ct})
		require.Equal(t, http.StatusUnauthorized, r.Status, "%s %s", c.method, c.path)
	}
	r := e.do("GET", "/api/upload/stats", nil, "key-1")
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
}

// TestTempUploadDeleteRacesEnqueue: a delete and an enqueue naming the same upload, at the same
// moment, end one way or the other, never both or neither: the delete wins (200) and the
// enqueue is refused (400, nothing written), or the enqueue wins (201, the upload claimed) and
// the delete gets 409.
func TestTempUploadDeleteRacesEnqueue(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newWorker(t, e.url)
	e.register("svc", "1", w.URL(), task("use"))
	wins := map[string]int{}
	for i := range rounds(30) {
		u := e.uploadOK(fmt.Sprintf("f%d.txt", i), []byte("data"), "text/plain")
		var wg sync.WaitGroup
		var del, enq response
		var delErr, enqErr error
		start := make(chan struct{})
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			// Staggered starts, so that both orders happen: the enqueue does more work before
			// it reaches the upload than the delete does.
			time.Sleep(time.Duration(i%8) * time.Millisecond)
			del, delErr = e.send("DELETE", "/api/upload/temp/"+u.UploadID, nil, "")
		}()
		go func() {
			defer wg.Done()
			<-start
			enq, enqErr = e.send("POST", "/api/queue/task", map[string]any{"taskId": "use", "input": map[string]any{"f": u.UploadID}}, "")
		}()
		close(start)
		wg.Wait()
		require.NoError(t, delErr)
		require.NoError(t, enqErr)
		info := e.uploadInfo(u.UploadID)
		switch {
		case del.Status == http.StatusOK:
			require.Equal(t, http.StatusBadRequest, enq.Status, "%s", enq.Body)
			require.Contains(t, enq.errorBody(t).Error, u.UploadID)
			require.True(t, info.Deleted)
			require.False(t, info.Claimed)
			require.False(t, e.objectExists(u.StoragePath))
			wins["delete"]++
		case enq.Status == http.StatusCreated:
			require.Equal(t, http.StatusConflict, del.Status, "%s", del.Body)
			var run enqueued
			enq.json(t, &run)
			require.Equal(t, run.RunID, *info.ClaimedByRunID)
			require.False(t, info.Deleted)
			require.True(t, e.objectExists(u.StoragePath))
			wins["enqueue"]++
		default:
			t.Fatalf("neither won: delete %d %s, enqueue %d %s", del.Status, del.Body, enq.Status, enq.Body)
		}
	}
	runs := e.count("SELECT count(*) FROM task_runs")
	require.Equal(t, wins["enqueue"], runs, "one run per enqueue that won, none for the others")
	t.Logf("wins: %v", wins)
}

func TestConfigMaxUploadBytes(t *testing.T) {
	t.Parallel()
	env := func(v string) func(string) string { return configEnv(map[string]string{"MAX_UPLOAD_BYTES": v}) }
	require.Equal(t, int64(100<<20), core.DefaultConfig().MaxUploadBytes)
	cfg, err := core.ConfigFromEnv(env(""))
	require.NoError(t, err)
	require.Equal(t, int64(100<<20), cfg.MaxUploadBytes)
	cfg, err = core.ConfigFromEnv(env("5000000000"))
	require.NoError(t, err)
	require.Equal(t, int64(5000000000), cfg.MaxUploadBytes)
	for _, bad := range []string{"0", "-1", "lots", "1.5"} {
		_, err := core.ConfigFromEnv(env(bad))
		var ce *core.ConfigError
		require.ErrorAs(t, err, &ce, bad)
		require.Equal(t, "MAX_UPLOAD_BYTES", ce.Var)
	}
}

// The standalone loop cleans up too: on its first pass (then hourly) it deletes an expired,
// unclaimed upload, object and row, and leaves a fresh one.
func TestStandaloneLoopDeletesExpiredUploads(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *core.Config) { c.Mode = core.ModeStandalone })
	old := e.uploadOK("old.bin", bytes.Repeat([]byte{1}, 64), "application/octet-stream")
	fresh := e.uploadOK("fresh.bin", bytes.Repeat([]byte{2}, 64), "application/octet-stream")
	e.sql("UPDATE temp_uploads SET expires_at = now() - interval '1 hour' WHERE id = $1", old.UploadID)
	require.True(t, e.objectExists(old.StoragePath))
	e.runLoop()
	// The purge marks the row deleted, then removes the object (restoring the row if it cannot).
	e.waitFor("the loop's purge", func() bool { return e.uploadInfo(old.UploadID).Deleted && !e.objectExists(old.StoragePath) })
	require.True(t, e.objectExists(fresh.StoragePath))
	require.False(t, e.uploadInfo(fresh.UploadID).Deleted)
}
