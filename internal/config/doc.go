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
//     the Services selecting this pod), CLUSTER_DOMAIN, POD_HOSTNAME with
//     POD_SUBDOMAIN (both or neither), DNS_NAMES, IP_ADDRESSES,
//     INCLUDE_POD_IPS, COMMON_NAME. The names themselves are derived by
//     package identity.
//   - The request: SIGNER_NAME, USAGES, KEY_TYPE, CERT_DURATION,
//     ISSUE_TIMEOUT, DELETE_CSR.
//   - Output and operation: CERT_DIR, KEY_FILE_MODE, CERT_FILE_MODE,
//     LOG_FORMAT, LOG_LEVEL, CA_FILE, KUBECONFIG.
//
// Rules that span variables:
//
//   - Unset and empty differ. Unset takes the default; set to "" is an error,
//     except for DNS_NAMES, IP_ADDRESSES, CA_FILE and KUBECONFIG, where it is the same
//     as unset. SERVICE_NAMES="" is an error, not "no Services".
//   - POD_IPS wins over POD_IP when both are set (a malformed POD_IP is still
//     an error); POD_IP alone becomes a one-item POD_IPS.
//   - A serving certificate (USAGES includes server) must have something to
//     name: a Service, the headless name, a DNS name, an IP, or a pod IP with
//     INCLUDE_POD_IPS=true. SERVICE_NAMES=auto defers the check to after
//     discovery.
//   - The CN defaults to the first DNS name of at most 64 characters, else to
//     POD_NAME; that is how a client-only certificate with no DNS name gets a
//     subject. The agent does not invent a system:serviceaccount-style name.
//   - Wildcards are refused everywhere: the agent certifies one pod.
//
// Every error names its variable and the expected form, and all of them are
// reported at once; they match ErrInvalid.
package config
