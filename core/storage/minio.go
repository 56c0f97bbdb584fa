package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

func init() { openers[ProviderMinIO] = openMinIO }

// emptySHA256Hex is the hex SHA-256 of no bytes.
const emptySHA256Hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// minioBackend stores objects in a bucket of a MinIO (or other S3-compatible)
// server with minio-go.
//
// The client uses only the configuration: static credentials (accessKey,
// secretKey), the endpoint (https:// for TLS, http:// without) and the region
// when one is set. Without a region minio-go asks the server for the bucket's
// location once (and caches it). Buckets are addressed path-style
// (http://host/bucket/key). Open performs no network I/O: a missing bucket or
// refused credentials show up in the first call's error.
type minioBackend struct {
	id        string
	bucket    string
	client    *minio.Client
	transport *http.Transport
}

var _ Backend = (*minioBackend)(nil)

// openMinIO is the opener of ProviderMinIO; cfg has been validated.
func openMinIO(_ context.Context, cfg Config) (Backend, error) {
	u, err := s3EndpointURL(cfg.Endpoint)
	if err != nil {
		return nil, err
	}
	if strings.Trim(u.Path, "/") != "" {
		return nil, errors.New("endpoint must not have a path (minio wants scheme://host[:port])")
	}
	transport := newS3Transport()
	client, err := minio.New(u.Host, &minio.Options{
		Creds:        credentials.NewStaticV4(cfg.credential("accessKey"), cfg.credential("secretKey"), ""),
		Secure:       u.Scheme == "https",
		Transport:    transport,
		Region:       cfg.Region,
		BucketLookup: minio.BucketLookupPath,
		MaxRetries:   s3MaxAttempts,
	})
	if err != nil {
		return nil, fmt.Errorf("create minio client: %w", err)
	}
	return &minioBackend{id: cfg.ID, bucket: cfg.Bucket, client: client, transport: transport}, nil
}

// String names the backend without any credential.
func (b *minioBackend) String() string {
	return fmt.Sprintf("storage.minioBackend{id: %q, bucket: %q}", b.id, b.bucket)
}

// GoString is String, so that %#v prints no credential either.
func (b *minioBackend) GoString() string { return b.String() }

// Close releases idle connections. The backend stays usable.
func (b *minioBackend) Close() error {
	b.transport.CloseIdleConnections()
	return nil
}

// begin checks ctx and key, the common start of every method.
func (b *minioBackend) begin(ctx context.Context, op, key string) error {
	return s3Begin(ctx, "minio", op, key)
}

// fail wraps err, returned by minio-go for op on key, with context and the
// package's sentinel errors.
func (b *minioBackend) fail(ctx context.Context, op, key string, err error) error {
	code, status := minioErrorCode(err)
	return s3Fail(ctx, "minio", b.bucket, op, key, code, status, err)
}

// minioErrorCode returns the S3 error code and HTTP status of a minio-go error
// ("" and 0 when err carries none).
func minioErrorCode(err error) (code string, status int) {
	var resp minio.ErrorResponse
	if errors.As(err, &resp) {
		return resp.Code, resp.StatusCode
	}
	return "", 0
}

// Get implements [Backend.Get]. The object is read from one GET response, so
// the reader sees a single version of it (minio.Client.GetObject would issue
// its request lazily, and again on seeks).
func (b *minioBackend) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := b.begin(ctx, "get", key); err != nil {
		return nil, err
	}
	rc, _, _, err := minio.Core{Client: b.client}.GetObject(ctx, b.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, b.fail(ctx, "get", key, err)
	}
	return rc, nil
}

// Put implements [Backend.Put]. The body is prepared as for the aws-s3 backend
// (known-length readers in place, any other reader read to its end first, up to
// 8 MiB in memory and the rest in a temporary file), so minio-go always knows
// the size: objects up to 16 MiB go up in one PUT, larger ones in a multipart
// upload, which S3 completes atomically. Objects are limited to 5 TiB.
func (b *minioBackend) Put(ctx context.Context, key string, r io.Reader, opts PutOptions) error {
	if err := b.begin(ctx, "put", key); err != nil {
		return err
	}
	body, err := newS3Body(ctx, r, s3MaxObjectSize)
	if err != nil {
		return fmt.Errorf("storage: minio put %q: %w", key, err)
	}
	defer body.close()
	contentType := opts.ContentType
	if contentType == "" {
		contentType = detectContentType(key, body.head)
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
		return b.fail(ctx, "put", key, err)
	}
	return nil
}

// Stat implements [Backend.Stat] with a HEAD request.
func (b *minioBackend) Stat(ctx context.Context, key string) (Attributes, error) {
	if err := b.begin(ctx, "stat", key); err != nil {
		return Attributes{}, err
	}
	info, err := b.head(ctx, "stat", key)
	if err != nil {
		return Attributes{}, err
	}
	return Attributes{
		Size:        info.Size,
		ContentType: s3ContentType(key, info.ContentType),
		ModTime:     info.LastModified,
	}, nil
}

// Delete implements [Backend.Delete]. S3's DELETE succeeds for a missing key,
// so Delete sends a HEAD first; a concurrent Delete of the same key may
// therefore both succeed.
func (b *minioBackend) Delete(ctx context.Context, key string) error {
	if err := b.begin(ctx, "delete", key); err != nil {
		return err
	}
	if _, err := b.head(ctx, "delete", key); err != nil {
		return err
	}
	if err := b.client.RemoveObject(ctx, b.bucket, key, minio.RemoveObjectOptions{}); err != nil {
		return b.fail(ctx, "delete", key, err)
	}
	return nil
}

// head is StatObject with its errors mapped. A HEAD response has no body, so a
// missing bucket and a missing object both look like a bare 404 (which
// minio-go reports as NoSuchKey): on a 404 head asks BucketExists which one it
// is.
func (b *minioBackend) head(ctx context.Context, op, key string) (minio.ObjectInfo, error) {
	info, err := b.client.StatObject(ctx, b.bucket, key, minio.StatObjectOptions{})
	if err == nil {
		return info, nil
	}
	if code, status := minioErrorCode(err); s3IsNotFound(code, status) && ctx.Err() == nil {
		if exists, bucketErr := b.client.BucketExists(ctx, b.bucket); bucketErr == nil && !exists {
			noBucket := minio.ErrorResponse{
				Code:       "NoSuchBucket",
				Message:    "The specified bucket does not exist",
				BucketName: b.bucket,
				StatusCode: http.StatusNotFound,
			}
			return minio.ObjectInfo{}, b.fail(ctx, op, key, noBucket)
		}
	}
	return minio.ObjectInfo{}, b.fail(ctx, op, key, err)
}
