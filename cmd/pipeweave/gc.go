package main

import (
	"runtime/debug"
)

// serverGCPercent is the GC target of the long-running orchestrator commands (serve, dev and
// bench's orchestrators) when GOGC is not set: the garbage collector runs when the heap has
// grown by 400 % of what the last cycle kept, not 100 %. An orchestrator under load keeps a
// few MB live and allocates hundreds of MB per second (request and dispatch JSON), so at the
// Go default it collected ~30 times per second and the GC took 18 % of its CPU; at 400 the
// heap peaks near 5 × live (~45 MB in `pipeweave bench`) and end-to-end throughput rose 7 %
// (README, Performance). GOGC in the environment overrides it, and GOMEMLIMIT bounds the
// heap whatever the target (the runtime collects sooner as it nears the limit).
const serverGCPercent = 400

// setServerGC applies serverGCPercent unless the environment sets GOGC.
func setServerGC(getenv func(string) string) { gcTarget(getenv, debug.SetGCPercent) }

// gcTarget calls set with serverGCPercent unless getenv sets GOGC.
func gcTarget(getenv func(string) string, set func(int) int) {
	if getenv("GOGC") == "" {
		set(serverGCPercent)
	}
}
