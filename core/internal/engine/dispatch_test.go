package engine

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// TestDispatchOutcomes: Process dispatches a claimed run to its worker; what the worker answers
// decides what becomes of the attempt: 2xx runs it, 429/503 puts it back without spending an
// attempt, other errors fail the attempt (retried while retries are left).
func TestDispatchOutcomes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		answer  int
		status  protocol.TaskRunStatus
		attempt int
	}{
		{http.StatusAccepted, protocol.StatusRunning, 1},
		{http.StatusServiceUnavailable, protocol.StatusPending, 1},
		{http.StatusBadRequest, protocol.StatusPending, 2},
	} {
		t.Run(http.StatusText(tc.answer), func(t *testing.T) {
			t.Parallel()
			var (
				mu         sync.Mutex
				dispatches []protocol.DispatchRequest
				decodeErr  error
			)
			worker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var d protocol.DispatchRequest
				err := json.NewDecoder(r.Body).Decode(&d)
				mu.Lock()
				dispatches, decodeErr = append(dispatches, d), err
				mu.Unlock()
				w.WriteHeader(tc.answer)
			}))
			t.Cleanup(worker.Close)
			h := newHarness(t, Config{WorkerAllowedNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
			h.baseURL = worker.URL
			h.register(t, []protocol.TaskDefinition{{ID: "t", Retries: ptr(2)}})
			id := h.enqueue(t, "t", 0, 1)[0]

			s, err := h.eng.Process(context.Background(), 10, 0)
			require.NoError(t, err)
			require.Equal(t, 1, s.Claimed)
			mu.Lock()
			defer mu.Unlock()
			require.NoError(t, decodeErr)
			require.Len(t, dispatches, 1)
			require.Equal(t, id, dispatches[0].RunID)
			require.Equal(t, "t", dispatches[0].TaskID)
			require.NotEmpty(t, dispatches[0].StorageToken)
			r := h.run(t, id)
			require.Equal(t, string(tc.status), r.Status)
			require.Equal(t, tc.attempt, r.Attempt)
		})
	}
}
