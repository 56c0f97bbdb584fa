// Package freeport picks a TCP port on 127.0.0.1 that is free at the moment, for a process the
// project starts on a port of its choosing (a private PostgreSQL, the function binaries under
// their emulators, test servers). Another process may take the port before it is used: callers
// that can, retry on a taken port.
//
// The port comes from below the kernel's ephemeral range (net.ipv4.ip_local_port_range), not
// from a listen on port 0: a port of that range, free a moment ago, is what the kernel hands
// the next outgoing connection, and a busy test run opens thousands of them (to PostgreSQL,
// to workers), so such a port was often taken by the time the process meant for it started.
// Ports below the range are only ever taken by an explicit bind. One process never gets the
// same port twice.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// lowest is the lowest port handed out; below it live the well-known services of a machine.
const lowest = 10000

var (
	mu     sync.Mutex
	issued = map[int]bool{}
)

// Get returns a TCP port on 127.0.0.1 that was free a moment ago.
func Get() (int, error) {
	lo, hi := lowest, ephemeralLow()-1
	if hi-lo < 1000 {
		return listenZero()
	}
	mu.Lock()
	defer mu.Unlock()
	for range 200 {
		port := lo + rand.IntN(hi-lo+1)
		if issued[port] {
			continue
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		_ = ln.Close()
		issued[port] = true
		return port, nil
	}
	return listenZero()
}

// listenZero lets the kernel choose, when no port below the ephemeral range is free.
func listenZero() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// ephemeralLow reads the first port of the kernel's ephemeral range (32768 when it cannot be
// read, Linux's default).
func ephemeralLow() int {
	raw, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	fields := strings.Fields(string(raw))
	if len(fields) != 2 {
		return 32768
	}
	low, err := strconv.Atoi(fields[0])
	if err != nil {
		return 32768
	}
	return low
}
