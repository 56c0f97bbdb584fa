package local_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/storage"
	"github.com/pipeweave/pipeweave/core/storage/local"
	"github.com/pipeweave/pipeweave/core/storage/storagetest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	storagetest.Run(t, func(t *testing.T) *storage.Backend {
		b, err := local.New(t.TempDir())
		require.NoError(t, err)
		return b
	})
}

func TestConformanceThroughOpen(t *testing.T) {
	t.Parallel()
	storagetest.Run(t, func(t *testing.T) *storage.Backend {
		b, err := storage.Open(t.Context(), storage.Config{
			ID:          "local",
			Provider:    storage.ProviderLocal,
			Credentials: map[string]any{"basePath": t.TempDir()},
		})
		require.NoError(t, err)
		return b
	})
}

func TestNewCreatesDirectory(t *testing.T) {
	t.Parallel()
	base := filepath.Join(t.TempDir(), "nested", "storage")
	b, err := local.New(base)
	require.NoError(t, err)
	fi, err := os.Stat(base)
	require.NoError(t, err)
	require.True(t, fi.IsDir())
	require.NoError(t, storage.PutBytes(t.Context(), b, "k", []byte("x"), ""))
	require.FileExists(t, filepath.Join(base, "k"))
}

func TestNewRefusesBadBase(t *testing.T) {
	t.Parallel()
	_, err := local.New("")
	require.ErrorContains(t, err, "base path is empty")

	file := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(file, []byte("x"), 0o644))
	_, err = local.New(file)
	require.Error(t, err)
}

func TestLayoutAndModes(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	b, err := local.New(base)
	require.NoError(t, err)
	ctx := t.Context()

	require.NoError(t, storage.PutBytes(ctx, b, "runs/r1/assets/chart.png", []byte("png"), "image/png"))
	p := filepath.Join(base, "runs", "r1", "assets", "chart.png")
	data, err := os.ReadFile(p)
	require.NoError(t, err)
	require.Equal(t, []byte("png"), data)

	fi, err := os.Stat(p)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o644), fi.Mode().Perm())

	di, err := os.Stat(filepath.Dir(p))
	require.NoError(t, err)
	require.True(t, di.IsDir())
	require.Zero(t, di.Mode().Perm()&^0o755, "directory mode %v is wider than 0o755", di.Mode().Perm())

	attrs, err := b.Stat(ctx, "runs/r1/assets/chart.png")
	require.NoError(t, err)
	require.Equal(t, "image/png", attrs.ContentType)
}

func TestLeavesNoTemporaryFiles(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	b, err := local.New(base)
	require.NoError(t, err)
	ctx := t.Context()

	for range 5 {
		require.NoError(t, storage.PutBytes(ctx, b, "runs/r1/output.json", []byte(`{}`), ""))
	}
	err = b.Put(ctx, "runs/r1/broken.bin", failAfter{}, storage.PutOptions{})
	require.Error(t, err)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	require.Error(t, b.Put(cancelled, "runs/r1/cancelled.bin", strings.NewReader("x"), storage.PutOptions{}))

	var names []string
	require.NoError(t, filepath.WalkDir(base, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(base, path)
			names = append(names, filepath.ToSlash(rel))
		}
		return nil
	}))
	require.Equal(t, []string{"runs/r1/output.json"}, names)
}

// failAfter is a reader that fails immediately.
type failAfter struct{}

func (failAfter) Read([]byte) (int, error) { return 0, os.ErrDeadlineExceeded }

func TestDirectoriesAreNotObjects(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	b, err := local.New(base)
	require.NoError(t, err)
	ctx := t.Context()
	require.NoError(t, storage.PutBytes(ctx, b, "runs/r1/logs.jsonl", []byte("{}\n"), ""))

	_, err = b.Get(ctx, "runs/r1")
	require.ErrorIs(t, err, storage.ErrNotFound)
	_, err = b.Stat(ctx, "runs")
	require.ErrorIs(t, err, storage.ErrNotFound)
	require.ErrorIs(t, b.Delete(ctx, "runs/r1"), storage.ErrNotFound)
	_, err = os.Stat(filepath.Join(base, "runs", "r1", "logs.jsonl"))
	require.NoError(t, err, "Delete of a directory key must not remove anything")

	// A path through a file is missing, not an I/O error.
	_, err = b.Get(ctx, "runs/r1/logs.jsonl/child")
	require.ErrorIs(t, err, storage.ErrNotFound)
	_, err = b.Stat(ctx, "runs/r1/logs.jsonl/child")
	require.ErrorIs(t, err, storage.ErrNotFound)
	require.ErrorIs(t, b.Delete(ctx, "runs/r1/logs.jsonl/child"), storage.ErrNotFound)
}

func TestRefusesReservedTempNames(t *testing.T) {
	t.Parallel()
	b, err := local.New(t.TempDir())
	require.NoError(t, err)
	err = storage.PutBytes(t.Context(), b, "runs/.pipeweave-tmp-123", []byte("x"), "")
	require.ErrorIs(t, err, storage.ErrInvalidKey)
	_, err = b.Get(t.Context(), ".pipeweave-tmp-1/x")
	require.ErrorIs(t, err, storage.ErrInvalidKey)
}

func TestStatSniffsContentWithoutKnownExtension(t *testing.T) {
	t.Parallel()
	b, err := local.New(t.TempDir())
	require.NoError(t, err)
	ctx := t.Context()
	require.NoError(t, storage.PutBytes(ctx, b, "notes", []byte("plain words\n"), ""))
	attrs, err := b.Stat(ctx, "notes")
	require.NoError(t, err)
	require.Equal(t, "text/plain; charset=utf-8", attrs.ContentType)

	require.NoError(t, storage.PutBytes(ctx, b, "UPPER.JSON", []byte(`[]`), ""))
	attrs, err = b.Stat(ctx, "UPPER.JSON")
	require.NoError(t, err)
	require.Equal(t, "application/json", attrs.ContentType)
}

// The local backend as upstream's README and .env.example write it: endpoint file:// and a
// bucket, both accepted and ignored (objects live at basePath/key).
func TestLocalBackendUpstreamForm(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, endpoint := range []string{"", "file://", "file:///var/lib/pipeweave"} {
		cfgs, err := storage.ParseConfigs(`[{"id":"primary","provider":"local","endpoint":"` + endpoint +
			`","bucket":"data","credentials":{"basePath":"` + dir + `"},"isDefault":true}]`)
		require.NoError(t, err, endpoint)
		require.Equal(t, "data", cfgs[0].Bucket)
		b, err := storage.Open(t.Context(), cfgs[0])
		require.NoError(t, err)
		require.NoError(t, storage.PutBytes(t.Context(), b, "runs/x/output.json", []byte(`{}`), "application/json"))
		require.FileExists(t, dir+"/runs/x/output.json")
		require.NoDirExists(t, dir+"/data")
	}
	for _, endpoint := range []string{"http://localhost:9000", "s3://bucket", "./storage", "::"} {
		_, err := storage.ParseConfigs(`[{"id":"primary","provider":"local","endpoint":"` + endpoint +
			`","credentials":{"basePath":"` + dir + `"}}]`)
		require.ErrorContains(t, err, `storage backend "primary": endpoint must be empty or a file:// URL for provider local`, endpoint)
	}
	// Other providers keep the http(s) rule.
	_, err := storage.ParseConfigs(`[{"id":"m","provider":"minio","endpoint":"file://","bucket":"b","credentials":{"accessKey":"a","secretKey":"s"}}]`)
	require.ErrorContains(t, err, "endpoint must be an http:// or https:// URL")
}
