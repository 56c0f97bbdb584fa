// Package s3test holds the tests the two S3-protocol drivers (aws-s3 and
// minio) share, run against the emulator in internal/fakes3.
package s3test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/storage"
	"github.com/pipeweave/pipeweave/internal/fakes3"
)

// Bucket is the bucket the S3-protocol tests create on their fake server.
const Bucket = "pipeweave-test"

// Open opens cfg through storage.Open and closes it when the test
// ends.
func Open(t *testing.T, cfg storage.Config) *storage.Backend {
	t.Helper()
	b, err := storage.Open(t.Context(), cfg)
	require.NoError(t, err)
	require.NotNil(t, b)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	return b
}

// RequireNoRefusedRequests checks, when the test and its subtests have
// finished, that the fake server refused no request: every one was signed
// with the configured credentials and region.
func RequireNoRefusedRequests(t *testing.T, srv *fakes3.Server) {
	t.Helper()
	t.Cleanup(func() {
		reqs := srv.Requests()
		require.NotEmpty(t, reqs)
		for _, r := range reqs {
			require.False(t, r.Refused, "request %s %s refused by the signature check", r.Method, r.Path)
			require.True(t, r.Path == "/"+Bucket || strings.HasPrefix(r.Path, "/"+Bucket+"/"),
				"request %s %s is not path-style", r.Method, r.Path)
		}
	})
}

// RequireRefused checks that err reports a refusal by the server, and is
// neither ErrNotFound nor a context error.
func RequireRefused(t *testing.T, err error) {
	t.Helper()
	require.Error(t, err)
	require.NotErrorIs(t, err, storage.ErrNotFound)
	require.NotErrorIs(t, err, context.Canceled)
	require.ErrorContains(t, err, "refused (check the backend's credentials and permissions)")
}

// RequireNoSuchBucket checks that err reports the missing bucket plainly and is
// not ErrNotFound.
func RequireNoSuchBucket(t *testing.T, err error, bucket string) {
	t.Helper()
	require.Error(t, err)
	require.NotErrorIs(t, err, storage.ErrNotFound)
	require.ErrorContains(t, err, fmt.Sprintf("bucket %q does not exist", bucket))
}

// SecretsOf returns the credential values of cfg that must never be printed.
func SecretsOf(cfg storage.Config, fields ...string) []string {
	var out []string
	for _, f := range fields {
		if s, _ := cfg.Credentials[f].(string); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// RequireHidesSecrets checks that no error text, and no way of printing the
// backend, contains one of the secrets.
func RequireHidesSecrets(t *testing.T, secrets []string, b *storage.Backend, errs []error) {
	t.Helper()
	require.NotEmpty(t, secrets)
	texts := []string{
		fmt.Sprint(b), fmt.Sprintf("%+v", b), fmt.Sprintf("%#v", b), b.String(),
	}
	for _, err := range errs {
		require.Error(t, err)
		texts = append(texts, err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err))
	}
	for _, text := range texts {
		for _, secret := range secrets {
			require.NotContains(t, text, secret)
		}
	}
}

// ErrorScenarios returns an error of every kind an S3-protocol backend opened
// with open can produce: invalid key, cancelled context, missing object,
// missing bucket, refused credentials, unreachable endpoint and a failing
// reader.
func ErrorScenarios(t *testing.T, cfg storage.Config, open func(cfg storage.Config) *storage.Backend, wrongSecret func(cfg *storage.Config)) []error {
	t.Helper()
	ctx := t.Context()
	var errs []error
	collect := func(b *storage.Backend, key string) {
		_, err := b.Get(ctx, key)
		errs = append(errs, err)
		_, err = b.Stat(ctx, key)
		errs = append(errs, err)
		errs = append(errs, b.Delete(ctx, key))
		errs = append(errs, b.Put(ctx, key, &failingReader{err: errors.New("broken reader")}, storage.PutOptions{}))
	}
	b := open(cfg)
	collect(b, "../invalid")
	collect(b, "missing.txt")
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err := b.Get(cancelled, "missing.txt")
	errs = append(errs, err)
	errs = append(errs, b.Put(cancelled, "x.txt", strings.NewReader("x"), storage.PutOptions{}))

	noBucket := cfg
	noBucket.Bucket = "no-such-bucket"
	collect(open(noBucket), "missing.txt")

	wrong := cfg
	wrong.Credentials = map[string]any{}
	for k, v := range cfg.Credentials {
		wrong.Credentials[k] = v
	}
	wrongSecret(&wrong)
	bad := open(wrong)
	collect(bad, "missing.txt")
	errs = append(errs, bad.Put(ctx, "x.txt", strings.NewReader("x"), storage.PutOptions{}))

	down := cfg
	down.Endpoint = "http://127.0.0.1:1"
	collect(open(down), "missing.txt")
	return errs
}

// failingReader fails its first Read with err.
type failingReader struct{ err error }

func (r *failingReader) Read([]byte) (int, error) { return 0, r.err }

// Pattern returns n bytes of a pattern that repeats every 251 bytes, so that
// misplaced parts of it show.
func Pattern(n int) []byte {
	unit := make([]byte, 251)
	for i := range unit {
		unit[i] = byte(i)
	}
	return bytes.Repeat(unit, n/len(unit)+1)[:n]
}

// TestPutBodies stores bodies of every kind Put handles specially and reads
// them back.
func TestPutBodies(t *testing.T, b *storage.Backend) {
	ctx := t.Context()
	roundTrip := func(key string, r io.Reader, opts storage.PutOptions, want []byte, wantType string) {
		t.Helper()
		require.NoError(t, b.Put(ctx, key, r, opts))
		got, err := storage.ReadAll(ctx, b, key)
		require.NoError(t, err)
		require.True(t, bytes.Equal(want, got), "%s: content differs (%d bytes, want %d)", key, len(got), len(want))
		attrs, err := b.Stat(ctx, key)
		require.NoError(t, err)
		require.Equal(t, int64(len(want)), attrs.Size)
		require.Equal(t, wantType, attrs.ContentType)
	}

	text := []byte("plain text, read from a buffer\n")
	roundTrip("bodies/buffer", bytes.NewBuffer(text), storage.PutOptions{}, text, "text/plain; charset=utf-8")

	// A reader already partly consumed stores only its rest.
	sr := strings.NewReader("skip:keep")
	_, err := sr.Read(make([]byte, 5))
	require.NoError(t, err)
	roundTrip("bodies/strings.json", sr, storage.PutOptions{}, []byte("keep"), "application/json")

	br := bytes.NewReader([]byte("ignored-{\"a\":1}"))
	_, err = br.Seek(8, io.SeekStart)
	require.NoError(t, err)
	roundTrip("bodies/bytes", br, storage.PutOptions{ContentType: "application/vnd.test+json"}, []byte(`{"a":1}`), "application/vnd.test+json")

	// A regular file, from its current offset.
	fileData := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	path := filepath.Join(t.TempDir(), "body.bin")
	require.NoError(t, os.WriteFile(path, fileData, 0o600))
	f, err := os.Open(path)
	require.NoError(t, err)
	t.Cleanup(func() { _ = f.Close() })
	_, err = f.Seek(16, io.SeekStart)
	require.NoError(t, err)
	roundTrip("bodies/file.txt", f, storage.PutOptions{}, fileData[16:], "text/plain; charset=utf-8")

	// A reader of unknown length larger than the in-memory limit goes through a
	// temporary file.
	big := Pattern(12 << 20)
	pr, pw := io.Pipe()
	go func() {
		_, _ = pw.Write(big)
		_ = pw.Close()
	}()
	roundTrip("bodies/piped.bin", pr, storage.PutOptions{}, big, "application/octet-stream")

	// A small reader of unknown length stays in memory; an empty one is fine.
	roundTrip("bodies/small.jsonl", io.MultiReader(strings.NewReader(`{"a":1}`+"\n")), storage.PutOptions{}, []byte(`{"a":1}`+"\n"), "application/x-ndjson")
	roundTrip("bodies/empty.bin", io.MultiReader(), storage.PutOptions{}, []byte{}, "application/octet-stream")

	// A failing reader larger than the in-memory limit leaves no object.
	err = b.Put(ctx, "bodies/failed", io.MultiReader(bytes.NewReader(big), &failingReader{err: errors.New("late failure")}), storage.PutOptions{})
	require.ErrorContains(t, err, "late failure")
	_, err = b.Stat(ctx, "bodies/failed")
	require.ErrorIs(t, err, storage.ErrNotFound)
}
