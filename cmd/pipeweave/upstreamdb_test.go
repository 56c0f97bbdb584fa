package main

import (
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/internal/testdb"
)

// upstreamDBEnv splits a test database URL into upstream's DB_* variables.
func upstreamDBEnv(t *testing.T, raw string) map[string]string {
	t.Helper()
	u, err := url.Parse(raw)
	require.NoError(t, err)
	pass, _ := u.User.Password()
	env := map[string]string{"DB_HOST": u.Hostname(), "DB_PORT": u.Port(), "DB_NAME": strings.TrimPrefix(u.Path, "/"),
		"DB_USER": u.User.Username(), "DB_PASSWORD": pass, "DB_SSL": "false"}
	if u.Query().Get("sslmode") == "require" {
		env["DB_SSL"] = "true"
	}
	return env
}

// `pipeweave db` reads upstream's DB_* variables when DATABASE_URL is unset, and names a bad
// one.
func TestDBUpstreamVariables(t *testing.T) {
	t.Parallel()
	env := upstreamDBEnv(t, testdb.NewURL(t))
	out, _, err := runCmd(t, env, "db", "status")
	require.NoError(t, err)
	require.Regexp(t, appliedLine, out)
	out, _, err = runCmd(t, env, "db", "migrate")
	require.NoError(t, err)
	require.Equal(t, "schema is up to date\n", out)

	env["DB_PORT"] = "5432x"
	_, _, err = runCmd(t, env, "db", "status")
	require.ErrorContains(t, err, "DB_PORT")
	require.ErrorContains(t, err, `"5432x"`)

	_, _, err = runCmd(t, map[string]string{}, "db", "status")
	require.ErrorContains(t, err, "--url (or DATABASE_URL, or DB_HOST) is required")
}
