package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/csr-agent/csr-agent/internal/testenv"
)

func TestZZIdleRSS(t *testing.T) {
	env := testenv.Shared(t)
	s := env.StartSigner(t, testenv.SignerOptions{SignerName: "csr-agent.io/zz"})
	ca := filepath.Join(t.TempDir(), "ca.crt")
	os.WriteFile(ca, s.CAPEM, 0o644)
	for _, v := range []struct {
		name  string
		extra []string
	}{
		{"default", nil},
		{"CA_FILE (no CTB watch)", []string{"CA_FILE=" + ca}},
		{"no HTTP", []string{"HTTP_ADDR="}},
		{"CA_FILE, no HTTP", []string{"HTTP_ADDR=", "CA_FILE=" + ca}},
		{"default", nil},
	} {
		pod := env.NewPod(t, testenv.PodOptions{})
		grantAgentRBAC(t, env, pod)
		grantEventsRBAC(t, env, pod)
		r := &agentRun{done: make(chan struct{})}
		r.cmd = exec.Command("/tmp/agent-po", "sidecar")
		r.cmd.Env = append(append([]string{"CERT_DIR=" + t.TempDir(), "SIGNER_NAME=csr-agent.io/zz", "DNS_NAMES=x.example.com", "LOG_FORMAT=text"}, pod.Env()...), v.extra...)
		r.cmd.Stderr = &r.stderr
		r.cmd.Start()
		go func() { r.cmd.Wait(); close(r.done) }()
		waitForLog(t, r, "Renewal scheduled")
		<-time.After(10 * time.Second)
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", r.cmd.Process.Pid))
		var keep []string
		for _, l := range strings.Split(string(st), "\n") {
			if strings.HasPrefix(l, "VmRSS") || strings.HasPrefix(l, "RssAnon") || strings.HasPrefix(l, "RssFile") || strings.HasPrefix(l, "Threads") {
				keep = append(keep, strings.Join(strings.Fields(l), " "))
			}
		}
		t.Log(v.name, keep)
		r.cmd.Process.Kill()
		<-r.done
	}
}
