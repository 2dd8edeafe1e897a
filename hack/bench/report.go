package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// result is one benchmark's section of BENCHMARKS.md.
type result struct {
	name, command string
	title         string
	rows          []row
	details       []string // markdown paragraphs or list items
	charts        []chartFile
}

// chartFile is a chart written next to the report, in chartDir.
type chartFile struct {
	name string // file name without directory
	svg  []byte
}

// chartDir holds the charts, relative to the report.
const chartDir = "bench"

// chart adds c as chartDir/name.svg and embeds it in the section.
func (r *result) chart(name, alt string, c chart) {
	r.charts = append(r.charts, chartFile{name: name + ".svg", svg: c.svg()})
	r.detail("\n![%s](%s/%s.svg)\n", alt, chartDir, name)
}

// row compares the agent (or the controller) with its reference.
type row struct {
	metric, ours, reference, ratio, goal string
	met                                  bool
}

func (r *result) add(metric, ours, reference, ratio, goal string, met bool) {
	r.rows = append(r.rows, row{metric, ours, reference, ratio, goal, met})
}

func (r *result) detail(format string, a ...any) {
	r.details = append(r.details, fmt.Sprintf(format, a...))
}

func (r *result) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "### %s\n\nReproduce: `%s`\n\n", r.title, r.command)
	b.WriteString("| metric | csr-agent | reference | ratio | goal | met |\n|---|---|---|---|---|---|\n")
	for _, w := range r.rows {
		met := "yes"
		if w.goal == "–" {
			met = "–"
		} else if !w.met {
			met = "**NO**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", w.metric, w.ours, w.reference, w.ratio, w.goal, met)
	}
	if len(r.details) > 0 {
		b.WriteString("\n")
		for _, d := range r.details {
			b.WriteString(d + "\n")
		}
	}
	return b.String()
}

// machine describes where and how the numbers were taken.
func machine(ctx context.Context, mode string, started time.Time) string {
	first := func(path, key string) string {
		f, err := os.Open(path)
		if err != nil {
			return "?"
		}
		defer f.Close()
		s := bufio.NewScanner(f)
		for s.Scan() {
			if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(k) == key {
				return strings.TrimSpace(v)
			}
		}
		return "?"
	}
	out := func(name string, args ...string) string {
		b, err := exec.CommandContext(ctx, name, args...).Output()
		if err != nil {
			return "?"
		}
		return strings.TrimSpace(string(b))
	}
	dirty := ""
	if out("git", "status", "--porcelain", "--", "cmd", "internal", "go.mod") != "" {
		dirty = " with uncommitted changes"
	}
	note := ""
	if mode == "short" {
		note = "- short mode (smoke): tiny sizes and windows; the numbers and the \"met\" column mean nothing\n"
	}
	return fmt.Sprintf("### Machine and run\n\n"+
		"- run: %s mode, started %s\n- commit: %s%s\n- CPU: %d × %s (nproc %s)\n- memory: %s\n- kernel: %s\n- Go: %s\n",
		mode, started.UTC().Format(time.RFC3339), out("git", "rev-parse", "--short", "HEAD"), dirty,
		runtime.NumCPU(), first("/proc/cpuinfo", "model name"), out("nproc"),
		first("/proc/meminfo", "MemTotal"), out("uname", "-r"), out("go", "version")) + note
}

// writeReport replaces, in path, the machine section and the section of
// each result, between <!-- bench:NAME --> and <!-- /bench:NAME -->
// markers, appending sections not there yet. Text outside the markers is
// the hand-written analysis and is kept.
func writeReport(path, machine string, results []*result) error {
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	doc := string(data)
	if doc == "" {
		doc = "# Benchmarks\n\nWritten by `make bench` (hack/bench); see its package doc.\n"
	}
	sections := [][2]string{{"machine", machine}}
	for _, r := range results {
		sections = append(sections, [2]string{r.name, r.markdown()})
	}
	for _, s := range sections {
		begin, end := "<!-- bench:"+s[0]+" -->", "<!-- /bench:"+s[0]+" -->"
		block := begin + "\n" + s[1] + end
		i, j := strings.Index(doc, begin), strings.Index(doc, end)
		if i >= 0 && j > i {
			doc = doc[:i] + block + doc[j+len(end):]
		} else {
			doc = strings.TrimRight(doc, "\n") + "\n\n" + block + "\n"
		}
	}
	for _, r := range results {
		for _, c := range r.charts {
			dir := filepath.Join(filepath.Dir(path), chartDir)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dir, c.name), c.svg, 0o644); err != nil {
				return err
			}
		}
	}
	return os.WriteFile(path, []byte(doc), 0o644)
}

// percentile of sorted durations, nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func sortedCopy(d []time.Duration) []time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }

func ratio(a, b float64) string {
	if b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", a/b)
}
