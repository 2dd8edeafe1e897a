package controller

import (
	"testing"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
)

// TestTheServiceAccountCacheAnswersOnlyWhenItShowsTheRequestedUID checks
// when serviceAccountUID may skip the live read: only when the cache holds
// exactly the UID the request names. Any other cache state (missing,
// another UID) is read live, and the live answer is what the policy sees,
// so a stale cache can neither deny a request nor pass an old UID.
func TestTheServiceAccountCacheAnswersOnlyWhenItShowsTheRequestedUID(t *testing.T) {
	const ns, name = "app", "web"
	tests := []struct {
		name      string
		cached    types.UID // "": not in the cache
		live      types.UID // "": does not exist
		requested types.UID
		want      types.UID
		wantReads int
	}{
		{"cache shows the requested UID", "uid-1", "uid-1", "uid-1", "uid-1", 0},
		{"not cached yet", "", "uid-1", "uid-1", "uid-1", 1},
		{"cache lags a re-creation the request names", "uid-old", "uid-new", "uid-new", "uid-new", 1},
		{"re-created after the request: the cache shows the new UID", "uid-new", "uid-new", "uid-old", "uid-new", 1},
		{"re-created after the request: the cache shows another UID, the live one differs too", "uid-other", "uid-new", "uid-old", "uid-new", 1},
		{"deleted", "uid-old", "", "uid-old-2", "", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var objects []runtime.Object
			if tt.live != "" {
				objects = append(objects, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: tt.live}})
			}
			c, client := newTestController(t, false, objects...)
			c.pcr.watch(client, c.signer) // the informers, not started: the test fills the cache
			if tt.cached != "" {
				sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: tt.cached}}
				if err := c.pcr.serviceAccounts.GetStore().Add(sa); err != nil {
					t.Fatal(err)
				}
			}
			client.ClearActions()
			pcr := &certificatesv1.PodCertificateRequest{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "req"},
				Spec:       certificatesv1.PodCertificateRequestSpec{ServiceAccountName: name, ServiceAccountUID: tt.requested},
			}
			got, err := c.serviceAccountUID(t.Context(), pcr)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("UID %q, want %q", got, tt.want)
			}
			if reads := len(client.Actions()); reads != tt.wantReads {
				t.Errorf("%d API reads, want %d: %v", reads, tt.wantReads, client.Actions())
			}
		})
	}
}
