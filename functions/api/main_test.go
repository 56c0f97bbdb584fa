package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/pipeweave/pipeweave/internal/testutil"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/internal/testdb"
)

func TestMain(m *testing.M) { testdb.Main(m) }

func TestServesTheAPIInServerlessMode(t *testing.T) {
	t.Parallel()
	port := testutil.FreePort(t)
	backends, err := json.Marshal([]map[string]any{{"id": "l", "provider": "local", "credentials": map[string]string{"basePath": t.TempDir()}}})
	require.NoError(t, err)
	env := map[string]string{
		"DATABASE_URL":         testdb.NewURL(t),
		"STORAGE_BACKENDS":     string(backends),
		"PIPEWEAVE_SECRET_KEY": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"PORT":                 strconv.Itoa(port),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, func(k string) string { return env[k] }) }()

	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	require.Eventually(t, func() bool {
		resp, err := http.Get(base + "/health")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var h map[string]string
		return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&h) == nil && h["mode"] == "serverless"
	}, 30*time.Second, 20*time.Millisecond)

	resp, err := http.Post(base+"/api/process", "application/json", nil)
	require.NoError(t, err)
	var summary map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&summary))
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, summary, "claimed")

	cancel()
	require.NoError(t, <-done)
}

func TestMissingVariableStopsStartUp(t *testing.T) {
	t.Parallel()
	err := run(context.Background(), func(string) string { return "" })
	require.ErrorContains(t, err, "DATABASE_URL")
}
