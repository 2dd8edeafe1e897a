package watch

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	certificatesv1 "github.com/csr-agent/csr-agent/internal/kube/certv1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func expect(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("no signal for %s", what)
	}
}

func drain(ch <-chan struct{}) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

func TestSignalsChangesOfTheDirectoryTheGenerationAndTheCAFile(t *testing.T) {
	dir, caDir := t.TempDir(), t.TempDir()
	gen := "..2026_03_01_12_00_00.000000000"
	must(t, os.Mkdir(filepath.Join(dir, gen), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, gen, "tls.crt"), []byte("cert"), 0o644))
	caFile := filepath.Join(caDir, "ca.crt")
	must(t, os.WriteFile(caFile, []byte("ca"), 0o644))

	f, err := NewFiles(dir)
	must(t, err)
	must(t, f.WatchCA(caFile))
	f.Follow(t.Context(), gen)
	files, ca := make(chan struct{}, 1), make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx, files, ca) }()

	must(t, os.WriteFile(filepath.Join(dir, "tls.key"), []byte("x"), 0o600))
	expect(t, files, "a file created in the directory")
	must(t, os.Truncate(filepath.Join(dir, gen, "tls.crt"), 0))
	expect(t, files, "a truncation inside the generation")
	drain(ca)
	// A ConfigMap volume update: a new file renamed over the old one.
	must(t, os.WriteFile(filepath.Join(caDir, ".tmp"), []byte("new ca"), 0o644))
	must(t, os.Rename(filepath.Join(caDir, ".tmp"), caFile))
	expect(t, ca, "CA_FILE replaced")

	cancel()
	select {
	case err := <-done:
		must(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

func TestFollowMovesToTheNewGeneration(t *testing.T) {
	dir := t.TempDir()
	oldGen, newGen := "..2026_03_01_12_00_00.000000000", "..2026_03_01_13_00_00.000000000"
	for _, g := range []string{oldGen, newGen} {
		must(t, os.Mkdir(filepath.Join(dir, g), 0o755))
		must(t, os.WriteFile(filepath.Join(dir, g, "tls.crt"), []byte("cert"), 0o644))
	}
	f, err := NewFiles(dir)
	must(t, err)
	f.Follow(t.Context(), oldGen)
	f.Follow(t.Context(), newGen)
	files := make(chan struct{}, 1)
	go func() { _ = f.Run(t.Context(), files, nil) }()
	must(t, os.WriteFile(filepath.Join(dir, newGen, "tls.crt"), []byte("changed"), 0o644))
	expect(t, files, "a write in the followed generation")
	if got := f.currentGen(); got != filepath.Join(dir, newGen) {
		t.Errorf("watching %s, want the new generation", got)
	}
}

// listThenWatch makes the informer list, then watch, as it does against an
// API server without streaming lists; the fake watch sends no bookmarks.
type listThenWatch struct{ *cache.ListWatch }

func (listThenWatch) IsWatchListSemanticsUnSupported() bool { return true }

// fakeBundles serves ClusterTrustBundles from a fake watch.
func fakeBundles(listErr error) (cache.ListerWatcher, *watch.FakeWatcher) {
	w := watch.NewFake()
	return listThenWatch{&cache.ListWatch{
		ListWithContextFunc: func(context.Context, metav1.ListOptions) (runtime.Object, error) {
			if listErr != nil {
				return nil, listErr
			}
			return &certificatesv1.ClusterTrustBundleList{
				ListMeta: metav1.ListMeta{ResourceVersion: "1"},
				Items:    []certificatesv1.ClusterTrustBundle{bundle("1")},
			}, nil
		},
		WatchFuncWithContext: func(context.Context, metav1.ListOptions) (watch.Interface, error) { return w, nil },
	}}, w
}

func bundle(rv string) certificatesv1.ClusterTrustBundle {
	return certificatesv1.ClusterTrustBundle{ObjectMeta: metav1.ObjectMeta{Name: "csr-agent.io:pod:ca", ResourceVersion: rv}}
}

func TestTrustBundleChangesAreSignalledButNotTheFirstList(t *testing.T) {
	lw, w := fakeBundles(nil)
	changed := make(chan struct{}, 1)
	go func() { _ = TrustBundles(t.Context(), lw, "csr-agent.io/pod", changed) }()
	b := bundle("2")
	w.Modify(&b) // the fake watch blocks until the informer reads it
	expect(t, changed, "an updated bundle")
	select {
	case <-changed:
		t.Error("the first list was signalled as a change")
	default:
	}
	rotated := certificatesv1.ClusterTrustBundle{ObjectMeta: metav1.ObjectMeta{Name: "csr-agent.io:pod:next", ResourceVersion: "3"}}
	w.Add(&rotated)
	expect(t, changed, "an added bundle")
}

func TestTrustBundleWatchStopsWhenForbidden(t *testing.T) {
	forbidden := apierrors.NewForbidden(schema.GroupResource{Group: "certificates.k8s.io", Resource: "clustertrustbundles"}, "", nil)
	lw, _ := fakeBundles(forbidden)
	done := make(chan error, 1)
	go func() { done <- TrustBundles(t.Context(), lw, "csr-agent.io/pod", make(chan struct{}, 1)) }()
	select {
	case err := <-done:
		must(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the watch kept retrying while forbidden")
	}
}
