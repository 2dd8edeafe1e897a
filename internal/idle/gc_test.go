package idle

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	clocktesting "k8s.io/utils/clock/testing"
)

func TestSweeperReleasesOnlyAfterGarbageBuiltUp(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Now())
	var allocated, looks, released atomic.Uint64
	s := &Sweeper{
		Clock: clk, Period: time.Minute, Threshold: 1000,
		allocated: func() uint64 { looks.Add(1); return allocated.Load() },
		release:   func() error { released.Add(1); return nil },
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { s.Run(ctx, nil); close(done) }()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		if err := wait.PollUntilContextTimeout(t.Context(), time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
			return cond(), nil
		}); err != nil {
			t.Fatal(what)
		}
	}
	waitFor("the sweeper does not start", func() bool { return clk.HasWaiters() && looks.Load() == 1 })
	// tick lets a period pass and waits until the sweeper has looked.
	tick := func() {
		t.Helper()
		before := looks.Load()
		clk.Step(time.Minute)
		waitFor("the sweeper did not look after a period", func() bool { return looks.Load() > before })
	}
	// A release, if any, happens before the next look: a check after
	// two ticks sees it.
	waitReleased := func(want uint64) {
		t.Helper()
		if got := released.Load(); got != want {
			t.Fatalf("released %d times, want %d", got, want)
		}
	}

	allocated.Store(500) // below the threshold: nothing to sweep
	tick()
	tick()
	waitReleased(0)
	allocated.Store(1600)
	tick()
	waitFor("no release after garbage built up", func() bool { return released.Load() == 1 })
	allocated.Store(2000) // 400 since the sweep
	tick()
	tick()
	waitReleased(1)
	cancel()
	<-done
}

func TestSetGCKeepsWhatTheEnvironmentSets(t *testing.T) {
	t.Setenv("GOGC", "100")
	t.Setenv("GOMEMLIMIT", "1GiB")
	before := getGCPercent()
	SetGC()
	if got := getGCPercent(); got != before {
		t.Errorf("GOGC set, yet the GC percent changed from %d to %d", before, got)
	}
}
