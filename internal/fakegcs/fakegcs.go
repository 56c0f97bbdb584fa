// Package fakegcs runs a Google Cloud Storage emulator for tests (the storage
// backends' and the end-to-end ones), all on loopback:
//
//   - fake-gcs-server, the emulator itself, in memory;
//   - a gate in front of it that forwards only the API requests carrying the
//     access token, and counts the ones it forwarded and the ones it refused;
//   - the OAuth 2.0 token endpoint that issues that token, for the JWT-bearer
//     grant of a service account, checking that the assertion is signed with
//     the service account's key (an RSA key generated for each server).
//
// A gcs backend configured with [Server.Config] thus goes through the real
// service-account token exchange before any API request.
package fakegcs

import (
	"crypto"
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
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/fsouza/fake-gcs-server/fakestorage"
	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/storage"
)

// The service account of every [Server] and the access token its token
// endpoint issues.
const (
	// ProjectID is the project of the service account.
	ProjectID = "pipeweave-test-project"
	// ClientEmail is the service account's email, the issuer of its assertions.
	ClientEmail = "pipeweave-tests@pipeweave-test-project.iam.gserviceaccount.com"
	// AccessToken is the token the token endpoint issues and the gate demands.
	AccessToken = "fakegcs-access-token"
	// JWTBearerGrant is the grant type the token endpoint accepts.
	JWTBearerGrant = "urn:ietf:params:oauth:grant-type:jwt-bearer"
)

// Assertion is the decoded JWT-bearer assertion of one token request.
type Assertion struct {
	// Header is the JWS header (alg, typ, kid).
	Header map[string]any
	// Claims are the JWT claims (iss, aud, scope, iat, exp).
	Claims map[string]any
}

// Request is one API request the gate received.
type Request struct {
	// Method is the HTTP method.
	Method string
	// Path is the URL path.
	Path string
	// Query is the URL query.
	Query url.Values
	// Authorized tells whether it carried the access token (and so was
	// forwarded to the emulator).
	Authorized bool
}

// Server is a running emulator with its gate and token endpoint. It stops
// when the test ends.
type Server struct {
	// URL is the endpoint backends use: the emulator, behind the gate.
	URL string
	// TokenURL is the token endpoint (credentials.tokenUri).
	TokenURL string
	// PrivateKey is the service account's RSA private key, PEM-encoded PKCS#8
	// (credentials.privateKey).
	PrivateKey string

	fake      *fakestorage.Server
	publicKey *rsa.PublicKey

	// tokenStatus, when not 200, is the status the token endpoint answers
	// with (its body then quotes the client email, as some servers do).
	tokenStatus atomic.Int32

	mu         sync.Mutex
	assertions []Assertion // every grant the token endpoint accepted
	badGrants  []string    // why the token endpoint refused a request
	requests   []Request

	authorized   atomic.Int64
	unauthorized atomic.Int64
}

// Start starts a server and registers its shutdown with t.Cleanup. It has no
// bucket: create them with [Server.CreateBucket].
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{}
	s.tokenStatus.Store(http.StatusOK)

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	der, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	s.PrivateKey = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	s.publicKey = &key.PublicKey

	fake, err := fakestorage.NewServerWithOptions(fakestorage.Options{
		Scheme:     "http",
		Host:       "127.0.0.1",
		Port:       0, // any free port
		NoListener: false,
	})
	require.NoError(t, err)
	t.Cleanup(fake.Stop)
	s.fake = fake

	target, err := url.Parse(fake.URL())
	require.NoError(t, err)
	proxy := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(target) }}
	gate := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ok := r.Header.Get("Authorization") == "Bearer "+AccessToken
		s.mu.Lock()
		s.requests = append(s.requests, Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Authorized: ok})
		s.mu.Unlock()
		if !ok {
			s.unauthorized.Add(1)
			http.Error(w, `{"error":{"code":401,"message":"missing or wrong access token"}}`, http.StatusUnauthorized)
			return
		}
		s.authorized.Add(1)
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(gate.Close)
	s.URL = gate.URL

	tokens := httptest.NewServer(http.HandlerFunc(s.serveToken))
	t.Cleanup(tokens.Close)
	s.TokenURL = tokens.URL + "/token"
	return s
}

// CreateBucket creates a bucket directly in the emulator.
func (s *Server) CreateBucket(t testing.TB, name string) {
	t.Helper()
	// fake-gcs-server panics when it cannot create the bucket.
	require.NotPanics(t, func() { s.fake.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: name}) }, "create bucket %q", name)
}

// Emulator is the fake-gcs-server behind the gate, to read and write objects
// directly, without a token.
func (s *Server) Emulator() *fakestorage.Server { return s.fake }

// Config is the STORAGE_BACKENDS entry of a gcs backend with the given id on
// bucket of the emulator, authenticating as the service account.
func (s *Server) Config(id, bucket string) storage.Config {
	return storage.Config{
		ID:       id,
		Provider: storage.ProviderGCS,
		Endpoint: s.URL,
		Bucket:   bucket,
		Credentials: map[string]any{
			"projectId":   ProjectID,
			"clientEmail": ClientEmail,
			"privateKey":  s.PrivateKey,
			"tokenUri":    s.TokenURL,
		},
	}
}

// SetTokenStatus makes the token endpoint answer valid grants with status
// (http.StatusOK, the default, issues the token; any other status refuses
// with a body that quotes the client email).
func (s *Server) SetTokenStatus(status int) { s.tokenStatus.Store(int32(status)) }

// Grants returns the assertions of the grants the token endpoint accepted
// (whatever status it then answered with) and why it refused the others, so
// far, oldest first.
func (s *Server) Grants() (accepted []Assertion, refused []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.assertions), slices.Clone(s.badGrants)
}

// Requests returns the API requests the gate received so far, oldest first.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// Authorized is how many API requests carried the access token.
func (s *Server) Authorized() int64 { return s.authorized.Load() }

// Unauthorized is how many API requests the gate refused for want of the
// access token.
func (s *Server) Unauthorized() int64 { return s.unauthorized.Load() }

// serveToken is the OAuth token endpoint: it accepts the JWT-bearer grant
// with an assertion signed by the service account's key.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	refuse := func(reason string) {
		s.mu.Lock()
		s.badGrants = append(s.badGrants, reason)
		s.mu.Unlock()
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
	if got := r.PostForm.Get("grant_type"); got != JWTBearerGrant {
		refuse("grant_type is " + got)
		return
	}
	assertion, err := s.verifyAssertion(r.PostForm.Get("assertion"))
	if err != nil {
		refuse(err.Error())
		return
	}
	s.mu.Lock()
	s.assertions = append(s.assertions, assertion)
	s.mu.Unlock()

	w.Header().Set("Content-Type", "application/json")
	if status := int(s.tokenStatus.Load()); status != http.StatusOK {
		w.WriteHeader(status)
		iss, _ := assertion.Claims["iss"].(string)
		_, _ = io.WriteString(w, `{"error":"invalid_grant","error_description":"account `+iss+` is disabled"}`)
		return
	}
	_, _ = io.WriteString(w, `{"access_token":"`+AccessToken+`","token_type":"Bearer","expires_in":3600}`)
}

// verifyAssertion decodes a compact JWS and checks its RS256 signature
// against the service account's key.
func (s *Server) verifyAssertion(jwt string) (Assertion, error) {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return Assertion{}, errors.New("assertion is not a compact JWS")
	}
	var a Assertion
	for i, dst := range []*map[string]any{&a.Header, &a.Claims} {
		raw, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			return Assertion{}, errors.New("assertion part is not base64url")
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			return Assertion{}, errors.New("assertion part is not JSON")
		}
	}
	if a.Header["alg"] != "RS256" {
		return Assertion{}, errors.New("assertion is not RS256")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return Assertion{}, errors.New("signature is not base64url")
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(s.publicKey, crypto.SHA256, digest[:], sig); err != nil {
		return Assertion{}, errors.New("bad assertion signature")
	}
	return a, nil
}
