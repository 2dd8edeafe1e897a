// Package controller is csr-agent's approver and signer: it watches the
// CertificateSigningRequests of one signer name, decides the pending ones
// with package approve, signs the approved ones with package sign, and
// publishes the CA as a ClusterTrustBundle.
//
// The pieces, file by file:
//
//   - informers.go: CSRs (field selector on spec.signerName), Pods and
//     Services (all namespaces, slimmed by a transform so the caches hold
//     only what the policy reads) and the CA Secret (field selector on its
//     name).
//   - reconcile.go, decide.go, issue.go: a rate-limited workqueue of CSR
//     names, in the style of kubernetes/sample-controller. The caches only
//     pick the path; what is written is decided from the API (decide.go):
//     before an approval or a signature the pod is read live (UID, service
//     account, labels, IPs, deletion) together with the Services that
//     select it, so a pod deleted, re-created or relabelled after its CSR
//     was created is seen; before a denial that depends on the pod or its
//     Services, the pod and every Service of its namespace are read live, so
//     a cache lagging behind a new pod or Service never becomes a denial.
//     That costs two reads per certificate (pod and Service) next to its two
//     writes. An approval is written with UpdateApproval and the certificate
//     is signed in the same pass. Any error (API, conflict, no CA yet) is
//     retried with backoff; only a policy decision denies or fails a CSR.
//   - budget.go: each requester (a pod, by UID) gets a burst of decisions
//     and then one every two seconds; past that its CSRs wait in the queue
//     (never denied for it), so a pod creating CSRs in a loop cannot turn
//     its requests into reads and writes at the controller's priority.
//   - extranames.go: the csr-agent.io/extra-names annotation, honoured for
//     an approved pod request only while the admission policy reserving it
//     to approvers is installed.
//   - ca.go, cafiles.go, trustbundle.go: the CA is read from a
//     kubernetes.io/tls Secret (optionally created there) or from a
//     directory of the same files, and swapped in whole when it changes.
//     The leader publishes the trust bundle before it signs with a new CA,
//     merging old and new anchors, and drops an old anchor once its last
//     leaf has expired or an operator retires it (sign.PlanBundle,
//     retire.go).
//   - podcert.go, podcert_sign.go: the PodCertificateRequest path
//     (Options.PodCertificates): the kubelet's requests for podCertificate
//     projected volumes of the same signer name, decided by
//     approve.DecidePodCertificate from the pod read live right before
//     signing and the service account's UID (from a cache of names and
//     UIDs when it shows the UID the request names, else read live), and
//     issued, denied or failed in one status update. Its own queue and
//     workers; the same leader election, CA, Events and metrics (label
//     path).
//   - leader.go: Lease leader election. Every replica keeps warm caches and
//     a loaded CA; only the leader queues CSRs and writes.
//   - metrics.go, health.go, events.go: Prometheus metrics, /healthz and
//     /readyz, and Warning Events on the requesting pod.
//
// # Who approves
//
// The controller approves only what the policy allows (approve.Decide). A
// CSR approved by anyone else with the "approve" verb on the signer, such
// as a person running `kubectl certificate approve`, is signed too, under
// approve.DecideApproved: the certificate template rules (well-formed names
// only, no wildcard, no CA, allowed keys, usages and lifetime) always
// apply, and a request from a pod is signed only for that pod's own names,
// and only while the pod is alive with the same UID. An approval records
// no author and no intent, so clicking approve never grants a pod more; a
// person who means to grant more names them in the csr-agent.io/extra-names
// annotation. A request from an identity that is not a pod is the
// approver's authority. A CSR denied or failed by anyone is left alone, as
// is a CSR of another signer.
//
// # Signing exactly once
//
// Two replicas may briefly both believe they lead (a paused leader resumes
// after its lease expired). The certificate is nevertheless stored at most
// once: status updates carry the resourceVersion the signer read, so the
// API server rejects the second writer with a conflict, and it also refuses
// to replace an existing status.certificate. On a graceful stop the leader
// stops its workers before it releases the Lease, so a standby does not
// start while the old leader still writes.
package controller

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	certificatesv1 "k8s.io/api/certificates/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/csr-agent/csr-agent/internal/approve"
	"github.com/csr-agent/csr-agent/internal/sign"
)

// DefaultWorkers is the default number of CSRs processed at once. A CSR
// holds its worker for three API round trips in a row (the live read of its
// pod, the approval, the certificate), not for CPU, so by Little's law the
// pool bounds the throughput at workers / (3 × round trip): with round
// trips of 50 to 100 ms under a burst, 32 workers cap a rollout at 100 to
// 200 CSRs a second, below what the API server then sustains. On a 2-core
// test cluster 1000 CSRs took 5.4 to 6.1 s with 32 workers against 4.5 to
// 5.1 s for kube-controller-manager's signer at raised QPS, and came even
// with it at 128 (BENCHMARKS.md, section 4).
const DefaultWorkers = 128

// DefaultCAPollInterval is how often a CA directory is re-read. A mounted
// Secret changes about a minute after the Secret (the kubelet's sync
// period), so polling adds little to that delay.
const DefaultCAPollInterval = 10 * time.Second

// ErrLeadershipLost is returned by Run when this replica stopped leading
// without being asked to: the process should exit and restart as a standby,
// as kube-controller-manager does.
var ErrLeadershipLost = errors.New("leader election lost")

// Options configure a Controller.
type Options struct {
	// Client talks to the API server; its rate limits bound the controller's.
	Client kubernetes.Interface
	// Policy decides pending CSRs; its signer name is the controller's.
	Policy *approve.Policy
	// Issuer builds and signs certificates.
	Issuer *sign.Issuer
	// CASecret is the kubernetes.io/tls Secret holding the CA. Set it or
	// CADir.
	CASecret types.NamespacedName
	// CreateCA creates a self-signed CA in CASecret when it does not exist.
	CreateCA bool
	// CADir is a directory holding the CA as files named like the Secret's
	// keys (tls.crt, tls.key, optional ca.crt), such as a mounted Secret.
	CADir string
	// CAPollInterval is how often CADir is read for changes; default
	// DefaultCAPollInterval.
	CAPollInterval time.Duration
	// TrustBundleName is the ClusterTrustBundle the CA is published in.
	TrustBundleName string
	// LeaderElection, when set, makes only the Lease holder write.
	LeaderElection *LeaderElection
	// Workers default to DefaultWorkers.
	Workers int
	// MetricsAddr and HealthAddr are listen addresses; "" serves nothing.
	MetricsAddr, HealthAddr string
	// Clock defaults to the real clock.
	Clock clock.PassiveClock
	// PodCertificates also makes the controller the signer of
	// PodCertificateRequests (certificates.k8s.io/v1, Kubernetes 1.37+) of
	// the same signer name; see podcert.go. Off when the API lacks them.
	PodCertificates bool
	// Jitter returns a number in [0, 1) that places each pod certificate's
	// beginRefreshAt; default math/rand/v2.Float64.
	Jitter func() float64
}

func (o *Options) defaults() {
	if o.Workers == 0 {
		o.Workers = DefaultWorkers
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.CAPollInterval == 0 {
		o.CAPollInterval = DefaultCAPollInterval
	}
	if o.Jitter == nil {
		o.Jitter = rand.Float64
	}
}

func (o *Options) validate() error {
	var errs []error
	if o.Client == nil {
		errs = append(errs, errors.New("Options.Client must be set"))
	}
	if o.Policy == nil {
		errs = append(errs, errors.New("Options.Policy must be set"))
	}
	if o.Issuer == nil {
		errs = append(errs, errors.New("Options.Issuer must be set"))
	}
	switch secret := o.CASecret != (types.NamespacedName{}); {
	case secret && o.CADir != "":
		errs = append(errs, errors.New("Options.CASecret and Options.CADir cannot both be set"))
	case secret && (o.CASecret.Namespace == "" || o.CASecret.Name == ""):
		errs = append(errs, errors.New("Options.CASecret needs a namespace and a name"))
	case !secret && o.CADir == "":
		errs = append(errs, errors.New("Options.CASecret or Options.CADir must be set"))
	case o.CreateCA && o.CADir != "":
		errs = append(errs, errors.New("Options.CreateCA needs Options.CASecret"))
	}
	if o.CAPollInterval < 0 {
		errs = append(errs, fmt.Errorf("Options.CAPollInterval %s: want above 0", o.CAPollInterval))
	}
	if o.TrustBundleName == "" {
		errs = append(errs, errors.New("Options.TrustBundleName must be set"))
	}
	if o.Workers < 1 {
		errs = append(errs, fmt.Errorf("Options.Workers %d: want at least 1", o.Workers))
	}
	if o.LeaderElection != nil {
		errs = append(errs, o.LeaderElection.validate())
	}
	return errors.Join(errs...)
}

// Controller approves, denies and signs CSRs of one signer name.
type Controller struct {
	opts     Options
	signer   string
	informer *caches
	queue    workqueue.TypedRateLimitingInterface[string]
	written  *writtenVersions
	pcr      *podCertificates
	ca       sign.Source
	caSync   caSyncer
	events   events.EventBroadcaster
	recorder events.EventRecorder
	metrics  *metrics
	retire   *retireMetrics
	kept     keptAnnotations // the bundle's marker and state, for a re-creation
	health   *health
	synced   atomic.Bool
	leading  atomic.Bool // workers run; see enqueueCSR
	ran      atomic.Bool
	budgets  *budgets
	// afterCachedFacts, set by tests only, runs between the cached and the
	// fresh reads of a decision.
	afterCachedFacts func(*certificatesv1.CertificateSigningRequest)
}

// New defaults and validates opts and builds the controller. It makes no
// API call; Run does.
func New(opts Options) (*Controller, error) {
	opts.defaults()
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("controller options: %w", err)
	}
	c := &Controller{
		opts:    opts,
		signer:  opts.Policy.Options().SignerName,
		queue:   newQueue(),
		written: newWrittenVersions(),
		budgets: newBudgets(),
		pcr:     newPodCertificates(),
	}
	c.informer = newInformers(opts.Client, opts.Policy, opts.CASecret)
	if opts.PodCertificates {
		c.pcr.watch(opts.Client, c.signer)
		c.informer.factories = append(c.informer.factories, c.pcr.factories...)
		c.informer.extraSynced = c.pcr.synced()
	}
	c.events, c.recorder = newEventRecorder(opts.Client)
	c.metrics = newMetrics(c.queue, c.pcr.queue)
	c.retire = newRetireMetrics(c.metrics.registry)
	c.health = newHealth(c, opts.LeaderElection)
	c.caSync.init()
	if err := c.informer.addHandlers(c); err != nil {
		return nil, err
	}
	if err := c.pcr.addHandlers(c); err != nil {
		return nil, err
	}
	return c, nil
}

// Run runs the controller until ctx is done, then returns nil; it returns an
// error when an endpoint cannot listen or when it loses the leader election.
// Run may be called once.
func (c *Controller) Run(ctx context.Context) error {
	if !c.ran.CompareAndSwap(false, true) {
		return errors.New("controller: Run called twice")
	}
	logger := klog.FromContext(ctx).WithName("controller")
	ctx = klog.NewContext(ctx, logger)
	defer c.queue.ShutDown()
	defer c.pcr.queue.ShutDown()
	defer c.caSync.queue.ShutDown()
	if err := c.events.StartRecordingToSinkWithContext(ctx); err != nil {
		return fmt.Errorf("starting event recording: %w", err)
	}
	defer c.events.Shutdown()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	if err := c.serve(gctx, g); err != nil {
		cancel() // stop an endpoint that did start
		return errors.Join(err, g.Wait())
	}
	var informersDone sync.WaitGroup
	informersDone.Go(func() { c.informer.run(gctx) })
	defer informersDone.Wait()
	logger.Info("Waiting for caches to sync", "signerName", c.signer)
	if !c.informer.waitForSync(gctx) {
		return g.Wait() // stopped before the caches synced, or an endpoint failed
	}
	c.synced.Store(true)
	logger.Info("Caches synced")
	g.Go(func() error { c.runCALoop(gctx); return nil })
	g.Go(func() error {
		if c.opts.LeaderElection == nil {
			c.lead(gctx)
			return nil
		}
		return c.runLeaderElection(gctx)
	})
	return g.Wait()
}

// lead does the leader's work until ctx is done: make sure the CA is loaded
// and published, then run the workers.
func (c *Controller) lead(ctx context.Context) {
	logger := klog.FromContext(ctx)
	c.metrics.leader.Set(1)
	defer c.metrics.leader.Set(0)
	defer c.caSync.stopLeading()
	if !c.caSync.lead(ctx, c) {
		return
	}
	// The informer's handlers queue CSRs from now on; the cache, updated
	// before handlers run, holds every earlier one.
	c.leading.Store(true)
	defer c.leading.Store(false)
	c.enqueueAll()
	stopPodCertificates := c.startPodCertificateWorkers(ctx)
	logger.Info("Starting workers", "workers", c.opts.Workers, "podCertificates", c.opts.PodCertificates)
	var wg sync.WaitGroup
	for range c.opts.Workers {
		wg.Go(func() {
			for c.processNextItem(ctx) {
			}
		})
	}
	<-ctx.Done()
	// Workers blocked in Get return once the queue shuts down; the others
	// finish their item (their API calls fail fast on the done context).
	c.queue.ShutDown()
	wg.Wait()
	stopPodCertificates()
	logger.Info("Workers stopped")
}

// now is the controller's clock.
func (c *Controller) now() time.Time { return c.opts.Clock.Now() }
