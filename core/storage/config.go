package storage

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Provider names accepted in [Config.Provider].
const (
	// ProviderLocal keeps objects as files under credentials.basePath.
	ProviderLocal = "local"
	// ProviderAWSS3 is Amazon S3.
	ProviderAWSS3 = "aws-s3"
	// ProviderGCS is Google Cloud Storage.
	ProviderGCS = "gcs"
	// ProviderMinIO is a MinIO (S3-compatible) server.
	ProviderMinIO = "minio"
)

// providers lists every provider name [Config.Validate] accepts, in the order
// error messages show them.
var providers = []string{ProviderLocal, ProviderAWSS3, ProviderGCS, ProviderMinIO}

// requiredCredentials are the credential fields each provider needs, in the
// order error messages report them.
var requiredCredentials = map[string][]string{
	ProviderLocal: {"basePath"},
	ProviderAWSS3: {"accessKeyId", "secretAccessKey"},
	ProviderGCS:   {"projectId", "clientEmail", "privateKey"},
	ProviderMinIO: {"accessKey", "secretKey"},
}

// redacted replaces every credential value in printed and logged configs.
const redacted = "[redacted]"

// Config is one entry of STORAGE_BACKENDS (a JSON array):
// { id, provider: local|aws-s3|gcs|minio, endpoint, bucket, region?, credentials, isDefault? }.
//
// Credentials hold secrets. Config's String, GoString, Format and LogValue
// methods print only the credential keys, never their values, so a Config can
// be passed to fmt and log/slog safely. JSON encoding keeps the values (the
// orchestrator hands them to workers inside an encrypted token): never write a
// Config's JSON to a log or an API response.
type Config struct {
	// ID names the backend; run records refer to it.
	ID string `json:"id"`
	// Provider is one of local, aws-s3, gcs, minio.
	Provider string `json:"provider"`
	// Endpoint is the service URL (required for minio, optional for aws-s3). For local it may
	// be a file:// URL, as upstream's README writes it, and is ignored.
	Endpoint string `json:"endpoint,omitempty"`
	// Bucket is the bucket holding the objects (cloud providers). For local it is accepted and
	// ignored: objects live at credentials.basePath/key, as upstream's Node LocalProvider keeps
	// them.
	Bucket string `json:"bucket,omitempty"`
	// Region is the bucket's region (aws-s3).
	Region string `json:"region,omitempty"`
	// Credentials are the provider-specific settings and secrets: basePath
	// (local); accessKeyId, secretAccessKey (aws-s3); projectId, clientEmail,
	// privateKey (gcs); accessKey, secretKey (minio).
	Credentials map[string]any `json:"credentials,omitempty"`
	// IsDefault marks the default backend (at most one entry).
	IsDefault bool `json:"isDefault,omitempty"`
}

// ParseConfigs parses and validates the STORAGE_BACKENDS JSON array. It refuses
// text that is not JSON or not an array, an empty array, unknown fields, and
// every problem [Config.Validate] reports, duplicate ids and more than one
// isDefault entry. Messages name the backend (by id, or by position when the id
// is missing) and the offending field.
func ParseConfigs(jsonText string) ([]Config, error) {
	text := bytes.TrimSpace([]byte(jsonText))
	if len(text) == 0 {
		return nil, errors.New("storage backends: configuration is empty (want a JSON array of backends)")
	}
	if !json.Valid(text) {
		var raw json.RawMessage
		err := json.Unmarshal(text, &raw)
		return nil, fmt.Errorf("storage backends: not valid JSON: %w", err)
	}
	if text[0] != '[' {
		return nil, fmt.Errorf("storage backends: want a JSON array of backends, got %s", jsonKind(text))
	}
	var entries []json.RawMessage
	if err := json.Unmarshal(text, &entries); err != nil {
		return nil, fmt.Errorf("storage backends: %w", err)
	}
	if len(entries) == 0 {
		return nil, errors.New("storage backends: the array is empty (want at least one backend)")
	}
	cfgs := make([]Config, 0, len(entries))
	for i, entry := range entries {
		entry = bytes.TrimSpace(entry)
		if len(entry) == 0 || entry[0] != '{' {
			return nil, fmt.Errorf("storage backend #%d: want a JSON object, got %s", i+1, jsonKind(entry))
		}
		dec := json.NewDecoder(bytes.NewReader(entry))
		dec.DisallowUnknownFields()
		var cfg Config
		if err := dec.Decode(&cfg); err != nil {
			return nil, fmt.Errorf("%s: %w", entryName(i, cfg.ID), err)
		}
		cfgs = append(cfgs, cfg)
	}
	if err := validateConfigs(cfgs); err != nil {
		return nil, err
	}
	return cfgs, nil
}

// jsonKind names the kind of the JSON value starting text, for error messages.
func jsonKind(text []byte) string {
	if len(text) == 0 {
		return "nothing"
	}
	switch text[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}

// entryName names config entry i (0-based) in error messages.
func entryName(i int, id string) string {
	if strings.TrimSpace(id) == "" {
		return fmt.Sprintf("storage backend #%d", i+1)
	}
	return fmt.Sprintf("storage backend %q", id)
}

// validateConfigs checks each entry and the rules across entries: at least one
// backend, unique ids, at most one isDefault.
func validateConfigs(cfgs []Config) error {
	if len(cfgs) == 0 {
		return errors.New("storage backends: no backend configured")
	}
	var errs []error
	seen := make(map[string]int, len(cfgs))
	defaultAt := -1
	for i, cfg := range cfgs {
		if strings.TrimSpace(cfg.ID) == "" {
			errs = append(errs, fmt.Errorf("%s: id is required", entryName(i, "")))
			continue
		}
		if err := cfg.Validate(); err != nil {
			errs = append(errs, err)
		}
		if j, dup := seen[cfg.ID]; dup {
			errs = append(errs, fmt.Errorf("storage backend %q: duplicate id (entries #%d and #%d)", cfg.ID, j+1, i+1))
		} else {
			seen[cfg.ID] = i
		}
		if cfg.IsDefault {
			if defaultAt >= 0 {
				errs = append(errs, fmt.Errorf("storage backend %q: isDefault is also set on %q (at most one default)", cfg.ID, cfgs[defaultAt].ID))
			} else {
				defaultAt = i
			}
		}
	}
	return errors.Join(errs...)
}

// Validate checks one backend entry: id and provider are present, the provider
// is known, and the provider's required fields are set (local:
// credentials.basePath; aws-s3: bucket, region, credentials.accessKeyId and
// credentials.secretAccessKey; gcs: bucket, credentials.projectId,
// credentials.clientEmail and credentials.privateKey; minio: endpoint, bucket,
// credentials.accessKey and credentials.secretKey). Each problem is reported
// (joined) with the backend id and the field. Messages never contain a
// credential value.
func (c Config) Validate() error {
	if strings.TrimSpace(c.ID) == "" {
		return errors.New("storage backend: id is required")
	}
	name := fmt.Sprintf("storage backend %q", c.ID)
	if c.Provider == "" {
		return fmt.Errorf("%s: provider is required (one of %s)", name, strings.Join(providers, ", "))
	}
	if !slices.Contains(providers, c.Provider) {
		return fmt.Errorf("%s: unknown provider %q (want one of %s)", name, c.Provider, strings.Join(providers, ", "))
	}
	var errs []error
	need := func(field, value string) {
		if strings.TrimSpace(value) == "" {
			errs = append(errs, fmt.Errorf("%s: %s is required for provider %s", name, field, c.Provider))
		}
	}
	switch c.Provider {
	case ProviderAWSS3:
		need("bucket", c.Bucket)
		need("region", c.Region)
	case ProviderGCS:
		need("bucket", c.Bucket)
	case ProviderMinIO:
		need("endpoint", c.Endpoint)
		need("bucket", c.Bucket)
	}
	switch {
	case c.Endpoint == "":
	case c.Provider == ProviderLocal:
		// Upstream writes the local backend with endpoint "file://" and a bucket; both are
		// accepted and ignored: objects live at credentials.basePath/key, as upstream's Node
		// LocalProvider keeps them, so Node workers and the orchestrator agree.
		if u, err := url.Parse(c.Endpoint); err != nil || u.Scheme != "file" {
			errs = append(errs, fmt.Errorf("%s: endpoint must be empty or a file:// URL for provider local (it is ignored; objects live under credentials.basePath)", name))
		}
	default:
		if u, err := url.Parse(c.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("%s: endpoint must be an http:// or https:// URL with a host", name))
		}
	}
	for _, field := range requiredCredentials[c.Provider] {
		v, ok := c.Credentials[field]
		switch s, isString := v.(string); {
		case !ok || v == nil || (isString && strings.TrimSpace(s) == ""):
			errs = append(errs, fmt.Errorf("%s: credentials.%s is required", name, field))
		case !isString:
			errs = append(errs, fmt.Errorf("%s: credentials.%s must be a string", name, field))
		}
	}
	return errors.Join(errs...)
}

// Credential returns credentials[field] as a string ("" when absent or not a
// string).
func (c Config) Credential(field string) string {
	s, _ := c.Credentials[field].(string)
	return s
}

// clone returns a copy of c that shares no map with it.
func (c Config) clone() Config {
	c.Credentials = maps.Clone(c.Credentials)
	return c
}

// safeEndpoint is the endpoint with any URL password replaced by "xxxxx" (the
// whole endpoint redacted if it does not parse as a URL).
func (c Config) safeEndpoint() string {
	if c.Endpoint == "" {
		return ""
	}
	u, err := url.Parse(c.Endpoint)
	if err != nil {
		// An endpoint that is not a URL could hide anything: print nothing of it.
		return redacted
	}
	return u.Redacted()
}

// credentialKeys returns the credential keys, sorted.
func (c Config) credentialKeys() []string {
	return slices.Sorted(maps.Keys(c.Credentials))
}

// String formats c like %+v would, with every credential value replaced by
// "[redacted]".
func (c Config) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "{ID:%s Provider:%s Endpoint:%s Bucket:%s Region:%s Credentials:map[",
		c.ID, c.Provider, c.safeEndpoint(), c.Bucket, c.Region)
	for i, k := range c.credentialKeys() {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(k + ":" + redacted)
	}
	fmt.Fprintf(&b, "] IsDefault:%t}", c.IsDefault)
	return b.String()
}

// GoString formats c like %#v would, with every credential value replaced by
// "[redacted]".
func (c Config) GoString() string {
	var b strings.Builder
	fmt.Fprintf(&b, "storage.Config{ID:%q, Provider:%q, Endpoint:%q, Bucket:%q, Region:%q, Credentials:",
		c.ID, c.Provider, c.safeEndpoint(), c.Bucket, c.Region)
	if c.Credentials == nil {
		b.WriteString("map[string]interface {}(nil)")
	} else {
		b.WriteString("map[string]interface {}{")
		for i, k := range c.credentialKeys() {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(strconv.Quote(k) + ":" + strconv.Quote(redacted))
		}
		b.WriteString("}")
	}
	fmt.Fprintf(&b, ", IsDefault:%t}", c.IsDefault)
	return b.String()
}

// Format implements fmt.Formatter so that no verb (%v, %+v, %#v, %s, %q, %x,
// %d, ...) can print a credential value: %#v prints [Config.GoString], %q the
// quoted [Config.String], every other verb [Config.String].
func (c Config) Format(f fmt.State, verb rune) {
	switch {
	case verb == 'v' && f.Flag('#'):
		_, _ = io.WriteString(f, c.GoString())
	case verb == 'q':
		_, _ = io.WriteString(f, strconv.Quote(c.String()))
	default:
		_, _ = io.WriteString(f, c.String())
	}
}

// LogValue implements slog.LogValuer: the config as a group whose credentials
// subgroup holds each key with the value "[redacted]".
func (c Config) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("id", c.ID),
		slog.String("provider", c.Provider),
	}
	if c.Endpoint != "" {
		attrs = append(attrs, slog.String("endpoint", c.safeEndpoint()))
	}
	if c.Bucket != "" {
		attrs = append(attrs, slog.String("bucket", c.Bucket))
	}
	if c.Region != "" {
		attrs = append(attrs, slog.String("region", c.Region))
	}
	if len(c.Credentials) > 0 {
		creds := make([]slog.Attr, 0, len(c.Credentials))
		for _, k := range c.credentialKeys() {
			creds = append(creds, slog.String(k, redacted))
		}
		attrs = append(attrs, slog.Attr{Key: "credentials", Value: slog.GroupValue(creds...)})
	}
	attrs = append(attrs, slog.Bool("isDefault", c.IsDefault))
	return slog.GroupValue(attrs...)
}
