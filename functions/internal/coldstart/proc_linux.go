package main

import "syscall"

// childAttr makes a child die with this process, so that nothing outlives an interrupted run.
func childAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }
