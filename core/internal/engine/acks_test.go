package engine

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// ackHarness is a harness whose worker acknowledges every dispatch (202) and never calls back,
// with a dispatcher set (as while the standalone loop runs) and acknowledgements that wait an
// hour for a group commit unless one comes.
func ackHarness(t *testing.T) (*harness, *refills) {
	worker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusAccepted) }))
	t.Cleanup(worker.Close)
	h := newHarness(t, Config{WorkerAllowedNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	h.baseURL = worker.URL
	h.register(t, []protocol.TaskDefinition{{ID: "t"}})
	h.eng.acks.wait = time.Hour
	r := &refills{}
	h.eng.SetRefill(r.dispatch)
	return h, r
}

// The workers' acknowledgements of a dispatch batch wait for the next group commit that
// claims and are recorded in its transaction (the runs go from dispatching to running then),
// and a callback that arrives before its run's acknowledgement is recorded applies.
func TestDispatchAcksRideTheGroupCommit(t *testing.T) {
	t.Parallel()
	h, r := ackHarness(t)
	ids := h.enqueue(t, "t", 0, 3)
	ctx := context.Background()
	claimed, err := h.eng.Claim(ctx, 3)
	require.NoError(t, err)
	require.Len(t, claimed, 3)
	s, err := h.eng.Dispatch(ctx, claimed)
	require.NoError(t, err)
	require.Equal(t, 3, s.Dispatched)
	for _, id := range ids {
		require.Equal(t, "dispatching", h.run(t, id).Status, "the acknowledgement waits")
	}
	// The callback of one of them: its group commit records the other two acknowledgements.
	res, err := h.eng.Callback(ctx, call(claimed[0]), success())
	require.NoError(t, err)
	require.True(t, res.Applied)
	require.Equal(t, "completed", h.run(t, claimed[0].RunID).Status)
	for _, c := range claimed[1:] {
		run := h.run(t, c.RunID)
		require.Equal(t, "running", run.Status)
		require.NotNil(t, run.Deadline, "the heartbeat deadline is set")
	}
	require.Empty(t, h.eng.takeAcks().IDs)
	require.Empty(t, r.take(), "nothing left to claim")
}

// Close records the acknowledgements that wait; without a dispatcher they are recorded at
// once, as in serverless mode.
func TestDispatchAcksRecordedAtCloseOrAtOnce(t *testing.T) {
	t.Parallel()
	h, _ := ackHarness(t)
	ids := h.enqueue(t, "t", 0, 2)
	ctx := context.Background()
	claimed, err := h.eng.Claim(ctx, 1)
	require.NoError(t, err)
	_, err = h.eng.Dispatch(ctx, claimed)
	require.NoError(t, err)
	require.Equal(t, "dispatching", h.run(t, ids[0]).Status)
	h.eng.Close()
	require.Equal(t, "running", h.run(t, ids[0]).Status)

	h.eng.SetRefill(nil)
	claimed, err = h.eng.Claim(ctx, 1)
	require.NoError(t, err)
	_, err = h.eng.Dispatch(ctx, claimed)
	require.NoError(t, err)
	require.Equal(t, "running", h.run(t, ids[1]).Status)
}

// Without a group commit, the acknowledgements are recorded on their own after their wait.
func TestDispatchAcksFlushedAfterTheirWait(t *testing.T) {
	t.Parallel()
	h, _ := ackHarness(t)
	h.eng.acks.wait = 20 * time.Millisecond
	id := h.enqueue(t, "t", 0, 1)[0]
	ctx := context.Background()
	claimed, err := h.eng.Claim(ctx, 1)
	require.NoError(t, err)
	_, err = h.eng.Dispatch(ctx, claimed)
	require.NoError(t, err)
	// Polled on the test's goroutine: h.run's require must not run in Eventually's.
	for deadline := time.Now().Add(30 * time.Second); h.run(t, id).Status != "running"; time.Sleep(5 * time.Millisecond) {
		require.True(t, time.Now().Before(deadline), "the acknowledgement was not recorded within 30 s")
	}
}

// Acknowledgements put back after a transaction that did not commit go first, and the queue
// stays within maxPendingAcks however many were queued meanwhile: the overflow is dropped (the
// sweep recovers those runs), where each failure used to add a full queue to it.
func TestReturnedAcksStayWithinTheCap(t *testing.T) {
	t.Parallel()
	h, _ := ackHarness(t)
	batch := func(prefix string, n int) ([]string, []int64) {
		ids, leases := make([]string, n), make([]int64, n)
		for i := range ids {
			ids[i], leases[i] = fmt.Sprintf("%s%d", prefix, i), int64(i)
		}
		return ids, leases
	}
	ids, leases := batch("old", maxPendingAcks)
	require.True(t, h.eng.deferAcks(ids, leases))
	taken := h.eng.takeAcks()
	for round := 0; round < 3; round++ {
		newIDs, newLeases := batch(fmt.Sprintf("new%d-", round), 100)
		require.True(t, h.eng.deferAcks(newIDs, newLeases), "queued while the transaction is under way")
		h.eng.returnAcks(taken)
		require.False(t, h.eng.deferAcks([]string{"more"}, []int64{1}), "full: recorded at once instead")
		taken = h.eng.takeAcks()
		require.Len(t, taken.IDs, maxPendingAcks, "round %d", round)
		require.Len(t, taken.Leases, maxPendingAcks)
		require.Equal(t, "old0", taken.IDs[0], "the returned ones go first")
		require.Equal(t, fmt.Sprintf("new%d-0", round), taken.IDs[maxPendingAcks-100], "then those queued meanwhile")
	}
}
