package storage

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

// This file holds the aws-s3 backend and what it shares with the minio backend
// (minio.go): the HTTP transport, the preparation of Put bodies and the mapping
// of S3 error responses.

func init() { openers[ProviderAWSS3] = openS3 }

// Limits and tuning of the S3-protocol backends (aws-s3 and minio).
const (
	// s3PutMemoryLimit is how much of a Put body of unknown length is kept in
	// memory; longer bodies are spooled to a temporary file.
	s3PutMemoryLimit = 8 << 20
	// s3MaxSinglePut is the largest object one S3 PutObject request can store
	// (5 GiB), the aws-s3 backend's object size limit.
	s3MaxSinglePut = 5 << 30
	// s3MaxObjectSize is the largest S3 object (5 TiB), the minio backend's
	// object size limit (minio-go switches to multipart uploads by itself).
	s3MaxObjectSize = 5 << 40
	// s3MaxAttempts is how many times a failed request is tried in all.
	s3MaxAttempts = 3
	// s3AWSGlobalHost is the endpoint host of the README's default aws-s3
	// endpoint, https://s3.amazonaws.com; it selects the SDK's own regional
	// endpoint resolution (virtual-hosted-style addressing).
	s3AWSGlobalHost = "s3.amazonaws.com"
)

// s3Backend stores objects in an AWS S3 bucket (or an S3-compatible server
// reached through a custom endpoint) with aws-sdk-go-v2.
//
// The client uses only the configuration: static credentials (accessKeyId,
// secretAccessKey and the optional sessionToken), the configured region and
// endpoint. It never reads AWS_* environment variables or shared config files.
// Open performs no network I/O: a missing bucket or refused credentials show up
// in the first call's error.
type s3Backend struct {
	id        string
	bucket    string
	client    *s3.Client
	transport *http.Transport
}

var _ Backend = (*s3Backend)(nil)

// openS3 is the opener of ProviderAWSS3; cfg has been validated.
//
// An empty endpoint or the global https://s3.amazonaws.com uses the SDK's
// endpoint for the region with virtual-hosted-style addressing and the SDK's
// default request and response checksums. Any other endpoint (an S3-compatible
// server, a regional or VPC endpoint) is used as given, with path-style
// addressing (http://host/bucket/key) and checksums only where the API
// requires them, since many S3-compatible servers reject the SDK's default
// CRC32 checksums and aws-chunked trailers.
func openS3(_ context.Context, cfg Config) (Backend, error) {
	var endpoint string
	if cfg.Endpoint != "" {
		u, err := s3EndpointURL(cfg.Endpoint)
		if err != nil {
			return nil, err
		}
		if !(u.Scheme == "https" && strings.EqualFold(u.Host, s3AWSGlobalHost) && strings.Trim(u.Path, "/") == "") {
			endpoint = strings.TrimSuffix(u.String(), "/")
		}
	}
	transport := newS3Transport()
	opts := s3.Options{
		Region: cfg.Region,
		Credentials: aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider(
			cfg.credential("accessKeyId"), cfg.credential("secretAccessKey"), cfg.credential("sessionToken"))),
		HTTPClient: newS3HTTPClient(transport),
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = s3MaxAttempts
		}),
		DisableLogOutputChecksumValidationSkipped: true,
	}
	if endpoint != "" {
		opts.BaseEndpoint = aws.String(endpoint)
		opts.UsePathStyle = true
		opts.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		opts.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	}
	return &s3Backend{
		id:        cfg.ID,
		bucket:    cfg.Bucket,
		client:    s3.New(opts),
		transport: transport,
	}, nil
}

// String names the backend without any credential.
func (b *s3Backend) String() string {
	return fmt.Sprintf("storage.s3Backend{id: %q, bucket: %q}", b.id, b.bucket)
}

// GoString is String, so that %#v prints no credential either.
func (b *s3Backend) GoString() string { return b.String() }

// Close releases idle connections. The backend stays usable.
func (b *s3Backend) Close() error {
	b.transport.CloseIdleConnections()
	return nil
}

// begin checks ctx and key, the common start of every method.
func (b *s3Backend) begin(ctx context.Context, op, key string) error {
	return s3Begin(ctx, "s3", op, key)
}

// fail wraps err, returned by the S3 API for op on key, with context and the
// package's sentinel errors.
func (b *s3Backend) fail(ctx context.Context, op, key string, err error) error {
	code, status := awsErrorCode(err)
	return s3Fail(ctx, "s3", b.bucket, op, key, code, status, err)
}

// Get implements [Backend.Get]. The object is read from one GetObject response,
// so the reader sees a single version of it.
func (b *s3Backend) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := b.begin(ctx, "get", key); err != nil {
		return nil, err
	}
	out, err := b.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key)})
	if err != nil {
		return nil, b.fail(ctx, "get", key, err)
	}
	return out.Body, nil
}

// Put implements [Backend.Put] with a single PutObject request, which S3 makes
// atomic. A *bytes.Reader, *strings.Reader or regular *os.File is uploaded
// from its current position without a copy (its position is left as it was);
// a *bytes.Buffer is drained and uploaded without a copy. Any other reader is
// read to its end before the upload starts, the first 8 MiB into memory and
// the rest into a temporary file (in os.TempDir, removed when Put returns), so
// that a reader that fails stores nothing. Objects are limited to 5 GiB, S3's
// single-PUT limit (no multipart upload).
func (b *s3Backend) Put(ctx context.Context, key string, r io.Reader, opts PutOptions) error {
	if err := b.begin(ctx, "put", key); err != nil {
		return err
	}
	body, err := newS3Body(ctx, r, s3MaxSinglePut)
	if err != nil {
		return fmt.Errorf("storage: s3 put %q: %w", key, err)
	}
	defer body.close()
	contentType := opts.ContentType
	if contentType == "" {
		contentType = detectContentType(key, body.head)
	}
	_, err = b.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        aws.String(b.bucket),
		Key:           aws.String(key),
		Body:          body.SectionReader,
		ContentLength: aws.Int64(body.Size()),
		ContentType:   aws.String(contentType),
	})
	if err != nil {
		return b.fail(ctx, "put", key, err)
	}
	return nil
}

// Stat implements [Backend.Stat] with HeadObject.
func (b *s3Backend) Stat(ctx context.Context, key string) (Attributes, error) {
	if err := b.begin(ctx, "stat", key); err != nil {
		return Attributes{}, err
	}
	out, err := b.head(ctx, "stat", key)
	if err != nil {
		return Attributes{}, err
	}
	return Attributes{
		Size:        aws.ToInt64(out.ContentLength),
		ContentType: s3ContentType(key, aws.ToString(out.ContentType)),
		ModTime:     aws.ToTime(out.LastModified),
	}, nil
}

// Delete implements [Backend.Delete]. S3's DeleteObject succeeds for a missing
// key, so Delete asks HeadObject first; a concurrent Delete of the same key may
// therefore both succeed.
func (b *s3Backend) Delete(ctx context.Context, key string) error {
	if err := b.begin(ctx, "delete", key); err != nil {
		return err
	}
	if _, err := b.head(ctx, "delete", key); err != nil {
		return err
	}
	_, err := b.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key)})
	if err != nil {
		return b.fail(ctx, "delete", key, err)
	}
	return nil
}

// head is HeadObject with its errors mapped. A HEAD response has no body, so a
// missing bucket and a missing object both look like a bare 404: on a 404 head
// asks HeadBucket which one it is.
func (b *s3Backend) head(ctx context.Context, op, key string) (*s3.HeadObjectOutput, error) {
	out, err := b.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key)})
	if err == nil {
		return out, nil
	}
	if code, status := awsErrorCode(err); s3IsNotFound(code, status) && ctx.Err() == nil {
		_, bucketErr := b.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(b.bucket)})
		if code, status := awsErrorCode(bucketErr); bucketErr != nil && s3IsNotFound(code, status) {
			return nil, s3Fail(ctx, "s3", b.bucket, op, key, "NoSuchBucket", status, bucketErr)
		}
	}
	return nil, b.fail(ctx, op, key, err)
}

// awsErrorCode returns the S3 error code and HTTP status of an aws-sdk-go-v2
// error ("" and 0 when err carries none).
func awsErrorCode(err error) (code string, status int) {
	if err == nil {
		return "", 0
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		code = apiErr.ErrorCode()
	}
	var respErr *awshttp.ResponseError
	if errors.As(err, &respErr) {
		status = respErr.HTTPStatusCode()
	}
	return code, status
}

// s3EndpointURL parses an endpoint (already checked to be an http(s) URL with
// a host) and refuses the parts the S3 backends cannot use. Errors never
// repeat the endpoint, which might hide a secret.
func s3EndpointURL(endpoint string) (*url.URL, error) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("endpoint must be an http:// or https:// URL with a host")
	}
	if u.User != nil {
		return nil, errors.New("endpoint must not contain user information (put secrets in credentials)")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, errors.New("endpoint must not have a query or a fragment")
	}
	return u, nil
}

// newS3Transport is the HTTP transport of the S3-protocol backends: bounded
// connect, TLS handshake and response-header waits (a request's overall time
// is bounded by its context), no transparent decompression (objects stored
// with Content-Encoding: gzip come back as stored), proxies from the
// environment as usual for HTTP clients.
func newS3Transport() *http.Transport {
	return &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   10 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: 2 * time.Minute,
		DisableCompression:    true,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
	}
}

// newS3HTTPClient is the aws-s3 backend's HTTP client: redirects are not
// followed (S3 answers a wrong region with a redirect that must surface as an
// error, not be chased with the wrong signature).
func newS3HTTPClient(tr *http.Transport) *http.Client {
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// s3Begin checks ctx and key, the common start of every S3-protocol method.
func s3Begin(ctx context.Context, provider, op, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("storage: %s %s %q: %w", provider, op, key, err)
	}
	if err := ValidateKey(key); err != nil {
		return fmt.Errorf("storage: %s %s: %w", provider, op, err)
	}
	return nil
}

// s3IsNotFound reports whether an S3 error code and status mean "no such
// object" (or, for a HEAD request, possibly "no such bucket").
func s3IsNotFound(code string, status int) bool {
	switch code {
	case "NoSuchKey", "NotFound":
		return true
	case "":
		return status == http.StatusNotFound
	}
	return false
}

// s3Fail wraps err, returned by an S3-protocol client for op on key, with
// context: the context's error when ctx is done, [ErrNotFound] for a missing
// object, a plain statement for a missing bucket or refused credentials. The
// SDK's error stays in the chain (errors.As finds it).
func s3Fail(ctx context.Context, provider, bucket, op, key, code string, status int, err error) error {
	prefix := fmt.Sprintf("storage: %s %s %q", provider, op, key)
	if ctxErr := ctx.Err(); ctxErr != nil {
		if errors.Is(err, ctxErr) {
			return fmt.Errorf("%s: %w", prefix, err)
		}
		return fmt.Errorf("%s: %w (%w)", prefix, ctxErr, err)
	}
	switch {
	case code == "NoSuchBucket":
		return fmt.Errorf("%s: bucket %q does not exist: %w", prefix, bucket, err)
	case s3IsNotFound(code, status):
		return fmt.Errorf("%s: %w: %w", prefix, ErrNotFound, err)
	case code == "InvalidAccessKeyId" || code == "SignatureDoesNotMatch" || code == "InvalidToken" ||
		code == "ExpiredToken" || code == "AccessDenied" || status == http.StatusForbidden:
		return fmt.Errorf("%s: access to bucket %q refused (check the backend's credentials and permissions): %w", prefix, bucket, err)
	}
	return fmt.Errorf("%s: %w", prefix, err)
}

// s3ContentType is the content type Stat reports: the one recorded with the
// object or, when there is none, the one its key's extension implies, else
// application/octet-stream.
func s3ContentType(key, recorded string) string {
	if recorded != "" {
		return recorded
	}
	// A NUL byte sniffs as application/octet-stream, the answer for keys
	// without a known extension.
	return detectContentType(key, []byte{0})
}

// s3Body is a Put body of known length that can be read again (to sign it,
// and to retry), and its first bytes for content type detection.
type s3Body struct {
	*io.SectionReader
	head    []byte
	cleanup func()
}

// close releases the temporary file behind b, if any.
func (b *s3Body) close() {
	if b.cleanup != nil {
		b.cleanup()
	}
}

// newS3Body prepares r for an upload of at most maxSize bytes. Readers whose
// remaining length is known (*bytes.Reader, *strings.Reader, *bytes.Buffer,
// regular *os.File) are used in place, from their current position. Any other
// reader is read to its end (stopping with ctx's error when ctx is done): up to
// s3PutMemoryLimit bytes in memory, the rest in a temporary file.
func newS3Body(ctx context.Context, r io.Reader, maxSize int64) (*s3Body, error) {
	var (
		section *io.SectionReader
		err     error
	)
	switch v := r.(type) {
	case *bytes.Reader:
		section = io.NewSectionReader(v, v.Size()-int64(v.Len()), int64(v.Len()))
	case *strings.Reader:
		section = io.NewSectionReader(v, v.Size()-int64(v.Len()), int64(v.Len()))
	case *bytes.Buffer:
		data := v.Next(v.Len())
		section = io.NewSectionReader(bytes.NewReader(data), 0, int64(len(data)))
	case *os.File:
		section, err = fileSection(v)
		if err != nil {
			return nil, err
		}
	}
	if section == nil {
		return spoolS3Body(ctx, r, maxSize)
	}
	if section.Size() > maxSize {
		return nil, fmt.Errorf("object is %d bytes, the limit is %d", section.Size(), maxSize)
	}
	head := make([]byte, min(sniffLen, section.Size()))
	n, err := section.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read body: %w", err)
	}
	return &s3Body{SectionReader: section, head: head[:n]}, nil
}

// fileSection is the rest of f from its current offset when f is a regular
// file, or nil when it is not (a pipe, a terminal) and must be read through.
func fileSection(f *os.File) (*io.SectionReader, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, nil
	}
	off, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	return io.NewSectionReader(f, off, max(fi.Size()-off, 0)), nil
}

// spoolS3Body reads r to its end, in memory up to s3PutMemoryLimit bytes and
// in a temporary file beyond.
func spoolS3Body(ctx context.Context, r io.Reader, maxSize int64) (*s3Body, error) {
	src := ctxReader{ctx: ctx, r: r}
	var mem bytes.Buffer
	n, err := io.CopyN(&mem, src, min(s3PutMemoryLimit, maxSize)+1)
	if errors.Is(err, io.EOF) {
		data := mem.Bytes()
		return &s3Body{
			SectionReader: io.NewSectionReader(bytes.NewReader(data), 0, int64(len(data))),
			head:          data[:min(sniffLen, len(data))],
		}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if n > maxSize {
		return nil, fmt.Errorf("object is larger than the limit of %d bytes", maxSize)
	}
	f, err := os.CreateTemp("", "pipeweave-put-*")
	if err != nil {
		return nil, fmt.Errorf("spool body: %w", err)
	}
	cleanup := func() {
		_ = f.Close()
		_ = os.Remove(f.Name())
	}
	head := bytes.Clone(mem.Bytes()[:sniffLen])
	written, err := mem.WriteTo(f)
	if err == nil {
		var more int64
		more, err = io.Copy(f, io.LimitReader(src, maxSize-written+1))
		written += more
	}
	if err != nil {
		cleanup()
		return nil, fmt.Errorf("spool body: %w", err)
	}
	if written > maxSize {
		cleanup()
		return nil, fmt.Errorf("object is larger than the limit of %d bytes", maxSize)
	}
	return &s3Body{SectionReader: io.NewSectionReader(f, 0, written), head: head, cleanup: cleanup}, nil
}
