// Package ociimage writes container images as OCI image-layout archives
// (the format `ctr images import` and `docker load` read), from files given
// by the caller, with the standard library only. The end-to-end suite
// builds the product image and its test images with it, since no image can
// be pulled or built by a daemon on the machines this project runs on.
//
// An image is one uncompressed layer with a fixed modification time, so the
// same files give the same digests.
package ociimage

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Media types of the OCI image specification.
const (
	MediaTypeIndex    = "application/vnd.oci.image.index.v1+json"
	MediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	MediaTypeLayer    = "application/vnd.oci.image.layer.v1.tar"
)

// Annotations naming the image in index.json: containerd's, and the OCI one
// (the tag).
const (
	AnnotationContainerdName = "io.containerd.image.name"
	AnnotationRefName        = "org.opencontainers.image.ref.name"
)

// File is one entry of the image's filesystem.
type File struct {
	// Path is absolute, e.g. /agent.
	Path string
	// Mode holds the permission bits; fs.ModeDir makes a directory.
	Mode fs.FileMode
	Data []byte
	// UID and GID own the file; default root.
	UID, GID int
}

// Image is what an image holds and how it runs.
type Image struct {
	// Name is the full reference, e.g. localhost/csr-agent:e2e.
	Name       string
	Files      []File
	User       string
	Entrypoint []string
	Cmd        []string
	Env        []string
	// Arch defaults to this program's GOARCH; the OS is linux.
	Arch string
}

// ErrInvalid means an Image cannot be written as given.
var ErrInvalid = errors.New("invalid image")

// epoch is every file's modification time: digests depend on content only.
var epoch = time.Unix(0, 0).UTC()

// Descriptor points at a blob.
type Descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    *Platform         `json:"platform,omitempty"`
}

// Platform of an image.
type Platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

// Index is index.json.
type Index struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []Descriptor `json:"manifests"`
}

// Manifest is an image manifest.
type Manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        Descriptor   `json:"config"`
	Layers        []Descriptor `json:"layers"`
}

// Config is an image configuration.
type Config struct {
	Architecture string    `json:"architecture"`
	OS           string    `json:"os"`
	Created      time.Time `json:"created"`
	Config       RunConfig `json:"config"`
	RootFS       struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
}

// RunConfig is how a container of the image runs.
type RunConfig struct {
	User       string   `json:"User,omitempty"`
	Entrypoint []string `json:"Entrypoint,omitempty"`
	Cmd        []string `json:"Cmd,omitempty"`
	Env        []string `json:"Env,omitempty"`
}

// Write writes img to w as an OCI image-layout tar archive.
func Write(w io.Writer, img Image) error {
	if img.Name == "" || !strings.Contains(img.Name, ":") {
		return fmt.Errorf("%w: name %q needs a tag", ErrInvalid, img.Name)
	}
	layer, err := layerTar(img.Files)
	if err != nil {
		return err
	}
	layerDesc := describe(MediaTypeLayer, layer)
	arch := img.Arch
	if arch == "" {
		arch = runtime.GOARCH
	}
	cfg := Config{Architecture: arch, OS: "linux", Created: epoch,
		Config: RunConfig{User: img.User, Entrypoint: img.Entrypoint, Cmd: img.Cmd, Env: img.Env}}
	cfg.RootFS.Type = "layers"
	cfg.RootFS.DiffIDs = []string{layerDesc.Digest} // uncompressed: the layer is its own diff
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("encoding image config: %w", err)
	}
	cfgDesc := describe(MediaTypeConfig, cfgJSON)
	manifest, err := json.Marshal(Manifest{SchemaVersion: 2, MediaType: MediaTypeManifest, Config: cfgDesc, Layers: []Descriptor{layerDesc}})
	if err != nil {
		return fmt.Errorf("encoding image manifest: %w", err)
	}
	mDesc := describe(MediaTypeManifest, manifest)
	mDesc.Platform = &Platform{Architecture: arch, OS: "linux"}
	mDesc.Annotations = map[string]string{
		AnnotationContainerdName: img.Name,
		AnnotationRefName:        img.Name[strings.LastIndex(img.Name, ":")+1:],
	}
	index, err := json.Marshal(Index{SchemaVersion: 2, MediaType: MediaTypeIndex, Manifests: []Descriptor{mDesc}})
	if err != nil {
		return fmt.Errorf("encoding image index: %w", err)
	}
	tw := tar.NewWriter(w)
	entries := []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", index},
		{blobPath(mDesc), manifest},
		{blobPath(cfgDesc), cfgJSON},
		{blobPath(layerDesc), layer},
	}
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: epoch}); err != nil {
			return fmt.Errorf("writing image archive: %w", err)
		}
	}
	for _, e := range entries {
		if err := writeFile(tw, &tar.Header{Name: e.name, Mode: 0o644, ModTime: epoch}, e.data); err != nil {
			return fmt.Errorf("writing image archive: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("writing image archive: %w", err)
	}
	return nil
}

func describe(mediaType string, data []byte) Descriptor {
	sum := sha256.Sum256(data)
	return Descriptor{MediaType: mediaType, Digest: "sha256:" + hex.EncodeToString(sum[:]), Size: int64(len(data))}
}

func blobPath(d Descriptor) string { return "blobs/" + strings.Replace(d.Digest, ":", "/", 1) }

func writeFile(tw *tar.Writer, h *tar.Header, data []byte) error {
	h.Typeflag, h.Size, h.Format = tar.TypeReg, int64(len(data)), tar.FormatPAX
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	_, err := tw.Write(data)
	return err
}

// layerTar is the image's filesystem, parents before children, every
// parent directory present.
func layerTar(files []File) ([]byte, error) {
	byPath := map[string]File{}
	for _, f := range files {
		p := path.Clean(f.Path)
		if !path.IsAbs(f.Path) || p == "/" {
			return nil, fmt.Errorf("%w: path %q must be absolute and not /", ErrInvalid, f.Path)
		}
		if _, dup := byPath[p]; dup {
			return nil, fmt.Errorf("%w: %s given twice", ErrInvalid, p)
		}
		byPath[p] = f
		for dir := path.Dir(p); dir != "/"; dir = path.Dir(dir) {
			if _, ok := byPath[dir]; !ok {
				byPath[dir] = File{Path: dir, Mode: fs.ModeDir | 0o755}
			}
		}
	}
	paths := slices.Sorted(func(yield func(string) bool) {
		for p := range byPath {
			if !yield(p) {
				return
			}
		}
	})
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		f := byPath[p]
		h := &tar.Header{Name: strings.TrimPrefix(p, "/"), Mode: int64(f.Mode.Perm()), Uid: f.UID, Gid: f.GID, ModTime: epoch, Format: tar.FormatPAX}
		if f.Mode&fs.ModeSticky != 0 {
			h.Mode |= 0o1000 // tar's sticky bit, not Go's
		}
		if f.Mode.IsDir() {
			if f.Data != nil {
				return nil, fmt.Errorf("%w: directory %s has data", ErrInvalid, p)
			}
			h.Typeflag, h.Name = tar.TypeDir, h.Name+"/"
			if err := tw.WriteHeader(h); err != nil {
				return nil, fmt.Errorf("writing layer: %w", err)
			}
			continue
		}
		if err := writeFile(tw, h, f.Data); err != nil {
			return nil, fmt.Errorf("writing layer: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("writing layer: %w", err)
	}
	return buf.Bytes(), nil
}
