// Package freeport picks a TCP port on 127.0.0.1 that is free at the moment, for a process the
// project starts on a port of its choosing (a private PostgreSQL, the function binaries under
// their emulators, test servers). Another process may take the port before it is used: callers
// that can, retry on a taken port.
package freeport

import (
	"fmt"
	"net"
)

// Get returns a TCP port on 127.0.0.1 that was free a moment ago.
func Get() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
