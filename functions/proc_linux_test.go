package functions_test

import "syscall"

// childAttr makes a child die with the test process, so that nothing outlives a crashed test.
func childAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }
