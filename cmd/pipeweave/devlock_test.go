//go:build unix

package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestDevLockWaitsOutAnEmptyHeldLock: a lock held while its file is empty (a dev that has just
// locked, or one whose release has not reached the kernel yet: a child forked meanwhile still
// holds the descriptor) is tried again until it is free; one held for longer than
// devLockSettle is another dev's, "starting"; one whose file names a pid fails at once.
func TestDevLockWaitsOutAnEmptyHeldLock(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, devLockFile)
	hold := func() *os.File {
		t.Helper()
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		require.NoError(t, err)
		held, err := tryLock(f)
		require.NoError(t, err)
		require.True(t, held)
		return f
	}

	// Held and empty, released 200 ms later: the lock is taken.
	other := hold()
	released := make(chan struct{})
	go func() {
		time.Sleep(200 * time.Millisecond)
		other.Close()
		close(released)
	}()
	l, err := lockDevDir(dir)
	require.NoError(t, err)
	<-released
	info, err := readDevLock(dir)
	require.NoError(t, err)
	require.Equal(t, os.Getpid(), info.PID)
	l.release()

	// Held and empty for good: refused after devLockSettle, as a dev that is starting.
	other = hold()
	defer other.Close()
	start := time.Now()
	_, err = lockDevDir(dir)
	require.ErrorContains(t, err, "another `pipeweave dev` is running from "+dir+": it is starting")
	require.GreaterOrEqual(t, time.Since(start), devLockSettle)

	// Held by a dev that wrote its pid: refused at once.
	_, err = other.WriteAt([]byte(`{"pid":4242}`+"\n"), 0)
	require.NoError(t, err)
	start = time.Now()
	_, err = lockDevDir(dir)
	require.ErrorContains(t, err, "(pid 4242)")
	require.Less(t, time.Since(start), devLockSettle)
}
