package testenv_test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/csr-agent/csr-agent/internal/testenv"
)

// stopTB records how a test would have ended; Fatal and Skip end the
// goroutine, as testing's do.
type stopTB struct {
	testing.TB
	fatal, skip string
}

func (s *stopTB) Helper()           {}
func (s *stopTB) Fatal(args ...any) { s.fatal = fmt.Sprint(args...); runtime.Goexit() }
func (s *stopTB) Skip(args ...any)  { s.skip = fmt.Sprint(args...); runtime.Goexit() }

func tool(t *testing.T, name string) (path string, tb *stopTB) {
	tb = &stopTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		path = testenv.Tool(tb, name, "promtool")
	}()
	<-done
	return path, tb
}

// A missing tool must not silently turn a check off in CI.
func TestMissingToolSkipsOnADevelopersMachineAndFailsInCI(t *testing.T) {
	t.Setenv("CSR_AGENT_BIN_DIR", t.TempDir())
	t.Setenv("CI", "")
	if _, tb := tool(t, "promtool"); tb.fatal != "" || !strings.Contains(tb.skip, "make promtool") {
		t.Errorf("locally: fatal %q, skip %q; want a skip naming make promtool", tb.fatal, tb.skip)
	}
	t.Setenv("CI", "true")
	if _, tb := tool(t, "promtool"); tb.fatal == "" {
		t.Errorf("in CI: skip %q, want a failure", tb.skip)
	}
}

func TestToolIsFoundInTheBinDirectory(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("CSR_AGENT_BIN_DIR", dir)
	want := filepath.Join(dir, "promtool")
	if err := os.WriteFile(want, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got, tb := tool(t, "promtool"); got != want || tb.fatal != "" || tb.skip != "" {
		t.Errorf("Tool = %q (fatal %q, skip %q), want %q", got, tb.fatal, tb.skip, want)
	}
}
