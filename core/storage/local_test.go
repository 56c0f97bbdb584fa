package storage_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/storage"
	"github.com/pipeweave/pipeweave/core/storage/storagetest"
)

func TestLocalConformance(t *testing.T) {
	t.Parallel()
	storagetest.Run(t, func(t *testing.T) storage.Backend {
		b, err := storage.NewLocal(t.TempDir())
		require.NoError(t, err)
		return b
	})
}

func TestLocalConformanceThroughOpen(t *testing.T) {
	t.Parallel()
	storagetest.Run(t, func(t *testing.T) storage.Backend {
		b, err := storage.Open(t.Context(), storage.Config{
			ID:          "local",
			Provider:    storage.ProviderLocal,
			Credentials: map[string]any{"basePath": t.TempDir()},
		})
		require.NoError(t, err)
		return b
	})
}

func TestNewLocalCreatesDirectory(t *testing.T) {
	t.Parallel()
	base := filepath.Join(t.TempDir(), "nested", "storage")
	b, err := storage.NewLocal(base)
	require.NoError(t, err)
	require.Equal(t, base, b.BasePath())
	fi, err := os.Stat(base)
	require.NoError(t, err)
	require.True(t, fi.IsDir())
}

func TestNewLocalRefusesBadBase(t *testing.T) {
	t.Parallel()
	_, err := storage.NewLocal("")
	require.ErrorContains(t, err, "base path is empty")

	file := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(file, []byte("x"), 0o644))
	_, err = storage.NewLocal(file)
	require.Error(t, err)
}

func TestLocalRelativeBaseIsMadeAbsolute(t *testing.T) {
	t.Parallel()
	b, err := storage.NewLocal(filepath.Join(t.TempDir(), ".", "x", "..", "y"))
	require.NoError(t, err)
	require.True(t, filepath.IsAbs(b.BasePath()))
	require.Equal(t, "y", filepath.Base(b.BasePath()))
}

func TestLocalLayoutAndModes(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	b, err := storage.NewLocal(base)
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

func TestLocalLeavesNoTemporaryFiles(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	b, err := storage.NewLocal(base)
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

func TestLocalDirectoriesAreNotObjects(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	b, err := storage.NewLocal(base)
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

func TestLocalRefusesReservedTempNames(t *testing.T) {
	t.Parallel()
	b, err := storage.NewLocal(t.TempDir())
	require.NoError(t, err)
	err = storage.PutBytes(t.Context(), b, "runs/.pipeweave-tmp-123", []byte("x"), "")
	require.ErrorIs(t, err, storage.ErrInvalidKey)
	_, err = b.Get(t.Context(), ".pipeweave-tmp-1/x")
	require.ErrorIs(t, err, storage.ErrInvalidKey)
}

func TestLocalStatSniffsContentWithoutKnownExtension(t *testing.T) {
	t.Parallel()
	b, err := storage.NewLocal(t.TempDir())
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
