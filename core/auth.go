package core

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"
)

// LocalHosts are the host names a server without API keys answers by default (and `pipeweave
// dev`): a request that names any other host (a DNS-rebinding page, say) gets 421.
var LocalHosts = []string{"localhost", "127.0.0.1", "::1"}

// errNoAPIKeys is New's refusal to serve an open operator API.
var errNoAPIKeys = &ConfigError{"PIPEWEAVE_API_KEYS", "is required: without API keys anyone who reaches the server " +
	"can read, enqueue, cancel and purge; set PIPEWEAVE_API_KEYS to a comma list of keys (e.g. `openssl rand -hex 32`), " +
	"or set PIPEWEAVE_INSECURE_NO_AUTH=1 to serve without authentication (local development only)"}

// authFromEnv reads PIPEWEAVE_INSECURE_NO_AUTH and PIPEWEAVE_ALLOWED_HOSTS into c.
func authFromEnv(get func(string) string, c *Config) error {
	switch v := strings.ToLower(get("PIPEWEAVE_INSECURE_NO_AUTH")); v {
	case "", "0", "false":
	case "1", "true":
		c.InsecureNoAuth = true
	default:
		return &ConfigError{"PIPEWEAVE_INSECURE_NO_AUTH", fmt.Sprintf("must be 1, true, 0 or false, got %q", v)}
	}
	raw := get("PIPEWEAVE_ALLOWED_HOSTS")
	if raw == "" {
		return nil
	}
	hosts, err := ParseAllowedHosts(raw)
	if err != nil {
		return &ConfigError{"PIPEWEAVE_ALLOWED_HOSTS", err.Error()}
	}
	c.AllowedHosts = hosts
	return nil
}

// ParseAllowedHosts parses a PIPEWEAVE_ALLOWED_HOSTS value: a comma list of host names or IP
// addresses without a port ("[::1]" or "::1" for IPv6), or "*" for any host. Names are
// lower-cased.
func ParseAllowedHosts(raw string) ([]string, error) {
	var hosts []string
	for h := range strings.SplitSeq(raw, ",") {
		h = strings.ToLower(strings.TrimSpace(h))
		if h == "" {
			continue
		}
		if h == "*" {
			hosts = append(hosts, h)
			continue
		}
		if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
			h = h[1 : len(h)-1]
		}
		switch {
		case strings.ContainsAny(h, "/ \t[]@*"):
			return nil, fmt.Errorf("%q is not a host name (a comma list of names such as pipeweave.example.com, or *)", h)
		case strings.Count(h, ":") == 1:
			return nil, fmt.Errorf("%q has a port: list host names without one (any port is allowed)", h)
		}
		hosts = append(hosts, h)
	}
	if len(hosts) == 0 {
		return nil, fmt.Errorf("lists no host (use * to allow any)")
	}
	return hosts, nil
}

// insecure reports whether the operator API is served without authentication.
func (c Config) insecure() bool { return c.InsecureNoAuth && len(c.APIKeys) == 0 }

// allowedHosts is the host list the API enforces: nil allows any host.
func (c Config) allowedHosts() []string {
	hosts := c.AllowedHosts
	if hosts == nil && c.insecure() {
		hosts = LocalHosts
	}
	for _, h := range hosts {
		if h == "*" {
			return nil
		}
	}
	return hosts
}

// checkAuth refuses a configuration that would serve an open operator API, and warns loudly
// about one that does so on purpose. noAPI is Options.NoAPI.
func checkAuth(cfg Config, noAPI bool, log *slog.Logger) error {
	if len(cfg.APIKeys) > 0 || noAPI {
		return nil
	}
	if !cfg.InsecureNoAuth {
		return errNoAPIKeys
	}
	log.Warn("!!! PIPEWEAVE_INSECURE_NO_AUTH is set: the operator API has NO AUTHENTICATION; anyone who can reach "+
		"this server can read every object, enqueue, cancel and purge. Use it for local development only and set "+
		"PIPEWEAVE_API_KEYS anywhere else !!!", "allowedHosts", strings.Join(cfg.allowedHosts(), ","))
	return nil
}

// healthOnly serves GET /health with h and answers every other request 404.
func healthOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			h.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"error":"this function serves only GET /health","code":"ROUTE_NOT_FOUND"}` + "\n"))
	})
}
