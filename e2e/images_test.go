//go:build e2e

package e2e_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/csr-agent/csr-agent/internal/localnode"
	"github.com/csr-agent/csr-agent/internal/ociimage"
)

// The images the suite imports; the manifests' images are overridden to
// these tags (see overlay).
const (
	productImage = "localhost/csr-agent:e2e"
	appImage     = "localhost/csr-agent-e2e/tls-app:1"
	clientImage  = "localhost/csr-agent-e2e/tls-client:1"
)

// buildImages builds the programs as `make build` and the Dockerfile do
// (static, stripped) and writes each image as an OCI archive in dir.
func buildImages(ctx context.Context, dir string) ([]string, error) {
	bin := filepath.Join(dir, "bin")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin+"/",
		"./cmd/agent", "./cmd/controller", "./e2e/cmd/pause", "./e2e/cmd/tls-app", "./e2e/cmd/tls-client")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build: %w\n%s", err, out)
	}
	read := func(name string) ([]byte, error) { return os.ReadFile(filepath.Join(bin, name)) }
	agent, err := read("agent")
	if err != nil {
		return nil, err
	}
	controller, err := read("controller")
	if err != nil {
		return nil, err
	}
	images := []ociimage.Image{ociimage.Product(productImage, agent, controller)}
	for _, p := range []struct{ name, program, path, user string }{
		{localnode.PauseImage, "pause", "/pause", "65535:65535"},
		// The examples signal their app by name: NOTIFY_PROCESS=nginx.
		{appImage, "tls-app", "/usr/sbin/nginx", "101:101"},
		{clientImage, "tls-client", "/tls-client", "65532:65532"},
	} {
		data, err := read(p.program)
		if err != nil {
			return nil, err
		}
		images = append(images, ociimage.Image{
			Name:       p.name,
			Files:      append(ociimage.Base(), ociimage.File{Path: p.path, Mode: 0o755, Data: data}),
			User:       p.user,
			Entrypoint: []string{p.path},
		})
	}
	var archives []string
	for i, img := range images {
		path := filepath.Join(dir, fmt.Sprintf("image-%d.tar", i))
		f, err := os.Create(path)
		if err != nil {
			return nil, err
		}
		if err := ociimage.Write(f, img); err != nil {
			_ = f.Close()
			return nil, err
		}
		if err := f.Close(); err != nil {
			return nil, err
		}
		archives = append(archives, path)
	}
	return archives, nil
}
