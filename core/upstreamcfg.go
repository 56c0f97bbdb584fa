package core

import (
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"

	"github.com/pipeweave/pipeweave/core/token"
)

// Upstream's configuration: what its README and .env.example write, accepted as it is.

// deriveKeys builds the keyring of PIPEWEAVE_SECRET_KEY and PIPEWEAVE_SECRET_KEY_PREVIOUS. In
// node-sdk-v1 compat mode a secret shorter than 32 bytes is accepted (upstream's .env.example
// has one of 30 bytes), with one warning line; otherwise it is refused.
func deriveKeys(cfg Config, log *slog.Logger) (*token.Keyring, error) {
	newRing := token.NewKeyring
	if cfg.Compat == CompatNodeSDKv1 {
		if _, err := token.SecretBytes(cfg.SecretKey); err != nil {
			log.Warn(fmt.Sprintf("PIPEWEAVE_SECRET_KEY has %d bytes, fewer than 32: accepted only because PIPEWEAVE_COMPAT=node-sdk-v1; use a longer secret (openssl rand -hex 32)", len(cfg.SecretKey)))
		}
		newRing = token.NewKeyringAnyLength
	}
	ring, err := newRing(cfg.SecretKey, cfg.PreviousSecretKey)
	if err != nil {
		return nil, fmt.Errorf("PIPEWEAVE_SECRET_KEY: %w", err)
	}
	if cfg.PreviousSecretKey != "" {
		log.Info("secret rotation: registrations and run tokens made with PIPEWEAVE_SECRET_KEY_PREVIOUS are still accepted until they expire")
	}
	return ring, nil
}

// DatabaseURLFromEnv returns DATABASE_URL or, when it is unset, the URL made of upstream's
// variables: DB_HOST (a host name, an IP address, or a Unix socket directory such as
// /cloudsql/PROJECT:REGION:INSTANCE), DB_PORT (default 5432), DB_NAME (or DB_DATABASE), DB_USER
// (or DB_USERNAME), DB_PASSWORD (or DB_PASS) and DB_SSL (true → sslmode=require, false →
// sslmode=disable; unset leaves the driver's default). Each part is escaped. It returns "" and
// no error when neither DATABASE_URL nor DB_HOST is set. A missing or malformed value gives a
// *ConfigError naming the variable.
func DatabaseURLFromEnv(getenv func(string) string) (string, error) {
	get := func(names ...string) string {
		for _, n := range names {
			if v := strings.TrimSpace(getenv(n)); v != "" {
				return v
			}
		}
		return ""
	}
	if v := get("DATABASE_URL"); v != "" {
		if !strings.HasPrefix(v, "postgres://") && !strings.HasPrefix(v, "postgresql://") {
			return "", &ConfigError{"DATABASE_URL", "must be a postgres:// or postgresql:// URL"}
		}
		return v, nil
	}
	host := get("DB_HOST")
	if host == "" {
		for _, name := range []string{"DB_PORT", "DB_NAME", "DB_DATABASE", "DB_USER", "DB_USERNAME", "DB_PASSWORD", "DB_PASS", "DB_SSL"} {
			if get(name) != "" {
				return "", &ConfigError{"DB_HOST", "is required when " + name + " is set and DATABASE_URL is not"}
			}
		}
		return "", nil
	}
	name, user := get("DB_NAME", "DB_DATABASE"), get("DB_USER", "DB_USERNAME")
	if name == "" {
		return "", &ConfigError{"DB_NAME", "is required with DB_HOST (or set DATABASE_URL)"}
	}
	if user == "" {
		return "", &ConfigError{"DB_USER", "is required with DB_HOST (or set DATABASE_URL)"}
	}
	port := 5432
	if raw := get("DB_PORT"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > 65535 {
			return "", &ConfigError{"DB_PORT", fmt.Sprintf("must be a port number (1-65535), got %q", raw)}
		}
		port = n
	}
	u := url.URL{Scheme: "postgres", Path: "/" + name}
	q := url.Values{}
	if strings.HasPrefix(host, "/") {
		// A Unix socket directory goes in the query, as libpq and pgx read it.
		q.Set("host", host)
		q.Set("port", strconv.Itoa(port))
	} else {
		u.Host = hostPort(host, port)
	}
	// The password is taken as it is: a password may begin or end with spaces.
	pass := getenv("DB_PASSWORD")
	if pass == "" {
		pass = getenv("DB_PASS")
	}
	if pass != "" {
		u.User = url.UserPassword(user, pass)
	} else {
		u.User = url.User(user)
	}
	switch ssl := strings.ToLower(get("DB_SSL")); ssl {
	case "":
	case "true", "1", "yes":
		q.Set("sslmode", "require")
	case "false", "0", "no":
		q.Set("sslmode", "disable")
	default:
		return "", &ConfigError{"DB_SSL", fmt.Sprintf("must be true or false, got %q", ssl)}
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// hostPort joins host and port, bracketing an IPv6 address.
func hostPort(host string, port int) string {
	if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
		host = "[" + host + "]"
	}
	return host + ":" + strconv.Itoa(port)
}

// dbPoolMax reads upstream's DB_POOL_MAX: the pool size unless DB_MAX_CONNS is set.
func dbPoolMax(getenv func(string) string, c *Config) error {
	raw := strings.TrimSpace(getenv("DB_POOL_MAX"))
	if raw == "" || strings.TrimSpace(getenv("DB_MAX_CONNS")) != "" {
		return nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 1 {
		return &ConfigError{"DB_POOL_MAX", fmt.Sprintf("must be an integer of at least 1, got %q", raw)}
	}
	c.DBMaxConns = n
	return nil
}
