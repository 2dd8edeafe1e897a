package controller

import (
	"fmt"
	"strings"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"

	"github.com/csr-agent/csr-agent/internal/approve"
)

// ReportingController names the controller in the Events it writes
// (events.k8s.io requires a qualified name).
const ReportingController = "csr-agent.io/controller"

// maxNote is the API's limit on an events.k8s.io Event's note; a longer
// note makes the API reject the Event.
const maxNote = 1024

func newEventRecorder(client kubernetes.Interface) (events.EventBroadcaster, events.EventRecorder) {
	b := events.NewBroadcaster(&events.EventSinkImpl{Interface: client.EventsV1()})
	return b, b.NewRecorder(scheme.Scheme, ReportingController)
}

// warn records a Warning Event about a CSR that was denied or failed. CSRs
// are cluster-scoped and few users can list them; users look at their
// pods, so the Event is about the requesting pod when there is one (and
// names the CSR as related object), about the CSR otherwise.
func (c *Controller) warn(csr *certificatesv1.CertificateSigningRequest, who *approve.Requester, d approve.Decision, action, format string) {
	var regarding, related runtime.Object = csr, nil
	if who != nil {
		regarding = &corev1.ObjectReference{
			Kind: "Pod", APIVersion: "v1", Namespace: who.Namespace, Name: who.PodName, UID: who.PodUID,
		}
		related = csr
	}
	note := truncateNote(fmt.Sprintf(format, csr.Name, d.Message))
	c.recorder.Eventf(regarding, related, corev1.EventTypeWarning, d.Reason, action, "%s", note)
}

// truncateNote keeps an Event's note within the API's limit.
func truncateNote(note string) string {
	if len(note) > maxNote {
		note = strings.ToValidUTF8(note[:maxNote-3], "") + "..."
	}
	return note
}
