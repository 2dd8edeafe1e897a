//go:build !linux

package idle

// pageOutProgram does nothing off Linux, where the agent does not run in
// pods.
func pageOutProgram() error { return nil }
