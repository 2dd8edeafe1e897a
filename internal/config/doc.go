// Package config is the agent's configuration: environment variables only,
// read once at start-up by FromEnv with github.com/kelseyhightower/envconfig,
// validated by a pure function before any network call or file write.
//
// The variables, their defaults and forms are declared once, in the struct
// tags envconfig reads; Docs, Usage (`agent help`) and MarkdownTable (the
// README table, checked by TestREADME) are rendered from the same tags. In
// short:
//
//   - Pod facts from the downward API: POD_NAME and POD_NAMESPACE (required),
//     POD_UID, POD_IPS, and POD_IP, which is used only when POD_IPS is unset.
//   - What the certificate names: SERVICE_NAMES (names, or auto to discover
//     the Services selecting this pod), SHORT_SERVICE_NAMES (also <svc>.<ns>
//     and <svc>, off by default: they are not the cluster's names),
//     CLUSTER_DOMAIN, POD_HOSTNAME with POD_SUBDOMAIN (both or neither),
//     DNS_NAMES, IP_ADDRESSES, INCLUDE_POD_IPS, COMMON_NAME. The names themselves are derived by
//     package identity.
//   - The request: SIGNER_NAME, USAGES, KEY_TYPE, CERT_DURATION,
//     ISSUE_TIMEOUT, DELETE_CSR.
//   - Output and operation: CERT_DIR, KEY_FILE_MODE, CERT_FILE_MODE,
//     LOG_FORMAT, LOG_LEVEL, CA_FILE, KUBECONFIG.
//   - A PKCS#12 keystore next to the PEM files: KEYSTORE_PASSWORD or
//     KEYSTORE_PASSWORD_FILE (not both).
//   - The sidecar: RENEW_BEFORE (unset: jittered 70–90% of the lifetime),
//     NEW_KEY_ON_RENEWAL; telling the app after a publish: NOTIFY_PROCESS
//     with NOTIFY_SIGNAL, NOTIFY_URL, NOTIFY_COMMAND; HTTP_ADDR for
//     /healthz, /readyz and /metrics (set to "" to turn it off).
//
// Rules that span variables:
//
//   - Unset and empty differ. Unset takes the default; set to "" is an error,
//     except for DNS_NAMES, IP_ADDRESSES, CA_FILE, KUBECONFIG, RENEW_BEFORE,
//     the keystore and notification variables, where it is the same as
//     unset, and HTTP_ADDR, where it turns the endpoint off.
//     SERVICE_NAMES="" is an error, not "no Services".
//   - RENEW_BEFORE must be below CERT_DURATION. The keystore password file
//     is read once at start-up (ReadKeystorePassword), after validation.
//   - POD_IPS wins over POD_IP when both are set (a malformed POD_IP is still
//     an error); POD_IP alone becomes a one-item POD_IPS.
//   - A serving certificate (USAGES includes server) must have something to
//     name: a Service, the headless name, a DNS name, an IP, or a pod IP with
//     INCLUDE_POD_IPS=true. SERVICE_NAMES=auto defers the check to after
//     discovery.
//   - The CN defaults to the first DNS name of at most 64 characters, else
//     it is empty: the csr-agent controller allows only a CN that is one of
//     the pod's DNS names. A client-only certificate with no DNS name needs
//     COMMON_NAME.
//   - Wildcards are refused everywhere: the agent certifies one pod.
//
// Every error names its variable and the expected form, and all of them are
// reported at once; they match ErrInvalid.
//
// # The controller
//
// ControllerFromEnv reads the controller's variables the same way, with the
// same rules for unset and empty; ControllerUsage (`controller help`) and
// ControllerMarkdownTable (the README table between the controller-config
// markers) render them. In short:
//
//   - Policy: SIGNER_NAME, CLUSTER_DOMAIN, SHORT_SERVICE_NAMES (false: only
//     <svc>.<ns>.svc and <svc>.<ns>.svc.<domain>, never a name outside the
//     cluster's), MAX_EXPIRATION (24h, the agent's default CERT_DURATION;
//     a longer request is issued for this long, not denied),
//     SPIFFE_TRUST_DOMAIN (unset: no URI SAN is allowed).
//   - CA and trust: CA_SECRET_NAMESPACE and CA_SECRET_NAME (a
//     kubernetes.io/tls Secret), CREATE_CA (create a self-signed CA there if
//     the Secret is missing), or CA_DIR (the same files in a directory,
//     instead of the Secret; not with CREATE_CA=true), TRUST_BUNDLE_NAME (the
//     ClusterTrustBundle; unset: <signer with / as :>:ca).
//   - Availability: LEADER_ELECT, LEASE_NAMESPACE, LEASE_NAME, POD_NAME (the
//     replica's identity; unset: the host name), LEASE_DURATION,
//     LEASE_RENEW_DEADLINE, LEASE_RETRY_PERIOD (client-go's usual 15s, 10s,
//     2s).
//   - Throughput: WORKERS, KUBE_API_QPS and KUBE_API_BURST. The client
//     limits default to 1000 and 3000 rather than client-go's 5 and 10 (or
//     kube-controller-manager's 20 and 30): each CSR costs three requests,
//     a live read of its pod (decisions are taken from fresh state), the
//     approval and the certificate; a pod certificate request costs two.
//     A rollout of 1000 pods is 3000 requests, all within the burst. At
//     the former 400 and 800 the same rollout waited on the client's own
//     limiter for 5.5 s, longer than kube-controller-manager's signer
//     takes at raised QPS for the whole burst. Server-side, API Priority
//     and Fairness (the shipped FlowSchema) still protects the API server.
//     WORKERS defaults to 128: a CSR waits on three API round trips in a
//     row, not on CPU.
//   - Operation: METRICS_ADDR and HEALTH_ADDR (set to "" to turn the
//     endpoint off; they cannot share an address), LOG_FORMAT, LOG_LEVEL,
//     KUBECONFIG.
//
// Rules that span variables: LEASE_DURATION > LEASE_RENEW_DEADLINE >
// 1.2 × LEASE_RETRY_PERIOD (client-go's leader-election requirements),
// checked only with LEADER_ELECT=true; TRUST_BUNDLE_NAME must carry the
// prefix the API derives from SIGNER_NAME.
package config
