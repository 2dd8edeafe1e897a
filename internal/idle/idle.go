// Package idle gives memory back to the kernel before the agent goes to
// sleep until its next renewal.
//
// The agent runs in every pod of a cluster and is idle almost all the time,
// so what it keeps resident while idle is what it costs. Measured on the
// sidecar (sleeping, HTTP endpoint and trust-bundle watch on), about 3.7 MiB
// of its 15.6 MiB resident set was its own memory; the other 12 MiB were
// pages of its program file, mapped while it started and issued (the kernel
// maps 64 KiB around every page fault) and kept mapped ever after. Release
// drops both the heap freed since the last burst of work and those program
// pages: the idle sidecar then holds 6.3 MiB, and 9.8 MiB once the
// runtime's periodic garbage collection and the API connection's health
// checks have faulted their code back in. What runs at the next renewal
// faults back in from the page cache, or from the image if the kernel has
// reclaimed it meanwhile: a few milliseconds, once per renewal.
//
// Two things kept faulting memory back in while idle, and are now avoided.
// The kernel read ahead around every page of the program faulted back in,
// and mapped its neighbours too: Release marks the program's pages for
// random access, so only the page used comes back (the idle sidecar's peak
// over three minutes went from 12.0 to 9.2 MiB). And the runtime collected
// garbage every two minutes whether there was any or not: SetGC leaves
// collection to the agent's bursts of work, the memory limit and Sweeper
// (peak over five minutes 8.0 MiB).
package idle

import "runtime/debug"

// Release returns the freed heap to the kernel, then asks it to reclaim the
// pages of the program that this process alone maps (shared ones are left
// alone). Call it after a burst of work, before sleeping. The error is only
// informative: a kernel without MADV_PAGEOUT (before 5.4) keeps the pages.
func Release() error {
	// The runtime's scavenger would return freed memory only gradually.
	debug.FreeOSMemory()
	return pageOutProgram()
}
