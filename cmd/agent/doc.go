// Command agent gives the pod it runs in a TLS certificate from its own
// cluster, and keeps it valid.
//
// Usage:
//
//	agent init      obtain a certificate, write it to CERT_DIR, exit
//	agent sidecar   as init, then keep it valid for the life of the pod
//	agent probe     exit 0 if CERT_DIR holds a valid pair, else 1
//	agent help      print every variable with its default and meaning
//	agent version   print the version
//
// # init
//
// Run as an init container, or as the sidecar's first step. The private key is generated in the pod and is
// written only into CERT_DIR (mode KEY_FILE_MODE, 0600 by default); it is
// never logged. The agent creates a certificates.k8s.io/v1
// CertificateSigningRequest with the pod's own service-account token, so the
// approver sees which pod asks (spec.username and, with a pod-bound token,
// spec.extra), then waits on a watch of that one CSR until it is approved and
// signed, bounded by ISSUE_TIMEOUT. While it waits it says, in an Event on
// the pod and every 30 seconds in its log, what a person can look at: for
// csr-agent.io/pod the controller's readiness (kubectl -n csr-agent-system
// get pods) and the pod's Warning Events, where the controller says why it
// denies or waits; only for kubernetes.io/* signers, which wait for a
// person, the `kubectl certificate approve <name>` to run.
//
// The CSR is named after the pod's UID (csr-agent-<POD_UID>; without
// POD_UID, csr-agent-<namespace>-<pod>-<hash>) and labelled
// csr-agent.io/pod-name, csr-agent.io/pod-namespace and csr-agent.io/pod-uid.
// The admission policy csr-agent-pod-requests (manifests/admission) lets a
// pod create a request for csr-agent.io/pod only under that name, and
// delete only the requests it created. The key of a pending
// request is kept in CERT_DIR/.pending.key, so a container restarted while
// waiting resumes its own request; a leftover CSR of that name whose key is
// gone is deleted and requested again. Once the certificate is stored the
// CSR is deleted (DELETE_CSR=false keeps it).
//
// If CERT_DIR already holds a valid pair for the same names, with a key of
// the configured type and at least 30% of its lifetime left, init exits 0
// without asking again.
//
// # Files
//
// Published atomically, as the kubelet publishes projected volumes: a new
// hidden timestamped directory is written and checked (the key must
// match the certificate), then the ..data symlink is swapped to it. The
// visible names point through ..data:
//
//	tls.key   the private key (PKCS#8 PEM)
//	tls.crt   the certificate chain as returned by the signer
//	ca.crt    the CA bundle: CA_FILE, else the ClusterTrustBundles of the
//	          signer, else the experimental.cert-manager.io/ca annotation
//	tls.pem   key and chain in one file: a reader loads a matching pair in
//	          one read
//
// An interrupted publish is repaired at the next start.
//
// # sidecar
//
// Runs for the life of the pod. If CERT_DIR holds no valid, unexpired pair,
// it first does exactly what init does, and fails as init fails (exit codes
// below): a pod that cannot get its first certificate should crash-loop
// where people look. A valid pair already there is kept, even if it names
// an identity the pod no longer has; it is then renewed at once. From then
// on the sidecar never exits but on SIGTERM, and never removes or replaces a
// still-valid certificate with nothing.
//
// Renewal. A certificate is renewed at a random point between 70% and 90% of
// its lifetime (notBefore to notAfter), drawn again for every certificate:
// pods created together (a rollout, a scale-up) would otherwise renew
// together every lifetime, forever. RENEW_BEFORE renews at a fixed time
// before expiry instead (no jitter: the spread is then the pods' own). Each
// renewal derives the names again (SERVICE_NAMES=auto follows Services added
// and removed, POD_IPS the pod's IPs) and generates a new key
// (NEW_KEY_ON_RENEWAL=false keeps the published one). Between renewals the
// agent sleeps on a timer: no API call, no polling, no CPU.
//
// Failures. A failed renewal keeps the current pair and is retried after a
// capped exponential backoff with jitter (2s doubling to 2m, each delay
// randomly shortened by up to half), so an agent renews within two minutes
// of the API server coming back from an outage, and a fleet of agents does
// not return in lockstep. A denied renewal is logged as an error in capitals
// and posted as a Warning event, then asked again after a quarter of the
// remaining validity (at most 10m, at least the backoff): policies change,
// and the pod still needs a certificate before this one expires. The first
// failure, and the 2nd, 4th, 8th... in a row, post a
// CertificateRenewalFailing event. A renewal may wait for approval up to
// ISSUE_TIMEOUT; the files are repaired meanwhile.
//
// Self-healing. The agent watches CERT_DIR and the generation ..data points
// to with inotify (no polling). If a published file is deleted, truncated,
// replaced or re-moded, the current pair is republished at once (the same
// key and certificate, a new generation). If the CA bundle's source changes,
// ca.crt is rewritten: CA_FILE is followed by watching its directory (a
// ConfigMap or projected volume is updated by a symlink swap there); without
// CA_FILE the agent keeps one long-lived watch on the signer's
// ClusterTrustBundles (filtered by signerName; the API server ends it every
// 30–60 minutes and the agent resumes it, re-listing only when it must). To
// avoid even that watch, mount the bundle with a clusterTrustBundle
// projected volume and set CA_FILE: the kubelet then follows it for the
// whole node. Without permission to list and watch ClusterTrustBundles the
// agent says so once, and ca.crt follows them at renewals only.
//
// Shutdown. SIGTERM ends the loop: a renewal waiting for its certificate is
// abandoned (its CSR and pending key are resumed by the next start, or the
// CSR is removed by the API server's cleaner after the pod is gone), a
// publish under way completes (a publish is one atomic rename either way),
// the HTTP endpoint closes within a second, and the agent exits 0.
//
// # Telling the application
//
// After every publish that replaces files an application may have loaded
// (renewals, repairs, CA changes, and a first issuance that replaced
// damaged or expired files), the agent runs each configured hook, each
// bounded by 10 seconds; a failing hook is logged and counted, never fatal:
//
//	NOTIFY_PROCESS   send NOTIFY_SIGNAL (SIGHUP) to every process of that
//	                 name (comm, or the base name of argv[0]) whose parent has
//	                 another name: nginx's master, not its workers. Needs
//	                 shareProcessNamespace: true in the pod, and the agent
//	                 running as the app's user (or CAP_KILL).
//	NOTIFY_URL       POST, empty body; a 2xx answer is success.
//	NOTIFY_COMMAND   run a program of the agent's image (split on spaces, no
//	                 shell); CERT_DIR is in its environment.
//
// nginx reloads its certificates on SIGHUP: point ssl_certificate and
// ssl_certificate_key both at tls.pem and set NOTIFY_PROCESS=nginx.
// Envoy needs no hook: give its tls_certificate a watched_directory of
// CERT_DIR, which is built for exactly this ..data swap. A Go server reloads
// by itself, resolving ..data to know when the pair changed and reading
// tls.pem, which holds key and chain, in one read:
//
//	type pair struct {
//		dir  string
//		mu   sync.Mutex
//		gen  string
//		cert *tls.Certificate
//	}
//
//	func (p *pair) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
//		p.mu.Lock()
//		defer p.mu.Unlock()
//		gen, err := os.Readlink(filepath.Join(p.dir, "..data"))
//		if err == nil && gen != p.gen {
//			pem, err := os.ReadFile(filepath.Join(p.dir, gen, "tls.pem"))
//			if err == nil {
//				if c, err := tls.X509KeyPair(pem, pem); err == nil {
//					p.gen, p.cert = gen, &c
//				}
//			}
//		}
//		if p.cert == nil {
//			return nil, errors.New("no certificate yet")
//		}
//		return p.cert, nil // a failed read keeps the previous pair
//	}
//
//	srv := &http.Server{Addr: ":8443", TLSConfig: &tls.Config{
//		GetCertificate: (&pair{dir: "/var/run/csr-agent"}).GetCertificate,
//	}}
//	log.Fatal(srv.ListenAndServeTLS("", ""))
//
// (internal/writer.Reloader is this code; its tests run it against real
// publishes and handshakes.)
//
// # Keystore
//
// With KEYSTORE_PASSWORD or KEYSTORE_PASSWORD_FILE (a mounted Secret; one
// trailing newline is ignored), every generation also holds keystore.p12, a
// PKCS#12 file with the key, the chain and the CA bundle, encrypted with
// that password (go-pkcs12's Modern2023: AES-256 and PBKDF2, readable by
// Java 12+ and OpenSSL 1.1.1+; use a high-entropy password, e.g. `openssl
// rand -hex 16`). It is written in the same atomic swap as the PEM files,
// so it always holds the same key and certificate as they do.
//
// # Probes, metrics and events
//
// Unless HTTP_ADDR is empty the sidecar serves, from before its first
// request:
//
//	/healthz  200 unless a step outlasts its bound (a renewal past
//	          ISSUE_TIMEOUT + 1m, a publish past 1m): for a liveness probe
//	/readyz   200 when a valid pair is on disk: complete, matching, and not
//	          expired; 503 otherwise. A failing renewal keeps it green as
//	          long as the current certificate is valid.
//	/metrics  Prometheus text format:
//	            csr_agent_certificate_expiration_timestamp_seconds
//	            csr_agent_last_renewal_success_timestamp_seconds
//	            csr_agent_renewals_total{result="success|denied|failed|error"}
//	            csr_agent_issuance_duration_seconds (histogram)
//	            csr_agent_republishes_total{reason="repaired|ca-changed"}
//	            csr_agent_notifications_total{hook,result}
//
// `agent probe` checks what /readyz checks, from the files alone: it works
// with HTTP_ADDR="" and costs the API server nothing.
//
// Events on the Pod (`kubectl describe pod`): CertificateRequested,
// CertificateIssued, CertificateRenewed, CertificateDenied (Warning),
// CertificateRenewalFailing (Warning). They need create on events in the
// pod's namespace; without it the agent says so once and carries on.
//
// Logs are JSON (LOG_FORMAT=text for text), client-go's own output included.
// Keys and the keystore password are never logged.
//
// # Native sidecar
//
// The recommended form, on Kubernetes 1.29 and later: one init container
// with restartPolicy: Always, so that it starts before the application,
// runs as long as the pod, and is stopped after it. A startup probe that
// passes only once a valid pair is on disk holds the application back until
// then:
//
//	initContainers:
//	- name: csr-agent
//	  image: ghcr.io/csr-agent/csr-agent
//	  command: [/agent, sidecar]
//	  restartPolicy: Always
//	  env: [...]                  # POD_NAME, POD_NAMESPACE, POD_UID, POD_IPS...
//	  startupProbe:
//	    exec:
//	      command: [/agent, probe]  # or httpGet /readyz on port 9910
//	    periodSeconds: 2
//	    failureThreshold: 180       # outlasts ISSUE_TIMEOUT (5m)
//	  livenessProbe:
//	    httpGet: {path: /healthz, port: 9910}
//	  volumeMounts:
//	  - {name: certs, mountPath: /var/run/csr-agent}
//
// On older clusters, use two containers: `agent init` as an init container,
// which exits once the pair is on disk (so the application starts after it),
// and `agent sidecar` as a regular container with the same environment and
// volume, which finds that pair and keeps it valid.
//
// # Environment
//
//	POD_NAME         required. Name of this pod; the CN of a client-only certificate when there is no DNS name
//	POD_NAMESPACE    required. Namespace of this pod; part of every Service and pod DNS name
//	POD_UID          optional. UID of this pod: the CSR is named csr-agent-<uid>, which csr-agent.io/pod requires (admission policy csr-agent-pod-requests)
//	POD_IPS          optional. IPs of this pod, added to a serving certificate unless INCLUDE_POD_IPS=false. Wins over POD_IP when both are set
//	POD_IP           optional. Primary IP of this pod; used as POD_IPS when POD_IPS is unset
//	CERT_DIR         default /var/run/csr-agent. Directory (the shared emptyDir) the key and certificate are written to
//	SIGNER_NAME      default csr-agent.io/pod. spec.signerName of the CSR
//	SERVICE_NAMES    optional. Services whose DNS names the certificate carries: <svc>.<ns>.svc.<domain>, <svc>.<ns>.svc. auto: every Service in the namespace whose selector matches this pod. Unset: none
//	SHORT_SERVICE_NAMES default false. Also <svc>.<ns> and <svc>: risky (<svc> is the same in every namespace; Service google in namespace com is google.com); the controller grants them only with its own SHORT_SERVICE_NAMES=true
//	CLUSTER_DOMAIN   default cluster.local. Cluster DNS domain
//	POD_HOSTNAME     optional. spec.hostname of this pod (a StatefulSet pod's name); with POD_SUBDOMAIN adds <host>.<subdomain>.<ns>.svc.<domain>
//	POD_SUBDOMAIN    optional. spec.subdomain of this pod (the headless Service name)
//	DNS_NAMES        optional. Extra DNS names, listed before the derived ones; the first is the default CN
//	IP_ADDRESSES     optional. Extra IP addresses, listed before the pod IPs
//	INCLUDE_POD_IPS  default true. Add the pod IPs, and <a-b-c-d>.<ns>.pod.<domain> for each IPv4 one, to a serving certificate
//	COMMON_NAME      optional. Subject CN. Unset: the first DNS name of at most 64 characters, else POD_NAME
//	USAGES           default server. Extended key usages requested
//	KEY_TYPE         default ecdsa-p256. Private key algorithm; the key never leaves the pod
//	CERT_DURATION    default 24h. Requested lifetime, sent as spec.expirationSeconds; the signer may shorten it
//	ISSUE_TIMEOUT    default 5m. How long one CSR may wait to be approved and signed: init then fails, the sidecar retries later
//	KEY_FILE_MODE    default 0600. Permissions of the key file
//	CERT_FILE_MODE   default 0644. Permissions of the certificate and CA files
//	DELETE_CSR       default true. Delete the CSR once the certificate is stored
//	LOG_FORMAT       default json. Log encoding
//	LOG_LEVEL        default info. Minimum log level
//	CA_FILE          optional. PEM file written as ca.crt (e.g. a mounted ConfigMap or clusterTrustBundle projection). Unset: the signer's ClusterTrustBundles, then the cert-manager CA annotation of the CSR
//	KUBECONFIG       optional. kubeconfig file for running outside a pod. Unset: in-cluster config
//
// Sidecar, keystore and notification variables (the keystore also for init):
//
//	RENEW_BEFORE            optional. Renew this long before expiry, below CERT_DURATION. Unset: at a random 70–90% of the lifetime
//	NEW_KEY_ON_RENEWAL      default true. Generate a new private key for every renewal; false keeps the published key
//	KEYSTORE_PASSWORD       optional. Also publish keystore.p12, encrypted with this password. Not with KEYSTORE_PASSWORD_FILE
//	KEYSTORE_PASSWORD_FILE  optional. File holding the keystore password (a mounted Secret), read at start-up
//	NOTIFY_PROCESS          optional. Signal processes of this name after each publish that replaces files
//	NOTIFY_SIGNAL           default SIGHUP. The signal: SIGHUP, SIGUSR1, SIGUSR2, SIGINT, SIGQUIT, SIGTERM or SIGWINCH
//	NOTIFY_URL              optional. POST to this http(s) URL after each publish that replaces files
//	NOTIFY_COMMAND          optional. Run this program (split on spaces, no shell) after each publish that replaces files
//	HTTP_ADDR               default :9910. Address of /healthz, /readyz and /metrics; empty turns the endpoint off
//
// Every problem in the configuration is reported at once, each naming its
// variable and the expected form, before any network call or file write.
//
// # Memory
//
// The agent runs in every pod and idles almost all the time, so what it
// keeps resident while idle is its cost (package idle). Unless the
// environment sets them, it runs with GOGC=off and GOMEMLIMIT=16MiB: the Go
// runtime then collects only as the heap nears 16 MiB (a soft limit), and
// the agent collects itself after each burst of work and, while idle, every
// 5 minutes in which more than 1 MiB was allocated. The runtime's own
// schedule would also collect every 2 minutes regardless, faulting the
// collector's code back into an idle process each time. After each burst it
// also gives back the pages of its program file, and marks them to be read
// back one page at a time. GOGC and GOMEMLIMIT, when set, are honoured as
// the Go runtime documents them; GOMAXPROCS is capped at 2 unless set.
//
// # Exit codes
//
// For init, and for the sidecar while it gets its first certificate; after
// that the sidecar exits only on SIGTERM, with 0. probe exits 0 or 1.
//
//	0  the certificate is published
//	1  any other error (API unreachable, not allowed, files not writable)
//	2  invalid configuration or usage
//	3  the request was denied: reason and message are printed
//	4  the request failed: the signer could not sign it
//	5  nobody approved and signed the request within ISSUE_TIMEOUT: what to look at is printed
//	6  the request was deleted while the agent waited
package main
