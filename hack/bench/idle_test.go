package main

import (
	"testing"
	"time"
)

func TestPeakIsTheHighestOfEachMeasure(t *testing.T) {
	s := []memSample{{at: 0, rss: 5, workingSet: 9}, {at: time.Second, rss: 7, workingSet: 3}, {at: 2 * time.Second, rss: 6, workingSet: 4}}
	if rss, ws := peak(s); rss != 7 || ws != 9 {
		t.Errorf("peak = %d, %d; want 7, 9", rss, ws)
	}
	if _, ws := peak([]memSample{{rss: 1, workingSet: -1}}); ws != -1 {
		t.Errorf("working set without a cgroup = %d, want -1", ws)
	}
}

func TestIssuedChartCountsUpOnePerRequest(t *testing.T) {
	c := issuedChart("t", []string{"a"}, []burstStats{{issued: []time.Duration{time.Second, 2 * time.Second, 2 * time.Second}}})
	pts := c.series[0].points
	if len(pts) != 4 || pts[0] != (point{0, 0}) || pts[3] != (point{2, 3}) {
		t.Errorf("points %v", pts)
	}
}
