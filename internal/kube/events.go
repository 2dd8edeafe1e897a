package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
)

// Event types.
const (
	EventNormal  = "Normal"
	EventWarning = "Warning"
)

// Component is the source of the agent's Events.
const Component = "csr-agent"

// maxEventMessage is what the API server accepts in an Event's message.
const maxEventMessage = 1024

// ObjectRef names the Pod that Events are about.
type ObjectRef struct {
	Namespace, Name, UID string
}

// event is the part of a core/v1 Event the agent sets, as JSON: the agent's
// scheme holds only certificates/v1, and an Event is one small POST.
type event struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	InvolvedObject struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Namespace  string `json:"namespace"`
		Name       string `json:"name"`
		UID        string `json:"uid,omitempty"`
	} `json:"involvedObject"`
	Reason         string `json:"reason"`
	Message        string `json:"message"`
	Type           string `json:"type"`
	Source         source `json:"source"`
	FirstTimestamp string `json:"firstTimestamp"`
	LastTimestamp  string `json:"lastTimestamp"`
	Count          int    `json:"count"`
	ReportingComp  string `json:"reportingComponent"`
	ReportingInst  string `json:"reportingInstance"`
}

type source struct {
	Component string `json:"component"`
}

// CreateEvent posts an Event about pod.
func (c *Client) CreateEvent(ctx context.Context, pod ObjectRef, eventType, reason, message string, now time.Time) error {
	var ev event
	ev.APIVersion, ev.Kind = "v1", "Event"
	// The name client-go's recorder uses: unique per pod and instant.
	ev.Metadata.Name = fmt.Sprintf("%s.%x", pod.Name, now.UnixNano())
	ev.Metadata.Namespace = pod.Namespace
	ev.InvolvedObject.APIVersion, ev.InvolvedObject.Kind = "v1", "Pod"
	ev.InvolvedObject.Namespace, ev.InvolvedObject.Name, ev.InvolvedObject.UID = pod.Namespace, pod.Name, pod.UID
	ev.Reason, ev.Type = reason, eventType
	ev.Message = message
	if len(ev.Message) > maxEventMessage {
		ev.Message = ev.Message[:maxEventMessage-3] + "..."
	}
	ev.Source = source{Component: Component}
	ev.FirstTimestamp = now.UTC().Format(time.RFC3339)
	ev.LastTimestamp = ev.FirstTimestamp
	ev.Count = 1
	ev.ReportingComp, ev.ReportingInst = Component, pod.Name
	body, err := json.Marshal(&ev)
	if err != nil {
		return fmt.Errorf("encoding event: %w", err)
	}
	return c.core.Post().Namespace(pod.Namespace).Resource("events").
		SetHeader("Content-Type", "application/json").Body(body).Do(ctx).Error()
}

// Recorder posts Events about the agent's Pod, so that `kubectl describe
// pod` shows what happened to its certificate. Events are best effort and
// off the critical path: Event queues and returns at once, one goroutine
// (only while there is something to post) sends them in order, a failure is
// logged at debug level and forgotten, and if the agent may not create Events
// it says so once and stops trying. Flush before exiting.
type Recorder struct {
	client *Client
	pod    ObjectRef
	clock  clock.PassiveClock

	mu        sync.Mutex
	forbidden bool
	backlog   []queued
	posting   bool
	pending   sync.WaitGroup
}

// queued is an Event waiting to be posted.
type queued struct {
	logger                 klog.Logger
	eventType, reason, msg string
	at                     time.Time
}

// maxBacklog bounds the Events kept while the API server is slow or away;
// beyond it the oldest are dropped.
const maxBacklog = 16

// postTimeout bounds each post: a slow API server must not pile them up.
const postTimeout = 5 * time.Second

// NewRecorder returns a Recorder for pod; c defaults to the real clock.
func NewRecorder(client *Client, pod ObjectRef, c clock.PassiveClock) *Recorder {
	if c == nil {
		c = clock.RealClock{}
	}
	return &Recorder{client: client, pod: pod, clock: c}
}

// Event queues one Event, stamped now, and returns without waiting for it.
func (r *Recorder) Event(ctx context.Context, eventType, reason, message string) {
	ev := queued{logger: klog.FromContext(ctx), eventType: eventType, reason: reason, msg: message, at: r.clock.Now()}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.forbidden {
		return
	}
	if len(r.backlog) == maxBacklog {
		dropped := r.backlog[0]
		r.backlog = r.backlog[1:]
		r.pending.Done()
		ev.logger.V(1).Info("Dropping an event the API server did not take in time", "reason", dropped.reason)
	}
	r.pending.Add(1)
	r.backlog = append(r.backlog, ev)
	if !r.posting {
		r.posting = true
		go r.drain()
	}
}

// Flush waits until every queued Event was posted or given up on, or ctx
// ends.
func (r *Recorder) Flush(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		r.pending.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// drain posts the backlog in order, then ends.
func (r *Recorder) drain() {
	for {
		r.mu.Lock()
		if len(r.backlog) == 0 || r.forbidden {
			for range r.backlog {
				r.pending.Done()
			}
			r.backlog, r.posting = nil, false
			r.mu.Unlock()
			return
		}
		ev := r.backlog[0]
		r.backlog = r.backlog[1:]
		r.mu.Unlock()
		r.post(ev)
		r.pending.Done()
	}
}

func (r *Recorder) post(ev queued) {
	ctx, cancel := context.WithTimeout(context.Background(), postTimeout)
	defer cancel()
	err := r.client.CreateEvent(ctx, r.pod, ev.eventType, ev.reason, ev.msg, ev.at)
	switch {
	case err == nil:
	case apierrors.IsForbidden(err):
		r.mu.Lock()
		first := !r.forbidden
		r.forbidden = true
		r.mu.Unlock()
		if first {
			ev.logger.Info("Not allowed to create Events; the pod's events will not show the certificate's story (grant create on events in this namespace)",
				"namespace", r.pod.Namespace)
		}
	default:
		ev.logger.V(1).Info("Posting an event failed", "reason", ev.reason, "error", err.Error())
	}
}
