package browsertest_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
)

// The login URL `pipeweave dev` prints (/ui/#key=<key>, as Jupyter does with its token) logs
// in without a prompt, keeps the key and takes it out of the address bar.
func TestLoginURLKey(t *testing.T) {
	t.Parallel()
	const key = "login-url-key"
	s := newStack(t, func(c *core.Config) { c.APIKeys = []string{key} })

	b := newBrowser(t, s.url)
	b.open("key=" + key)
	b.wait(`[data-testid="stat-pending"]`)
	b.gone(`[data-testid="key-prompt"]`)
	require.Equal(t, key, b.evalString(`localStorage.getItem('pipeweave.apiKey')`))
	require.Equal(t, "", b.evalString(`location.hash`))
	require.NotContains(t, b.evalString(`location.href`), key)
	// With keys there is no warning.
	b.gone(`[data-testid="insecure-banner"]`)
}

// Without authentication (PIPEWEAVE_INSECURE_NO_AUTH) every page shows a red banner.
func TestInsecureBanner(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil) // testorch runs with InsecureNoAuth
	b := newBrowser(t, s.url)
	b.open("/")
	b.wait(`[data-testid="insecure-banner"]`)
	require.Contains(t, b.text(`[data-testid="insecure-banner"]`), "No authentication")
	b.screenshot("insecure-banner")
}
