// Package minio is the storage driver of provider "minio": objects in a bucket
// of a MinIO (or other S3-compatible) server, with minio-go. Importing it
// registers the provider with package storage:
//
//	import _ "github.com/pipeweave/pipeweave/core/storage/minio"
package minio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/pipeweave/pipeweave/core/storage"
	"github.com/pipeweave/pipeweave/core/storage/driver"
	"github.com/pipeweave/pipeweave/core/storage/internal/s3proto"
)

func init() { storage.Register(storage.ProviderMinIO, open) }

// emptySHA256Hex is the hex SHA-256 of no bytes.
const emptySHA256Hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// minioDriver stores objects in a bucket of an S3-compatible server.
//
// The client uses only the configuration: static credentials (accessKey,
// secretKey), the endpoint (https:// for TLS, http:// without) and the region
// when one is set. Without a region minio-go asks the server for the bucket's
// location once (and caches it). Buckets are addressed path-style
// (http://host/bucket/key). Opening performs no network I/O: a missing bucket
// or refused credentials show up in the first call's error.
type minioDriver struct {
	id        string
	bucket    string
	client    *minio.Client
	transport *http.Transport
}

var _ driver.Backend = (*minioDriver)(nil)

// open is the opener of provider minio; cfg has been validated.
func open(_ context.Context, cfg storage.Config) (driver.Backend, error) {
	u, err := s3proto.EndpointURL(cfg.Endpoint)
	if err != nil {
		return nil, err
	}
	if strings.Trim(u.Path, "/") != "" {
		return nil, errors.New("endpoint must not have a path (minio wants scheme://host[:port])")
	}
	transport := s3proto.NewTransport()
	client, err := minio.New(u.Host, &minio.Options{
		Creds:        credentials.NewStaticV4(cfg.Credential("accessKey"), cfg.Credential("secretKey"), ""),
		Secure:       u.Scheme == "https",
		Transport:    transport,
		Region:       cfg.Region,
		BucketLookup: minio.BucketLookupPath,
		MaxRetries:   s3proto.MaxAttempts,
	})
	if err != nil {
		return nil, fmt.Errorf("create minio client: %w", err)
	}
	return &minioDriver{id: cfg.ID, bucket: cfg.Bucket, client: client, transport: transport}, nil
}

// String names the backend without any credential.
func (b *minioDriver) String() string {
	return fmt.Sprintf("minio{id: %q, bucket: %q}", b.id, b.bucket)
}

// Close implements [driver.Backend.Close]: it releases idle connections.
func (b *minioDriver) Close() error {
	b.transport.CloseIdleConnections()
	return nil
}

// KeyProblem implements [driver.Backend.KeyProblem]: S3-compatible servers
// take every key storage.ValidateKey accepts.
func (b *minioDriver) KeyProblem(string) string { return "" }

// IsNotFound implements [driver.Backend.IsNotFound].
func (b *minioDriver) IsNotFound(err error) bool { return s3proto.IsNotFound(err) }

// explain classifies err, returned by minio-go, by its S3 error code and
// status.
func (b *minioDriver) explain(err error) error {
	var code string
	var status int
	var resp minio.ErrorResponse
	if errors.As(err, &resp) {
		code, status = resp.Code, resp.StatusCode
	}
	return &s3proto.Error{Bucket: b.bucket, Code: code, Status: status, Err: err}
}

// Get implements [driver.Backend.Get]. The object is read from one GET
// response, so the reader sees a single version of it (minio.Client.GetObject
// would issue its request lazily, and again on seeks).
func (b *minioDriver) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	rc, _, _, err := minio.Core{Client: b.client}.GetObject(ctx, b.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, b.explain(err)
	}
	return rc, nil
}

// Put implements [driver.Backend.Put]. The body is prepared as for the aws-s3
// driver (s3proto.NewBody: known-length readers in place, any other reader read
// to its end first), so minio-go always knows the size: objects up to 16 MiB
// go up in one PUT, larger ones in a multipart upload, which S3 completes
// atomically. Objects are limited to 5 TiB.
func (b *minioDriver) Put(ctx context.Context, key string, r io.Reader, contentType string) error {
	body, err := s3proto.NewBody(ctx, r, s3proto.MaxObjectSize)
	if err != nil {
		return err
	}
	defer body.Close()
	if contentType == "" {
		contentType = driver.DetectContentType(key, body.Head)
	}
	putOpts := minio.PutObjectOptions{ContentType: contentType}
	if body.Size() == 0 {
		// Over http://, minio-go signs uploads with aws-chunked streaming
		// signatures but, for an empty body, sends them without a
		// Content-Length (as Transfer-Encoding: chunked), which S3 refuses.
		// Send the empty object with an ordinary signed payload instead.
		putOpts.DisableContentSha256 = true
		_, err = minio.Core{Client: b.client}.PutObject(ctx, b.bucket, key, body.SectionReader, 0, "", emptySHA256Hex, putOpts)
	} else {
		_, err = b.client.PutObject(ctx, b.bucket, key, body.SectionReader, body.Size(), putOpts)
	}
	if err != nil {
		return b.explain(err)
	}
	return nil
}

// Stat implements [driver.Backend.Stat] with a HEAD request.
func (b *minioDriver) Stat(ctx context.Context, key string) (driver.Attributes, error) {
	info, err := b.head(ctx, key)
	if err != nil {
		return driver.Attributes{}, err
	}
	return driver.Attributes{
		Size:        info.Size,
		ContentType: s3proto.ContentType(key, info.ContentType),
		ModTime:     info.LastModified,
	}, nil
}

// Delete implements [driver.Backend.Delete]. S3's DELETE succeeds for a
// missing key, so Delete sends a HEAD first; a concurrent Delete of the same
// key may therefore both succeed.
func (b *minioDriver) Delete(ctx context.Context, key string) error {
	if _, err := b.head(ctx, key); err != nil {
		return err
	}
	if err := b.client.RemoveObject(ctx, b.bucket, key, minio.RemoveObjectOptions{}); err != nil {
		return b.explain(err)
	}
	return nil
}

// head is StatObject with its errors classified. A HEAD response has no body,
// so a missing bucket and a missing object both look like a bare 404 (which
// minio-go reports as NoSuchKey): on a 404 head asks BucketExists which one it
// is.
func (b *minioDriver) head(ctx context.Context, key string) (minio.ObjectInfo, error) {
	info, err := b.client.StatObject(ctx, b.bucket, key, minio.StatObjectOptions{})
	if err == nil {
		return info, nil
	}
	err = b.explain(err)
	if s3proto.IsNotFound(err) && ctx.Err() == nil {
		if exists, bucketErr := b.client.BucketExists(ctx, b.bucket); bucketErr == nil && !exists {
			return minio.ObjectInfo{}, b.explain(minio.ErrorResponse{
				Code:       "NoSuchBucket",
				Message:    "The specified bucket does not exist",
				BucketName: b.bucket,
				StatusCode: http.StatusNotFound,
			})
		}
	}
	return minio.ObjectInfo{}, err
}
