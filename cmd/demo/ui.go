package main

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// ui prints the demo's progress: steps, details, and events stamped with
// the time since the agent started. Events come from several goroutines.
type ui struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time // of the agent; zero until then
}

func (u *ui) step(format string, args ...any) {
	u.mu.Lock()
	defer u.mu.Unlock()
	fmt.Fprintf(u.w, "\n==> "+format+"\n", args...)
}

func (u *ui) info(format string, args ...any) {
	u.mu.Lock()
	defer u.mu.Unlock()
	fmt.Fprintf(u.w, "    "+format+"\n", args...)
}

func (u *ui) event(format string, args ...any) {
	u.mu.Lock()
	defer u.mu.Unlock()
	stamp := "      "
	if !u.start.IsZero() {
		stamp = fmt.Sprintf("%+5.1fs", time.Since(u.start).Seconds())
	}
	fmt.Fprintf(u.w, "    %s  "+format+"\n", append([]any{stamp}, args...)...)
}

func (u *ui) startClock() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.start = time.Now()
}
