package engine

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/core/storage"
	_ "github.com/pipeweave/pipeweave/core/storage/local"
	"github.com/pipeweave/pipeweave/core/token"
	"github.com/pipeweave/pipeweave/internal/testdb"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// clock is the engine's Config.Now in tests: the process clock moved on by Advance, so a test
// sweeps "an hour later" instead of waiting an hour.
type clock struct{ offset atomic.Int64 }

func (c *clock) Now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

// Advance moves the clock on by d.
func (c *clock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// harness is an engine on a database of its own, built as the orchestrator builds it, with a
// local storage backend in a temporary directory and a settable clock. No worker listens at
// the registered base URL unless a test sets one: the tests claim runs and speak for the
// worker themselves.
type harness struct {
	eng   *Engine
	pool  *pgxpool.Pool
	clock *clock
	// baseURL is where the registered service's worker listens (default: nowhere).
	baseURL string
	// dispatchBatchMax is the registration's dispatchBatchMax (default 0: single dispatches).
	dispatchBatchMax int
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	return newHarnessOn(t, testdb.New(t), cfg)
}

// newHarnessOn is newHarness on pool, a database that has the PipeWeave schema.
func newHarnessOn(t *testing.T, pool *pgxpool.Pool, cfg Config) *harness {
	t.Helper()
	keys, err := token.NewKeyring(strings.Repeat("s", 32), "")
	require.NoError(t, err)
	store, err := storage.NewSet(context.Background(), []storage.Config{{ID: "local", Provider: storage.ProviderLocal,
		Credentials: map[string]any{"basePath": t.TempDir()}}}, "local")
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	c := &clock{}
	cfg.Now = c.Now
	eng, err := New(pool, keys, store, cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(eng.Close)
	return &harness{eng: eng, pool: pool, clock: c, baseURL: "http://127.0.0.1:9"}
}

// register registers tasks (and pipelines) of one service.
func (h *harness) register(t *testing.T, tasks []protocol.TaskDefinition, pipelines ...protocol.PipelineDefinition) {
	t.Helper()
	for i := range tasks {
		if tasks[i].CodeHash == "" {
			tasks[i].CodeHash = "hash-" + tasks[i].ID
		}
	}
	_, err := h.eng.Register(context.Background(), &protocol.RegisterRequest{ServiceID: "svc", Version: "1",
		BaseURL: h.baseURL, Tasks: tasks, Pipelines: pipelines, DispatchBatchMax: h.dispatchBatchMax}, "")
	require.NoError(t, err)
}

// enqueue queues n runs of task at priority and returns their ids.
func (h *harness) enqueue(t *testing.T, task string, priority, n int) []string {
	t.Helper()
	reqs := make([]EnqueueRequest, n)
	for i := range reqs {
		reqs[i] = EnqueueRequest{TaskID: task, Input: json.RawMessage(`{"n": 1}`), Priority: &priority}
	}
	res, _, err := h.eng.Enqueue(context.Background(), reqs)
	require.NoError(t, err)
	ids := make([]string, len(res))
	for i, r := range res {
		ids[i] = r.RunID
	}
	return ids
}

// exec runs one statement on the test's database (to set up a state, such as a run's age).
func (h *harness) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	_, err := h.pool.Exec(context.Background(), sql, args...)
	require.NoError(t, err)
}

// runRow is the state of a task run the tests look at.
type runRow struct {
	Status      string
	Attempt     int
	Lease       int64
	Progress    *int
	Deadline    *time.Time
	AvailableAt time.Time
	CompletedAt *time.Time
	Error       *string
}

func (h *harness) run(t *testing.T, id string) runRow {
	t.Helper()
	var r runRow
	err := h.pool.QueryRow(context.Background(), `SELECT status, attempt, lease, progress, deadline, available_at, completed_at, error
		FROM task_runs WHERE id = $1`, id).Scan(&r.Status, &r.Attempt, &r.Lease, &r.Progress, &r.Deadline, &r.AvailableAt,
		&r.CompletedAt, &r.Error)
	require.NoError(t, err)
	return r
}

// count runs a count query.
func (h *harness) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, h.pool.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

// claimOne claims exactly one run.
func (h *harness) claimOne(t *testing.T) Claimed {
	t.Helper()
	c, err := h.eng.Claim(context.Background(), 1)
	require.NoError(t, err)
	require.Len(t, c, 1)
	return c[0]
}

func (h *harness) succeed(t *testing.T, c Claimed) {
	t.Helper()
	res, err := h.eng.Callback(context.Background(), WorkerCall{RunID: c.RunID, Lease: &c.Lease},
		&protocol.CallbackRequest{Status: protocol.CallbackSuccess})
	require.NoError(t, err)
	require.True(t, res.Applied)
}

func ptr[T any](v T) *T { return &v }

func runIDs(cs []Claimed) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.RunID
	}
	return out
}
