package core

import (
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pipeweave/pipeweave/core/internal/defaults"
	"github.com/pipeweave/pipeweave/core/internal/netguard"
	"github.com/pipeweave/pipeweave/core/storage"
	"github.com/pipeweave/pipeweave/core/token"
)

// Mode is how the orchestrator runs (MODE).
type Mode string

// Modes of running.
const (
	// ModeStandalone runs a background loop woken by LISTEN/NOTIFY and polling.
	ModeStandalone Mode = "standalone"
	// ModeServerless runs no loop: /api/process does one bounded batch per call.
	ModeServerless Mode = "serverless"
)

// Compat is the compatibility mode with upstream's workers (PIPEWEAVE_COMPAT).
type Compat string

// CompatNodeSDKv1 is the PIPEWEAVE_COMPAT value for unmodified @pipeweave/sdk 1.x workers.
const CompatNodeSDKv1 Compat = "node-sdk-v1"

// Config is everything the orchestrator is configured with. ConfigFromEnv reads it from the
// environment variables listed in README.md (Configuration); docs/protocol.md says which of
// them shape the worker contract.
type Config struct {
	DatabaseURL             string           // DATABASE_URL (required; or upstream's DB_HOST, DB_PORT, DB_NAME, DB_USER, DB_PASSWORD, DB_SSL)
	StorageBackends         []storage.Config // STORAGE_BACKENDS (required, JSON array)
	DefaultStorageBackendID string           // DEFAULT_STORAGE_BACKEND_ID
	SecretKey               string           // PIPEWEAVE_SECRET_KEY (required, ≥ 32 bytes; any length with PIPEWEAVE_COMPAT=node-sdk-v1)
	PreviousSecretKey       string           // PIPEWEAVE_SECRET_KEY_PREVIOUS: the secret being rotated out; its tokens and service keys stay valid
	Mode                    Mode             // MODE: standalone (default) or serverless
	MaxConcurrency          int              // MAX_CONCURRENCY (default 10; 0 = no cap)
	PollInterval            time.Duration    // POLL_INTERVAL_MS (default 1000)
	DLQRetention            time.Duration    // DLQ_RETENTION_DAYS (default 30)
	IdempotencyTTL          time.Duration    // IDEMPOTENCY_TTL_SECONDS (default 86400)
	MaxRetryDelay           time.Duration    // MAX_RETRY_DELAY_MS (default 86400000)
	Port                    int              // PORT (default 3000)
	APIKeys                 []string         // PIPEWEAVE_API_KEYS (comma list; required unless InsecureNoAuth)
	Compat                  Compat           // PIPEWEAVE_COMPAT ("" or node-sdk-v1)
	DispatchTimeout         time.Duration    // DISPATCH_TIMEOUT_MS (default 10000)
	WebhookTimeout          time.Duration    // WEBHOOK_TIMEOUT_MS: one webhook delivery request (default 10000)
	ProcessBatchSize        int              // PROCESS_BATCH_SIZE (default 100): most runs one /api/process claims
	ProcessTimeBudget       time.Duration    // PROCESS_TIME_BUDGET_MS (default 20000): /api/process stops claiming after it
	MaxBodyBytes            int64            // MAX_BODY_BYTES (default 10 MiB)
	MaxUploadBytes          int64            // MAX_UPLOAD_BYTES (default 100 MiB): the file of POST /api/upload/temp
	DBMaxConns              int              // DB_MAX_CONNS, else upstream's DB_POOL_MAX (default 10 standalone, 4 serverless)
	MaxBatchSize            int              // MAX_BATCH_SIZE (default 1000): tasks per POST /api/queue/batch
	MaxTasksPerRegistration int              // MAX_TASKS_PER_REGISTRATION (default 500): tasks per POST /api/register
	MaxWorkerBodyBytes      int64            // MAX_WORKER_BODY_BYTES (default 64 KiB): bodies of heartbeat, progress, callback, idempotency check
	// InlinePayloadMaxBytes is INLINE_PAYLOAD_MAX_BYTES (default 64 KiB, at most 1 MiB; 0 =
	// off): inputs and outputs of at most this many bytes are kept in PostgreSQL and travel
	// inline in dispatches and callbacks instead of going through the storage backend (the
	// claim-check pattern; docs/storage.md). Node SDK compat mode keeps every payload in storage.
	InlinePayloadMaxBytes int64
	// MapMaxItems is MAP_MAX_ITEMS (default 10,000, 1 to 1,000,000): the most items a map node
	// may declare (maxItems), and the maxItems of one that declares none.
	MapMaxItems     int
	HTTPReadTimeout time.Duration // HTTP_READ_TIMEOUT_MS (default 30000): a request's headers and body must arrive within it
	HTTPIdleTimeout time.Duration // HTTP_IDLE_TIMEOUT_MS (default 120000): an idle keep-alive connection is closed after it
	// HTTPReadHeaderTimeout is HTTP_READ_HEADER_TIMEOUT_MS (default 10000): a request's headers
	// must arrive within it (and within HTTPReadTimeout).
	HTTPReadHeaderTimeout time.Duration
	// MaxConnections is MAX_CONNECTIONS: the open connections of the process's HTTP server
	// (0, the default: DefaultMaxConnections, half the open-file limit, at most 4096).
	MaxConnections int
	// MaxConcurrentBodies is MAX_CONCURRENT_BODIES (default 128): request bodies of
	// authenticated requests (a valid API key or run token) read at once.
	MaxConcurrentBodies int
	// MaxUnauthenticatedBodies is MAX_UNAUTHENTICATED_BODIES (default 16): request bodies of
	// requests without a valid credential (registrations, compat-mode worker calls) read at
	// once, in a pool separate from MaxConcurrentBodies.
	MaxUnauthenticatedBodies int
	// OTLPEndpoint is OTEL_EXPORTER_OTLP_ENDPOINT: the OTLP/HTTP collector's base URL (traces go
	// to its /v1/traces). With it or OTLPTracesEndpoint set, spans are exported; else tracing
	// only propagates the W3C trace context.
	OTLPEndpoint string
	// OTLPTracesEndpoint is OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: the full URL of the OTLP/HTTP
	// traces endpoint; it takes precedence over OTLPEndpoint.
	OTLPTracesEndpoint string
	// ServiceName is OTEL_SERVICE_NAME, the service.name of exported spans (default "pipeweave").
	ServiceName string
	// InsecureNoAuth is PIPEWEAVE_INSECURE_NO_AUTH (1 or true): serve the operator API without
	// API keys. Without it (or keys), New refuses to start. See auth.go.
	InsecureNoAuth bool
	// AllowedHosts is PIPEWEAVE_ALLOWED_HOSTS (comma list of host names without a port; "*"
	// allows any): a request whose Host is not listed gets 421, /health excepted. When nil, any
	// host is allowed with API keys, and only localhost, 127.0.0.1 and ::1 with InsecureNoAuth.
	AllowedHosts []string
	// WorkerAllowedNetworks is WORKER_ALLOWED_NETWORKS (comma list of CIDRs, default none): the
	// loopback, private (10/8, 172.16/12, 192.168/16, fc00::/7) and shared (100.64/10) networks
	// dispatches may connect to. Public addresses are always allowed; link-local and cloud
	// metadata addresses never, even inside a listed network. `pipeweave dev` allows loopback.
	WorkerAllowedNetworks []netip.Prefix
}

// DefaultConfig returns the configuration every optional variable defaults to (the required
// ones, DATABASE_URL, STORAGE_BACKENDS and PIPEWEAVE_SECRET_KEY, are left empty).
func DefaultConfig() Config {
	return Config{
		Mode:              ModeStandalone,
		MaxConcurrency:    defaults.MaxConcurrency,
		PollInterval:      defaults.PollInterval,
		DLQRetention:      defaults.DLQRetention,
		IdempotencyTTL:    defaults.IdempotencyTTL,
		MaxRetryDelay:     defaults.MaxRetryDelay,
		Port:              3000,
		DispatchTimeout:   defaults.DispatchTimeout,
		ProcessBatchSize:  defaults.ProcessBatchSize,
		ProcessTimeBudget: defaults.ProcessTimeBudget,
		MaxBodyBytes:      defaults.MaxBodyBytes,
		MaxUploadBytes:    defaults.MaxUploadBytes,
		ServiceName:       "pipeweave",

		MaxBatchSize:            defaults.MaxBatchSize,
		MaxTasksPerRegistration: defaults.MaxTasksPerRegistration,
		MaxWorkerBodyBytes:      defaults.MaxWorkerBodyBytes,
		InlinePayloadMaxBytes:   defaults.InlinePayloadMaxBytes,
		MapMaxItems:             defaults.MapMaxItems,
		HTTPReadTimeout:         30 * time.Second,
		HTTPIdleTimeout:         120 * time.Second,

		HTTPReadHeaderTimeout:    10 * time.Second,
		MaxConcurrentBodies:      defaults.MaxConcurrentBodies,
		MaxUnauthenticatedBodies: defaults.MaxUnauthenticatedBodies,
	}
}

// ConfigError names the environment variable that stopped start-up.
type ConfigError struct {
	Var string
	Msg string
}

func (e *ConfigError) Error() string { return "environment variable " + e.Var + ": " + e.Msg }

// ConfigFromEnv reads the configuration through getenv (os.Getenv in production). A missing or
// malformed variable gives a *ConfigError naming it.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	c := DefaultConfig()
	var err error
	get := func(name string) string { return strings.TrimSpace(getenv(name)) }
	required := func(name string) (string, error) {
		v := get(name)
		if v == "" {
			return "", &ConfigError{name, "is required but not set"}
		}
		return v, nil
	}
	if c.DatabaseURL, err = DatabaseURLFromEnv(getenv); err != nil {
		return c, err
	}
	if c.DatabaseURL == "" {
		return c, &ConfigError{"DATABASE_URL", "is required but not set (or set upstream's DB_HOST, DB_PORT, DB_NAME, DB_USER, DB_PASSWORD)"}
	}
	backends, err := required("STORAGE_BACKENDS")
	if err != nil {
		return c, err
	}
	if c.StorageBackends, err = storage.ParseConfigs(backends); err != nil {
		return c, &ConfigError{"STORAGE_BACKENDS", err.Error()}
	}
	c.DefaultStorageBackendID = get("DEFAULT_STORAGE_BACKEND_ID")
	if c.DefaultStorageBackendID != "" {
		found := false
		for _, b := range c.StorageBackends {
			found = found || b.ID == c.DefaultStorageBackendID
		}
		if !found {
			return c, &ConfigError{"DEFAULT_STORAGE_BACKEND_ID", fmt.Sprintf("no backend with id %q in STORAGE_BACKENDS", c.DefaultStorageBackendID)}
		}
	}
	if c.SecretKey, err = required("PIPEWEAVE_SECRET_KEY"); err != nil {
		return c, err
	}
	// In node-sdk-v1 compat mode any non-empty secret is accepted (checked below, once
	// PIPEWEAVE_COMPAT is read); core.New then logs a warning for a short one.
	_, weak := token.SecretBytes(c.SecretKey)
	switch mode := Mode(get("MODE")); mode {
	case "":
	case ModeStandalone, ModeServerless:
		c.Mode = mode
	default:
		return c, &ConfigError{"MODE", fmt.Sprintf("must be %q or %q, got %q", ModeStandalone, ModeServerless, mode)}
	}
	ints := []struct {
		name  string
		min   int
		apply func(int)
	}{
		{"MAX_CONCURRENCY", 0, func(n int) { c.MaxConcurrency = n }},
		{"POLL_INTERVAL_MS", 10, func(n int) { c.PollInterval = time.Duration(n) * time.Millisecond }},
		{"DLQ_RETENTION_DAYS", 1, func(n int) { c.DLQRetention = time.Duration(n) * 24 * time.Hour }},
		{"IDEMPOTENCY_TTL_SECONDS", 1, func(n int) { c.IdempotencyTTL = time.Duration(n) * time.Second }},
		{"MAX_RETRY_DELAY_MS", 0, func(n int) { c.MaxRetryDelay = time.Duration(n) * time.Millisecond }},
		{"PORT", 1, func(n int) { c.Port = n }},
		{"DISPATCH_TIMEOUT_MS", 100, func(n int) { c.DispatchTimeout = time.Duration(n) * time.Millisecond }},
		{"WEBHOOK_TIMEOUT_MS", 100, func(n int) { c.WebhookTimeout = time.Duration(n) * time.Millisecond }},
		{"PROCESS_BATCH_SIZE", 1, func(n int) { c.ProcessBatchSize = n }},
		{"PROCESS_TIME_BUDGET_MS", 100, func(n int) { c.ProcessTimeBudget = time.Duration(n) * time.Millisecond }},
		{"MAX_BODY_BYTES", 1024, func(n int) { c.MaxBodyBytes = int64(n) }},
		{"MAX_UPLOAD_BYTES", 1, func(n int) { c.MaxUploadBytes = int64(n) }},
		{"DB_MAX_CONNS", 1, func(n int) { c.DBMaxConns = n }},
		{"MAX_BATCH_SIZE", 1, func(n int) { c.MaxBatchSize = n }},
		{"MAX_TASKS_PER_REGISTRATION", 1, func(n int) { c.MaxTasksPerRegistration = n }},
		{"MAX_WORKER_BODY_BYTES", 1024, func(n int) { c.MaxWorkerBodyBytes = int64(n) }},
		{"HTTP_READ_TIMEOUT_MS", 100, func(n int) { c.HTTPReadTimeout = time.Duration(n) * time.Millisecond }},
		{"HTTP_IDLE_TIMEOUT_MS", 100, func(n int) { c.HTTPIdleTimeout = time.Duration(n) * time.Millisecond }},
		{"HTTP_READ_HEADER_TIMEOUT_MS", 100, func(n int) { c.HTTPReadHeaderTimeout = time.Duration(n) * time.Millisecond }},
		{"MAX_CONNECTIONS", 0, func(n int) { c.MaxConnections = n }},
		{"MAX_CONCURRENT_BODIES", 1, func(n int) { c.MaxConcurrentBodies = n }},
		{"INLINE_PAYLOAD_MAX_BYTES", 0, func(n int) { c.InlinePayloadMaxBytes = int64(n) }},
		{"MAX_UNAUTHENTICATED_BODIES", 1, func(n int) { c.MaxUnauthenticatedBodies = n }},
		{"MAP_MAX_ITEMS", 1, func(n int) { c.MapMaxItems = n }},
	}
	for _, v := range ints {
		raw := get(v.name)
		if raw == "" {
			continue
		}
		n, err := strconv.Atoi(raw)
		if err != nil || n < v.min {
			return c, &ConfigError{v.name, fmt.Sprintf("must be an integer of at least %d, got %q", v.min, raw)}
		}
		v.apply(n)
	}
	if err := checkConnectionCaps(c); err != nil {
		return c, err
	}
	if c.InlinePayloadMaxBytes > defaults.MaxInlinePayloadMaxBytes {
		return c, &ConfigError{"INLINE_PAYLOAD_MAX_BYTES", fmt.Sprintf("must be at most %d (1 MiB; larger payloads belong in the storage backend), got %d",
			defaults.MaxInlinePayloadMaxBytes, c.InlinePayloadMaxBytes)}
	}
	if c.MapMaxItems > defaults.MaxMapMaxItems {
		return c, &ConfigError{"MAP_MAX_ITEMS", fmt.Sprintf("must be at most %d, got %d", defaults.MaxMapMaxItems, c.MapMaxItems)}
	}
	if c.Port > 65535 {
		return c, &ConfigError{"PORT", fmt.Sprintf("must be a port number, got %d", c.Port)}
	}
	if err := dbPoolMax(getenv, &c); err != nil {
		return c, err
	}
	for _, k := range strings.Split(get("PIPEWEAVE_API_KEYS"), ",") {
		if k = strings.TrimSpace(k); k != "" {
			c.APIKeys = append(c.APIKeys, k)
		}
	}
	if err := authFromEnv(get, &c); err != nil {
		return c, err
	}
	for _, v := range []struct {
		name string
		dst  *string
	}{{"OTEL_EXPORTER_OTLP_ENDPOINT", &c.OTLPEndpoint}, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &c.OTLPTracesEndpoint}} {
		raw := get(v.name)
		if raw == "" {
			continue
		}
		if u, err := url.Parse(raw); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return c, &ConfigError{v.name, fmt.Sprintf("must be an http:// or https:// URL, got %q", raw)}
		}
		*v.dst = raw
	}
	if c.WorkerAllowedNetworks, err = netguard.ParseNetworks(get("WORKER_ALLOWED_NETWORKS")); err != nil {
		return c, &ConfigError{"WORKER_ALLOWED_NETWORKS", err.Error()}
	}
	if name := get("OTEL_SERVICE_NAME"); name != "" {
		c.ServiceName = name
	}
	switch c.Compat = Compat(get("PIPEWEAVE_COMPAT")); c.Compat {
	case "", CompatNodeSDKv1:
	default:
		return c, &ConfigError{"PIPEWEAVE_COMPAT", fmt.Sprintf("must be empty or %q, got %q", CompatNodeSDKv1, c.Compat)}
	}
	if weak != nil && c.Compat != CompatNodeSDKv1 {
		return c, &ConfigError{"PIPEWEAVE_SECRET_KEY", "must be at least 32 bytes (e.g. `openssl rand -hex 32`); only PIPEWEAVE_COMPAT=node-sdk-v1 accepts a shorter one"}
	}
	if c.PreviousSecretKey = get("PIPEWEAVE_SECRET_KEY_PREVIOUS"); c.PreviousSecretKey != "" {
		if _, err := token.SecretBytes(c.PreviousSecretKey); err != nil && c.Compat != CompatNodeSDKv1 {
			return c, &ConfigError{"PIPEWEAVE_SECRET_KEY_PREVIOUS", "must be at least 32 bytes, like PIPEWEAVE_SECRET_KEY"}
		}
		if c.PreviousSecretKey == c.SecretKey {
			return c, &ConfigError{"PIPEWEAVE_SECRET_KEY_PREVIOUS", "is the same as PIPEWEAVE_SECRET_KEY; set it to the secret being rotated out"}
		}
	}
	return c, nil
}

// inlineMax is the inline payload threshold in effect: InlinePayloadMaxBytes within [0, 1 MiB]
// (ConfigFromEnv refuses a larger one; a Config built in code is held to it here), or 0 in Node
// SDK compat mode, whose workers read every input and upstream output from storage.
func (c Config) inlineMax() int64 {
	if c.Compat == CompatNodeSDKv1 {
		return 0
	}
	return min(max(c.InlinePayloadMaxBytes, 0), defaults.MaxInlinePayloadMaxBytes)
}

// checkConnectionCaps refuses a MAX_CONNECTIONS that the body pools could fill on their own:
// then every connection could be in a request and a new one (a /health probe) would be closed.
func checkConnectionCaps(c Config) error {
	if c.MaxConnections == 0 {
		return nil
	}
	if need := c.MaxConcurrentBodies + c.MaxUnauthenticatedBodies + minConnections; c.MaxConnections < need {
		return &ConfigError{"MAX_CONNECTIONS", fmt.Sprintf("must be 0 (automatic) or at least MAX_CONCURRENT_BODIES + MAX_UNAUTHENTICATED_BODIES + %d = %d, got %d",
			minConnections, need, c.MaxConnections)}
	}
	return nil
}
