package main

import (
	"context"
	"fmt"
	"time"
)

// memSample is one reading of a program's memory.
type memSample struct {
	at         time.Duration // since the window opened
	rss        int64         // VmRSS
	workingSet int64         // as the kubelet reports it; -1 without a cgroup
}

// watched is a program whose memory a window samples; cg may be nil.
type watched struct {
	proc *process
	cg   *memcg
}

// sampleMemory reads each program's memory every interval for window, and
// returns one series per program.
func sampleMemory(ctx context.Context, ws []watched, window, every time.Duration) ([][]memSample, error) {
	out := make([][]memSample, len(ws))
	t0 := time.Now()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		for i, w := range ws {
			if !w.proc.running() {
				return nil, w.proc.exited()
			}
			m, err := w.proc.memory()
			if err != nil {
				return nil, err
			}
			s := memSample{at: time.Since(t0), rss: m.RSS, workingSet: -1}
			if w.cg != nil {
				if s.workingSet, err = w.cg.workingSet(); err != nil {
					return nil, fmt.Errorf("%s: %w", w.proc.name, err)
				}
			}
			out[i] = append(out[i], s)
		}
		if time.Since(t0) >= window {
			return out, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
}

// peak is the highest VmRSS and working set of a series.
func peak(s []memSample) (rss, workingSet int64) {
	workingSet = -1
	for _, m := range s {
		rss, workingSet = max(rss, m.rss), max(workingSet, m.workingSet)
	}
	return rss, workingSet
}

// rssChart is the VmRSS of each series over its window, in MiB by minute.
func rssChart(title string, names []string, samples [][]memSample) chart {
	c := chart{title: title, xLabel: "minutes into the idle window", yLabel: "VmRSS (MiB)"}
	for i, s := range samples {
		sr := series{name: names[i]}
		for _, m := range s {
			sr.points = append(sr.points, point{x: m.at.Minutes(), y: float64(m.rss) / (1 << 20)})
		}
		c.series = append(c.series, sr)
	}
	return c
}

// issuedChart is, for each burst, how many requests were issued by each
// second after the release.
func issuedChart(title string, names []string, runs []burstStats) chart {
	c := chart{title: title, xLabel: "seconds after the release", yLabel: "certificates issued"}
	for i, r := range runs {
		sr := series{name: names[i], points: []point{{0, 0}}}
		for j, at := range r.issued {
			sr.points = append(sr.points, point{x: at.Seconds(), y: float64(j + 1)})
		}
		c.series = append(c.series, sr)
	}
	return c
}
