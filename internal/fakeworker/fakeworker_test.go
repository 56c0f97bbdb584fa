package fakeworker_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/apiclient"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/fakeworker"
)

func TestWorker(t *testing.T) {
	t.Parallel()
	// The orchestrator's side: it records the callbacks it gets.
	var mu sync.Mutex
	callbacks := map[string]string{} // path → bearer and body
	orchSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		callbacks[r.URL.Path] = r.Header.Get("Authorization") + " " + string(body)
		mu.Unlock()
		_, _ = w.Write([]byte(`{"applied":true}`))
	}))
	t.Cleanup(orchSrv.Close)
	orch, err := apiclient.New(orchSrv.URL, "")
	require.NoError(t, err)

	var after []string
	w, err := fakeworker.Start(orch, fakeworker.Options{
		Record: true,
		Answer: func(d protocol.DispatchRequest) int {
			if d.TaskID == "busy" {
				return http.StatusServiceUnavailable
			}
			return http.StatusAccepted
		},
		After: func(d protocol.DispatchRequest) {
			mu.Lock()
			after = append(after, d.RunID)
			mu.Unlock()
		},
	})
	require.NoError(t, err)

	dispatch := func(path string, d protocol.DispatchRequest) int {
		raw, err := json.Marshal(d)
		require.NoError(t, err)
		resp, err := http.Post(w.URL()+path, "application/json", strings.NewReader(string(raw)))
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		return resp.StatusCode
	}
	ok := protocol.DispatchRequest{RunID: "trun_1", TaskID: "job", StorageToken: "tok1"}
	require.Equal(t, http.StatusAccepted, dispatch("/tasks/job", ok))
	require.Equal(t, http.StatusServiceUnavailable, dispatch("/tasks/busy", protocol.DispatchRequest{RunID: "trun_2", TaskID: "busy"}))
	require.Equal(t, http.StatusBadRequest, dispatch("/tasks/other", protocol.DispatchRequest{RunID: "trun_3", TaskID: "job"}), "the path names the task")

	require.Equal(t, []string{"trun_1", "trun_2"}, []string{w.Dispatches()[0].RunID, w.Dispatches()[1].RunID})
	require.Len(t, w.Bodies(), 2)
	_, err = w.Callback(context.Background(), ok, fakeworker.Success(ok))
	require.NoError(t, err)
	require.Len(t, w.Take(), 2)
	require.Empty(t, w.Dispatches(), "Take forgets what it returned")

	w.Wait()
	w.Close()
	require.Equal(t, []string{"trun_1"}, after, "After runs only for a 2xx answer")
	require.Equal(t, map[string]string{"/api/callback/trun_1": `Bearer tok1 {"status":"success","outputPath":"runs/trun_1/output.json","outputSize":2}`}, callbacks)
}
