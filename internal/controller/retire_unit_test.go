package controller

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/csr-agent/csr-agent/internal/pki"
	"github.com/csr-agent/csr-agent/internal/sign"
)

// These tests publish against a fake API: the bundle's annotations are the
// only memory a controller has of a rotation, so a second controller built
// on the same API stands for a restart or a new leader.

func newCA(t *testing.T, cn string) *sign.CA {
	t.Helper()
	ca, err := sign.NewSelfSignedCA(sign.SelfSignedOptions{CommonName: cn, Validity: 365 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func withClock(t *testing.T, client *fake.Clientset, now time.Time) *Controller {
	t.Helper()
	c, _ := newTestController(t, false)
	c.opts.Client = client
	c.opts.Clock = clocktesting.NewFakePassiveClock(now)
	return c
}

func publish(t *testing.T, c *Controller, ca *sign.CA) *certificatesv1.ClusterTrustBundle {
	t.Helper()
	if _, err := c.publishTrustBundle(t.Context(), ca); err != nil {
		t.Fatalf("publishTrustBundle: %v", err)
	}
	c.ca.Set(ca)
	ctb, err := c.opts.Client.CertificatesV1().ClusterTrustBundles().Get(t.Context(), c.opts.TrustBundleName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return ctb
}

func subjects(t *testing.T, ctb *certificatesv1.ClusterTrustBundle) string {
	t.Helper()
	certs, err := pki.ParseCertificates([]byte(ctb.Spec.TrustBundle))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range certs {
		names = append(names, c.Subject.CommonName)
	}
	return strings.Join(names, ",")
}

func stateOf(t *testing.T, ctb *certificatesv1.ClusterTrustBundle, ca *sign.CA) sign.AnchorState {
	t.Helper()
	var state map[string]sign.AnchorState
	if err := json.Unmarshal([]byte(ctb.Annotations[AnnotationAnchorState]), &state); err != nil {
		t.Fatalf("anchor state %q: %v", ctb.Annotations[AnnotationAnchorState], err)
	}
	return state[sign.Fingerprint(ca.Certificate())]
}

func staged(t *testing.T, old, next *sign.CA) *sign.CA {
	t.Helper()
	p := old.PEMs()
	p.CA = append(old.TrustBundle(), next.TrustBundle()...)
	ca, err := sign.ParseCA(p, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestTheRetirementClockIsPersistedOnTheBundleAndOutlivesTheController(t *testing.T) {
	client := fake.NewClientset()
	now := time.Now().UTC()
	old, next := newCA(t, "old"), newCA(t, "new")
	c := withClock(t, client, now)
	publish(t, c, old)
	publish(t, c, staged(t, old, next))
	if ctb := publish(t, c, next); subjects(t, ctb) != "new,old" || !stateOf(t, ctb, old).Signing {
		t.Fatalf("while the old CA is swapped out: bundle %s, old state %+v; want new,old and signing", subjects(t, ctb), stateOf(t, ctb, old))
	}
	ctb := publish(t, c, next)
	st := stateOf(t, ctb, old)
	want := now.Add(sign.DefaultMaxExpiration + sign.DefaultBackdate)
	if st.DropAfter == nil || !st.DropAfter.Equal(want) {
		t.Fatalf("old anchor state %+v, want dropped after %s", st, want)
	}
	if got := scrape(t, c, `csr_agent_controller_trust_anchors{state="retiring"}`); got != 1 {
		t.Errorf("retiring anchors = %v, want 1", got)
	}
	if got := scrape(t, c, "csr_agent_controller_trust_anchor_next_drop_timestamp_seconds"); got != float64(want.Unix()) {
		t.Errorf("next drop at %v, want %v", got, want.Unix())
	}

	// Another controller, nothing in memory, a minute before and then at
	// the persisted time.
	early := withClock(t, client, want.Add(-time.Minute))
	if ctb := publish(t, early, next); subjects(t, ctb) != "new,old" {
		t.Errorf("a minute early, after a restart: bundle %s, want new,old", subjects(t, ctb))
	}
	late := withClock(t, client, want)
	if ctb := publish(t, late, next); subjects(t, ctb) != "new" {
		t.Errorf("at the persisted time, after a restart: bundle %s, want new", subjects(t, ctb))
	}
	if got := scrape(t, late, `csr_agent_controller_trust_anchors_dropped_total{reason="LeavesExpired"}`); got != 1 {
		t.Errorf("dropped (LeavesExpired) = %v, want 1", got)
	}
}

func TestTheRetirementMarkerIsRefusedForTheSigningAnchorAndIgnoredWhenMalformed(t *testing.T) {
	client := fake.NewClientset()
	old, next := newCA(t, "old"), newCA(t, "new")
	c := withClock(t, client, time.Now())
	publish(t, c, staged(t, old, next))
	ctbs := client.CertificatesV1().ClusterTrustBundles()
	mark := func(v string) {
		t.Helper()
		ctb, err := ctbs.Get(t.Context(), c.opts.TrustBundleName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ctb.Annotations[AnnotationRetiredAnchors] = v
		if _, err := ctbs.Update(t.Context(), ctb, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	mark(sign.Fingerprint(old.Certificate()))
	if ctb := publish(t, c, staged(t, old, next)); subjects(t, ctb) != "old,new" {
		t.Errorf("signing anchor marked retired: bundle %s, want old,new", subjects(t, ctb))
	}
	if got := scrape(t, c, `csr_agent_controller_trust_anchor_retirement_refused{reason="SigningAnchor"}`); got != 1 {
		t.Errorf("refused (SigningAnchor) = %v, want 1", got)
	}

	mark(sign.Fingerprint(next.Certificate()) + ",zz")
	if ctb := publish(t, c, staged(t, old, next)); subjects(t, ctb) != "old,new" {
		t.Errorf("malformed marker: bundle %s, want old,new (nothing retired)", subjects(t, ctb))
	}
	if got := scrape(t, c, `csr_agent_controller_trust_anchor_retirement_refused{reason="Invalid"}`); got != 1 {
		t.Errorf("refused (Invalid) = %v, want 1", got)
	}

	mark(strings.ToUpper(sign.Fingerprint(next.Certificate())))
	if ctb := publish(t, c, staged(t, old, next)); subjects(t, ctb) != "old" {
		t.Errorf("staged anchor marked retired: bundle %s, want old", subjects(t, ctb))
	}
	if got := scrape(t, c, `csr_agent_controller_trust_anchor_retirement_refused{reason="Invalid"}`); got != 0 {
		t.Errorf("refused (Invalid) = %v after the marker was fixed, want 0", got)
	}
}

func TestAnUnreadableAnchorStateRestartsTheClockInsteadOfDroppingAnchors(t *testing.T) {
	client := fake.NewClientset()
	now := time.Now().UTC()
	old, next := newCA(t, "old"), newCA(t, "new")
	c := withClock(t, client, now)
	publish(t, c, staged(t, old, next))
	publish(t, c, next)
	publish(t, c, next)
	ctbs := client.CertificatesV1().ClusterTrustBundles()
	ctb, err := ctbs.Get(t.Context(), c.opts.TrustBundleName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctb.Annotations[AnnotationAnchorState] = "{not json"
	if _, err := ctbs.Update(t.Context(), ctb, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	later := now.Add(sign.DefaultMaxExpiration + sign.DefaultBackdate)
	ctb = publish(t, withClock(t, client, later), next)
	if subjects(t, ctb) != "new,old" {
		t.Errorf("bundle %s, want new,old: a lost state must not drop the old anchor early", subjects(t, ctb))
	}
	if st := stateOf(t, ctb, old); st.DropAfter == nil || !st.DropAfter.Equal(later.Add(sign.DefaultMaxExpiration+sign.DefaultBackdate)) {
		t.Errorf("old anchor state %+v, want its clock restarted at %s", st, later)
	}
}

// scrape returns the value of one series of the controller's metrics.
func scrape(t *testing.T, c *Controller, series string) float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	c.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatalf("no series %s", series)
	return 0
}
