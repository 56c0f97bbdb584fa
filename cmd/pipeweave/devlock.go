package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// devLockFile is the file under the dev state directory that a running `pipeweave dev`
// holds locked (flock: the lock goes with the process, so a crashed dev leaves none) and
// in which it says how to reach it.
const devLockFile = "dev.lock"

// devLockInfo is what the lock file says about the dev holding it.
type devLockInfo struct {
	PID     int    `json:"pid"`
	URL     string `json:"url,omitempty"`
	KeyFile string `json:"apiKeyFile,omitempty"`
}

// devLock is the lock of one state directory, held until release.
type devLock struct {
	f    *os.File
	path string
}

// errDevRunning is returned when another dev holds the lock of the state directory.
var errDevRunning = errors.New("another `pipeweave dev` is running")

// devLockSettle bounds how long lockDevDir waits on a lock whose file says nothing yet (or
// any more), and devLockPoll how often it tries again meanwhile.
const (
	devLockSettle = 2 * time.Second
	devLockPoll   = 20 * time.Millisecond
)

// lockDevDir takes the lock of the state directory dir, or says in one line how to reach
// the dev that holds it. A lock held while its file is empty is passing: a dev that has just
// locked writes its pid at once, and one that released it emptied the file first (its lock can
// outlive its close for as long as a child forked meanwhile by any goroutine of the process
// holds the descriptor, until that child's exec). Such a lock is tried again for up to
// devLockSettle before it counts as another dev's.
func lockDevDir(dir string) (*devLock, error) {
	path := filepath.Join(dir, devLockFile)
	deadline := time.Now().Add(devLockSettle)
	for {
		l, info, err := tryDevLock(path)
		if l != nil || err != nil {
			return l, err
		}
		if info.PID != 0 || time.Now().After(deadline) {
			return nil, devRunningError(dir, info)
		}
		time.Sleep(devLockPoll)
	}
}

// tryDevLock takes the lock of the file at path at once, or returns what its holder wrote.
func tryDevLock(path string) (*devLock, devLockInfo, error) {
	var info devLockInfo
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, info, fmt.Errorf("open %s: %w", path, err)
	}
	held, err := tryLock(f)
	if err != nil {
		f.Close()
		return nil, info, fmt.Errorf("lock %s: %w", path, err)
	}
	if !held {
		raw, _ := os.ReadFile(path)
		f.Close()
		_ = json.Unmarshal(raw, &info)
		return nil, info, nil
	}
	l := &devLock{f: f, path: path}
	return l, info, l.write(devLockInfo{PID: os.Getpid()})
}

// devRunningError says in one line that another dev holds the lock of dir, and how to reach it.
func devRunningError(dir string, info devLockInfo) error {
	msg := fmt.Sprintf("%s from %s", errDevRunning, dir)
	if info.PID != 0 {
		msg = fmt.Sprintf("%s (pid %d) from %s", errDevRunning, info.PID, dir)
	}
	switch {
	case info.URL != "" && info.KeyFile != "":
		msg += fmt.Sprintf(": reach it at %s (API key in %s)", info.URL, info.KeyFile)
	case info.URL != "":
		msg += fmt.Sprintf(": reach it at %s", info.URL)
	default:
		msg += ": it is starting"
	}
	return fmt.Errorf("%w; stop it first, or pass --dir for another state directory", errors.New(msg))
}

// write replaces what the lock file says.
func (l *devLock) write(info devLockInfo) error {
	raw, err := json.Marshal(info)
	if err != nil {
		return err
	}
	if err := l.f.Truncate(0); err != nil {
		return fmt.Errorf("write %s: %w", l.path, err)
	}
	if _, err := l.f.WriteAt(append(raw, '\n'), 0); err != nil {
		return fmt.Errorf("write %s: %w", l.path, err)
	}
	return nil
}

// release empties the lock file and releases the lock. The file stays: removing it could let
// two processes lock two different files of the same name.
func (l *devLock) release() {
	_ = l.f.Truncate(0)
	_ = l.f.Close() // closing the last descriptor releases the flock
}

// readDevLock returns what the lock file of dir says, for tests and messages.
func readDevLock(dir string) (devLockInfo, error) {
	var info devLockInfo
	raw, err := os.ReadFile(filepath.Join(dir, devLockFile))
	if err != nil {
		return info, err
	}
	if strings.TrimSpace(string(raw)) == "" {
		return info, nil
	}
	return info, json.Unmarshal(raw, &info)
}
