//go:build !linux

package pgcluster

import "syscall"

// tieToParent does nothing where the kernel has no parent-death signal: an attached
// server outlives a process that dies without calling Stop.
func tieToParent(*syscall.SysProcAttr) {}

// processCwd cannot be known without /proc.
func processCwd(int) (string, bool) { return "", false }
