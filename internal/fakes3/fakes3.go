// Package fakes3 runs an in-memory S3-compatible server for tests (the storage
// backends' and the end-to-end ones): gofakes3 with its s3mem backend on a
// loopback httptest server, behind an AWS Signature Version 4 check so that
// tests can tell right credentials from wrong ones (gofakes3 itself accepts any
// signature). Both the aws-s3 and the minio backends talk to it.
//
// The check verifies the signature of the request's Authorization header (and,
// for aws-chunked streaming uploads, the signature of every chunk) and that its
// scope names the server's region and the s3 service. Presigned URLs and
// anonymous requests are refused. Every request is recorded, refused or not
// (see [Server.Requests]).
package fakes3

import (
	"bytes"
	"cmp"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/stretchr/testify/require"
)

// Default credentials and region of a [Server] started with zero [Options].
const (
	DefaultAccessKey = "fakes3-access-key"
	DefaultSecretKey = "fakes3-secret-key-do-not-print"
	DefaultRegion    = "us-east-1"
)

// Options configure [Start]. Zero fields take the defaults above.
type Options struct {
	// AccessKey and SecretKey are the only credentials the server accepts.
	AccessKey, SecretKey string
	// SessionToken, when set, must be sent as X-Amz-Security-Token.
	SessionToken string
	// Region is the region request signatures must be scoped to.
	Region string
}

// Request is one request the server received.
type Request struct {
	// Method is the HTTP method.
	Method string
	// Path is the URL path (bucket and key).
	Path string
	// Query is the URL query.
	Query url.Values
	// Refused tells whether the signature check refused the request.
	Refused bool
}

// Server is a running fake S3 server. It stops when the test ends.
type Server struct {
	// URL is the server's base URL (http://127.0.0.1:port).
	URL string
	// AccessKey, SecretKey, SessionToken and Region are the accepted
	// credentials and the signing region.
	AccessKey, SecretKey, SessionToken, Region string

	backend *s3mem.Backend

	mu       sync.Mutex
	requests []Request
}

// Start starts a server and registers its shutdown with t.Cleanup.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s := &Server{
		AccessKey:    cmp.Or(opts.AccessKey, DefaultAccessKey),
		SecretKey:    cmp.Or(opts.SecretKey, DefaultSecretKey),
		SessionToken: opts.SessionToken,
		Region:       cmp.Or(opts.Region, DefaultRegion),
		backend:      s3mem.New(),
	}
	faker := gofakes3.New(s.backend, gofakes3.WithAutoBucket(false))
	srv := httptest.NewServer(s.checkSignature(faker.Server()))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// CreateBucket creates a bucket directly in the backend.
func (s *Server) CreateBucket(t testing.TB, name string) {
	t.Helper()
	require.NoError(t, s.backend.CreateBucket(name), "create bucket %q", name)
}

// Requests returns the requests received so far, oldest first.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// Count returns how many received requests match.
func (s *Server) Count(match func(Request) bool) int {
	n := 0
	for _, r := range s.Requests() {
		if match(r) {
			n++
		}
	}
	return n
}

func (s *Server) record(r *http.Request, refused bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Refused: refused})
}

// checkSignature refuses requests whose SigV4 signature does not match the
// server's credentials, with S3's error codes.
func (s *Server) checkSignature(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sig, code, msg := s.verify(r)
		if code == "" && r.Header.Get("X-Amz-Content-Sha256") == streamingPayload {
			code, msg = decodeChunked(r, sig)
		}
		if code != "" {
			s.record(r, true)
			writeError(w, r, http.StatusForbidden, code, msg)
			return
		}
		s.record(r, false)
		next.ServeHTTP(w, r)
	})
}

// signature is a verified request signature: what chunk signatures of a
// streaming upload chain from.
type signature struct {
	key     []byte // the signing key
	amzDate string
	scope   string
	seed    string // the request's signature
}

// verify returns an S3 error code and message when r is not signed with the
// server's credentials, else the request's signature.
func (s *Server) verify(r *http.Request) (sig signature, code, msg string) {
	auth := r.Header.Get("Authorization")
	const algorithm = "AWS4-HMAC-SHA256"
	if !strings.HasPrefix(auth, algorithm+" ") {
		return sig, "AccessDenied", "only AWS4-HMAC-SHA256 Authorization headers are accepted"
	}
	fields := map[string]string{}
	for part := range strings.SplitSeq(strings.TrimPrefix(auth, algorithm+" "), ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		fields[k] = v
	}
	scope := strings.Split(fields["Credential"], "/")
	if len(scope) != 5 || scope[4] != "aws4_request" {
		return sig, "AuthorizationHeaderMalformed", "malformed credential scope"
	}
	if scope[0] != s.AccessKey {
		return sig, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records."
	}
	if scope[2] != s.Region || scope[3] != "s3" {
		return sig, "AuthorizationHeaderMalformed", fmt.Sprintf("the region %q is wrong; expecting %q", scope[2], s.Region)
	}
	if s.SessionToken != "" && r.Header.Get("X-Amz-Security-Token") != s.SessionToken {
		return sig, "InvalidToken", "The provided token is malformed or otherwise invalid."
	}
	amzDate := r.Header.Get("X-Amz-Date")
	if !strings.HasPrefix(amzDate, scope[1]) {
		return sig, "AuthorizationHeaderMalformed", "X-Amz-Date does not match the credential scope"
	}
	payloadHash := r.Header.Get("X-Amz-Content-Sha256")
	if payloadHash == "" {
		return sig, "InvalidRequest", "missing X-Amz-Content-Sha256"
	}
	signed := strings.Split(fields["SignedHeaders"], ";")
	if !slices.Contains(signed, "host") {
		return sig, "AuthorizationHeaderMalformed", "the host header must be signed"
	}

	var canon strings.Builder
	canon.WriteString(r.Method + "\n")
	rawPath, rawQuery, _ := strings.Cut(r.RequestURI, "?")
	canon.WriteString(rawPath + "\n")
	canon.WriteString(canonicalQuery(rawQuery) + "\n")
	for _, h := range signed {
		canon.WriteString(h + ":" + headerValue(r, h) + "\n")
	}
	canon.WriteString("\n" + fields["SignedHeaders"] + "\n" + payloadHash)

	canonHash := sha256.Sum256([]byte(canon.String()))
	stringToSign := algorithm + "\n" + amzDate + "\n" + strings.Join(scope[1:], "/") + "\n" + hex.EncodeToString(canonHash[:])
	key := []byte("AWS4" + s.SecretKey)
	for _, part := range scope[1:] {
		key = hmacSHA256(key, part)
	}
	want := hex.EncodeToString(hmacSHA256(key, stringToSign))
	if !hmac.Equal([]byte(want), []byte(fields["Signature"])) {
		return sig, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided. Check your key and signing method."
	}
	return signature{key: key, amzDate: amzDate, scope: strings.Join(scope[1:], "/"), seed: want}, "", ""
}

// streamingPayload is X-Amz-Content-Sha256 of an upload whose body is
// aws-chunked, each chunk signed.
const streamingPayload = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"

// emptyHash is the hex SHA-256 of no bytes.
const emptyHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// decodeChunked checks the chunk signatures of an aws-chunked body and
// replaces it with the decoded content, as S3 does before storing it.
// gofakes3 decodes aws-chunked bodies itself for PutObject (without checking
// signatures) but not for UploadPart, where it would store the chunk framing.
func decodeChunked(r *http.Request, sig signature) (code, msg string) {
	raw, err := io.ReadAll(r.Body)
	_ = r.Body.Close()
	if err != nil {
		return "IncompleteBody", err.Error()
	}
	var data []byte
	prev := sig.seed
	for {
		line, rest, ok := bytes.Cut(raw, []byte("\r\n"))
		if !ok {
			return "IncompleteBody", "truncated chunk header"
		}
		sizeHex, chunkSig, ok := strings.Cut(string(line), ";chunk-signature=")
		size, err := strconv.ParseInt(sizeHex, 16, 64)
		if !ok || err != nil || size < 0 || int64(len(rest)) < size+2 || string(rest[size:size+2]) != "\r\n" {
			return "IncompleteBody", "malformed chunk"
		}
		chunk := rest[:size]
		chunkHash := sha256.Sum256(chunk)
		stringToSign := "AWS4-HMAC-SHA256-PAYLOAD\n" + sig.amzDate + "\n" + sig.scope + "\n" + prev + "\n" + emptyHash + "\n" + hex.EncodeToString(chunkHash[:])
		want := hex.EncodeToString(hmacSHA256(sig.key, stringToSign))
		if !hmac.Equal([]byte(want), []byte(chunkSig)) {
			return "SignatureDoesNotMatch", "chunk signature does not match"
		}
		prev = want
		data = append(data, chunk...)
		raw = rest[size+2:]
		if size == 0 {
			break
		}
	}
	if decoded := r.Header.Get("X-Amz-Decoded-Content-Length"); decoded != strconv.Itoa(len(data)) {
		return "IncompleteBody", "decoded length " + strconv.Itoa(len(data)) + " does not match X-Amz-Decoded-Content-Length " + decoded
	}
	r.Body = io.NopCloser(bytes.NewReader(data))
	r.ContentLength = int64(len(data))
	r.Header.Set("Content-Length", strconv.Itoa(len(data)))
	r.Header.Set("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD")
	r.Header.Del("X-Amz-Decoded-Content-Length")
	if enc := strings.TrimPrefix(strings.TrimPrefix(r.Header.Get("Content-Encoding"), "aws-chunked"), ","); enc != "" {
		r.Header.Set("Content-Encoding", enc)
	} else {
		r.Header.Del("Content-Encoding")
	}
	return "", ""
}

// headerValue is the canonical value of the signed header h (lower case).
func headerValue(r *http.Request, h string) string {
	var vals []string
	switch h {
	case "host":
		vals = []string{r.Host}
	case "content-length":
		vals = r.Header.Values("Content-Length")
		if len(vals) == 0 {
			vals = []string{strconv.FormatInt(r.ContentLength, 10)}
		}
	case "transfer-encoding":
		vals = r.TransferEncoding
	default:
		vals = r.Header.Values(h)
	}
	for i, v := range vals {
		vals[i] = strings.Join(strings.Fields(v), " ")
	}
	return strings.Join(vals, ",")
}

// canonicalQuery is the SigV4 canonical form of a raw query string.
func canonicalQuery(raw string) string {
	if raw == "" {
		return ""
	}
	type pair struct{ k, v string }
	var pairs []pair
	for part := range strings.SplitSeq(raw, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		k, _ = url.QueryUnescape(k)
		v, _ = url.QueryUnescape(v)
		pairs = append(pairs, pair{uriEncode(k), uriEncode(v)})
	}
	slices.SortFunc(pairs, func(a, b pair) int {
		if c := strings.Compare(a.k, b.k); c != 0 {
			return c
		}
		return strings.Compare(a.v, b.v)
	})
	parts := make([]string, len(pairs))
	for i, p := range pairs {
		parts[i] = p.k + "=" + p.v
	}
	return strings.Join(parts, "&")
}

// uriEncode percent-encodes every byte but the RFC 3986 unreserved ones.
func uriEncode(s string) string {
	var b strings.Builder
	for i := range len(s) {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || strings.IndexByte("-_.~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

// writeError writes an S3 XML error response (headers only for HEAD).
func writeError(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n<Error><Code>")
	_ = xml.EscapeText(&b, []byte(code))
	b.WriteString("</Code><Message>")
	_ = xml.EscapeText(&b, []byte(msg))
	b.WriteString("</Message></Error>")
	_, _ = w.Write([]byte(b.String()))
}
