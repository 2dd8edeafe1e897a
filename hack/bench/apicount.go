package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"k8s.io/client-go/kubernetes"
)

// apiCounts are the API server's requests by "VERB resource[/subresource]",
// summed over successful response codes, with each other code apart (as
// "VERB resource (409)"), from its apiserver_request_total counter.
type apiCounts map[string]float64

// readAPICounts scrapes the API server's /metrics as the administrator.
func readAPICounts(ctx context.Context, client kubernetes.Interface) (apiCounts, error) {
	raw, err := client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the API server's metrics: %w", err)
	}
	counts := apiCounts{}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "apiserver_request_total{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(line, "} ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		l := parseLabels(labels)
		key := l["verb"] + " " + l["resource"]
		if l["subresource"] != "" {
			key += "/" + l["subresource"]
		}
		if !strings.HasPrefix(l["code"], "2") {
			key += " (" + l["code"] + ")"
		}
		counts[key] += v
	}
	return counts, sc.Err()
}

// parseLabels reads the label pairs of one exposition line; the values the
// API server uses here hold no escaped quotes or commas.
func parseLabels(s string) map[string]string {
	out := map[string]string{}
	for pair := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(pair, "=")
		if ok {
			out[k] = strings.Trim(v, `"`)
		}
	}
	return out
}

// perRequest is what happened between before and after, per request of a
// burst of n, for the resources a certificate request touches, as
// "VERB resource 1.00, ..." in a stable order. Watches are left out: they
// are long-running, counted when they start.
func perRequest(before, after apiCounts, n int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(after)) {
		d := after[k] - before[k]
		verb, rest, _ := strings.Cut(k, " ")
		resource, _, _ := strings.Cut(rest, " ")
		if d <= 0 || verb == "WATCH" || !touched(resource) {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %.2f", k, d/float64(n)))
	}
	return strings.Join(parts, ", ")
}

func touched(resource string) bool {
	r, _, _ := strings.Cut(resource, "/")
	switch r {
	case "pods", "services", "serviceaccounts", "certificatesigningrequests", "podcertificaterequests", "events":
		return true
	}
	return false
}
