package controller_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/csr-agent/csr-agent/internal/controller"
	"github.com/csr-agent/csr-agent/internal/pki"
	"github.com/csr-agent/csr-agent/internal/sign"
	"github.com/csr-agent/csr-agent/internal/testenv"
)

const year = 365 * 24 * time.Hour

// TestTheRetirementMarkerDropsTheOldAnchorButNeverTheSigningOne walks a
// two-phase rotation of the CA Secret: the new root is published while the
// old CA still signs, signing switches, the old anchor starts retiring (its
// drop time persisted on the bundle); marking the signing anchor retired is
// refused (Event, metric) and changes nothing, marking the old one drops it
// at once, and a certificate of the old CA then no longer verifies against
// the published bundle.
func TestTheRetirementMarkerDropsTheOldAnchorButNeverTheSigningOne(t *testing.T) {
	s := newSetup(t)
	oldCA := s.putCA(t, "old CA", year)
	in := s.start(t, startOptions{})
	newCA := must(sign.NewSelfSignedCA(sign.SelfSignedOptions{CommonName: "new CA", Validity: 2 * year}))
	pod := s.env.NewPod(t, testenv.PodOptions{Labels: web})
	createService(t, s.env, pod.Namespace, service{name: "web"}, web)
	client := must(kubernetes.NewForConfig(pod.Config))
	req := dns("web." + pod.Namespace + ".svc")
	issuedBy := func(ca *sign.CA) []*x509.Certificate {
		t.Helper()
		chain := parseChain(t, waitFinished(t, s.env.Client, mustCreateCSR(t, client, s.signer, req).Name).Status.Certificate)
		if err := chain[0].CheckSignatureFrom(ca.Certificate()); err != nil {
			t.Fatalf("certificate issued by %q, want %q", chain[0].Issuer, ca.Certificate().Subject)
		}
		return chain
	}
	oldLeaf := issuedBy(oldCA)

	// Phase 1: the new root is published; the old CA still signs.
	s.putPEMs(t, sign.PEMs{Cert: oldCA.PEMs().Cert, Key: oldCA.PEMs().Key, CA: cat(oldCA.TrustBundle(), newCA.TrustBundle())})
	s.waitAnchors(t, oldCA, newCA)
	issuedBy(oldCA)

	// Phase 2: signing switches; the old anchor stays, retiring.
	switched := time.Now()
	s.putPEMs(t, newCA.PEMs())
	waitMetric(t, in.c, "csr_agent_controller_ca_not_after_timestamp_seconds", float64(newCA.Certificate().NotAfter.Unix()))
	st := s.waitRetiring(t, oldCA)
	earliest := switched.Add(sign.DefaultMaxExpiration + sign.DefaultBackdate)
	if st.DropAfter.Before(earliest) || st.DropAfter.After(time.Now().Add(sign.DefaultMaxExpiration+sign.DefaultBackdate)) {
		t.Errorf("old anchor dropped after %s, want MAX_EXPIRATION + backdate after the switch (%s)", st.DropAfter, earliest)
	}
	newLeaf := issuedBy(newCA)
	s.waitAnchors(t, newCA, oldCA)
	waitMetric(t, in.c, `csr_agent_controller_trust_anchors{state="retiring"}`, 1)

	// Retiring the anchor signing chains to is refused.
	s.markRetired(t, sign.Fingerprint(newCA.Certificate()))
	s.waitBundleEvent(t, controller.ReasonRetirementRefused)
	waitMetric(t, in.c, `csr_agent_controller_trust_anchor_retirement_refused{reason="SigningAnchor"}`, 1)
	s.waitAnchors(t, newCA, oldCA)

	// A malformed marker retires nothing.
	s.markRetired(t, sign.Fingerprint(oldCA.Certificate())+",not-a-fingerprint")
	s.waitBundleEvent(t, controller.ReasonInvalidRetiredAnchors)
	waitMetric(t, in.c, `csr_agent_controller_trust_anchor_retirement_refused{reason="Invalid"}`, 1)
	s.waitAnchors(t, newCA, oldCA)

	// Retiring the old anchor drops it at once.
	s.markRetired(t, sign.Fingerprint(oldCA.Certificate())+", "+sign.Fingerprint(newCA.Certificate()))
	s.waitAnchors(t, newCA)
	s.waitBundleEvent(t, controller.ReasonAnchorDropped)
	waitMetric(t, in.c, `csr_agent_controller_trust_anchors_dropped_total{reason="MarkedRetired"}`, 1)
	roots, _ := trustBundle(t, s.env.Client, s.signer)
	if err := serveTLS(t, oldLeaf, keyP256(), "web."+pod.Namespace+".svc", roots); err == nil {
		t.Error("a certificate of the retired CA still verifies against the published bundle")
	}
	if err := serveTLS(t, newLeaf, keyP256(), "web."+pod.Namespace+".svc", roots); err != nil {
		t.Errorf("a certificate of the signing CA does not verify: %v", err)
	}
}

// TestTheOldAnchorLeavesOnItsOwnWhenItsLastLeafHasExpiredAcrossARestart:
// the time signing switched is persisted on the bundle, so a controller
// started later (a restart, a new leader) drops the old anchor when
// MAX_EXPIRATION (plus the backdating allowance) has passed since, though
// the CA directory still lists the old root in ca.crt.
func TestTheOldAnchorLeavesOnItsOwnWhenItsLastLeafHasExpiredAcrossARestart(t *testing.T) {
	s := newSetup(t)
	dir := t.TempDir()
	oldCA := writeCA(t, dir, "old CA", year)
	newCA := must(sign.NewSelfSignedCA(sign.SelfSignedOptions{CommonName: "new CA", Validity: 2 * year}))
	first := s.start(t, startOptions{caDir: dir, clock: clocktesting.NewFakePassiveClock(time.Now())})
	s.waitAnchors(t, oldCA)
	writePEMs(t, dir, sign.PEMs{Cert: oldCA.PEMs().Cert, Key: oldCA.PEMs().Key, CA: cat(oldCA.TrustBundle(), newCA.TrustBundle())})
	s.waitAnchors(t, oldCA, newCA)
	// Switched, with the old root left in ca.crt.
	writePEMs(t, dir, sign.PEMs{Cert: newCA.PEMs().Cert, Key: newCA.PEMs().Key, CA: cat(newCA.TrustBundle(), oldCA.TrustBundle())})
	st := s.waitRetiring(t, oldCA)
	first.shutdown(t)

	early := s.start(t, startOptions{caDir: dir, clock: clocktesting.NewFakePassiveClock(st.DropAfter.Add(-time.Minute))})
	waitMetric(t, early.c, `csr_agent_controller_trust_anchors{state="retiring"}`, 1)
	early.shutdown(t)
	s.waitAnchors(t, newCA, oldCA)
	s.start(t, startOptions{caDir: dir, clock: clocktesting.NewFakePassiveClock(*st.DropAfter)})
	s.waitAnchors(t, newCA)
	s.waitBundleEvent(t, controller.ReasonAnchorDropped)
}

// TestADeletedBundleComesBackWithoutTheAnchorsRetiredOnIt: the CA Secret
// still lists the old root after signing switched, and the operator retired
// it on the bundle; someone then deletes the bundle. The controller
// re-creates it with the marker and the anchor state it last saw, so the
// retired anchor is not published again.
func TestADeletedBundleComesBackWithoutTheAnchorsRetiredOnIt(t *testing.T) {
	s := newSetup(t)
	oldCA := s.putCA(t, "old CA", year)
	s.start(t, startOptions{})
	newCA := must(sign.NewSelfSignedCA(sign.SelfSignedOptions{CommonName: "new CA", Validity: 2 * year}))
	s.putPEMs(t, sign.PEMs{Cert: oldCA.PEMs().Cert, Key: oldCA.PEMs().Key, CA: cat(oldCA.TrustBundle(), newCA.TrustBundle())})
	s.waitAnchors(t, oldCA, newCA)
	s.putPEMs(t, sign.PEMs{Cert: newCA.PEMs().Cert, Key: newCA.PEMs().Key, CA: cat(newCA.TrustBundle(), oldCA.TrustBundle())})
	s.waitRetiring(t, oldCA)
	marker := sign.Fingerprint(oldCA.Certificate())
	s.markRetired(t, marker)
	s.waitAnchors(t, newCA)

	ctbs := s.env.Client.CertificatesV1().ClusterTrustBundles()
	before := must(ctbs.Get(t.Context(), s.bundleName, metav1.GetOptions{}))
	if err := ctbs.Delete(t.Context(), s.bundleName, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("deleting the bundle: %v", err)
	}
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		ctb, err := ctbs.Get(ctx, s.bundleName, metav1.GetOptions{})
		return err == nil && ctb.UID != before.UID, nil
	})
	if err != nil {
		t.Fatalf("the deleted bundle was not re-created: %v", err)
	}
	s.waitAnchors(t, newCA)
	after := must(ctbs.Get(t.Context(), s.bundleName, metav1.GetOptions{}))
	if got := after.Annotations[controller.AnnotationRetiredAnchors]; got != marker {
		t.Errorf("re-created bundle's marker = %q, want %q", got, marker)
	}
	if got, want := after.Annotations[controller.AnnotationAnchorState], before.Annotations[controller.AnnotationAnchorState]; got != want {
		t.Errorf("re-created bundle's anchor state = %s, want %s", got, want)
	}
}

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

// putPEMs stores p as the CA Secret, as an operator editing it would.
func (s *setup) putPEMs(t *testing.T, p sign.PEMs) {
	t.Helper()
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: s.caSecret.Name, Namespace: s.caSecret.Namespace},
		Type:       corev1.SecretTypeTLS,
		Data:       p.SecretData(),
	}
	secrets := s.env.Client.CoreV1().Secrets(s.caSecret.Namespace)
	_, err := secrets.Update(t.Context(), secret, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		_, err = secrets.Create(t.Context(), secret, metav1.CreateOptions{})
	}
	if err != nil {
		t.Fatalf("storing CA: %v", err)
	}
}

// writePEMs replaces the files of a CA directory, each atomically.
func writePEMs(t *testing.T, dir string, p sign.PEMs) {
	t.Helper()
	for name, data := range p.SecretData() {
		tmp := filepath.Join(dir, "."+name)
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

// waitAnchors waits until the published bundle holds exactly want, in order.
func (s *setup) waitAnchors(t *testing.T, want ...*sign.CA) {
	t.Helper()
	var got []string
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		ctb, err := s.env.Client.CertificatesV1().ClusterTrustBundles().Get(ctx, s.bundleName, metav1.GetOptions{})
		if err != nil {
			return false, nil //nolint:nilerr // not published yet
		}
		got = nil
		for _, c := range must(pki.ParseCertificates([]byte(ctb.Spec.TrustBundle))) {
			got = append(got, c.Subject.CommonName)
		}
		return strings.Join(got, ",") == names(want), nil
	})
	if err != nil {
		t.Fatalf("bundle holds %v, want %s", got, names(want))
	}
}

func names(cas []*sign.CA) string {
	var n []string
	for _, ca := range cas {
		n = append(n, ca.Certificate().Subject.CommonName)
	}
	return strings.Join(n, ",")
}

// waitRetiring waits until the bundle's persisted state says ca's anchor
// is retiring, and returns that state.
func (s *setup) waitRetiring(t *testing.T, ca *sign.CA) sign.AnchorState {
	t.Helper()
	fp := sign.Fingerprint(ca.Certificate())
	var st sign.AnchorState
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		ctb, err := s.env.Client.CertificatesV1().ClusterTrustBundles().Get(ctx, s.bundleName, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		var state map[string]sign.AnchorState
		if err := json.Unmarshal([]byte(ctb.Annotations[controller.AnnotationAnchorState]), &state); err != nil {
			return false, nil //nolint:nilerr // not written yet
		}
		st = state[fp]
		return st.DropAfter != nil && st.SigningStopped != nil, nil
	})
	if err != nil {
		t.Fatalf("anchor %q not retiring: %+v (%v)", ca.Certificate().Subject, st, err)
	}
	return st
}

// markRetired sets the retirement marker on the bundle, as an operator
// would with kubectl annotate --overwrite.
func (s *setup) markRetired(t *testing.T, value string) {
	t.Helper()
	patch := must(json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{controller.AnnotationRetiredAnchors: value}}}))
	if _, err := s.env.Client.CertificatesV1().ClusterTrustBundles().Patch(t.Context(), s.bundleName, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatalf("annotating the bundle: %v", err)
	}
}

// waitBundleEvent waits for an Event of the controller about the bundle.
func (s *setup) waitBundleEvent(t *testing.T, reason string) {
	t.Helper()
	sel := fields.Set{"regarding.name": s.bundleName, "reason": reason}.AsSelector().String()
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		list, err := s.env.Client.EventsV1().Events(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{FieldSelector: sel})
		if err != nil {
			return false, err
		}
		for _, e := range list.Items {
			if e.ReportingController == controller.ReportingController && e.Note != "" {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Errorf("no Event %s about ClusterTrustBundle %s: %v", reason, s.bundleName, err)
	}
}
