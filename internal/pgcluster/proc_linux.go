//go:build linux

package pgcluster

import (
	"os"
	"strconv"
	"syscall"
)

// tieToParent makes the kernel send postgres SIGINT (fast shutdown) when the thread that
// started it exits; the caller keeps that thread locked and alive until postgres ends.
func tieToParent(attr *syscall.SysProcAttr) {
	attr.Pdeathsig = syscall.SIGINT
}

// processCwd returns the working directory of process pid, which for a postmaster is its
// data directory. ok is false when that cannot be known.
func processCwd(pid int) (dir string, ok bool) {
	d, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/cwd")
	if err != nil {
		return "", false
	}
	return d, true
}
