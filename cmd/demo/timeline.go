package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// request is what the demo saw of one CSR.
type request struct {
	uid             types.UID // a renewal reuses the name of the pod's request
	name            string
	requester, pod  string // spec.username; the pod of a pod-bound token
	created         time.Time
	decision        string // Approved or Denied
	reason, message string
	issued          bool
	leaf            *x509.Certificate
	deleted         bool
}

// timeline watches the CSRs of the signer and prints each step of each one
// as the API server reports it: created (by whom), approved or denied (why),
// issued, deleted.
type timeline struct {
	ui *ui
	mu sync.Mutex
	// requests in the order they were created.
	requests []*request
	// changed is closed and replaced at every change, to wake waiters.
	changed chan struct{}
}

func newTimeline(u *ui) *timeline { return &timeline{ui: u, changed: make(chan struct{})} }

// waitSettled waits until n requests were issued and deleted: the agent
// publishes and notifies the app before the watch brings the last events of
// its request, and deletes the request after that.
func (tl *timeline) waitSettled(ctx context.Context, n int) error {
	for {
		tl.mu.Lock()
		settled := 0
		for _, r := range tl.requests {
			if r.issued && r.deleted {
				settled++
			}
		}
		changed := tl.changed
		tl.mu.Unlock()
		if settled >= n {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("waiting to see %d CSRs issued and deleted, saw %d: %w", n, settled, ctx.Err())
		}
	}
}

// notify wakes the waiters; called with mu held.
func (tl *timeline) notify() {
	close(tl.changed)
	tl.changed = make(chan struct{})
}

// run watches until ctx is done.
func (tl *timeline) run(ctx context.Context, client kubernetes.Interface, signerName string) {
	lw := cache.NewFilteredListWatchFromClient(client.CertificatesV1().RESTClient(), "certificatesigningrequests", "", func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.signerName", signerName).String()
	})
	informer := cache.NewSharedIndexInformer(lw, &certificatesv1.CertificateSigningRequest{}, 0, cache.Indexers{})
	_, _ = informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    tl.observe,
		UpdateFunc: func(_, obj any) { tl.observe(obj) },
		DeleteFunc: tl.deleted,
	})
	informer.RunWithContext(ctx)
}

// observe reports what changed since the last event of the CSR; an event
// may bring several steps at once.
func (tl *timeline) observe(obj any) {
	csr, ok := obj.(*certificatesv1.CertificateSigningRequest)
	if !ok {
		return
	}
	tl.mu.Lock()
	defer tl.mu.Unlock()
	defer tl.notify()
	r := tl.find(csr.UID)
	if r == nil {
		r = &request{uid: csr.UID, name: csr.Name, requester: csr.Spec.Username, created: csr.CreationTimestamp.Time}
		if pod := csr.Spec.Extra["authentication.kubernetes.io/pod-name"]; len(pod) == 1 {
			r.pod = pod[0]
		}
		tl.requests = append(tl.requests, r)
		tl.ui.event("CSR %s created by %s (pod-bound token of pod %q)", r.name, r.requester, r.pod)
	}
	for _, c := range csr.Status.Conditions {
		if r.decision == "" && (c.Type == certificatesv1.CertificateApproved || c.Type == certificatesv1.CertificateDenied) {
			r.decision, r.reason, r.message = string(c.Type), c.Reason, c.Message
			tl.ui.event("CSR %s %s: %s: %s", r.name, strings.ToLower(r.decision), r.reason, r.message)
		}
	}
	if !r.issued && len(csr.Status.Certificate) > 0 {
		r.issued = true
		if block, _ := pem.Decode(csr.Status.Certificate); block != nil {
			r.leaf, _ = x509.ParseCertificate(block.Bytes)
		}
		if r.leaf != nil {
			tl.ui.event("CSR %s issued: serial %s, valid until %s", r.name, serial(r.leaf), r.leaf.NotAfter.Format(time.TimeOnly))
		} else {
			tl.ui.event("CSR %s issued", r.name)
		}
	}
}

func (tl *timeline) deleted(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	csr, ok := obj.(*certificatesv1.CertificateSigningRequest)
	if !ok {
		return
	}
	tl.mu.Lock()
	defer tl.mu.Unlock()
	defer tl.notify()
	if r := tl.find(csr.UID); r != nil && !r.deleted {
		r.deleted = true
		tl.ui.event("CSR %s deleted: the agent removes its request once the certificate is on disk", r.name)
	}
}

func (tl *timeline) find(uid types.UID) *request {
	i := slices.IndexFunc(tl.requests, func(r *request) bool { return r.uid == uid })
	if i < 0 {
		return nil
	}
	return tl.requests[i]
}

// snapshot copies the requests seen so far.
func (tl *timeline) snapshot() []request {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	out := make([]request, len(tl.requests))
	for i, r := range tl.requests {
		out[i] = *r
	}
	return out
}
