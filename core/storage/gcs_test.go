package storage_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/fsouza/fake-gcs-server/fakestorage"
	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/storage"
	"github.com/pipeweave/pipeweave/core/storage/storagetest"
)

const (
	gcsTestBucket      = "pipeweave-test"
	gcsTestProject     = "pipeweave-test-project"
	gcsTestClientEmail = "pipeweave-tests@pipeweave-test-project.iam.gserviceaccount.com"
	gcsTestToken       = "test-token"
	jwtBearerGrant     = "urn:ietf:params:oauth:grant-type:jwt-bearer"
)

// gcsEnv is a GCS emulator (fake-gcs-server) behind a gate that demands the
// access token, and the OAuth token endpoint that issues it, all on loopback.
type gcsEnv struct {
	fake       *fakestorage.Server
	gateURL    string // the endpoint backends use (the fake, behind the gate)
	tokenURL   string
	privateKey string // PEM, PKCS#8
	publicKey  *rsa.PublicKey

	// tokenStatus, when not 200, is the status the token endpoint answers
	// with (its body then quotes the client email, as some servers do).
	tokenStatus atomic.Int32

	mu         sync.Mutex
	assertions []jwtAssertion // every grant the token endpoint accepted
	badGrants  []string       // why the token endpoint refused a request

	authorized   atomic.Int64 // API requests carrying the access token
	unauthorized atomic.Int64 // API requests without it
}

// jwtAssertion is the decoded JWT-bearer assertion of one token request.
type jwtAssertion struct {
	Header map[string]any
	Claims map[string]any
}

func newGCSEnv(t *testing.T) *gcsEnv {
	t.Helper()
	env := &gcsEnv{}
	env.tokenStatus.Store(http.StatusOK)

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	der, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	env.privateKey = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	env.publicKey = &key.PublicKey

	fake, err := fakestorage.NewServerWithOptions(fakestorage.Options{
		Scheme:     "http",
		Host:       "127.0.0.1",
		Port:       0, // any free port
		NoListener: false,
	})
	require.NoError(t, err)
	t.Cleanup(fake.Stop)
	fake.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: gcsTestBucket})
	env.fake = fake

	target, err := url.Parse(fake.URL())
	require.NoError(t, err)
	proxy := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(target) }}
	gate := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+gcsTestToken {
			env.unauthorized.Add(1)
			http.Error(w, `{"error":{"code":401,"message":"missing or wrong access token"}}`, http.StatusUnauthorized)
			return
		}
		env.authorized.Add(1)
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(gate.Close)
	env.gateURL = gate.URL

	tokens := httptest.NewServer(http.HandlerFunc(env.serveToken))
	t.Cleanup(tokens.Close)
	env.tokenURL = tokens.URL + "/token"
	return env
}

// serveToken is the OAuth token endpoint: it accepts the JWT-bearer grant
// with an assertion signed by the test key.
func (env *gcsEnv) serveToken(w http.ResponseWriter, r *http.Request) {
	refuse := func(reason string) {
		env.mu.Lock()
		env.badGrants = append(env.badGrants, reason)
		env.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"error":"invalid_grant","error_description":"`+reason+`"}`)
	}
	if r.Method != http.MethodPost || r.URL.Path != "/token" {
		refuse("want POST /token, got " + r.Method + " " + r.URL.Path)
		return
	}
	if err := r.ParseForm(); err != nil {
		refuse("bad form")
		return
	}
	if got := r.PostForm.Get("grant_type"); got != jwtBearerGrant {
		refuse("grant_type is " + got)
		return
	}
	assertion, err := env.verifyAssertion(r.PostForm.Get("assertion"))
	if err != nil {
		refuse(err.Error())
		return
	}
	env.mu.Lock()
	env.assertions = append(env.assertions, assertion)
	env.mu.Unlock()

	if status := int(env.tokenStatus.Load()); status != http.StatusOK {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		iss, _ := assertion.Claims["iss"].(string)
		_, _ = io.WriteString(w, `{"error":"invalid_grant","error_description":"account `+iss+` is disabled"}`)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"access_token":"`+gcsTestToken+`","token_type":"Bearer","expires_in":3600}`)
}

// verifyAssertion decodes a compact JWS and checks its RS256 signature
// against the test key.
func (env *gcsEnv) verifyAssertion(jwt string) (jwtAssertion, error) {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return jwtAssertion{}, errors.New("assertion is not a compact JWS")
	}
	var a jwtAssertion
	for i, dst := range []*map[string]any{&a.Header, &a.Claims} {
		raw, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			return jwtAssertion{}, errors.New("assertion part is not base64url")
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			return jwtAssertion{}, errors.New("assertion part is not JSON")
		}
	}
	if a.Header["alg"] != "RS256" {
		return jwtAssertion{}, errors.New("assertion is not RS256")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return jwtAssertion{}, errors.New("signature is not base64url")
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(env.publicKey, crypto.SHA256, digest[:], sig); err != nil {
		return jwtAssertion{}, errors.New("bad assertion signature")
	}
	return a, nil
}

// grants returns the accepted assertions and the refused requests so far.
func (env *gcsEnv) grants() ([]jwtAssertion, []string) {
	env.mu.Lock()
	defer env.mu.Unlock()
	return append([]jwtAssertion(nil), env.assertions...), append([]string(nil), env.badGrants...)
}

// config is the STORAGE_BACKENDS entry of a backend on the emulator.
func (env *gcsEnv) config() storage.Config {
	return storage.Config{
		ID:       "gcs-test",
		Provider: storage.ProviderGCS,
		Endpoint: env.gateURL,
		Bucket:   gcsTestBucket,
		Credentials: map[string]any{
			"projectId":   gcsTestProject,
			"clientEmail": gcsTestClientEmail,
			"privateKey":  env.privateKey,
			"tokenUri":    env.tokenURL,
		},
	}
}

// open opens cfg with storage.Open and closes it at cleanup.
func openGCSBackend(t *testing.T, cfg storage.Config) storage.Backend {
	t.Helper()
	b, err := storage.Open(t.Context(), cfg)
	require.NoError(t, err)
	c, ok := b.(io.Closer)
	require.True(t, ok, "the gcs backend must implement io.Closer")
	t.Cleanup(func() { require.NoError(t, c.Close()) })
	return b
}

// requireNoSecrets fails if msg contains a credential value of env.
func (env *gcsEnv) requireNoSecrets(t *testing.T, msg string) {
	t.Helper()
	require.NotContains(t, msg, gcsTestClientEmail)
	require.NotContains(t, msg, env.privateKey)
	require.NotContains(t, msg, "PRIVATE KEY")
	body := strings.Split(strings.TrimSpace(env.privateKey), "\n")
	for _, line := range body[1 : len(body)-1] {
		require.NotContains(t, msg, line)
	}
}

func TestGCSConformance(t *testing.T) {
	t.Parallel()
	env := newGCSEnv(t)
	cfg := env.config()
	t.Run("suite", func(t *testing.T) {
		storagetest.Run(t, func(t *testing.T) storage.Backend { return openGCSBackend(t, cfg) })
	})

	// Every backend of the suite authenticated through the JWT-bearer
	// exchange, and every API request carried the token it returned.
	assertions, bad := env.grants()
	require.Empty(t, bad)
	require.NotEmpty(t, assertions)
	for _, a := range assertions {
		require.Equal(t, gcsTestClientEmail, a.Claims["iss"])
	}
	require.Zero(t, env.unauthorized.Load(), "API requests without the access token")
	require.Positive(t, env.authorized.Load())
}

func TestGCSAuthenticatesAsTheServiceAccount(t *testing.T) {
	t.Parallel()
	env := newGCSEnv(t)
	b := openGCSBackend(t, env.config())
	ctx := t.Context()

	assertions, _ := env.grants()
	require.Empty(t, assertions, "opening the backend must not fetch a token")

	require.NoError(t, storage.PutBytes(ctx, b, "runs/r1/input.json", []byte(`{"n":1}`), ""))
	got, err := storage.ReadAll(ctx, b, "runs/r1/input.json")
	require.NoError(t, err)
	require.Equal(t, []byte(`{"n":1}`), got)

	assertions, bad := env.grants()
	require.Empty(t, bad)
	require.Len(t, assertions, 1, "one token, cached for the following requests")
	claims := assertions[0].Claims
	require.Equal(t, gcsTestClientEmail, claims["iss"])
	require.Equal(t, env.tokenURL, claims["aud"])
	require.Contains(t, claims["scope"], "https://www.googleapis.com/auth/devstorage")
	iat, ok := claims["iat"].(float64)
	require.True(t, ok, "iat claim")
	exp, ok := claims["exp"].(float64)
	require.True(t, ok, "exp claim")
	require.Greater(t, exp, iat)
	require.Zero(t, env.unauthorized.Load())
	require.GreaterOrEqual(t, env.authorized.Load(), int64(2))

	// The object really is in the emulator's bucket, under the key.
	obj, err := env.fake.GetObject(gcsTestBucket, "runs/r1/input.json")
	require.NoError(t, err)
	require.Equal(t, []byte(`{"n":1}`), obj.Content)
	require.Equal(t, "application/json", obj.ContentType)
}

func TestGCSTokenRefusedLeaksNoCredentials(t *testing.T) {
	t.Parallel()
	env := newGCSEnv(t)
	env.tokenStatus.Store(http.StatusUnauthorized)
	b := openGCSBackend(t, env.config())
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
		env.requireNoSecrets(t, err.Error())
	}
	assertions, _ := env.grants()
	require.NotEmpty(t, assertions)
	require.Zero(t, env.authorized.Load(), "no API request may go out without a token")
	_, err = env.fake.GetObject(gcsTestBucket, "runs/r1/output.json")
	require.Error(t, err, "nothing was stored")
}

func TestGCSOpenErrorsLeakNoCredentials(t *testing.T) {
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
			cfg.Credentials["privateKey"] = "SECRET-not-a-key " + gcsTestClientEmail
		}, "credentials.privateKey is not a PEM-encoded private key"},
		{"key garbled", func(cfg *storage.Config) {
			cfg.Credentials["privateKey"] = strings.Replace(env.privateKey, "\n", "\nAAAA", 2)
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
			cfg.Endpoint = env.gateURL + "/gcs"
		}, "endpoint must be a base URL"},
		{"endpoint with a query", func(cfg *storage.Config) {
			cfg.Endpoint = env.gateURL + "/?k=v"
		}, "endpoint must not have user information, a query or a fragment"},
		{"missing client email", func(cfg *storage.Config) {
			delete(cfg.Credentials, "clientEmail")
		}, "credentials.clientEmail is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := env.config()
			tc.change(&cfg)
			b, err := storage.Open(t.Context(), cfg)
			require.Nil(t, b)
			require.ErrorContains(t, err, `storage backend "gcs-test": `)
			require.ErrorContains(t, err, tc.want)
			t.Log(err)
			env.requireNoSecrets(t, err.Error())
			require.NotContains(t, err.Error(), "SECRET")
			require.NotContains(t, err.Error(), ecPEM)
		})
	}

	// The set that fails to open reports no secret either.
	cfg := env.config()
	cfg.Credentials["privateKey"] = "SECRET-gcs"
	_, err = storage.NewSet(t.Context(), []storage.Config{cfg}, "")
	require.Error(t, err)
	require.NotContains(t, err.Error(), "SECRET")

	// No token was requested: open does not talk to the network.
	assertions, bad := env.grants()
	require.Empty(t, assertions)
	require.Empty(t, bad)
}

func TestGCSOperationErrorsLeakNoCredentials(t *testing.T) {
	t.Parallel()
	env := newGCSEnv(t)
	b := openGCSBackend(t, env.config())
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
	cfg := env.config()
	cfg.Bucket = "no-such-bucket"
	other := openGCSBackend(t, cfg)
	errs = append(errs, other.Put(ctx, "runs/r1/x", strings.NewReader("x"), storage.PutOptions{}))
	for _, err := range errs {
		require.Error(t, err)
		t.Log(err)
		env.requireNoSecrets(t, err.Error())
	}
}

// iotestErrReader fails every read.
type iotestErrReader struct{}

func (iotestErrReader) Read([]byte) (int, error) { return 0, errors.New("source broke") }

func TestGCSContentTypes(t *testing.T) {
	t.Parallel()
	env := newGCSEnv(t)
	b := openGCSBackend(t, env.config())
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
	env.fake.CreateObject(fakestorage.Object{
		ObjectAttrs: fakestorage.ObjectAttrs{BucketName: gcsTestBucket, Name: "external/blob"},
		Content:     []byte("%PDF-1.7 not really"),
	})
	attrs, err = b.Stat(ctx, "external/blob")
	require.NoError(t, err)
	require.Equal(t, int64(len("%PDF-1.7 not really")), attrs.Size)
	require.Equal(t, "application/pdf", attrs.ContentType)
}

func TestGCSEndpointForms(t *testing.T) {
	t.Parallel()
	env := newGCSEnv(t)
	for _, endpoint := range []string{env.gateURL, env.gateURL + "/", env.gateURL + "/storage/v1", env.gateURL + "/storage/v1/"} {
		cfg := env.config()
		cfg.Endpoint = endpoint
		b := openGCSBackend(t, cfg)
		key := "endpoints/" + strings.NewReplacer(":", "_", "/", "_").Replace(endpoint)
		require.NoError(t, storage.PutBytes(t.Context(), b, key, []byte(endpoint), ""), endpoint)
		got, err := storage.ReadAll(t.Context(), b, key)
		require.NoError(t, err, endpoint)
		require.Equal(t, []byte(endpoint), got)
	}

	// A private key whose newlines were written as "\n" escapes is accepted.
	cfg := env.config()
	cfg.Credentials["privateKey"] = strings.ReplaceAll(env.privateKey, "\n", `\n`)
	b := openGCSBackend(t, cfg)
	require.NoError(t, storage.PutBytes(t.Context(), b, "escaped-key", []byte("ok"), ""))

	// The default endpoint needs no network to open.
	cfg = env.config()
	cfg.Endpoint = ""
	openGCSBackend(t, cfg)
	cfg.Endpoint = "https://storage.googleapis.com"
	openGCSBackend(t, cfg)
}

func TestGCSClose(t *testing.T) {
	t.Parallel()
	env := newGCSEnv(t)
	cfg := env.config()
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
	require.NoError(t, b.(io.Closer).Close())
}
