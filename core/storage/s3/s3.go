// Package s3 is the storage driver of provider "aws-s3": objects in an AWS S3
// bucket (or an S3-compatible server reached through a custom endpoint), with
// aws-sdk-go-v2. Importing it registers the provider with package storage:
//
//	import _ "github.com/pipeweave/pipeweave/core/storage/s3"
package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/pipeweave/pipeweave/core/storage"
	"github.com/pipeweave/pipeweave/core/storage/driver"
	"github.com/pipeweave/pipeweave/core/storage/internal/s3proto"
)

func init() { storage.Register(storage.ProviderAWSS3, open) }

// awsGlobalHost is the endpoint host of the README's default aws-s3 endpoint,
// https://s3.amazonaws.com; it selects the SDK's own regional endpoint
// resolution (virtual-hosted-style addressing).
const awsGlobalHost = "s3.amazonaws.com"

// s3Driver stores objects in an S3 bucket.
//
// The client uses only the configuration: static credentials (accessKeyId,
// secretAccessKey and the optional sessionToken), the configured region and
// endpoint. It never reads AWS_* environment variables or shared config files.
// Opening performs no network I/O: a missing bucket or refused credentials show
// up in the first call's error.
type s3Driver struct {
	id        string
	bucket    string
	client    *s3.Client
	transport *http.Transport
}

var _ driver.Backend = (*s3Driver)(nil)

// open is the opener of provider aws-s3; cfg has been validated.
//
// An empty endpoint or the global https://s3.amazonaws.com uses the SDK's
// endpoint for the region with virtual-hosted-style addressing and the SDK's
// default request and response checksums. Any other endpoint (an S3-compatible
// server, a regional or VPC endpoint) is used as given, with path-style
// addressing (http://host/bucket/key) and checksums only where the API
// requires them, since many S3-compatible servers reject the SDK's default
// CRC32 checksums and aws-chunked trailers.
func open(_ context.Context, cfg storage.Config) (driver.Backend, error) {
	var endpoint string
	if cfg.Endpoint != "" {
		u, err := s3proto.EndpointURL(cfg.Endpoint)
		if err != nil {
			return nil, err
		}
		if !(u.Scheme == "https" && strings.EqualFold(u.Host, awsGlobalHost) && strings.Trim(u.Path, "/") == "") {
			endpoint = strings.TrimSuffix(u.String(), "/")
		}
	}
	transport := s3proto.NewTransport()
	opts := s3.Options{
		Region: cfg.Region,
		Credentials: aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider(
			cfg.Credential("accessKeyId"), cfg.Credential("secretAccessKey"), cfg.Credential("sessionToken"))),
		HTTPClient: newHTTPClient(transport),
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = s3proto.MaxAttempts
		}),
		DisableLogOutputChecksumValidationSkipped: true,
	}
	if endpoint != "" {
		opts.BaseEndpoint = aws.String(endpoint)
		opts.UsePathStyle = true
		opts.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		opts.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	}
	return &s3Driver{
		id:        cfg.ID,
		bucket:    cfg.Bucket,
		client:    s3.New(opts),
		transport: transport,
	}, nil
}

// newHTTPClient is the driver's HTTP client: redirects are not followed (S3
// answers a wrong region with a redirect that must surface as an error, not be
// chased with the wrong signature).
func newHTTPClient(tr *http.Transport) *http.Client {
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// String names the backend without any credential.
func (b *s3Driver) String() string {
	return fmt.Sprintf("s3{id: %q, bucket: %q}", b.id, b.bucket)
}

// Close implements [driver.Backend.Close]: it releases idle connections.
func (b *s3Driver) Close() error {
	b.transport.CloseIdleConnections()
	return nil
}

// KeyProblem implements [driver.Backend.KeyProblem]: S3 takes every key
// storage.ValidateKey accepts.
func (b *s3Driver) KeyProblem(string) string { return "" }

// IsNotFound implements [driver.Backend.IsNotFound].
func (b *s3Driver) IsNotFound(err error) bool { return s3proto.IsNotFound(err) }

// explain classifies err, returned by the S3 API, by its error code and status.
func (b *s3Driver) explain(err error) error {
	code, status := errorCode(err)
	return &s3proto.Error{Bucket: b.bucket, Code: code, Status: status, Err: err}
}

// Get implements [driver.Backend.Get]. The object is read from one GetObject
// response, so the reader sees a single version of it.
func (b *s3Driver) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	out, err := b.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key)})
	if err != nil {
		return nil, b.explain(err)
	}
	return out.Body, nil
}

// Put implements [driver.Backend.Put] with a single PutObject request, which
// S3 makes atomic. The body is prepared by s3proto.NewBody: a *bytes.Reader,
// *strings.Reader or regular *os.File is uploaded from its current position
// without a copy (its position is left as it was); a *bytes.Buffer is drained
// and uploaded without a copy; any other reader is read to its end before the
// upload starts. Objects are limited to 5 GiB, S3's single-PUT limit (no
// multipart upload).
func (b *s3Driver) Put(ctx context.Context, key string, r io.Reader, contentType string) error {
	body, err := s3proto.NewBody(ctx, r, s3proto.MaxSinglePut)
	if err != nil {
		return err
	}
	defer body.Close()
	if contentType == "" {
		contentType = driver.DetectContentType(key, body.Head)
	}
	_, err = b.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        aws.String(b.bucket),
		Key:           aws.String(key),
		Body:          body.SectionReader,
		ContentLength: aws.Int64(body.Size()),
		ContentType:   aws.String(contentType),
	})
	if err != nil {
		return b.explain(err)
	}
	return nil
}

// Stat implements [driver.Backend.Stat] with HeadObject.
func (b *s3Driver) Stat(ctx context.Context, key string) (driver.Attributes, error) {
	out, err := b.head(ctx, key)
	if err != nil {
		return driver.Attributes{}, err
	}
	return driver.Attributes{
		Size:        aws.ToInt64(out.ContentLength),
		ContentType: s3proto.ContentType(key, aws.ToString(out.ContentType)),
		ModTime:     aws.ToTime(out.LastModified),
	}, nil
}

// Delete implements [driver.Backend.Delete]. S3's DeleteObject succeeds for a
// missing key, so Delete asks HeadObject first; a concurrent Delete of the same
// key may therefore both succeed.
func (b *s3Driver) Delete(ctx context.Context, key string) error {
	if _, err := b.head(ctx, key); err != nil {
		return err
	}
	_, err := b.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key)})
	if err != nil {
		return b.explain(err)
	}
	return nil
}

// head is HeadObject with its errors classified. A HEAD response has no body,
// so a missing bucket and a missing object both look like a bare 404: on a 404
// head asks HeadBucket which one it is.
func (b *s3Driver) head(ctx context.Context, key string) (*s3.HeadObjectOutput, error) {
	out, err := b.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key)})
	if err == nil {
		return out, nil
	}
	if code, status := errorCode(err); s3proto.CodeIsNotFound(code, status) && ctx.Err() == nil {
		_, bucketErr := b.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(b.bucket)})
		if code, status := errorCode(bucketErr); bucketErr != nil && s3proto.CodeIsNotFound(code, status) {
			return nil, &s3proto.Error{Bucket: b.bucket, Code: "NoSuchBucket", Status: status, Err: bucketErr}
		}
	}
	return nil, b.explain(err)
}

// errorCode returns the S3 error code and HTTP status of an aws-sdk-go-v2
// error ("" and 0 when err carries none).
func errorCode(err error) (code string, status int) {
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
