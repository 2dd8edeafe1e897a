package ociimage_test

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"strings"
	"testing"

	"github.com/csr-agent/csr-agent/internal/ociimage"
)

// archive is a written image read back, every digest checked.
type archive struct {
	index    ociimage.Index
	manifest ociimage.Manifest
	config   ociimage.Config
	files    map[string]*tar.Header // layer entries by absolute path
	data     map[string][]byte
}

func read(t *testing.T, img ociimage.Image) archive {
	t.Helper()
	var buf bytes.Buffer
	if err := ociimage.Write(&buf, img); err != nil {
		t.Fatal(err)
	}
	blobs := map[string][]byte{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		blobs[h.Name] = data
	}
	if got := string(blobs["oci-layout"]); got != `{"imageLayoutVersion":"1.0.0"}` {
		t.Errorf("oci-layout = %s", got)
	}
	blob := func(d ociimage.Descriptor) []byte {
		t.Helper()
		data, ok := blobs["blobs/"+strings.Replace(d.Digest, ":", "/", 1)]
		sum := sha256.Sum256(data)
		if !ok || "sha256:"+hex.EncodeToString(sum[:]) != d.Digest || int64(len(data)) != d.Size {
			t.Fatalf("blob %s missing or not matching its descriptor", d.Digest)
		}
		return data
	}
	var a archive
	must(t, json.Unmarshal(blobs["index.json"], &a.index))
	if len(a.index.Manifests) != 1 {
		t.Fatalf("index lists %d manifests", len(a.index.Manifests))
	}
	must(t, json.Unmarshal(blob(a.index.Manifests[0]), &a.manifest))
	must(t, json.Unmarshal(blob(a.manifest.Config), &a.config))
	if len(a.manifest.Layers) != 1 || len(a.config.RootFS.DiffIDs) != 1 || a.config.RootFS.DiffIDs[0] != a.manifest.Layers[0].Digest {
		t.Fatalf("layers %v do not match diff IDs %v", a.manifest.Layers, a.config.RootFS.DiffIDs)
	}
	a.files, a.data = map[string]*tar.Header{}, map[string][]byte{}
	lr := tar.NewReader(bytes.NewReader(blob(a.manifest.Layers[0])))
	for {
		h, err := lr.Next()
		if errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		p := "/" + strings.TrimSuffix(h.Name, "/")
		if _, dup := a.files[p]; dup {
			t.Errorf("layer holds %s twice", p)
		}
		if parent := p[:strings.LastIndex(p, "/")]; parent != "" && a.files[parent] == nil {
			t.Errorf("layer holds %s before its directory", p)
		}
		a.files[p] = h
		a.data[p], _ = io.ReadAll(lr)
	}
	return a
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestWrittenImageIsAValidOCILayoutNamedForContainerd(t *testing.T) {
	a := read(t, ociimage.Image{
		Name:  "localhost/example/app:v1",
		Files: []ociimage.File{{Path: "/usr/bin/app", Mode: 0o755, Data: []byte("binary")}, {Path: "/tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777}},
		User:  "1000:1000", Entrypoint: []string{"/usr/bin/app"}, Cmd: []string{"serve"},
	})
	m := a.index.Manifests[0]
	if m.Annotations[ociimage.AnnotationContainerdName] != "localhost/example/app:v1" || m.Annotations[ociimage.AnnotationRefName] != "v1" {
		t.Errorf("annotations %v", m.Annotations)
	}
	if m.Platform == nil || m.Platform.OS != "linux" || a.config.OS != "linux" {
		t.Errorf("platform %v, config OS %q", m.Platform, a.config.OS)
	}
	if c := a.config.Config; c.User != "1000:1000" || c.Entrypoint[0] != "/usr/bin/app" || c.Cmd[0] != "serve" {
		t.Errorf("run config %+v", c)
	}
	if h := a.files["/usr/bin/app"]; h == nil || h.Mode != 0o755 || string(a.data["/usr/bin/app"]) != "binary" {
		t.Errorf("/usr/bin/app: %+v", h)
	}
	if h := a.files["/usr"]; h == nil || h.Typeflag != tar.TypeDir {
		t.Errorf("/usr not a directory: %+v", h)
	}
	if h := a.files["/tmp"]; h == nil || h.Mode != 0o1777 {
		t.Errorf("/tmp: %+v", h)
	}
}

func TestSameFilesGiveTheSameDigest(t *testing.T) {
	img := ociimage.Image{Name: "localhost/a:1", Files: []ociimage.File{{Path: "/b", Mode: 0o644, Data: []byte("x")}, {Path: "/a", Mode: 0o644}}}
	if a, b := read(t, img), read(t, img); a.index.Manifests[0].Digest != b.index.Manifests[0].Digest {
		t.Error("two writes of one image differ")
	}
}

func TestInvalidImagesAreRefused(t *testing.T) {
	for name, img := range map[string]ociimage.Image{
		"no tag":         {Name: "localhost/a"},
		"relative path":  {Name: "localhost/a:1", Files: []ociimage.File{{Path: "a"}}},
		"root":           {Name: "localhost/a:1", Files: []ociimage.File{{Path: "/"}}},
		"duplicate":      {Name: "localhost/a:1", Files: []ociimage.File{{Path: "/a"}, {Path: "/a/"}}},
		"dir with bytes": {Name: "localhost/a:1", Files: []ociimage.File{{Path: "/a", Mode: fs.ModeDir, Data: []byte("x")}}},
	} {
		if err := ociimage.Write(io.Discard, img); !errors.Is(err, ociimage.ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
}
