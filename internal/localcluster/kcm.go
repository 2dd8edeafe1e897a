package localcluster

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// controllers are the kube-controller-manager loops the project's tests rely
// on: the built-in CSR signers and CSR garbage collection, EndpointSlices for
// Services, default service accounts, kube-root-ca.crt in namespaces, and
// the type checking of ValidatingAdmissionPolicies (their status), which
// the manifests' tests read.
var controllers = []string{
	"certificatesigningrequest-signing-controller",
	"certificatesigningrequest-cleaner-controller",
	"endpointslice-controller",
	"serviceaccount-controller",
	"root-ca-certificate-publisher-controller",
	"validatingadmissionpolicy-status-controller",
}

type controllerManager struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	mu      sync.Mutex
	exitErr error
}

func startControllerManager(c *Cluster, bin string, extraArgs []string) (*controllerManager, error) {
	dir := filepath.Join(c.Dir, "kube-controller-manager")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating controller manager dir: %w", err)
	}
	user, err := c.env.AddUser(envtest.User{Name: "system:kube-controller-manager", Groups: []string{"system:masters"}}, c.Config)
	if err != nil {
		return nil, fmt.Errorf("adding controller manager user: %w", err)
	}
	kubeconfig, err := writeKubeconfig(filepath.Join(dir, "kubeconfig"), user.Config())
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{
		"cluster-ca.crt": c.ca.certPEM,
		"cluster-ca.key": c.ca.keyPEM,
		"server-ca.crt":  c.ServerCAPEM,
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return nil, fmt.Errorf("writing %s: %w", name, err)
		}
	}
	m := &controllerManager{logPath: filepath.Join(dir, "log"), done: make(chan struct{})}
	logFile, err := os.Create(m.logPath)
	if err != nil {
		return nil, fmt.Errorf("creating controller manager log: %w", err)
	}
	args := []string{
		"--kubeconfig=" + kubeconfig,
		"--controllers=" + strings.Join(controllers, ","),
		"--cluster-signing-cert-file=" + filepath.Join(dir, "cluster-ca.crt"),
		"--cluster-signing-key-file=" + filepath.Join(dir, "cluster-ca.key"),
		"--root-ca-file=" + filepath.Join(dir, "server-ca.crt"),
		"--leader-elect=false",
		"--secure-port=0",
		"--concurrent-service-endpoint-syncs=5",
	}
	m.cmd = exec.Command(filepath.Join(bin, "kube-controller-manager"), append(args, extraArgs...)...)
	m.cmd.Stdout, m.cmd.Stderr = logFile, logFile
	if err := m.cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("starting kube-controller-manager: %w", err)
	}
	go func() {
		err := m.cmd.Wait()
		_ = logFile.Close()
		m.mu.Lock()
		m.exitErr = err
		m.mu.Unlock()
		close(m.done)
	}()
	return m, nil
}

func (m *controllerManager) running() bool {
	select {
	case <-m.done:
		return false
	default:
		return true
	}
}

func (m *controllerManager) stop() error {
	if !m.running() {
		return nil
	}
	if err := m.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stopping kube-controller-manager: %w", err)
	}
	select {
	case <-m.done:
		return nil
	case <-time.After(20 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.done
		return errors.New("kube-controller-manager ignored SIGTERM for 20s and was killed")
	}
}

// logTail returns the end of the log, for failure messages.
func (m *controllerManager) logTail() string {
	data, err := os.ReadFile(m.logPath)
	if err != nil {
		return ""
	}
	const max = 4000
	if len(data) > max {
		data = data[len(data)-max:]
	}
	return string(bytes.TrimSpace(data))
}
