package idle

import (
	"context"
	"errors"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"k8s.io/utils/clock"
)

// DefaultMemoryLimit is the Go memory limit SetGC applies when GOMEMLIMIT
// is not set: the agent's live heap is about 3 MiB while it issues and less
// while it idles, and its pod's manifests give the container 48 MiB, which
// also holds the program's own pages (up to about 12 MiB). It is a soft
// limit: the collector runs as the heap nears it, and it is exceeded rather
// than collected without end if the live heap ever needs more.
const DefaultMemoryLimit = 16 << 20

// SetGC turns the runtime's own collection schedule off unless GOGC is set,
// and sets the memory limit to DefaultMemoryLimit unless GOMEMLIMIT is set.
//
// Why: with GOGC's default the runtime also forces a collection every two
// minutes, however little was allocated. In an agent that idles for hours,
// each of those faults the collector's code back in and walks the heap,
// and was the largest part of what made the idle sidecar grow after it
// gave its memory back (measured: from 7.7 MiB up to 9.2 MiB within three
// minutes; 8.0 MiB at most over five without). Collections then happen
// where the agent does work: when the heap nears the limit during a burst,
// after each burst (Release), and while idle when Sweeper sees garbage.
func SetGC() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(-1)
	}
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set {
		debug.SetMemoryLimit(DefaultMemoryLimit)
	}
}

// Sweeper releases memory while the agent idles, when garbage built up:
// every Period, if more than Threshold bytes were allocated since the last
// look (probes, metric scrapes, the trust-bundle watch), it calls Release.
// With SetGC's schedule, it is what bounds the idle heap.
type Sweeper struct {
	Clock     clock.WithTicker
	Period    time.Duration
	Threshold uint64
	// allocated and release are the runtime's and Release, replaced in tests.
	allocated func() uint64
	release   func() error
}

// Defaults of a Sweeper's zero fields.
const (
	DefaultSweepPeriod    = 5 * time.Minute
	DefaultSweepThreshold = 1 << 20
)

// Run sweeps until ctx is done; a failed release is reported to failed
// and sweeping goes on.
func (s *Sweeper) Run(ctx context.Context, failed func(error)) {
	if s.Clock == nil {
		s.Clock = clock.RealClock{}
	}
	if s.Period <= 0 {
		s.Period = DefaultSweepPeriod
	}
	if s.Threshold == 0 {
		s.Threshold = DefaultSweepThreshold
	}
	if s.allocated == nil {
		s.allocated = allocatedBytes
	}
	if s.release == nil {
		s.release = Release
	}
	t := s.Clock.NewTicker(s.Period)
	defer t.Stop()
	last := s.allocated()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		now := s.allocated()
		if now-last < s.Threshold {
			continue
		}
		if err := s.release(); err != nil && failed != nil && !errors.Is(err, context.Canceled) {
			failed(err)
		}
		last = s.allocated()
	}
}

// allocatedBytes is the heap allocated since the program started, a
// counter the runtime keeps without stopping anything.
func allocatedBytes() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}
