package storage_test

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

	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/storage"
	"github.com/pipeweave/pipeweave/core/storage/storagetest"
	"github.com/pipeweave/pipeweave/internal/fakes3"
)

// s3TestBucket is the bucket the S3-protocol tests create on their fake server.
const s3TestBucket = "pipeweave-test"

// awsS3TestConfig is an aws-s3 config for srv's credentials, region and bucket.
func awsS3TestConfig(srv *fakes3.Server, bucket string) storage.Config {
	creds := map[string]any{"accessKeyId": srv.AccessKey, "secretAccessKey": srv.SecretKey}
	if srv.SessionToken != "" {
		creds["sessionToken"] = srv.SessionToken
	}
	return storage.Config{
		ID:          "s3-test",
		Provider:    storage.ProviderAWSS3,
		Endpoint:    srv.URL,
		Bucket:      bucket,
		Region:      srv.Region,
		Credentials: creds,
	}
}

// openS3Protocol opens cfg through storage.Open and closes it when the test
// ends.
func openS3Protocol(t *testing.T, cfg storage.Config) storage.Backend {
	t.Helper()
	b, err := storage.Open(t.Context(), cfg)
	require.NoError(t, err)
	require.NotNil(t, b)
	if c, ok := b.(io.Closer); ok {
		t.Cleanup(func() { require.NoError(t, c.Close()) })
	}
	return b
}

// requireNoRefusedRequests checks, when the test and its subtests have
// finished, that the fake server refused no request: every one was signed
// with the configured credentials and region.
func requireNoRefusedRequests(t *testing.T, srv *fakes3.Server) {
	t.Helper()
	t.Cleanup(func() {
		reqs := srv.Requests()
		require.NotEmpty(t, reqs)
		for _, r := range reqs {
			require.False(t, r.Refused, "request %s %s refused by the signature check", r.Method, r.Path)
			require.True(t, r.Path == "/"+s3TestBucket || strings.HasPrefix(r.Path, "/"+s3TestBucket+"/"),
				"request %s %s is not path-style", r.Method, r.Path)
		}
	})
}

func TestS3Conformance(t *testing.T) {
	t.Parallel()
	srv := fakes3.Start(t, fakes3.Options{Region: "eu-west-3", SessionToken: "fake-session-token-value"})
	srv.CreateBucket(t, s3TestBucket)
	requireNoRefusedRequests(t, srv)
	storagetest.Run(t, func(t *testing.T) storage.Backend {
		return openS3Protocol(t, awsS3TestConfig(srv, s3TestBucket))
	})
}

// requireS3Refused checks that err reports a refusal by the server, and is
// neither ErrNotFound nor a context error.
func requireS3Refused(t *testing.T, err error) {
	t.Helper()
	require.Error(t, err)
	require.NotErrorIs(t, err, storage.ErrNotFound)
	require.NotErrorIs(t, err, context.Canceled)
	require.ErrorContains(t, err, "refused (check the backend's credentials and permissions)")
}

func TestS3WrongCredentials(t *testing.T) {
	t.Parallel()
	srv := fakes3.Start(t, fakes3.Options{})
	srv.CreateBucket(t, s3TestBucket)
	good := openS3Protocol(t, awsS3TestConfig(srv, s3TestBucket))
	require.NoError(t, storage.PutBytes(t.Context(), good, "exists.txt", []byte("x"), ""))

	tests := []struct {
		name   string
		change func(cfg *storage.Config)
		code   string
	}{
		{"wrong secret", func(cfg *storage.Config) { cfg.Credentials["secretAccessKey"] = "not-the-secret" }, "SignatureDoesNotMatch"},
		{"unknown access key", func(cfg *storage.Config) { cfg.Credentials["accessKeyId"] = "AKIAUNKNOWN" }, "InvalidAccessKeyId"},
		{"wrong region", func(cfg *storage.Config) { cfg.Region = "ap-south-1" }, "AuthorizationHeaderMalformed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := awsS3TestConfig(srv, s3TestBucket)
			tc.change(&cfg)
			b := openS3Protocol(t, cfg)
			ctx := t.Context()

			var apiErr smithy.APIError
			err := b.Put(ctx, "new.txt", strings.NewReader("x"), storage.PutOptions{})
			requireS3Refused(t, err)
			require.ErrorAs(t, err, &apiErr)
			require.Equal(t, tc.code, apiErr.ErrorCode())

			_, err = b.Get(ctx, "exists.txt")
			requireS3Refused(t, err)
			require.ErrorAs(t, err, &apiErr)
			require.Equal(t, tc.code, apiErr.ErrorCode())
			// HEAD responses carry no error body: only the status is known.
			_, err = b.Stat(ctx, "exists.txt")
			requireS3Refused(t, err)
			require.ErrorContains(t, err, "403")
			err = b.Delete(ctx, "exists.txt")
			requireS3Refused(t, err)
			require.ErrorContains(t, err, "403")
		})
	}
	t.Cleanup(func() {
		data, err := storage.ReadAll(context.Background(), good, "exists.txt")
		require.NoError(t, err, "a refused Delete must not remove the object")
		require.Equal(t, []byte("x"), data)
	})
}

// requireS3NoSuchBucket checks that err reports the missing bucket plainly and is
// not ErrNotFound.
func requireS3NoSuchBucket(t *testing.T, err error, bucket string) {
	t.Helper()
	require.Error(t, err)
	require.NotErrorIs(t, err, storage.ErrNotFound)
	require.ErrorContains(t, err, fmt.Sprintf("bucket %q does not exist", bucket))
}

func TestS3MissingBucket(t *testing.T) {
	t.Parallel()
	srv := fakes3.Start(t, fakes3.Options{})
	srv.CreateBucket(t, s3TestBucket)
	b := openS3Protocol(t, awsS3TestConfig(srv, "no-such-bucket"))
	ctx := t.Context()

	err := b.Put(ctx, "a.txt", strings.NewReader("x"), storage.PutOptions{})
	requireS3NoSuchBucket(t, err, "no-such-bucket")
	_, err = b.Get(ctx, "a.txt")
	requireS3NoSuchBucket(t, err, "no-such-bucket")
	_, err = b.Stat(ctx, "a.txt")
	requireS3NoSuchBucket(t, err, "no-such-bucket")
	err = b.Delete(ctx, "a.txt")
	requireS3NoSuchBucket(t, err, "no-such-bucket")
}

// s3SecretsOf returns the credential values of cfg that must never be printed.
func s3SecretsOf(cfg storage.Config, fields ...string) []string {
	var out []string
	for _, f := range fields {
		if s, _ := cfg.Credentials[f].(string); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// requireS3HidesSecrets checks that no error text, and no way of printing the
// backend, contains one of the secrets.
func requireS3HidesSecrets(t *testing.T, secrets []string, b storage.Backend, errs []error) {
	t.Helper()
	require.NotEmpty(t, secrets)
	texts := []string{
		fmt.Sprint(b), fmt.Sprintf("%+v", b), fmt.Sprintf("%#v", b), fmt.Sprintf("%s", b),
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

// s3ErrorScenarios returns an error of every kind an S3-protocol backend opened
// with open can produce: invalid key, cancelled context, missing object,
// missing bucket, refused credentials, unreachable endpoint and a failing
// reader.
func s3ErrorScenarios(t *testing.T, cfg storage.Config, open func(cfg storage.Config) storage.Backend, wrongSecret func(cfg *storage.Config)) []error {
	t.Helper()
	ctx := t.Context()
	var errs []error
	collect := func(b storage.Backend, key string) {
		_, err := b.Get(ctx, key)
		errs = append(errs, err)
		_, err = b.Stat(ctx, key)
		errs = append(errs, err)
		errs = append(errs, b.Delete(ctx, key))
		errs = append(errs, b.Put(ctx, key, &s3FailingReader{err: errors.New("broken reader")}, storage.PutOptions{}))
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

// s3FailingReader fails its first Read with err.
type s3FailingReader struct{ err error }

func (r *s3FailingReader) Read([]byte) (int, error) { return 0, r.err }

func TestS3ErrorsHideCredentials(t *testing.T) {
	t.Parallel()
	srv := fakes3.Start(t, fakes3.Options{
		AccessKey:    "AKIATESTHIDE",
		SecretKey:    "s3-secret-never-printed-Zq8",
		SessionToken: "s3-session-token-never-printed-Wv2",
	})
	srv.CreateBucket(t, s3TestBucket)
	cfg := awsS3TestConfig(srv, s3TestBucket)
	open := func(cfg storage.Config) storage.Backend { return openS3Protocol(t, cfg) }
	errs := s3ErrorScenarios(t, cfg, open, func(cfg *storage.Config) {
		cfg.Credentials["secretAccessKey"] = "wrong-" + srv.SecretKey
	})
	requireS3HidesSecrets(t, append(s3SecretsOf(cfg, "secretAccessKey", "sessionToken"), "wrong-"+srv.SecretKey), open(cfg), errs)
}

func TestS3OpenRefusesEndpointUserInfo(t *testing.T) {
	t.Parallel()
	cfg := storage.Config{
		ID: "s3", Provider: storage.ProviderAWSS3, Bucket: "b", Region: "us-east-1",
		Endpoint:    "https://user:endpoint-password@s3.example.com",
		Credentials: map[string]any{"accessKeyId": "AKIA", "secretAccessKey": "open-secret-value"},
	}
	_, err := storage.Open(t.Context(), cfg)
	require.ErrorContains(t, err, "user information")
	require.NotContains(t, err.Error(), "endpoint-password")
	require.NotContains(t, err.Error(), "open-secret-value")
}

func TestS3OpenAWSDefaultEndpoint(t *testing.T) {
	t.Parallel()
	// The README's example: opening needs no network, so this works offline.
	for _, endpoint := range []string{"", "https://s3.amazonaws.com", "https://s3.eu-west-1.amazonaws.com"} {
		b, err := storage.Open(t.Context(), storage.Config{
			ID: "primary-s3", Provider: storage.ProviderAWSS3, Endpoint: endpoint, Bucket: "pipeweave-prod", Region: "us-east-1",
			Credentials: map[string]any{"accessKeyId": "AKIAEXAMPLE", "secretAccessKey": "s3-secret-value"},
		})
		require.NoError(t, err, "endpoint %q", endpoint)
		require.NotContains(t, fmt.Sprintf("%+v", b), "s3-secret-value")
	}
}

// s3Pattern returns n bytes of a pattern that repeats every 251 bytes, so that
// misplaced parts of it show.
func s3Pattern(n int) []byte {
	unit := make([]byte, 251)
	for i := range unit {
		unit[i] = byte(i)
	}
	return bytes.Repeat(unit, n/len(unit)+1)[:n]
}

// testS3PutBodies stores bodies of every kind Put handles specially and reads
// them back.
func testS3PutBodies(t *testing.T, b storage.Backend) {
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
	big := s3Pattern(12 << 20)
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
	err = b.Put(ctx, "bodies/failed", io.MultiReader(bytes.NewReader(big), &s3FailingReader{err: errors.New("late failure")}), storage.PutOptions{})
	require.ErrorContains(t, err, "late failure")
	_, err = b.Stat(ctx, "bodies/failed")
	require.ErrorIs(t, err, storage.ErrNotFound)
}

func TestS3PutBodies(t *testing.T) {
	t.Parallel()
	srv := fakes3.Start(t, fakes3.Options{})
	srv.CreateBucket(t, s3TestBucket)
	testS3PutBodies(t, openS3Protocol(t, awsS3TestConfig(srv, s3TestBucket)))
}
