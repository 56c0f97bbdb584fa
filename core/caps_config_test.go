package core_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
)

// TestConfigCaps reads the caps of issue 10 (batch size, tasks per registration, worker body
// cap, HTTP read and idle timeouts): their defaults, a set value, and a refused one.
func TestConfigCaps(t *testing.T) {
	t.Parallel()
	env := configEnv
	cfg, err := core.ConfigFromEnv(env(nil))
	require.NoError(t, err)
	require.Equal(t, 1000, cfg.MaxBatchSize)
	require.Equal(t, 500, cfg.MaxTasksPerRegistration)
	require.Equal(t, int64(64<<10), cfg.MaxWorkerBodyBytes)
	require.Equal(t, 30*time.Second, cfg.HTTPReadTimeout)
	require.Equal(t, 120*time.Second, cfg.HTTPIdleTimeout)

	cfg, err = core.ConfigFromEnv(env(map[string]string{"MAX_BATCH_SIZE": "5", "MAX_TASKS_PER_REGISTRATION": "7",
		"MAX_WORKER_BODY_BYTES": "2048", "HTTP_READ_TIMEOUT_MS": "1500", "HTTP_IDLE_TIMEOUT_MS": "2500"}))
	require.NoError(t, err)
	require.Equal(t, 5, cfg.MaxBatchSize)
	require.Equal(t, 7, cfg.MaxTasksPerRegistration)
	require.Equal(t, int64(2048), cfg.MaxWorkerBodyBytes)
	require.Equal(t, 1500*time.Millisecond, cfg.HTTPReadTimeout)
	require.Equal(t, 2500*time.Millisecond, cfg.HTTPIdleTimeout)
	srv := cfg.HTTPServer(nil)
	require.Equal(t, 1500*time.Millisecond, srv.ReadTimeout)
	require.Equal(t, 2500*time.Millisecond, srv.IdleTimeout)
	require.NotZero(t, srv.ReadHeaderTimeout)
	require.NotZero(t, srv.MaxHeaderBytes)

	for name, v := range map[string]string{"MAX_BATCH_SIZE": "0", "MAX_TASKS_PER_REGISTRATION": "x",
		"MAX_WORKER_BODY_BYTES": "1023", "HTTP_READ_TIMEOUT_MS": "99", "HTTP_IDLE_TIMEOUT_MS": "-1"} {
		_, err := core.ConfigFromEnv(env(map[string]string{name: v}))
		var ce *core.ConfigError
		require.ErrorAs(t, err, &ce, name)
		require.Equal(t, name, ce.Var)
	}
}

// INLINE_PAYLOAD_MAX_BYTES: 64 KiB by default, 0 turns inline payloads off, at most 1 MiB.
func TestConfigInlinePayloadMax(t *testing.T) {
	t.Parallel()
	cfg, err := core.ConfigFromEnv(configEnv(nil))
	require.NoError(t, err)
	require.Equal(t, int64(64<<10), cfg.InlinePayloadMaxBytes)
	for v, want := range map[string]int64{"0": 0, "1024": 1024, "1048576": 1 << 20} {
		cfg, err := core.ConfigFromEnv(configEnv(map[string]string{"INLINE_PAYLOAD_MAX_BYTES": v}))
		require.NoError(t, err, v)
		require.Equal(t, want, cfg.InlinePayloadMaxBytes)
	}
	for _, v := range []string{"-1", "1048577", "64k"} {
		_, err := core.ConfigFromEnv(configEnv(map[string]string{"INLINE_PAYLOAD_MAX_BYTES": v}))
		var ce *core.ConfigError
		require.ErrorAs(t, err, &ce, v)
		require.Equal(t, "INLINE_PAYLOAD_MAX_BYTES", ce.Var)
	}
}

// MAP_MAX_ITEMS: 10,000 by default, 1 to 1,000,000.
func TestConfigMapMaxItems(t *testing.T) {
	t.Parallel()
	cfg, err := core.ConfigFromEnv(configEnv(nil))
	require.NoError(t, err)
	require.Equal(t, 10_000, cfg.MapMaxItems)
	require.Equal(t, 10_000, core.DefaultConfig().MapMaxItems)
	for v, want := range map[string]int{"1": 1, "50": 50, "1000000": 1_000_000} {
		cfg, err := core.ConfigFromEnv(configEnv(map[string]string{"MAP_MAX_ITEMS": v}))
		require.NoError(t, err, v)
		require.Equal(t, want, cfg.MapMaxItems)
	}
	for _, v := range []string{"0", "-1", "1000001", "10k", "1.5"} {
		_, err := core.ConfigFromEnv(configEnv(map[string]string{"MAP_MAX_ITEMS": v}))
		var ce *core.ConfigError
		require.ErrorAs(t, err, &ce, v)
		require.Equal(t, "MAP_MAX_ITEMS", ce.Var)
	}
}
