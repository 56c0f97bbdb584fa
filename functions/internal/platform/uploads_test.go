package platform

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/internal/testdb"
)

// TestDLQPurgeDeletesExpiredUploads: the scheduled dlq-purge function deletes expired,
// unclaimed temporary uploads, object and record (kept as a tombstone), and leaves live ones.
func TestDLQPurgeDeletesExpiredUploads(t *testing.T) {
	t.Parallel()
	dbURL := testdb.NewURL(t)
	dir := t.TempDir()
	backends, err := json.Marshal([]map[string]any{{"id": "l", "provider": "local", "credentials": map[string]string{"basePath": dir}}})
	require.NoError(t, err)
	env := map[string]string{"DATABASE_URL": dbURL, "STORAGE_BACKENDS": string(backends), "PIPEWEAVE_SECRET_KEY": testSecret}

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	objects := map[string]string{}
	for id, expiry := range map[string]string{"tmp_expired": "now() - interval '1 hour'", "tmp_live": "now() + interval '1 hour'"} {
		key := "temp-uploads/" + id + "/a.txt"
		objects[id] = filepath.Join(dir, filepath.FromSlash(key))
		require.NoError(t, os.MkdirAll(filepath.Dir(objects[id]), 0o755))
		require.NoError(t, os.WriteFile(objects[id], []byte("x"), 0o644))
		_, err = conn.Exec(ctx, `INSERT INTO pipeweave.temp_uploads (id, storage_path, storage_backend_id, expires_at,
			original_filename, mime_type, size_bytes) VALUES ($1, $2, 'l', `+expiry+`, 'a.txt', 'text/plain', 1)`, id, key)
		require.NoError(t, err)
	}

	base := serve(t, env, DLQPurge)
	status, summary := get(t, "POST", base+"/")
	require.Equal(t, http.StatusOK, status, "%v", summary)
	require.EqualValues(t, 1, summary["tempUploads"])
	require.NoFileExists(t, objects["tmp_expired"])
	require.FileExists(t, objects["tmp_live"])
	var deleted, live bool
	require.NoError(t, conn.QueryRow(ctx, `SELECT
		(SELECT deleted_at IS NOT NULL FROM pipeweave.temp_uploads WHERE id = 'tmp_expired'),
		(SELECT deleted_at IS NULL FROM pipeweave.temp_uploads WHERE id = 'tmp_live')`).Scan(&deleted, &live))
	require.True(t, deleted)
	require.True(t, live)
}
