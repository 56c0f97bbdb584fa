package core

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/internal/defaults"
)

// A Config built in code is held to the inline threshold's bounds as ConfigFromEnv holds the
// environment (which refuses a larger one), and compat mode turns inline payloads off.
func TestInlineMaxBounds(t *testing.T) {
	t.Parallel()
	require.Equal(t, int64(defaults.MaxInlinePayloadMaxBytes), Config{InlinePayloadMaxBytes: 100 << 20}.inlineMax())
	require.Equal(t, int64(0), Config{InlinePayloadMaxBytes: -5}.inlineMax())
	require.Equal(t, int64(4096), Config{InlinePayloadMaxBytes: 4096}.inlineMax())
	require.Equal(t, int64(0), Config{InlinePayloadMaxBytes: 4096, Compat: CompatNodeSDKv1}.inlineMax())
}
