package idle

import "runtime/debug"

// getGCPercent reads the GC percent without changing it.
func getGCPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}
