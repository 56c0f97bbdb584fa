package engine

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// batchWorker is a worker that serves the batch route with answer (given the batch, it writes
// the whole answer) and the single route with 202; it records what reached each route.
type batchWorker struct {
	mu      sync.Mutex
	batches [][]protocol.DispatchBatchItem
	singles []string // run ids
}

func newBatchWorker(t *testing.T, answer func(http.ResponseWriter, []protocol.DispatchBatchItem)) (*batchWorker, string) {
	t.Helper()
	bw := &batchWorker{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+protocol.DispatchBatchPath, func(w http.ResponseWriter, r *http.Request) {
		var req protocol.DispatchBatchRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		bw.mu.Lock()
		bw.batches = append(bw.batches, req.Dispatches)
		bw.mu.Unlock()
		answer(w, req.Dispatches)
	})
	mux.HandleFunc("POST /tasks/{id}", func(w http.ResponseWriter, r *http.Request) {
		var d protocol.DispatchRequest
		if err := json.NewDecoder(r.Body).Decode(&d); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		bw.mu.Lock()
		bw.singles = append(bw.singles, d.RunID)
		bw.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return bw, srv.URL
}

// answerEach answers a batch with status(k, item) for each dispatch.
func answerEach(status func(int, protocol.DispatchBatchItem) int) func(http.ResponseWriter, []protocol.DispatchBatchItem) {
	return func(w http.ResponseWriter, items []protocol.DispatchBatchItem) {
		resp := protocol.DispatchBatchResponse{}
		for k, it := range items {
			resp.Results = append(resp.Results, protocol.DispatchBatchResult{RunID: it.RunID, HTTPStatus: status(k, it)})
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(resp)
	}
}

// batchHarness is a harness whose service registered with dispatchBatchMax 256 and a worker at
// url, with task t (two retries) and n runs of it queued, in enqueue order.
func batchHarness(t *testing.T, url string, n int) (*harness, []string) {
	t.Helper()
	h := newHarness(t, Config{WorkerAllowedNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	h.baseURL, h.dispatchBatchMax = url, 256
	h.register(t, []protocol.TaskDefinition{{ID: "t", Retries: ptr(2)}})
	return h, h.enqueue(t, "t", 0, n)
}

// A worker that takes batches gets the runs a claim took for it in one request, each dispatch
// with its own run token, and each answer decides that run's fate as a single dispatch's would:
// 202 runs it, 503 puts it back without spending an attempt, 400 fails the attempt.
func TestDispatchBatchAnswersEachRun(t *testing.T) {
	t.Parallel()
	bw, url := newBatchWorker(t, answerEach(func(k int, _ protocol.DispatchBatchItem) int {
		return []int{http.StatusAccepted, http.StatusServiceUnavailable, http.StatusBadRequest}[k%3]
	}))
	h, ids := batchHarness(t, url, 6)
	s, err := h.eng.Process(context.Background(), 10, 0)
	require.NoError(t, err)
	require.Equal(t, 6, s.Claimed)
	bw.mu.Lock()
	require.Len(t, bw.batches, 1, "one request")
	require.Empty(t, bw.singles)
	batch := bw.batches[0]
	bw.mu.Unlock()
	require.Len(t, batch, 6)
	status := map[string]int{}
	tokens := map[string]bool{}
	for k, it := range batch {
		require.Equal(t, "t", it.TaskID)
		require.NotEmpty(t, it.StorageToken)
		require.Equal(t, MaxCallbacksPerRequest, it.CallbackBatchMax)
		tokens[it.StorageToken] = true
		status[it.RunID] = k % 3
	}
	require.Len(t, tokens, 6, "a run token each")
	for _, id := range ids {
		r := h.run(t, id)
		switch status[id] {
		case 0:
			require.Equal(t, "running", r.Status, id)
			require.Equal(t, 1, r.Attempt)
		case 1:
			require.Equal(t, "pending", r.Status, id)
			require.Equal(t, 1, r.Attempt, "back pressure spends no attempt")
		case 2:
			require.Equal(t, "pending", r.Status, id)
			require.Equal(t, 2, r.Attempt, "a refused dispatch is a failed attempt")
			var msg string
			require.NoError(t, h.pool.QueryRow(context.Background(), `SELECT previous_attempts->0->>'error' FROM task_runs WHERE id = $1`, id).Scan(&msg))
			require.Equal(t, "worker answered 400 Bad Request", msg)
		}
	}
}

// What the worker answers the batch request as a whole: 404 or 405 (no batch route after all)
// sends each run alone; 503 is back pressure for each; an answer that cannot be read fails
// every attempt (retried, as a single dispatch without an answer is).
func TestDispatchBatchWholeAnswers(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		answer  func(http.ResponseWriter, []protocol.DispatchBatchItem)
		status  string
		attempt int
		singles bool
	}{
		"404 sends them alone": {answer: func(w http.ResponseWriter, _ []protocol.DispatchBatchItem) {
			http.NotFound(w, nil)
		}, status: "running", attempt: 1, singles: true},
		"405 sends them alone": {answer: func(w http.ResponseWriter, _ []protocol.DispatchBatchItem) {
			w.WriteHeader(http.StatusMethodNotAllowed)
		}, status: "running", attempt: 1, singles: true},
		"503 is back pressure": {answer: func(w http.ResponseWriter, _ []protocol.DispatchBatchItem) {
			w.WriteHeader(http.StatusServiceUnavailable)
		}, status: "pending", attempt: 1},
		"a result missing": {answer: func(w http.ResponseWriter, items []protocol.DispatchBatchItem) {
			answerEach(func(int, protocol.DispatchBatchItem) int { return http.StatusAccepted })(w, items[1:])
		}, status: "pending", attempt: 2},
		"results for other runs": {answer: func(w http.ResponseWriter, items []protocol.DispatchBatchItem) {
			items[0].RunID = "trun_other"
			answerEach(func(int, protocol.DispatchBatchItem) int { return http.StatusAccepted })(w, items)
		}, status: "pending", attempt: 2},
		"results without a status": {answer: answerEach(func(int, protocol.DispatchBatchItem) int { return 0 }),
			status: "pending", attempt: 2},
		"not JSON": {answer: func(w http.ResponseWriter, _ []protocol.DispatchBatchItem) {
			_, _ = w.Write([]byte("<html>ok</html>"))
		}, status: "pending", attempt: 2},
		"an answer too large": {answer: func(w http.ResponseWriter, _ []protocol.DispatchBatchItem) {
			_, _ = w.Write([]byte(`{"results":["` + strings.Repeat("x", maxDispatchBatchAnswer) + `"]}`))
		}, status: "pending", attempt: 2},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			bw, url := newBatchWorker(t, tc.answer)
			h, ids := batchHarness(t, url, 3)
			_, err := h.eng.Process(context.Background(), 10, 0)
			require.NoError(t, err)
			for _, id := range ids {
				r := h.run(t, id)
				require.Equal(t, tc.status, r.Status, id)
				require.Equal(t, tc.attempt, r.Attempt, id)
			}
			bw.mu.Lock()
			defer bw.mu.Unlock()
			require.Len(t, bw.batches, 1)
			if tc.singles {
				require.ElementsMatch(t, ids, bw.singles)
			} else {
				require.Empty(t, bw.singles)
			}
		})
	}
}

// Registration stores what the worker said, capped, and 0 in compat mode (upstream's dispatches);
// a negative dispatchBatchMax is refused.
func TestDispatchBatchRegistration(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		compat     bool
		advertised int
		stored     int
	}{{false, 0, 0}, {false, 1, 0}, {false, 64, 64}, {false, 100_000, maxDispatchBatch}, {true, 64, 0}} {
		h := newHarness(t, Config{Compat: tc.compat})
		h.dispatchBatchMax = tc.advertised
		h.register(t, []protocol.TaskDefinition{{ID: "t"}})
		require.Equal(t, tc.stored, h.count(t, `SELECT dispatch_batch_max FROM services WHERE id = 'svc'`), "%+v", tc)
	}
	h := newHarness(t, Config{})
	_, err := h.eng.Register(context.Background(), &protocol.RegisterRequest{ServiceID: "svc", Version: "1",
		BaseURL: h.baseURL, Tasks: []protocol.TaskDefinition{{ID: "t", CodeHash: "h"}}, DispatchBatchMax: -1}, "")
	require.ErrorIs(t, err, ErrInvalid)
	require.Contains(t, err.Error(), "dispatchBatchMax")
}

// Batches are cut at the worker's limit and at maxDispatchBatchBytes of estimated body; a run
// larger than that alone goes alone.
func TestCutBatches(t *testing.T) {
	t.Parallel()
	small := Claimed{Input: make([]byte, 100)}
	big := Claimed{Input: make([]byte, maxDispatchBatchBytes)}
	claimed := []Claimed{small, small, small, small, small, big, small}
	idx := []int{0, 1, 2, 3, 4, 5, 6}
	require.Equal(t, [][]int{{0, 1}, {2, 3}, {4}, {5}, {6}}, cutBatches(claimed, idx, 2))
	require.Equal(t, [][]int{{0, 1, 2, 3, 4}, {5}, {6}}, cutBatches(claimed, idx, 256))
}

// After a worker answered a batch 404, this instance sends its runs alone for a while instead of
// trying a batch on every claim.
func TestDispatchBatchRememberedMissingRoute(t *testing.T) {
	t.Parallel()
	bw, url := newBatchWorker(t, func(w http.ResponseWriter, _ []protocol.DispatchBatchItem) { http.NotFound(w, nil) })
	h, ids := batchHarness(t, url, 3)
	_, err := h.eng.Process(context.Background(), 10, 0)
	require.NoError(t, err)
	ids = append(ids, h.enqueue(t, "t", 0, 3)...)
	_, err = h.eng.Process(context.Background(), 10, 0)
	require.NoError(t, err)
	for _, id := range ids {
		require.Equal(t, "running", h.run(t, id).Status, id)
	}
	bw.mu.Lock()
	defer bw.mu.Unlock()
	require.Len(t, bw.batches, 1, "one batch tried")
	require.ElementsMatch(t, ids, bw.singles)
}
