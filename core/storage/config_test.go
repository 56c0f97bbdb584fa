package storage_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/storage"
)

// seedBackends is the STORAGE_BACKENDS example of the orchestrator README.
const seedBackends = `[
  {
    "id": "primary-s3",
    "provider": "aws-s3",
    "endpoint": "https://s3.amazonaws.com",
    "bucket": "pipeweave-prod",
    "region": "us-east-1",
    "credentials": {"accessKeyId": "AKIAEXAMPLE", "secretAccessKey": "s3-secret-value"},
    "isDefault": true
  },
  {
    "id": "gcs-backup",
    "provider": "gcs",
    "endpoint": "https://storage.googleapis.com",
    "bucket": "pipeweave-backup",
    "credentials": {
      "projectId": "my-project",
      "clientEmail": "service-account@example.iam.gserviceaccount.com",
      "privateKey": "-----BEGIN PRIVATE KEY-----\ngcs-secret-value\n-----END PRIVATE KEY-----\n"
    }
  },
  {
    "id": "local-minio",
    "provider": "minio",
    "endpoint": "http://localhost:9000",
    "bucket": "pipeweave-dev",
    "credentials": {"accessKey": "minioadmin", "secretKey": "minio-secret-value"}
  },
  {"id": "local", "provider": "local", "credentials": {"basePath": "./storage"}}
]`

func TestParseConfigsSeedExample(t *testing.T) {
	t.Parallel()
	cfgs, err := storage.ParseConfigs(seedBackends)
	require.NoError(t, err)
	require.Len(t, cfgs, 4)
	require.Equal(t, storage.Config{
		ID:       "primary-s3",
		Provider: storage.ProviderAWSS3,
		Endpoint: "https://s3.amazonaws.com",
		Bucket:   "pipeweave-prod",
		Region:   "us-east-1",
		Credentials: map[string]any{
			"accessKeyId":     "AKIAEXAMPLE",
			"secretAccessKey": "s3-secret-value",
		},
		IsDefault: true,
	}, cfgs[0])
	require.Equal(t, "gcs-backup", cfgs[1].ID)
	require.Equal(t, storage.ProviderMinIO, cfgs[2].Provider)
	require.Equal(t, map[string]any{"basePath": "./storage"}, cfgs[3].Credentials)
	for _, cfg := range cfgs {
		require.NoError(t, cfg.Validate())
	}
}

func TestParseConfigsErrors(t *testing.T) {
	t.Parallel()
	local := func(extra string) string {
		return `{"id":"disk","provider":"local","credentials":{"basePath":"/tmp/x"}` + extra + `}`
	}
	tests := []struct {
		name  string
		input string
		want  []string // substrings of the error
	}{
		{"blank", "  \n", []string{"empty"}},
		{"not JSON", "id=disk", []string{"not valid JSON"}},
		{"truncated JSON", `[{"id":"disk"`, []string{"not valid JSON"}},
		{"object not array", local(""), []string{"want a JSON array", "an object"}},
		{"string not array", `"disk"`, []string{"want a JSON array", "a string"}},
		{"empty array", "[]", []string{"array is empty"}},
		{"entry not object", `[` + local("") + `, 7]`, []string{"storage backend #2", "want a JSON object", "a number"}},
		{"null entry", `[null]`, []string{"storage backend #1", "want a JSON object", "null"}},
		{"missing id", `[{"provider":"local","credentials":{"basePath":"/x"}}]`, []string{"storage backend #1", "id is required"}},
		{"blank id", `[` + local("") + `, {"id":"  ","provider":"local","credentials":{"basePath":"/x"}}]`, []string{"storage backend #2", "id is required"}},
		{"duplicate id", `[` + local("") + `,` + local("") + `]`, []string{`storage backend "disk"`, "duplicate id", "#1", "#2"}},
		{"missing provider", `[{"id":"disk","credentials":{"basePath":"/x"}}]`, []string{`storage backend "disk"`, "provider is required"}},
		{"unknown provider", `[{"id":"disk","provider":"s4","credentials":{"basePath":"/x"}}]`, []string{`storage backend "disk"`, `unknown provider "s4"`, "local, aws-s3, gcs, minio"}},
		{"two defaults", `[` + local(`,"isDefault":true`) + `,{"id":"other","provider":"local","isDefault":true,"credentials":{"basePath":"/y"}}]`, []string{`storage backend "other"`, "isDefault", `"disk"`}},
		{"unknown field", `[` + local(`,"isDefualt":true`) + `]`, []string{`storage backend "disk"`, `unknown field "isDefualt"`}},
		{"wrong type", `[` + local(`,"isDefault":"yes"`) + `]`, []string{`storage backend "disk"`, "isDefault"}},
		{"local without basePath", `[{"id":"x","provider":"local"}]`, []string{`storage backend "x": credentials.basePath is required`}},
		{"local empty basePath", `[{"id":"x","provider":"local","credentials":{"basePath":""}}]`, []string{`storage backend "x": credentials.basePath is required`}},
		{"local basePath not string", `[{"id":"x","provider":"local","credentials":{"basePath":42}}]`, []string{`storage backend "x": credentials.basePath must be a string`}},
		{"bad endpoint", `[{"id":"m","provider":"minio","endpoint":"localhost:9000","bucket":"b","credentials":{"accessKey":"a","secretKey":"s"}}]`, []string{`storage backend "m": endpoint must be an http:// or https:// URL`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfgs, err := storage.ParseConfigs(tc.input)
			require.Error(t, err)
			require.Nil(t, cfgs)
			for _, want := range tc.want {
				require.ErrorContains(t, err, want)
			}
		})
	}
}

func TestParseConfigsRequiredFieldsPerProvider(t *testing.T) {
	t.Parallel()
	complete := map[string]storage.Config{
		storage.ProviderLocal: {
			ID: "files", Provider: storage.ProviderLocal,
			Credentials: map[string]any{"basePath": "./storage"},
		},
		storage.ProviderAWSS3: {
			ID: "s3", Provider: storage.ProviderAWSS3, Bucket: "b", Region: "us-east-1",
			Credentials: map[string]any{"accessKeyId": "AKIA", "secretAccessKey": "TOPSECRET-s3"},
		},
		storage.ProviderGCS: {
			ID: "gcs", Provider: storage.ProviderGCS, Bucket: "b",
			Credentials: map[string]any{"projectId": "p", "clientEmail": "e@x", "privateKey": "TOPSECRET-gcs"},
		},
		storage.ProviderMinIO: {
			ID: "minio", Provider: storage.ProviderMinIO, Endpoint: "http://localhost:9000", Bucket: "b",
			Credentials: map[string]any{"accessKey": "minioadmin", "secretKey": "TOPSECRET-minio"},
		},
	}
	required := map[string][]string{
		storage.ProviderLocal: {"credentials.basePath"},
		storage.ProviderAWSS3: {"bucket", "region", "credentials.accessKeyId", "credentials.secretAccessKey"},
		storage.ProviderGCS:   {"bucket", "credentials.projectId", "credentials.clientEmail", "credentials.privateKey"},
		storage.ProviderMinIO: {"endpoint", "bucket", "credentials.accessKey", "credentials.secretKey"},
	}
	for provider, fields := range required {
		cfg := complete[provider]
		require.NoError(t, cfg.Validate(), provider)
		for _, field := range fields {
			broken := withoutField(cfg, field)
			text := mustJSONArray(t, broken)
			_, err := storage.ParseConfigs(text)
			require.Error(t, err, "%s without %s", provider, field)
			require.ErrorContains(t, err, fmt.Sprintf("storage backend %q: %s is required", cfg.ID, field))
			require.NotContains(t, err.Error(), "TOPSECRET")

			require.ErrorContains(t, broken.Validate(), field)
		}
	}

	// Every missing field is reported at once.
	_, err := storage.ParseConfigs(`[{"id":"s3","provider":"aws-s3"}]`)
	require.Error(t, err)
	for _, field := range required[storage.ProviderAWSS3] {
		require.ErrorContains(t, err, fmt.Sprintf(`storage backend "s3": %s is required`, field))
	}
}

// withoutField returns cfg with field ("bucket" or "credentials.x") removed.
func withoutField(cfg storage.Config, field string) storage.Config {
	creds := make(map[string]any, len(cfg.Credentials))
	for k, v := range cfg.Credentials {
		creds[k] = v
	}
	cfg.Credentials = creds
	switch field {
	case "bucket":
		cfg.Bucket = ""
	case "region":
		cfg.Region = ""
	case "endpoint":
		cfg.Endpoint = ""
	default:
		delete(cfg.Credentials, strings.TrimPrefix(field, "credentials."))
	}
	return cfg
}

func mustJSONArray(t *testing.T, cfg storage.Config) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("[{")
	fmt.Fprintf(&b, "%q:%q,%q:%q", "id", cfg.ID, "provider", cfg.Provider)
	if cfg.Endpoint != "" {
		fmt.Fprintf(&b, `,"endpoint":%q`, cfg.Endpoint)
	}
	if cfg.Bucket != "" {
		fmt.Fprintf(&b, `,"bucket":%q`, cfg.Bucket)
	}
	if cfg.Region != "" {
		fmt.Fprintf(&b, `,"region":%q`, cfg.Region)
	}
	b.WriteString(`,"credentials":{`)
	first := true
	for k, v := range cfg.Credentials {
		if !first {
			b.WriteString(",")
		}
		first = false
		fmt.Fprintf(&b, "%q:%q", k, v)
	}
	b.WriteString("}}]")
	return b.String()
}

// secretConfig holds secrets in every place one could leak from.
func secretConfig() storage.Config {
	return storage.Config{
		ID:       "primary-s3",
		Provider: storage.ProviderAWSS3,
		Endpoint: "https://user:SECRET-url-password@s3.example.com",
		Bucket:   "pipeweave-prod",
		Region:   "us-east-1",
		Credentials: map[string]any{
			"accessKeyId":     "SECRET-access-key-id",
			"secretAccessKey": "SECRET-secret-access-key",
			"nested":          map[string]any{"token": "SECRET-nested"},
			"number":          12345987,
		},
		IsDefault: true,
	}
}

func requireRedacted(t *testing.T, out string) {
	t.Helper()
	require.NotContains(t, out, "SECRET")
	require.NotContains(t, out, "12345987")
	require.Contains(t, out, "[redacted]")
	require.Contains(t, out, "accessKeyId")
	require.Contains(t, out, "secretAccessKey")
	require.Contains(t, out, "primary-s3")
}

func TestConfigFmtRedactsCredentials(t *testing.T) {
	t.Parallel()
	cfg := secretConfig()
	for _, format := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d", "%10.3v"} {
		requireRedacted(t, fmt.Sprintf(format, cfg))
		requireRedacted(t, fmt.Sprintf(format, &cfg))
	}
	requireRedacted(t, fmt.Sprintf("%v %+v %#v", cfg, cfg, cfg))
	requireRedacted(t, fmt.Sprintf("%v %+v %#v", []storage.Config{cfg}, []storage.Config{cfg}, []storage.Config{cfg}))
	requireRedacted(t, fmt.Sprintf("%+v", struct{ Backend storage.Config }{cfg}))
	requireRedacted(t, fmt.Sprintf("%#v", map[string]storage.Config{"x": cfg}))
	requireRedacted(t, cfg.String())
	requireRedacted(t, cfg.GoString())

	require.Contains(t, cfg.String(), "Bucket:pipeweave-prod")
	require.Contains(t, cfg.GoString(), `storage.Config{ID:"primary-s3"`)
	require.Contains(t, cfg.String(), "https://user:xxxxx@s3.example.com")

	var nilCfg *storage.Config
	require.Equal(t, "<nil>", fmt.Sprintf("%v", nilCfg))
}

func TestConfigSlogRedactsCredentials(t *testing.T) {
	t.Parallel()
	cfg := secretConfig()
	var buf bytes.Buffer
	for _, h := range []slog.Handler{slog.NewJSONHandler(&buf, nil), slog.NewTextHandler(&buf, nil)} {
		buf.Reset()
		logger := slog.New(h)
		logger.Info("opening backend", "backend", cfg, "ptr", &cfg, slog.Any("any", cfg))
		out := buf.String()
		requireRedacted(t, out)
		require.Contains(t, out, "pipeweave-prod")
		require.Contains(t, out, "us-east-1")
	}
}

func TestConfigValidateDoesNotLeakSecrets(t *testing.T) {
	t.Parallel()
	cfg := secretConfig()
	cfg.Bucket = ""
	cfg.Credentials["secretAccessKey"] = 42
	err := cfg.Validate()
	require.Error(t, err)
	require.ErrorContains(t, err, `storage backend "primary-s3": bucket is required`)
	require.ErrorContains(t, err, `storage backend "primary-s3": credentials.secretAccessKey must be a string`)
	require.NotContains(t, err.Error(), "SECRET")
}
