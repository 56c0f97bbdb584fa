package storage_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/storage"
	"github.com/pipeweave/pipeweave/core/storage/storagetest"
)

func TestValidateKeyAccepts(t *testing.T) {
	t.Parallel()
	for _, key := range []string{
		"a",
		"input.json",
		"pipelines/01HZX/input.json",
		"runs/r1/assets/report.final.pdf",
		".hidden",
		"..a/a..",
		"a/...",
		"ünïcødé/名前 with spaces",
		strings.Repeat("k", storage.MaxKeyLength),
	} {
		require.NoError(t, storage.ValidateKey(key), "key %q", key)
	}
}

func TestValidateKeyRefuses(t *testing.T) {
	t.Parallel()
	keys := append([]string{
		"/",
		"a/",
		"./a",
		"a/.",
		"..",
		"a/..",
		"a\tb",
		"a\nb",
		"a\x7fb",
		"a\u0085b",
		"\xff",
		strings.Repeat("k", storage.MaxKeyLength+1),
	}, storagetest.InvalidKeys...)
	for _, key := range keys {
		err := storage.ValidateKey(key)
		require.ErrorIs(t, err, storage.ErrInvalidKey, "key %q", key)
	}
}

func TestValidateKeyMessages(t *testing.T) {
	t.Parallel()
	for key, want := range map[string]string{
		"":       "key is empty",
		"/abs":   "leading slash",
		"a//b":   "empty path segment",
		"a/../b": `".." path segment`,
		"a\\b":   "backslash",
		"a\x00b": "NUL",
	} {
		require.ErrorContains(t, storage.ValidateKey(key), want, "key %q", key)
	}
	long := storage.ValidateKey(strings.Repeat("k", 5000))
	require.ErrorContains(t, long, "5000 bytes")
	require.Less(t, len(long.Error()), 300, "long keys are shortened in messages")
}

// stubBackend serves Get from fixed results, to test the helpers' error paths.
type stubBackend struct {
	storage.Backend
	rc  io.ReadCloser
	err error
}

func (s stubBackend) Get(_ context.Context, _ string) (io.ReadCloser, error) { return s.rc, s.err }

type brokenReader struct{ readErr, closeErr error }

func (b brokenReader) Read([]byte) (int, error) { return 0, b.readErr }
func (b brokenReader) Close() error             { return b.closeErr }

func TestReadAllErrors(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	boom := errors.New("boom")

	_, err := storage.ReadAll(ctx, stubBackend{err: boom}, "k")
	require.ErrorIs(t, err, boom)
	require.ErrorContains(t, err, `"k"`)

	_, err = storage.ReadAll(ctx, stubBackend{rc: brokenReader{readErr: boom}}, "k")
	require.ErrorIs(t, err, boom)

	_, err = storage.ReadAll(ctx, stubBackend{rc: brokenReader{readErr: io.EOF, closeErr: boom}}, "k")
	require.ErrorIs(t, err, boom)
	require.ErrorContains(t, err, "close")
}
