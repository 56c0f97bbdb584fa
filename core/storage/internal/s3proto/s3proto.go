// Package s3proto is what the two S3-protocol drivers (aws-s3 and minio)
// share: the HTTP transport, the endpoint rules, the preparation of Put bodies
// (and with it the object size limits) and the classification of S3 error
// responses. It imports neither provider's SDK.
package s3proto

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

	"github.com/pipeweave/pipeweave/core/storage/driver"
)

// Limits and tuning of the S3-protocol drivers.
const (
	// PutMemoryLimit is how much of a Put body of unknown length is kept in
	// memory; longer bodies are spooled to a temporary file.
	PutMemoryLimit = 8 << 20
	// MaxSinglePut is the largest object one S3 PutObject request can store
	// (5 GiB), the aws-s3 driver's object size limit.
	MaxSinglePut = 5 << 30
	// MaxObjectSize is the largest S3 object (5 TiB), the minio driver's
	// object size limit (minio-go switches to multipart uploads by itself).
	MaxObjectSize = 5 << 40
	// MaxAttempts is how many times a failed request is tried in all.
	MaxAttempts = 3
)

// EndpointURL parses an endpoint (already checked to be an http(s) URL with a
// host) and refuses the parts the S3 drivers cannot use. Errors never repeat
// the endpoint, which might hide a secret.
func EndpointURL(endpoint string) (*url.URL, error) {
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

// NewTransport is the HTTP transport of the S3-protocol drivers: bounded
// connect, TLS handshake and response-header waits (a request's overall time
// is bounded by its context), no transparent decompression (objects stored
// with Content-Encoding: gzip come back as stored), proxies from the
// environment as usual for HTTP clients.
func NewTransport() *http.Transport {
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

// Error is a failed S3-protocol request with its S3 error code and HTTP
// status ("" and 0 when the response carried none). Its message states a
// missing bucket or refused credentials plainly; the SDK's error stays in the
// chain (errors.As finds it).
type Error struct {
	Bucket string
	Code   string
	Status int
	Err    error
}

// Error implements error.
func (e *Error) Error() string {
	switch {
	case e.Code == "NoSuchBucket":
		return fmt.Sprintf("bucket %q does not exist: %v", e.Bucket, e.Err)
	case e.Code == "InvalidAccessKeyId" || e.Code == "SignatureDoesNotMatch" || e.Code == "InvalidToken" ||
		e.Code == "ExpiredToken" || e.Code == "AccessDenied" || e.Status == http.StatusForbidden:
		return fmt.Sprintf("access to bucket %q refused (check the backend's credentials and permissions): %v", e.Bucket, e.Err)
	}
	return e.Err.Error()
}

// Unwrap returns the SDK's error.
func (e *Error) Unwrap() error { return e.Err }

// IsNotFound reports whether err is an [Error] meaning "no such object" (or,
// from a HEAD request not yet told apart from a missing bucket, a bare 404).
func IsNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && CodeIsNotFound(e.Code, e.Status)
}

// CodeIsNotFound reports whether an S3 error code and status mean "no such
// object" (or, for a HEAD request, possibly "no such bucket").
func CodeIsNotFound(code string, status int) bool {
	switch code {
	case "NoSuchKey", "NotFound":
		return true
	case "":
		return status == http.StatusNotFound
	}
	return false
}

// ContentType is the content type Stat reports: the one recorded with the
// object or, when there is none, the one its key's extension implies, else
// application/octet-stream.
func ContentType(key, recorded string) string {
	if recorded != "" {
		return recorded
	}
	// A NUL byte sniffs as application/octet-stream, the answer for keys
	// without a known extension.
	return driver.DetectContentType(key, []byte{0})
}

// Body is a Put body of known length that can be read again (to sign it, and
// to retry), and its first bytes for content type detection.
type Body struct {
	*io.SectionReader
	// Head is the body's first bytes (at most driver.SniffLen).
	Head    []byte
	cleanup func()
}

// Close releases the temporary file behind b, if any.
func (b *Body) Close() {
	if b.cleanup != nil {
		b.cleanup()
	}
}

// NewBody prepares r for an upload of at most maxSize bytes. Readers whose
// remaining length is known (*bytes.Reader, *strings.Reader, *bytes.Buffer,
// regular *os.File) are used in place, from their current position (a
// *bytes.Buffer is drained). Any other reader is read to its end (stopping
// with ctx's error when ctx is done), so that a reader that fails stores
// nothing: up to [PutMemoryLimit] bytes in memory, the rest in a temporary
// file (in os.TempDir, removed by Close).
func NewBody(ctx context.Context, r io.Reader, maxSize int64) (*Body, error) {
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
		return spool(ctx, r, maxSize)
	}
	if section.Size() > maxSize {
		return nil, fmt.Errorf("object is %d bytes, the limit is %d", section.Size(), maxSize)
	}
	head := make([]byte, min(driver.SniffLen, section.Size()))
	n, err := section.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read body: %w", err)
	}
	return &Body{SectionReader: section, Head: head[:n]}, nil
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

// spool reads r to its end, in memory up to PutMemoryLimit bytes and in a
// temporary file beyond.
func spool(ctx context.Context, r io.Reader, maxSize int64) (*Body, error) {
	src := driver.ContextReader(ctx, r)
	var mem bytes.Buffer
	n, err := io.CopyN(&mem, src, min(PutMemoryLimit, maxSize)+1)
	if errors.Is(err, io.EOF) {
		data := mem.Bytes()
		return &Body{
			SectionReader: io.NewSectionReader(bytes.NewReader(data), 0, int64(len(data))),
			Head:          data[:min(driver.SniffLen, len(data))],
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
	head := bytes.Clone(mem.Bytes()[:driver.SniffLen])
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
	return &Body{SectionReader: io.NewSectionReader(f, 0, written), Head: head, cleanup: cleanup}, nil
}
