package gcs_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/fsouza/fake-gcs-server/fakestorage"
	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/storage"
	_ "github.com/pipeweave/pipeweave/core/storage/gcs"
	"github.com/pipeweave/pipeweave/core/storage/storagetest"
	"github.com/pipeweave/pipeweave/internal/fakegcs"
)

const gcsTestBucket = "pipeweave-test"

// newGCSEnv starts a GCS emulator (see package fakegcs) with the test bucket.
func newGCSEnv(t *testing.T) *fakegcs.Server {
	t.Helper()
	srv := fakegcs.Start(t)
	srv.CreateBucket(t, gcsTestBucket)
	return srv
}

// gcsTestConfig is the STORAGE_BACKENDS entry of a backend on the emulator's
// test bucket.
func gcsTestConfig(env *fakegcs.Server) storage.Config {
	return env.Config("gcs-test", gcsTestBucket)
}

// openGCSBackend opens cfg with storage.Open and closes it at cleanup.
func openGCSBackend(t *testing.T, cfg storage.Config) *storage.Backend {
	t.Helper()
	b, err := storage.Open(t.Context(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	return b
}

// requireNoGCSSecrets fails if msg contains a credential value of env.
func requireNoGCSSecrets(t *testing.T, env *fakegcs.Server, msg string) {
	t.Helper()
	require.NotContains(t, msg, fakegcs.ClientEmail)
	require.NotContains(t, msg, env.PrivateKey)
	require.NotContains(t, msg, "PRIVATE KEY")
	body := strings.Split(strings.TrimSpace(env.PrivateKey), "\n")
	for _, line := range body[1 : len(body)-1] {
		require.NotContains(t, msg, line)
	}
}

func TestConformance(t *testing.T) {
	t.Parallel()
	env := newGCSEnv(t)
	cfg := gcsTestConfig(env)
	t.Run("suite", func(t *testing.T) {
		storagetest.Run(t, func(t *testing.T) *storage.Backend { return openGCSBackend(t, cfg) })
	})

	// Every backend of the suite authenticated through the JWT-bearer
	// exchange, and every API request carried the token it returned.
	assertions, bad := env.Grants()
	require.Empty(t, bad)
	require.NotEmpty(t, assertions)
	for _, a := range assertions {
		require.Equal(t, fakegcs.ClientEmail, a.Claims["iss"])
	}
	require.Zero(t, env.Unauthorized(), "API requests without the access token")
	require.Positive(t, env.Authorized())
}

func TestAuthenticatesAsTheServiceAccount(t *testing.T) {
	t.Parallel()
	env := newGCSEnv(t)
	b := openGCSBackend(t, gcsTestConfig(env))
	ctx := t.Context()

	assertions, _ := env.Grants()
	require.Empty(t, assertions, "opening the backend must not fetch a token")

	require.NoError(t, storage.PutBytes(ctx, b, "runs/r1/input.json", []byte(`{"n":1}`), ""))
	got, err := storage.ReadAll(ctx, b, "runs/r1/input.json")
	require.NoError(t, err)
	require.Equal(t, []byte(`{"n":1}`), got)

	assertions, bad := env.Grants()
	require.Empty(t, bad)
	require.Len(t, assertions, 1, "one token, cached for the following requests")
	claims := assertions[0].Claims
	require.Equal(t, fakegcs.ClientEmail, claims["iss"])
	require.Equal(t, env.TokenURL, claims["aud"])
	require.Contains(t, claims["scope"], "https://www.googleapis.com/auth/devstorage")
	iat, ok := claims["iat"].(float64)
	require.True(t, ok, "iat claim")
	exp, ok := claims["exp"].(float64)
	require.True(t, ok, "exp claim")
	require.Greater(t, exp, iat)
	require.Zero(t, env.Unauthorized())
	require.GreaterOrEqual(t, env.Authorized(), int64(2))

	// The object really is in the emulator's bucket, under the key.
	obj, err := env.Emulator().GetObject(gcsTestBucket, "runs/r1/input.json")
	require.NoError(t, err)
	require.Equal(t, []byte(`{"n":1}`), obj.Content)
	require.Equal(t, "application/json", obj.ContentType)
}

func TestTokenRefusedLeaksNoCredentials(t *testing.T) {
	t.Parallel()
	env := newGCSEnv(t)
	env.SetTokenStatus(http.StatusUnauthorized)
	b := openGCSBackend(t, gcsTestConfig(env))
	ctx := t.Context()

	var errs []error
	errs = append(errs, b.Put(ctx, "runs/r1/output.json", strings.NewReader(`{}`), storage.PutOptions{}))
	_, err := b.Get(ctx, "runs/r1/output.json")
	errs = append(errs, err)
	_, err = b.Stat(ctx, "runs/r1/output.json")
	errs = append(errs, err)
	errs = append(errs, b.Delete(ctx, "runs/r1/output.json"))
	for _, err := range errs {
		require.Error(t, err)
		t.Log(err)
		require.NotErrorIs(t, err, storage.ErrNotFound)
		require.Contains(t, err.Error(), "storage: gcs ")
		require.Contains(t, err.Error(), "[redacted]", "the token endpoint's answer quotes the client email")
		requireNoGCSSecrets(t, env, err.Error())
	}
	assertions, _ := env.Grants()
	require.NotEmpty(t, assertions)
	require.Zero(t, env.Authorized(), "no API request may go out without a token")
	_, err = env.Emulator().GetObject(gcsTestBucket, "runs/r1/output.json")
	require.Error(t, err, "nothing was stored")
}

func TestOpenErrorsLeakNoCredentials(t *testing.T) {
	t.Parallel()
	env := newGCSEnv(t)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	ecDER, err := x509.MarshalPKCS8PrivateKey(ecKey)
	require.NoError(t, err)
	ecPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER}))

	tests := []struct {
		name   string
		change func(cfg *storage.Config)
		want   string
	}{
		{"key not PEM", func(cfg *storage.Config) {
			cfg.Credentials["privateKey"] = "SECRET-not-a-key " + fakegcs.ClientEmail
		}, "credentials.privateKey is not a PEM-encoded private key"},
		{"key garbled", func(cfg *storage.Config) {
			cfg.Credentials["privateKey"] = strings.Replace(env.PrivateKey, "\n", "\nAAAA", 2)
		}, "credentials.privateKey is neither a PKCS#8 nor a PKCS#1 RSA private key"},
		{"key not RSA", func(cfg *storage.Config) {
			cfg.Credentials["privateKey"] = ecPEM
		}, "credentials.privateKey is not an RSA private key"},
		{"tokenUri not a URL", func(cfg *storage.Config) {
			cfg.Credentials["tokenUri"] = "oauth2.example.com/token"
		}, "credentials.tokenUri must be an http:// or https:// URL"},
		{"tokenUri not a string", func(cfg *storage.Config) {
			cfg.Credentials["tokenUri"] = 42
		}, "credentials.tokenUri must be a string"},
		{"endpoint with a path", func(cfg *storage.Config) {
			cfg.Endpoint = env.URL + "/gcs"
		}, "endpoint must be a base URL"},
		{"endpoint with a query", func(cfg *storage.Config) {
			cfg.Endpoint = env.URL + "/?k=v"
		}, "endpoint must not have user information, a query or a fragment"},
		{"missing client email", func(cfg *storage.Config) {
			delete(cfg.Credentials, "clientEmail")
		}, "credentials.clientEmail is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := gcsTestConfig(env)
			tc.change(&cfg)
			b, err := storage.Open(t.Context(), cfg)
			require.Nil(t, b)
			require.ErrorContains(t, err, `storage backend "gcs-test": `)
			require.ErrorContains(t, err, tc.want)
			t.Log(err)
			requireNoGCSSecrets(t, env, err.Error())
			require.NotContains(t, err.Error(), "SECRET")
			require.NotContains(t, err.Error(), ecPEM)
		})
	}

	// The set that fails to open reports no secret either.
	cfg := gcsTestConfig(env)
	cfg.Credentials["privateKey"] = "SECRET-gcs"
	_, err = storage.NewSet(t.Context(), []storage.Config{cfg}, "")
	require.Error(t, err)
	require.NotContains(t, err.Error(), "SECRET")

	// No token was requested: open does not talk to the network.
	assertions, bad := env.Grants()
	require.Empty(t, assertions)
	require.Empty(t, bad)
}

func TestOperationErrorsLeakNoCredentials(t *testing.T) {
	t.Parallel()
	env := newGCSEnv(t)
	b := openGCSBackend(t, gcsTestConfig(env))
	ctx := t.Context()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()

	var errs []error
	_, err := b.Get(ctx, "missing/object.json")
	require.ErrorIs(t, err, storage.ErrNotFound)
	errs = append(errs, err)
	_, err = b.Stat(ctx, "missing/object.json")
	require.ErrorIs(t, err, storage.ErrNotFound)
	errs = append(errs, err)
	err = b.Delete(ctx, "missing/object.json")
	require.ErrorIs(t, err, storage.ErrNotFound)
	errs = append(errs, err)
	err = b.Put(ctx, "a//b", strings.NewReader("x"), storage.PutOptions{})
	require.ErrorIs(t, err, storage.ErrInvalidKey)
	errs = append(errs, err)
	err = b.Put(ctx, ".well-known/acme-challenge/token", strings.NewReader("x"), storage.PutOptions{})
	require.ErrorIs(t, err, storage.ErrInvalidKey, "GCS refuses this prefix")
	errs = append(errs, err)
	err = b.Put(cancelled, "runs/r1/x", strings.NewReader("x"), storage.PutOptions{})
	require.ErrorIs(t, err, context.Canceled)
	errs = append(errs, err)
	err = b.Put(ctx, "runs/r1/x", io.MultiReader(strings.NewReader("partial"), iotestErrReader{}), storage.PutOptions{})
	require.Error(t, err)
	errs = append(errs, err)

	// A bucket that does not exist.
	cfg := gcsTestConfig(env)
	cfg.Bucket = "no-such-bucket"
	other := openGCSBackend(t, cfg)
	errs = append(errs, other.Put(ctx, "runs/r1/x", strings.NewReader("x"), storage.PutOptions{}))
	for _, err := range errs {
		require.Error(t, err)
		t.Log(err)
		requireNoGCSSecrets(t, env, err.Error())
	}
}

// iotestErrReader fails every read.
type iotestErrReader struct{}

func (iotestErrReader) Read([]byte) (int, error) { return 0, errors.New("source broke") }

func TestContentTypes(t *testing.T) {
	t.Parallel()
	env := newGCSEnv(t)
	b := openGCSBackend(t, gcsTestConfig(env))
	ctx := t.Context()

	// The type given at Put wins over the key's extension.
	require.NoError(t, storage.PutBytes(ctx, b, "runs/r1/table.json", []byte("a,b\n1,2\n"), "text/csv"))
	attrs, err := b.Stat(ctx, "runs/r1/table.json")
	require.NoError(t, err)
	require.Equal(t, "text/csv", attrs.ContentType)

	// Without one, it is derived from the key, then from the content.
	require.NoError(t, storage.PutBytes(ctx, b, "runs/r1/page", []byte("<!DOCTYPE html><html></html>"), ""))
	attrs, err = b.Stat(ctx, "runs/r1/page")
	require.NoError(t, err)
	require.Equal(t, "text/html; charset=utf-8", attrs.ContentType)

	// An object stored by another tool without a content type is sniffed.
	env.Emulator().CreateObject(fakestorage.Object{
		ObjectAttrs: fakestorage.ObjectAttrs{BucketName: gcsTestBucket, Name: "external/blob"},
		Content:     []byte("%PDF-1.7 not really"),
	})
	attrs, err = b.Stat(ctx, "external/blob")
	require.NoError(t, err)
	require.Equal(t, int64(len("%PDF-1.7 not really")), attrs.Size)
	require.Equal(t, "application/pdf", attrs.ContentType)
}

func TestEndpointForms(t *testing.T) {
	t.Parallel()
	env := newGCSEnv(t)
	for _, endpoint := range []string{env.URL, env.URL + "/", env.URL + "/storage/v1", env.URL + "/storage/v1/"} {
		cfg := gcsTestConfig(env)
		cfg.Endpoint = endpoint
		b := openGCSBackend(t, cfg)
		key := "endpoints/" + strings.NewReplacer(":", "_", "/", "_").Replace(endpoint)
		require.NoError(t, storage.PutBytes(t.Context(), b, key, []byte(endpoint), ""), endpoint)
		got, err := storage.ReadAll(t.Context(), b, key)
		require.NoError(t, err, endpoint)
		require.Equal(t, []byte(endpoint), got)
	}

	// A private key whose newlines were written as "\n" escapes is accepted.
	cfg := gcsTestConfig(env)
	cfg.Credentials["privateKey"] = strings.ReplaceAll(env.PrivateKey, "\n", `\n`)
	b := openGCSBackend(t, cfg)
	require.NoError(t, storage.PutBytes(t.Context(), b, "escaped-key", []byte("ok"), ""))

	// The default endpoint needs no network to open.
	cfg = gcsTestConfig(env)
	cfg.Endpoint = ""
	openGCSBackend(t, cfg)
	cfg.Endpoint = "https://storage.googleapis.com"
	openGCSBackend(t, cfg)
}

func TestClose(t *testing.T) {
	t.Parallel()
	env := newGCSEnv(t)
	cfg := gcsTestConfig(env)
	set, err := storage.NewSet(t.Context(), []storage.Config{cfg}, "")
	require.NoError(t, err)
	_, b := set.Default()
	require.NoError(t, storage.PutBytes(t.Context(), b, "k", []byte("v"), ""))
	require.NoError(t, set.Close())

	// A closed backend fails instead of panicking, and closing twice is fine.
	_, err = b.Get(t.Context(), "k")
	require.ErrorContains(t, err, "closed")
	err = b.Put(t.Context(), "k", bytes.NewReader(nil), storage.PutOptions{})
	require.ErrorContains(t, err, "closed")
	require.NoError(t, b.Close())
}
