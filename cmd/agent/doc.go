// Command agent gives the pod it runs in a TLS certificate from its own
// cluster, and keeps it valid.
//
// Usage:
//
//	agent init      obtain a certificate, write it to CERT_DIR, exit
//	agent help      print every variable with its default and meaning
//	agent version   print the version
//
// # init
//
// Run as an init container. The private key is generated in the pod and is
// written only into CERT_DIR (mode KEY_FILE_MODE, 0600 by default); it is
// never logged. The agent creates a certificates.k8s.io/v1
// CertificateSigningRequest with the pod's own service-account token, so the
// approver sees which pod asks (spec.username and, with a pod-bound token,
// spec.extra), then waits on a watch of that one CSR until it is approved and
// signed, bounded by ISSUE_TIMEOUT. While it waits it logs, every 30 seconds,
// the `kubectl certificate approve <name>` a person could run.
//
// The CSR is named after the pod (csr-agent-<namespace>-<pod>-<hash of
// namespace, name and UID>) and labelled csr-agent.io/pod-name,
// csr-agent.io/pod-namespace and csr-agent.io/pod-uid. The key of a pending
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
// hidden timestamped directory is written, synced and checked (the key must
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
// # Environment
//
//	POD_NAME         required. Name of this pod; the CN of a client-only certificate when there is no DNS name
//	POD_NAMESPACE    required. Namespace of this pod; part of every Service and pod DNS name
//	POD_UID          optional. UID of this pod, recorded on the CSR so a signer can tell this pod from a later one with the same name
//	POD_IPS          optional. IPs of this pod, added to a serving certificate unless INCLUDE_POD_IPS=false. Wins over POD_IP when both are set
//	POD_IP           optional. Primary IP of this pod; used as POD_IPS when POD_IPS is unset
//	CERT_DIR         default /var/run/csr-agent. Directory (the shared emptyDir) the key and certificate are written to
//	SIGNER_NAME      default csr-agent.io/pod. spec.signerName of the CSR
//	SERVICE_NAMES    optional. Services whose DNS names the certificate carries: <svc>.<ns>.svc.<domain>, <svc>.<ns>.svc, <svc>.<ns>, <svc>. auto: every Service in the namespace whose selector matches this pod. Unset: none
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
//	ISSUE_TIMEOUT    default 5m. How long init waits for the CSR to be approved and signed before failing
//	KEY_FILE_MODE    default 0600. Permissions of the key file
//	CERT_FILE_MODE   default 0644. Permissions of the certificate and CA files
//	DELETE_CSR       default true. Delete the CSR once the certificate is stored
//	LOG_FORMAT       default json. Log encoding
//	LOG_LEVEL        default info. Minimum log level
//	CA_FILE          optional. PEM file written as ca.crt (e.g. a mounted ConfigMap or clusterTrustBundle projection). Unset: the signer's ClusterTrustBundles, then the cert-manager CA annotation of the CSR
//	KUBECONFIG       optional. kubeconfig file for running outside a pod. Unset: in-cluster config
//
// Every problem in the configuration is reported at once, each naming its
// variable and the expected form, before any network call or file write.
//
// # Exit codes
//
//	0  the certificate is published
//	1  any other error (API unreachable, not allowed, files not writable)
//	2  invalid configuration or usage
//	3  the request was denied: reason and message are printed
//	4  the request failed: the signer could not sign it
//	5  nobody approved and signed the request within ISSUE_TIMEOUT
//	6  the request was deleted while the agent waited
package main
