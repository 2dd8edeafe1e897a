package main

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/csr-agent/csr-agent/internal/renew"
	"github.com/csr-agent/csr-agent/internal/sign"
)

// benchSpread is benchmark 5: 10,000 certificates issued in the same
// second, each scheduled by the agent's own deadline function with the
// jitter source the sidecar uses (renew.Options' default, math/rand/v2),
// counted per minute over the window they fall in.
func benchSpread(short bool) (*result, error) {
	n := 10000
	if short {
		n = 1000
	}
	const lifetime = 24 * time.Hour // CERT_DURATION's default
	issued := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// As the controller signs: notBefore backdated, notAfter as asked.
	notBefore, notAfter := issued.Add(-sign.DefaultBackdate), issued.Add(lifetime)
	perMinute := map[int]int{}
	first, last := int(^uint(0)>>1), 0
	for range n {
		d := renew.Policy{}.Deadline(notBefore, notAfter, rand.Float64())
		m := int(d.Sub(issued) / time.Minute)
		perMinute[m]++
		first, last = min(first, m), max(last, m)
	}
	minutes := last - first + 1
	mean := float64(n) / float64(minutes)
	busiest, busiestAt := 0, 0
	for m, c := range perMinute {
		if c > busiest {
			busiest, busiestAt = c, m
		}
	}
	// The same fleet renewing at a fixed point (RENEW_BEFORE, or no
	// jitter): all in one minute.
	fixed := renew.Policy{Before: 4 * time.Hour}.Deadline(notBefore, notAfter, 0)
	r := &result{title: fmt.Sprintf("5. Fleet renewal spread (%d certificates issued in the same second)", n)}
	r.add("busiest minute / mean per minute", fmt.Sprintf("%.2f (%d vs %.1f)", float64(busiest)/mean, busiest, mean),
		fmt.Sprintf("%d in one minute", n), "–", "≤ 2", float64(busiest) <= 2*mean)
	r.detail("- 24h certificates, notBefore backdated %s as the controller signs; deadlines by `renew.Policy{}.Deadline` (70–90%% of the lifetime, "+
		"jitter from math/rand/v2 as the sidecar draws it). Window: %d minutes, from %s to %s after issuance; busiest minute at %s.",
		sign.DefaultBackdate, minutes, hm(first), hm(last+1), hm(busiestAt))
	r.detail("- The reference column is the same fleet with a fixed deadline (RENEW_BEFORE=4h, or any unjittered point, the deadline at %s): every renewal in the same minute.",
		fixed.Sub(issued))
	r.detail("\n| hour of the window | renewals | busiest minute in it |\n|---|---|---|")
	for h := 0; h*60 < minutes; h++ {
		total, top := 0, 0
		for m := first + h*60; m < min(first+(h+1)*60, last+1); m++ {
			total += perMinute[m]
			top = max(top, perMinute[m])
		}
		r.detail("| %s – %s | %d | %d |", hm(first+h*60), hm(min(first+(h+1)*60, last+1)), total, top)
	}
	perMinuteChart := chart{title: fmt.Sprintf("Renewals per minute, %d certificates issued in the same second", n),
		xLabel: "hours after issuance", yLabel: "renewals per minute", bars: true, barWidth: 1.0 / 60}
	bars := series{name: "csr-agent (70–90% jittered)"}
	for m := first; m <= last; m++ {
		bars.points = append(bars.points, point{x: float64(m) / 60, y: float64(perMinute[m])})
	}
	perMinuteChart.series = []series{bars}
	r.chart("spread-per-minute", "Renewals per minute over the window", perMinuteChart)
	return r, nil
}

// hm formats minutes after issuance as h:mm.
func hm(m int) string { return fmt.Sprintf("%d:%02d", m/60, m%60) }
