package localcluster

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

const modulePath = "github.com/csr-agent/csr-agent"

// BinDir is where `make controlplane` puts etcd, kube-apiserver and
// kube-controller-manager: $CSR_AGENT_BIN_DIR, or bin/ at the module root.
func BinDir() (string, error) {
	dir, err := binDirPath()
	if err != nil {
		return "", err
	}
	if err := checkBinaries(dir); err != nil {
		return "", err
	}
	return dir, nil
}

// ToolPath is where the Makefile builds a tool that tests run (promtool):
// in the same directory as the control plane, which need not be there.
func ToolPath(name string) (string, error) {
	dir, err := binDirPath()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, name), nil
}

func binDirPath() (string, error) {
	if dir := os.Getenv("CSR_AGENT_BIN_DIR"); dir != "" {
		return dir, nil
	}
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "bin"), nil
}

func checkBinaries(dir string) error {
	for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("%w: %s not in %s: run `make controlplane` first", ErrBinariesMissing, name, dir)
		}
	}
	return nil
}

// moduleRoot walks up from the working directory (a test's package dir, or
// the repository root for the demo) to the directory of this module's go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding module root: %w", err)
	}
	for {
		if isModuleRoot(filepath.Join(dir, "go.mod")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("finding module root: no go.mod of " + modulePath + " above the working directory")
		}
		dir = parent
	}
}

func isModuleRoot(goMod string) bool {
	f, err := os.Open(goMod)
	if err != nil {
		return false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if line := strings.TrimSpace(s.Text()); strings.HasPrefix(line, "module ") {
			return strings.TrimSpace(strings.TrimPrefix(line, "module ")) == modulePath
		}
	}
	return false
}

// writeKubeconfig writes cfg (token or client certificate) as a kubeconfig.
func writeKubeconfig(path string, cfg *rest.Config) (string, error) {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["local"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["user"] = &clientcmdapi.AuthInfo{
		Token:                 cfg.BearerToken,
		ClientCertificateData: cfg.CertData,
		ClientKeyData:         cfg.KeyData,
	}
	kc.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "user"}
	kc.CurrentContext = "local"
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return "", fmt.Errorf("writing kubeconfig %s: %w", path, err)
	}
	return path, nil
}
