package minio_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/storage"
	"github.com/pipeweave/pipeweave/core/storage/internal/s3test"
	_ "github.com/pipeweave/pipeweave/core/storage/minio"
	"github.com/pipeweave/pipeweave/core/storage/storagetest"
	"github.com/pipeweave/pipeweave/internal/fakes3"
)

// minioTestConfig is a minio config for srv's credentials and bucket, without
// a region (minio-go then asks the server for the bucket's location).
func minioTestConfig(srv *fakes3.Server, bucket string) storage.Config {
	return storage.Config{
		ID:          "minio-test",
		Provider:    storage.ProviderMinIO,
		Endpoint:    srv.URL,
		Bucket:      bucket,
		Credentials: map[string]any{"accessKey": srv.AccessKey, "secretKey": srv.SecretKey},
	}
}

// isLocationLookup reports whether r is a GetBucketLocation request.
func isLocationLookup(r fakes3.Request) bool { return r.Query.Has("location") }

func TestConformance(t *testing.T) {
	t.Parallel()
	t.Run("region configured", func(t *testing.T) {
		t.Parallel()
		srv := fakes3.Start(t, fakes3.Options{Region: "eu-central-1"})
		srv.CreateBucket(t, s3test.Bucket)
		s3test.RequireNoRefusedRequests(t, srv)
		t.Cleanup(func() {
			require.Zero(t, srv.Count(isLocationLookup), "a configured region needs no location lookup")
		})
		storagetest.Run(t, func(t *testing.T) *storage.Backend {
			cfg := minioTestConfig(srv, s3test.Bucket)
			cfg.Region = srv.Region
			return s3test.Open(t, cfg)
		})
	})
	t.Run("region looked up", func(t *testing.T) {
		t.Parallel()
		// gofakes3 reports the empty location constraint, which means us-east-1.
		srv := fakes3.Start(t, fakes3.Options{Region: "us-east-1"})
		srv.CreateBucket(t, s3test.Bucket)
		s3test.RequireNoRefusedRequests(t, srv)
		storagetest.Run(t, func(t *testing.T) *storage.Backend {
			return s3test.Open(t, minioTestConfig(srv, s3test.Bucket))
		})
	})
}

func TestWrongCredentials(t *testing.T) {
	t.Parallel()
	srv := fakes3.Start(t, fakes3.Options{})
	srv.CreateBucket(t, s3test.Bucket)
	good := s3test.Open(t, minioTestConfig(srv, s3test.Bucket))
	require.NoError(t, storage.PutBytes(t.Context(), good, "exists.txt", []byte("x"), ""))

	tests := []struct {
		name   string
		change func(cfg *storage.Config)
		code   string
	}{
		{"wrong secret", func(cfg *storage.Config) { cfg.Credentials["secretKey"] = "not-the-secret" }, "SignatureDoesNotMatch"},
		{"unknown access key", func(cfg *storage.Config) { cfg.Credentials["accessKey"] = "unknown" }, "InvalidAccessKeyId"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := minioTestConfig(srv, s3test.Bucket)
			cfg.Region = srv.Region
			tc.change(&cfg)
			b := s3test.Open(t, cfg)
			ctx := t.Context()

			err := b.Put(ctx, "new.txt", strings.NewReader("x"), storage.PutOptions{})
			s3test.RequireRefused(t, err)
			var resp minio.ErrorResponse
			require.ErrorAs(t, err, &resp)
			require.Equal(t, tc.code, resp.Code)

			_, err = b.Get(ctx, "exists.txt")
			s3test.RequireRefused(t, err)
			require.ErrorAs(t, err, &resp)
			require.Equal(t, tc.code, resp.Code)
			// HEAD responses carry no error body: minio-go reports AccessDenied.
			_, err = b.Stat(ctx, "exists.txt")
			s3test.RequireRefused(t, err)
			err = b.Delete(ctx, "exists.txt")
			s3test.RequireRefused(t, err)
		})
	}
	t.Run("without region", func(t *testing.T) {
		t.Parallel()
		// The location lookup itself is refused.
		cfg := minioTestConfig(srv, s3test.Bucket)
		cfg.Credentials["secretKey"] = "not-the-secret"
		_, err := s3test.Open(t, cfg).Get(t.Context(), "exists.txt")
		s3test.RequireRefused(t, err)
	})
	t.Cleanup(func() {
		data, err := storage.ReadAll(context.Background(), good, "exists.txt")
		require.NoError(t, err, "a refused Delete must not remove the object")
		require.Equal(t, []byte("x"), data)
	})
}

func TestMissingBucket(t *testing.T) {
	t.Parallel()
	srv := fakes3.Start(t, fakes3.Options{})
	srv.CreateBucket(t, s3test.Bucket)
	for _, region := range []string{"", srv.Region} {
		t.Run(fmt.Sprintf("region=%q", region), func(t *testing.T) {
			t.Parallel()
			cfg := minioTestConfig(srv, "no-such-bucket")
			cfg.Region = region
			b := s3test.Open(t, cfg)
			ctx := t.Context()

			err := b.Put(ctx, "a.txt", strings.NewReader("x"), storage.PutOptions{})
			s3test.RequireNoSuchBucket(t, err, "no-such-bucket")
			_, err = b.Get(ctx, "a.txt")
			s3test.RequireNoSuchBucket(t, err, "no-such-bucket")
			_, err = b.Stat(ctx, "a.txt")
			s3test.RequireNoSuchBucket(t, err, "no-such-bucket")
			err = b.Delete(ctx, "a.txt")
			s3test.RequireNoSuchBucket(t, err, "no-such-bucket")
		})
	}
}

func TestErrorsHideCredentials(t *testing.T) {
	t.Parallel()
	srv := fakes3.Start(t, fakes3.Options{AccessKey: "minio-hide-test", SecretKey: "minio-secret-never-printed-Kp4"})
	srv.CreateBucket(t, s3test.Bucket)
	cfg := minioTestConfig(srv, s3test.Bucket)
	open := func(cfg storage.Config) *storage.Backend { return s3test.Open(t, cfg) }
	errs := s3test.ErrorScenarios(t, cfg, open, func(cfg *storage.Config) {
		cfg.Credentials["secretKey"] = "wrong-" + srv.SecretKey
	})
	s3test.RequireHidesSecrets(t, append(s3test.SecretsOf(cfg, "secretKey"), "wrong-"+srv.SecretKey), open(cfg), errs)
}

func TestOpenRefusesBadEndpoints(t *testing.T) {
	t.Parallel()
	for endpoint, want := range map[string]string{
		"http://user:endpoint-password@localhost:9000": "user information",
		"http://localhost:9000/some/path":              "must not have a path",
		"http://localhost:9000/?x=1":                   "query",
	} {
		_, err := storage.Open(t.Context(), storage.Config{
			ID: "m", Provider: storage.ProviderMinIO, Endpoint: endpoint, Bucket: "b",
			Credentials: map[string]any{"accessKey": "minioadmin", "secretKey": "open-secret-value"},
		})
		require.ErrorContains(t, err, want, "endpoint %q", endpoint)
		require.NotContains(t, err.Error(), "endpoint-password")
		require.NotContains(t, err.Error(), "open-secret-value")
	}
	// Trailing slash and https are fine, and need no network.
	for _, endpoint := range []string{"http://localhost:9000/", "https://minio.example.com"} {
		_, err := storage.Open(t.Context(), storage.Config{
			ID: "m", Provider: storage.ProviderMinIO, Endpoint: endpoint, Bucket: "b",
			Credentials: map[string]any{"accessKey": "minioadmin", "secretKey": "open-secret-value"},
		})
		require.NoError(t, err, "endpoint %q", endpoint)
	}
}

func TestPutBodies(t *testing.T) {
	t.Parallel()
	srv := fakes3.Start(t, fakes3.Options{})
	srv.CreateBucket(t, s3test.Bucket)
	cfg := minioTestConfig(srv, s3test.Bucket)
	cfg.Region = srv.Region
	b := s3test.Open(t, cfg)
	s3test.TestPutBodies(t, b)
	if testing.Short() {
		t.Log("-short: not uploading the 17 MiB multipart object")
		return
	}

	// Above 16 MiB minio-go uploads in parts; the object appears whole.
	big := s3test.Pattern(17 << 20)
	require.NoError(t, storage.PutBytes(t.Context(), b, "bodies/multipart.bin", big, ""))
	got, err := storage.ReadAll(t.Context(), b, "bodies/multipart.bin")
	require.NoError(t, err)
	require.True(t, bytes.Equal(big, got), "multipart object differs")
	require.Positive(t, srv.Count(func(r fakes3.Request) bool { return r.Query.Has("uploadId") }), "no multipart request seen")
}
