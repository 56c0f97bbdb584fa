package s3_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/storage"
	"github.com/pipeweave/pipeweave/core/storage/internal/s3test"
	_ "github.com/pipeweave/pipeweave/core/storage/s3"
	"github.com/pipeweave/pipeweave/core/storage/storagetest"
	"github.com/pipeweave/pipeweave/internal/fakes3"
)

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

func TestConformance(t *testing.T) {
	t.Parallel()
	srv := fakes3.Start(t, fakes3.Options{Region: "eu-west-3", SessionToken: "fake-session-token-value"})
	srv.CreateBucket(t, s3test.Bucket)
	s3test.RequireNoRefusedRequests(t, srv)
	storagetest.Run(t, func(t *testing.T) *storage.Backend {
		return s3test.Open(t, awsS3TestConfig(srv, s3test.Bucket))
	})
}

func TestWrongCredentials(t *testing.T) {
	t.Parallel()
	srv := fakes3.Start(t, fakes3.Options{})
	srv.CreateBucket(t, s3test.Bucket)
	good := s3test.Open(t, awsS3TestConfig(srv, s3test.Bucket))
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
			cfg := awsS3TestConfig(srv, s3test.Bucket)
			tc.change(&cfg)
			b := s3test.Open(t, cfg)
			ctx := t.Context()

			var apiErr smithy.APIError
			err := b.Put(ctx, "new.txt", strings.NewReader("x"), storage.PutOptions{})
			s3test.RequireRefused(t, err)
			require.ErrorAs(t, err, &apiErr)
			require.Equal(t, tc.code, apiErr.ErrorCode())

			_, err = b.Get(ctx, "exists.txt")
			s3test.RequireRefused(t, err)
			require.ErrorAs(t, err, &apiErr)
			require.Equal(t, tc.code, apiErr.ErrorCode())
			// HEAD responses carry no error body: only the status is known.
			_, err = b.Stat(ctx, "exists.txt")
			s3test.RequireRefused(t, err)
			require.ErrorContains(t, err, "403")
			err = b.Delete(ctx, "exists.txt")
			s3test.RequireRefused(t, err)
			require.ErrorContains(t, err, "403")
		})
	}
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
	b := s3test.Open(t, awsS3TestConfig(srv, "no-such-bucket"))
	ctx := t.Context()

	err := b.Put(ctx, "a.txt", strings.NewReader("x"), storage.PutOptions{})
	s3test.RequireNoSuchBucket(t, err, "no-such-bucket")
	_, err = b.Get(ctx, "a.txt")
	s3test.RequireNoSuchBucket(t, err, "no-such-bucket")
	_, err = b.Stat(ctx, "a.txt")
	s3test.RequireNoSuchBucket(t, err, "no-such-bucket")
	err = b.Delete(ctx, "a.txt")
	s3test.RequireNoSuchBucket(t, err, "no-such-bucket")
}

func TestErrorsHideCredentials(t *testing.T) {
	t.Parallel()
	srv := fakes3.Start(t, fakes3.Options{
		AccessKey:    "AKIATESTHIDE",
		SecretKey:    "s3-secret-never-printed-Zq8",
		SessionToken: "s3-session-token-never-printed-Wv2",
	})
	srv.CreateBucket(t, s3test.Bucket)
	cfg := awsS3TestConfig(srv, s3test.Bucket)
	open := func(cfg storage.Config) *storage.Backend { return s3test.Open(t, cfg) }
	errs := s3test.ErrorScenarios(t, cfg, open, func(cfg *storage.Config) {
		cfg.Credentials["secretAccessKey"] = "wrong-" + srv.SecretKey
	})
	s3test.RequireHidesSecrets(t, append(s3test.SecretsOf(cfg, "secretAccessKey", "sessionToken"), "wrong-"+srv.SecretKey), open(cfg), errs)
}

func TestOpenRefusesEndpointUserInfo(t *testing.T) {
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

func TestOpenAWSDefaultEndpoint(t *testing.T) {
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

func TestPutBodies(t *testing.T) {
	t.Parallel()
	srv := fakes3.Start(t, fakes3.Options{})
	srv.CreateBucket(t, s3test.Bucket)
	s3test.TestPutBodies(t, s3test.Open(t, awsS3TestConfig(srv, s3test.Bucket)))
}
