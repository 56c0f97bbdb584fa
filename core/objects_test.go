package core_test

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/core/storage"
)

func TestStorageEndpoint(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	put := func(key string, data []byte) {
		t.Helper()
		p := filepath.Join(e.storageDir, key)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, data, 0o644))
	}
	put("runs/r1/output.json", []byte(`{"pages": 4, "ok": true}`))
	put("runs/r1/logs.jsonl", []byte("{\"msg\":\"one\"}\n{\"msg\":\"two\"}\n"))
	put("runs/r1/assets/page.png", []byte{0x89, 'P', 'N', 'G', 0, 1, 2, 3, 0xff})
	put("runs/r1/assets/notes.txt", []byte("plain words"))
	// A file beside the storage directory that no path may reach.
	require.NoError(t, os.WriteFile(filepath.Join(filepath.Dir(e.storageDir), "secret.txt"), []byte("TOP-SECRET"), 0o644))

	type object struct {
		Path        string `json:"path"`
		Content     any    `json:"content"`
		ContentType string `json:"contentType"`
		Encoding    string `json:"encoding"`
		Size        int64  `json:"size"`
	}
	get := func(path string) (int, object, string) {
		r := e.do("GET", "/api/storage/"+path, nil, "")
		var o object
		if r.Status == http.StatusOK {
			r.json(t, &o)
		}
		return r.Status, o, string(r.Body)
	}
	status, o, _ := get("runs/r1/output.json")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "runs/r1/output.json", o.Path)
	require.Equal(t, "json", o.Encoding)
	require.Equal(t, map[string]any{"pages": float64(4), "ok": true}, o.Content)

	status, o, _ = get("runs/r1/logs.jsonl")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "text", o.Encoding)
	require.Equal(t, "{\"msg\":\"one\"}\n{\"msg\":\"two\"}\n", o.Content)

	status, o, _ = get("runs/r1/assets/page.png")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "base64", o.Encoding)
	require.Equal(t, "image/png", o.ContentType)
	raw, err := base64.StdEncoding.DecodeString(o.Content.(string))
	require.NoError(t, err)
	require.Equal(t, []byte{0x89, 'P', 'N', 'G', 0, 1, 2, 3, 0xff}, raw)

	status, o, _ = get("runs/r1/assets/notes.txt")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "plain words", o.Content)

	status, _, body := get("runs/r1/missing.json")
	require.Equal(t, http.StatusNotFound, status, body)
	require.Contains(t, body, "OBJECT_NOT_FOUND")

	for _, bad := range []string{"../secret.txt", "runs/../../secret.txt", "%2e%2e/secret.txt", "runs/%2e%2e/%2e%2e/secret.txt",
		"/etc/passwd", "%2Fetc%2Fpasswd", "runs//r1/output.json", "./runs/r1/output.json"} {
		req, err := http.NewRequest("GET", e.url+"/api/storage/"+bad, nil)
		require.NoError(t, err)
		resp, err := http.DefaultTransport.RoundTrip(req) // no redirects followed
		require.NoError(t, err)
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, "%s: %s", bad, b)
		require.NotContains(t, string(b), "TOP-SECRET")
		require.Contains(t, string(b), "INVALID_PATH")
	}
	status, _, _ = get("runs/r1/output.json?backend=nope")
	require.Equal(t, http.StatusNotFound, status)
}

// Credentials never appear in an API answer, a dispatch body or a log line.
func TestCredentialsNeverShown(t *testing.T) {
	t.Parallel()
	const secret = "S3CR3T-VALUE-THAT-MUST-NOT-LEAK"
	e := newEnv(t, func(c *core.Config) {
		c.StorageBackends = append(c.StorageBackends, storage.Config{ID: "second", Provider: "local",
			Credentials: map[string]any{"basePath": t.TempDir(), "apiKey": secret}})
		c.StorageBackends[0].Credentials["token"] = secret
	})
	w := newPWorker(t, e)
	e.register("svc", "1", w.URL(), task("a", next("b")), task("b"))
	w.on("b", failWith("boom", false))
	id := e.trigger("svc", map[string]any{"input": 1})
	e.waitRun(id, "failed")
	var bodies []string
	for _, path := range []string{"/api/services", "/api/services/svc/tasks", "/api/pipelines", "/api/pipelines/svc", "/api/runs",
		"/api/runs/" + id, "/api/queue/status", "/api/queue/items", "/api/dlq", "/health", "/api/storage/" + e.pipelineRun(id).InputPath} {
		r := e.do("GET", path, nil, "")
		require.Equal(t, http.StatusOK, r.Status, path)
		bodies = append(bodies, string(r.Body))
	}
	for _, d := range w.all() {
		bodies = append(bodies, d.StorageToken, d.InputPath)
	}
	bodies = append(bodies, e.logs.String())
	for _, b := range bodies {
		require.NotContains(t, b, secret)
		require.NotContains(t, b, base64.StdEncoding.EncodeToString([]byte(secret)))
	}
	require.NotEmpty(t, e.logs.String())
}

// A worker asks whether its task has a result under a key; a success with idempotencyKey
// records one for the task's idempotencyTTL.
func TestIdempotencyCheckAndRecord(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newWorker(t, e.url)
	e.register("svc", "1", w.URL(), task("idem"))
	check := func(d protocol.DispatchRequest, key, tok string) (int, protocol.IdempotencyCheckResponse) {
		status, body, err := post(e.url+"/api/idempotency/check", protocol.IdempotencyCheckRequest{RunID: d.RunID, Key: key}, tok)
		require.NoError(t, err)
		var res protocol.IdempotencyCheckResponse
		if status == http.StatusOK {
			require.NoError(t, json.Unmarshal(body, &res), string(body))
		}
		return status, res
	}
	first := e.enqueue(map[string]any{"taskId": "idem", "input": 1}).RunID
	w.waitDispatches(1)
	d1 := w.all()[0]
	status, res := check(d1, "doc-42", d1.StorageToken)
	require.Equal(t, http.StatusOK, status)
	require.False(t, res.Hit)
	cb := success(d1)
	cb.IdempotencyKey = "doc-42"
	cb.SelectedNext = []string{"publish"}
	cb.Assets = map[string]protocol.Asset{"page": {Path: protocol.AssetPath(d1.RunID, "page"), Size: 3}}
	status, _ = w.callback(d1, cb)
	require.Equal(t, http.StatusOK, status)

	e.enqueue(map[string]any{"taskId": "idem", "input": 1})
	w.waitDispatches(2)
	d2 := w.all()[1]
	status, res = check(d2, "doc-42", d2.StorageToken)
	require.Equal(t, http.StatusOK, status)
	require.True(t, res.Hit)
	require.Equal(t, first, res.RunID)
	require.Equal(t, protocol.OutputPath(first), res.OutputPath)
	require.Equal(t, int64(3), res.Assets["page"].Size)
	require.Equal(t, []string{"publish"}, res.SelectedNext, "what the cached run selected, to select again")
	status, res = check(d2, "other-key", d2.StorageToken)
	require.Equal(t, http.StatusOK, status)
	require.False(t, res.Hit)

	status, _ = check(d2, "", d2.StorageToken)
	require.Equal(t, http.StatusBadRequest, status)
	status, _ = check(d2, "doc-42", "")
	require.Equal(t, http.StatusUnauthorized, status)
	status, _ = check(d2, "doc-42", d1.StorageToken)
	require.Equal(t, http.StatusUnauthorized, status, "a token for another run")
}
