// Package gcs is the storage driver of provider "gcs": objects in a Google
// Cloud Storage bucket, with cloud.google.com/go/storage. Importing it
// registers the provider with package storage:
//
//	import _ "github.com/pipeweave/pipeweave/core/storage/gcs"
package gcs

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"cloud.google.com/go/auth"
	"cloud.google.com/go/auth/credentials"
	gcs "cloud.google.com/go/storage"
	"google.golang.org/api/option"

	"github.com/pipeweave/pipeweave/core/storage"
	"github.com/pipeweave/pipeweave/core/storage/driver"
)

// Defaults of the gcs provider.
const (
	// DefaultEndpoint is the Google Cloud Storage endpoint used when
	// storage.Config.Endpoint is empty.
	DefaultEndpoint = "https://storage.googleapis.com"
	// DefaultTokenURI is the OAuth 2.0 token endpoint used when
	// credentials.tokenUri is absent.
	DefaultTokenURI = "https://oauth2.googleapis.com/token"
)

// redacted replaces credential values in error messages.
const redacted = "[redacted]"

// gcsAPIPath is the path of the GCS JSON API under an endpoint's base URL.
const gcsAPIPath = "/storage/v1/"

// gcsReservedPrefix starts object names GCS refuses.
const gcsReservedPrefix = ".well-known/acme-challenge/"

// gcsScope is the OAuth scope the backend's tokens are requested with (read,
// write and delete objects).
const gcsScope = "https://www.googleapis.com/auth/devstorage.read_write"

func init() {
	storage.Register(storage.ProviderGCS, func(ctx context.Context, cfg storage.Config) (driver.Backend, error) {
		return open(ctx, cfg)
	})
}

// gcsDriver keeps objects in a Google Cloud Storage bucket: key
// "runs/r1/output.json" is the object of that name in the config's bucket.
// Keys starting with ".well-known/acme-challenge/", which GCS refuses, fail
// with storage.ErrInvalidKey.
//
// It authenticates as the service account of the config's credentials:
// projectId, clientEmail, privateKey (the PEM RSA key of the service
// account's JSON key file, PKCS#8 or PKCS#1; "\n" escapes written literally
// are decoded) and the optional tokenUri, the OAuth 2.0 token endpoint of the
// JWT-bearer exchange (default https://oauth2.googleapis.com/token; an
// emulator set-up may point it at a local token server). Nothing is taken
// from the environment: no Application Default Credentials or
// GOOGLE_APPLICATION_CREDENTIALS, and neither STORAGE_EMULATOR_HOST nor
// GOOGLE_CLOUD_UNIVERSE_DOMAIN has any effect. (HTTP(S)_PROXY and NO_PROXY
// are honoured, as by any Go HTTP client.)
//
// The config's endpoint is the base URL of the service, scheme, host and port
// only: empty or "https://storage.googleapis.com" for Google Cloud Storage,
// or an emulator's base URL, such as "http://127.0.0.1:4443" for
// fake-gcs-server. The backend appends the JSON API path "/storage/v1/"
// itself; an endpoint that already ends in "/storage/v1" is accepted as it is.
// Any other path is refused, because the client library sends uploads to
// "/upload/storage/v1/" at the root of the host. Reads use the JSON API too,
// so an emulator needs no public-host (XML API) set-up.
//
// Uploads are atomic: GCS creates or replaces the object only when the upload
// completes, and a failed or cancelled Put abandons the upload. Opening it
// makes no network request; the first call fetches an access token, which is
// cached and refreshed before it expires. Error messages never contain the
// private key or the client email.
type gcsDriver struct {
	client    *gcs.Client
	bucket    *gcs.BucketHandle
	transport *http.Transport
	secrets   []string // credential values no error message may contain
}

var _ driver.Backend = (*gcsDriver)(nil)

// open returns the driver of cfg, which has been validated. See [gcsDriver]
// for how the endpoint and the credentials are used. Errors never contain a
// credential value.
func open(ctx context.Context, cfg storage.Config) (*gcsDriver, error) {
	endpoint, err := gcsEndpoint(cfg.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("storage: gcs: %w", err)
	}
	credsJSON, err := gcsCredentialsJSON(cfg)
	if err != nil {
		return nil, fmt.Errorf("storage: gcs: %w", err)
	}

	secrets := gcsSecrets(cfg)
	// One transport, owned by the backend, for the token exchange and the API.
	transport := newGCSTransport()
	creds, err := credentials.NewCredentialsFromJSON(credentials.ServiceAccount, credsJSON, &credentials.DetectOptions{
		Scopes: []string{gcsScope},
		Client: &http.Client{Transport: transport},
	})
	if err != nil {
		return nil, fmt.Errorf("storage: gcs: service account credentials: %w", redactError(err, secrets))
	}
	hc := &http.Client{Transport: &gcsAuthTransport{creds: creds, base: transport}}
	client, err := gcs.NewClient(context.WithoutCancel(ctx),
		// Our own authorized client: the library adds no credentials of its
		// own and so never looks for Application Default Credentials.
		option.WithHTTPClient(hc),
		option.WithAuthCredentials(creds),
		// Always explicit, so that STORAGE_EMULATOR_HOST cannot redirect us.
		option.WithEndpoint(endpoint),
		gcs.WithJSONReads(),
		gcs.WithDisabledClientMetrics(),
	)
	if err != nil {
		transport.CloseIdleConnections()
		return nil, fmt.Errorf("storage: gcs: create client: %w", redactError(err, secrets))
	}
	return &gcsDriver{client: client, bucket: client.Bucket(cfg.Bucket), transport: transport, secrets: secrets}, nil
}

// newGCSTransport returns a fresh HTTP transport with the defaults of
// http.DefaultTransport.
func newGCSTransport() *http.Transport {
	if dt, ok := http.DefaultTransport.(*http.Transport); ok {
		return dt.Clone()
	}
	return &http.Transport{Proxy: http.ProxyFromEnvironment, ForceAttemptHTTP2: true}
}

// gcsAuthTransport sets the Authorization header of every request to the
// credentials' access token (fetched, then cached and refreshed, by creds).
// Unlike the client library's own middleware it reads no environment
// variable (GOOGLE_CLOUD_UNIVERSE_DOMAIN).
type gcsAuthTransport struct {
	creds *auth.Credentials
	base  http.RoundTripper
}

// RoundTrip implements http.RoundTripper.
func (t *gcsAuthTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	token, err := t.creds.Token(req.Context())
	if err != nil {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, fmt.Errorf("get access token: %w", err)
	}
	kind := token.Type
	if kind == "" {
		kind = "Bearer"
	}
	authorized := req.Clone(req.Context())
	authorized.Header.Set("Authorization", kind+" "+token.Value)
	return t.base.RoundTrip(authorized)
}

// gcsEndpoint returns the JSON API endpoint ("<base>/storage/v1/") of the
// configured endpoint (see [gcsDriver]).
func gcsEndpoint(endpoint string) (string, error) {
	if strings.TrimSpace(endpoint) == "" {
		endpoint = DefaultEndpoint
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", errors.New("endpoint must be an http:// or https:// URL with a host")
	}
	if u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return "", errors.New("endpoint must not have user information, a query or a fragment")
	}
	switch strings.TrimSuffix(u.Path, "/") {
	case "", strings.TrimSuffix(gcsAPIPath, "/"):
	default:
		return "", fmt.Errorf("endpoint must be a base URL (scheme://host[:port]), not a URL with path %q", u.Path)
	}
	u.Path = gcsAPIPath
	u.RawPath = ""
	return u.String(), nil
}

// gcsSecrets returns the credential values of cfg that error messages must
// not contain: the client email and the private key (as configured and with
// literal "\n" escapes decoded), longest first.
func gcsSecrets(cfg storage.Config) []string {
	var secrets []string
	key := cfg.Credential("privateKey")
	for _, s := range []string{key, strings.ReplaceAll(key, `\n`, "\n"), strings.TrimSpace(key), cfg.Credential("clientEmail"), strings.TrimSpace(cfg.Credential("clientEmail"))} {
		if s != "" && !slices.Contains(secrets, s) {
			secrets = append(secrets, s)
		}
	}
	slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	return secrets
}

// redactedError is an error whose message has had credential values replaced
// by "[redacted]"; it unwraps to the original error so that errors.Is and
// errors.As still work.
type redactedError struct {
	msg string
	err error
}

// Error returns the redacted message.
func (e *redactedError) Error() string { return e.msg }

// Unwrap returns the original error.
func (e *redactedError) Unwrap() error { return e.err }

// redactError returns err, or when its message contains one of secrets, an
// error whose message has them replaced by "[redacted]".
func redactError(err error, secrets []string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	clean := msg
	for _, s := range secrets {
		clean = strings.ReplaceAll(clean, s, redacted)
	}
	if clean == msg {
		return err
	}
	return &redactedError{msg: clean, err: err}
}

// gcsServiceAccount is the JSON key file of a service account, as Google
// issues it.
type gcsServiceAccount struct {
	Type        string `json:"type"`
	ProjectID   string `json:"project_id"`
	ClientEmail string `json:"client_email"`
	PrivateKey  string `json:"private_key"`
	TokenURI    string `json:"token_uri"`
}

// gcsCredentialsJSON builds the service account key file of cfg's
// credentials, checking the private key and the token URI. Errors never
// contain a credential value.
func gcsCredentialsJSON(cfg storage.Config) ([]byte, error) {
	key := cfg.Credential("privateKey")
	// A PEM key pasted into JSON by hand often keeps its "\n" escapes literally.
	if !strings.Contains(key, "\n") && strings.Contains(key, `\n`) {
		key = strings.ReplaceAll(key, `\n`, "\n")
	}
	if err := checkRSAPrivateKey(key); err != nil {
		return nil, err
	}
	tokenURI := DefaultTokenURI
	if v, ok := cfg.Credentials["tokenUri"]; ok && v != nil {
		s, isString := v.(string)
		if !isString {
			return nil, errors.New("credentials.tokenUri must be a string")
		}
		if s = strings.TrimSpace(s); s != "" {
			u, err := url.Parse(s)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
				return nil, errors.New("credentials.tokenUri must be an http:// or https:// URL with a host")
			}
			tokenURI = s
		}
	}
	data, err := json.Marshal(gcsServiceAccount{
		Type:        string(credentials.ServiceAccount),
		ProjectID:   strings.TrimSpace(cfg.Credential("projectId")),
		ClientEmail: strings.TrimSpace(cfg.Credential("clientEmail")),
		PrivateKey:  key,
		TokenURI:    tokenURI,
	})
	if err != nil {
		return nil, errors.New("encode the service account credentials")
	}
	return data, nil
}

// checkRSAPrivateKey reports whether key is a PEM-encoded RSA private key
// (PKCS#8, as in Google's key files, or PKCS#1). The error never quotes key.
func checkRSAPrivateKey(key string) error {
	block, _ := pem.Decode([]byte(key))
	if block == nil {
		return errors.New("credentials.privateKey is not a PEM-encoded private key")
	}
	if parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		if _, ok := parsed.(*rsa.PrivateKey); !ok {
			return errors.New("credentials.privateKey is not an RSA private key")
		}
		return nil
	}
	if _, err := x509.ParsePKCS1PrivateKey(block.Bytes); err != nil {
		return errors.New("credentials.privateKey is neither a PKCS#8 nor a PKCS#1 RSA private key")
	}
	return nil
}

// KeyProblem implements [driver.Backend.KeyProblem]: GCS refuses names
// starting with ".well-known/acme-challenge/".
func (g *gcsDriver) KeyProblem(key string) string {
	if strings.HasPrefix(key, gcsReservedPrefix) {
		return fmt.Sprintf("GCS refuses names starting with %q", gcsReservedPrefix)
	}
	return ""
}

// IsNotFound implements [driver.Backend.IsNotFound].
func (g *gcsDriver) IsNotFound(err error) bool { return errors.Is(err, gcs.ErrObjectNotExist) }

// redact removes the credential values from err's message: a token
// endpoint's error response may quote the service account.
func (g *gcsDriver) redact(err error) error { return redactError(err, g.secrets) }

// Get implements [driver.Backend.Get]. The reader reads the object's
// generation current when Get was called, even if the object is replaced
// meanwhile.
func (g *gcsDriver) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	r, err := g.bucket.Object(key).NewReader(ctx)
	if err != nil {
		return nil, g.redact(err)
	}
	return r, nil
}

// Put implements [driver.Backend.Put]. The object's content type is
// contentType or, when empty, the one derived from the key and the first 512
// bytes. The content is streamed to GCS; the object is created or replaced
// only when the whole of r has been uploaded. If r fails or ctx is done, the
// upload is cancelled and the previous object, if any, stays.
func (g *gcsDriver) Put(ctx context.Context, key string, r io.Reader, contentType string) error {
	src := driver.ContextReader(ctx, r)
	head := make([]byte, driver.SniffLen)
	n, err := io.ReadFull(src, head)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("read: %w", err)
	}
	head = head[:n]
	if contentType == "" {
		contentType = driver.DetectContentType(key, head)
	}

	// Cancelling the writer's context is the only way to abandon an upload:
	// closing the writer would commit what was written so far.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := g.bucket.Object(key).NewWriter(wctx)
	w.ContentType = contentType
	abort := func(err error) error {
		cancel()
		_ = w.Close() // Returns the cancellation; waits for the upload to stop.
		return g.redact(err)
	}
	if _, err := w.Write(head); err != nil {
		return abort(fmt.Errorf("write: %w", err))
	}
	if _, err := io.Copy(w, src); err != nil {
		return abort(fmt.Errorf("write: %w", err))
	}
	if err := ctx.Err(); err != nil {
		return abort(err)
	}
	if err := w.Close(); err != nil {
		return g.redact(fmt.Errorf("commit: %w", err))
	}
	return nil
}

// Stat implements [driver.Backend.Stat]. ContentType is the type recorded at
// Put; for an object stored without one (written by another tool), it is
// derived from the key and the object's first 512 bytes.
func (g *gcsDriver) Stat(ctx context.Context, key string) (driver.Attributes, error) {
	attrs, err := g.bucket.Object(key).Attrs(ctx)
	if err != nil {
		return driver.Attributes{}, g.redact(err)
	}
	contentType := attrs.ContentType
	if contentType == "" {
		var head []byte
		if attrs.Size > 0 {
			head, err = g.readHead(ctx, key, attrs.Generation)
			if err != nil {
				return driver.Attributes{}, g.redact(fmt.Errorf("read head: %w", err))
			}
		}
		contentType = driver.DetectContentType(key, head)
	}
	return driver.Attributes{
		Size:        attrs.Size,
		ContentType: contentType,
		ModTime:     attrs.Updated,
	}, nil
}

// readHead returns the first bytes (at most 512) of generation gen of key.
func (g *gcsDriver) readHead(ctx context.Context, key string, gen int64) ([]byte, error) {
	r, err := g.bucket.Object(key).Generation(gen).NewRangeReader(ctx, 0, driver.SniffLen)
	if err != nil {
		return nil, err
	}
	head, err := io.ReadAll(r)
	if closeErr := r.Close(); err == nil {
		err = closeErr
	}
	return head, err
}

// Delete implements [driver.Backend.Delete].
func (g *gcsDriver) Delete(ctx context.Context, key string) error {
	if err := g.bucket.Object(key).Delete(ctx); err != nil {
		return g.redact(err)
	}
	return nil
}

// Close implements [driver.Backend.Close]: it releases the client and its
// connections.
func (g *gcsDriver) Close() error {
	err := g.client.Close()
	g.transport.CloseIdleConnections()
	if err != nil {
		return fmt.Errorf("close client: %w", g.redact(err))
	}
	return nil
}
