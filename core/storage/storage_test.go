package storage_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/storage"
	"github.com/pipeweave/pipeweave/core/storage/driver"
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

// stubDriver serves Get from fixed results and fails every other call with err.
type stubDriver struct {
	rc       io.ReadCloser
	err      error
	notFound bool // IsNotFound's answer
	problem  string
	calls    int
}

func (s *stubDriver) KeyProblem(string) string { return s.problem }
func (s *stubDriver) Get(context.Context, string) (io.ReadCloser, error) {
	s.calls++
	return s.rc, s.err
}
func (s *stubDriver) Put(context.Context, string, io.Reader, string) error {
	s.calls++
	return s.err
}
func (s *stubDriver) Stat(context.Context, string) (driver.Attributes, error) {
	s.calls++
	return driver.Attributes{}, s.err
}
func (s *stubDriver) Delete(context.Context, string) error {
	s.calls++
	return s.err
}
func (s *stubDriver) IsNotFound(error) bool { return s.notFound }
func (s *stubDriver) Close() error          { return nil }

type brokenReader struct{ readErr, closeErr error }

func (b brokenReader) Read([]byte) (int, error) { return 0, b.readErr }
func (b brokenReader) Close() error             { return b.closeErr }

func TestReadAllErrors(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	boom := errors.New("boom")
	stub := func(d *stubDriver) *storage.Backend { return storage.NewBackend("stub", d) }

	_, err := storage.ReadAll(ctx, stub(&stubDriver{err: boom}), "k")
	require.ErrorIs(t, err, boom)
	require.ErrorContains(t, err, `"k"`)

	_, err = storage.ReadAll(ctx, stub(&stubDriver{rc: brokenReader{readErr: boom}}), "k")
	require.ErrorIs(t, err, boom)

	_, err = storage.ReadAll(ctx, stub(&stubDriver{rc: brokenReader{readErr: io.EOF, closeErr: boom}}), "k")
	require.ErrorIs(t, err, boom)
	require.ErrorContains(t, err, "close")
}

// The portable type checks keys, contexts and closing before the driver sees a call, and
// maps the driver's errors, the same way for every provider.
func TestBackendChecksBeforeTheDriver(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	boom := errors.New("boom")
	calls := func(b *storage.Backend) []error {
		_, getErr := b.Get(ctx, "k")
		_, statErr := b.Stat(ctx, "k")
		return []error{getErr, b.Put(ctx, "k", strings.NewReader("x"), storage.PutOptions{}), statErr, b.Delete(ctx, "k")}
	}

	d := &stubDriver{err: boom, notFound: true}
	for _, err := range calls(storage.NewBackend("stub", d)) {
		require.ErrorIs(t, err, storage.ErrNotFound)
		require.ErrorIs(t, err, boom)
		require.ErrorContains(t, err, `storage: stub `)
	}
	require.Equal(t, 4, d.calls)

	d = &stubDriver{err: boom}
	for _, err := range calls(storage.NewBackend("stub", d)) {
		require.ErrorIs(t, err, boom)
		require.NotErrorIs(t, err, storage.ErrNotFound)
	}

	d = &stubDriver{problem: "reserved by stub"}
	for _, err := range calls(storage.NewBackend("stub", d)) {
		require.ErrorIs(t, err, storage.ErrInvalidKey)
		require.ErrorContains(t, err, "reserved by stub")
	}
	require.Zero(t, d.calls, "a refused key must not reach the driver")

	d = &stubDriver{}
	b := storage.NewBackend("stub", d)
	for _, key := range storagetest.InvalidKeys {
		_, err := b.Get(ctx, key)
		require.ErrorIs(t, err, storage.ErrInvalidKey)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err := b.Get(cancelled, "k")
	require.ErrorIs(t, err, context.Canceled)
	require.NoError(t, b.Close())
	require.NoError(t, b.Close(), "closing twice is fine")
	for _, err := range calls(b) {
		require.ErrorIs(t, err, storage.ErrClosed)
	}
	require.Zero(t, d.calls)
}

// A driver error seen after the context ended wraps the context's error too.
func TestBackendAddsTheContextError(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	d := &cancellingDriver{stubDriver: stubDriver{err: errors.New("connection reset")}, cancel: cancel}
	_, err := storage.NewBackend("stub", d).Get(ctx, "k")
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorContains(t, err, "connection reset")
}

// cancellingDriver cancels the caller's context during Get, as a dropped request would.
type cancellingDriver struct {
	stubDriver
	cancel context.CancelFunc
}

func (c *cancellingDriver) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	c.cancel()
	return c.stubDriver.Get(ctx, key)
}

// Readers from Get stop once the context ends.
func TestGetReaderHonoursCancellation(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	b := storage.NewBackend("stub", &stubDriver{rc: io.NopCloser(strings.NewReader("data"))})
	rc, err := b.Get(ctx, "k")
	require.NoError(t, err)
	cancel()
	_, err = io.ReadAll(rc)
	require.ErrorIs(t, err, context.Canceled)
	require.NoError(t, rc.Close())
}

func TestPutsCountsStoredObjects(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	before := storage.Puts()
	require.NoError(t, storage.NewBackend("stub", &stubDriver{}).Put(ctx, "k", strings.NewReader("x"), storage.PutOptions{}))
	require.Greater(t, storage.Puts(), before, "a stored object is counted")
}
