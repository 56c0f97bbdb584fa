package worker_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/testorch"
	"github.com/pipeweave/pipeweave/worker"
)

// A worker holds its own service's key: it runs its tasks end to end (testorch's workers use
// ServiceKey), and cannot register another service with it.
func TestServiceKeyIsConfinedToItsService(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	echo := func(ctx *worker.Context) (any, error) { return "ok", nil }

	a := e.newWorker("svc-a")
	require.NoError(t, a.Register("echo-a", worker.Options{Retries: new(0)}, echo))
	a.register(t)
	id := e.enqueue("echo-a", nil)
	e.waitStatus(id, protocol.StatusCompleted)
	require.NotContains(t, a.logs.String(), "deprecated")

	// A worker of service B configured with A's key.
	impostor := e.newWorker("svc-b", func(c *worker.Config) { c.ServiceKey = testorch.ServiceKey(t, testSecret, "svc-a") })
	require.NoError(t, impostor.Register("echo-b", worker.Options{}, echo))
	_, err := impostor.RegisterWithOrchestrator(context.Background())
	require.ErrorContains(t, err, "401")
	r := e.do("GET", "/api/services/svc-b", nil)
	require.Equal(t, 404, r.Status, "the refused registration wrote nothing: %s", r.Body)
}

// The deprecated master secret still works for this release: the SDK derives the service key
// itself and warns once.
func TestMasterSecretIsDeprecatedButWorks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.newWorker("legacy", func(c *worker.Config) { c.SecretKey = testSecret })
	require.NoError(t, w.Register("old", worker.Options{Retries: new(0)}, func(ctx *worker.Context) (any, error) { return 1, nil }))
	w.register(t)
	id := e.enqueue("old", nil)
	e.waitStatus(id, protocol.StatusCompleted)
	require.Equal(t, 1, strings.Count(w.logs.String(), "Config.SecretKey (the master PIPEWEAVE_SECRET_KEY) is deprecated"), w.logs.String())
	require.Contains(t, w.logs.String(), "pipeweave token service --service legacy")
}
