package config

import (
	"io"
	"strings"
	"time"
)

// Controller is the controller's configuration, one typed field per
// variable. The variables (name, default, form, description) are declared
// once, in the struct tags of controllerSpec; a test keeps the two structs
// field for field alike.
type Controller struct {
	SignerName         string        // SIGNER_NAME
	ClusterDomain      string        // CLUSTER_DOMAIN
	ShortServiceNames  bool          // SHORT_SERVICE_NAMES
	MaxExpiration      time.Duration // MAX_EXPIRATION
	SPIFFETrustDomain  string        // SPIFFE_TRUST_DOMAIN
	CASecretNamespace  string        // CA_SECRET_NAMESPACE
	CASecretName       string        // CA_SECRET_NAME
	CreateCA           bool          // CREATE_CA
	CADir              string        // CA_DIR
	TrustBundleName    string        // TRUST_BUNDLE_NAME
	LeaderElect        bool          // LEADER_ELECT
	LeaseNamespace     string        // LEASE_NAMESPACE
	LeaseName          string        // LEASE_NAME
	PodName            string        // POD_NAME
	LeaseDuration      time.Duration // LEASE_DURATION
	LeaseRenewDeadline time.Duration // LEASE_RENEW_DEADLINE
	LeaseRetryPeriod   time.Duration // LEASE_RETRY_PERIOD
	Workers            int           // WORKERS
	KubeAPIQPS         float32       // KUBE_API_QPS
	KubeAPIBurst       int           // KUBE_API_BURST
	MetricsAddr        string        // METRICS_ADDR
	HealthAddr         string        // HEALTH_ADDR
	LogFormat          LogFormat     // LOG_FORMAT
	LogLevel           LogLevel      // LOG_LEVEL
	Kubeconfig         string        // KUBECONFIG
}

// TrustBundlePrefix is the name prefix the API requires of a
// ClusterTrustBundle linked to signerName: the signer name with "/" replaced
// by ":", then ":".
func TrustBundlePrefix(signerName string) string {
	return strings.ReplaceAll(signerName, "/", ":") + ":"
}

// DefaultTrustBundleName is the ClusterTrustBundle name used when
// TRUST_BUNDLE_NAME is unset.
func DefaultTrustBundleName(signerName string) string {
	return TrustBundlePrefix(signerName) + "ca"
}

// ControllerFromEnv reads the controller's configuration from the process
// environment, applies the defaults and validates it, as FromEnv does for
// the agent: every problem at once, each a *Problem matching ErrInvalid.
// TrustBundleName is defaulted from SignerName when unset.
func ControllerFromEnv() (*Controller, error) {
	var s controllerSpec
	failed, problems, err := controllerFields.process(&s)
	if err != nil {
		return nil, err
	}
	c := s.controller()
	if c.TrustBundleName == "" && !failed["SIGNER_NAME"] {
		c.TrustBundleName = DefaultTrustBundleName(c.SignerName)
	}
	problems = append(problems, validateController(c, failed)...)
	if err := controllerFields.join(problems); err != nil {
		return nil, err
	}
	return c, nil
}

// Validate reports every problem with c, joined, each a *Problem matching
// ErrInvalid. It does no I/O.
func (c *Controller) Validate() error {
	return controllerFields.join(validateController(c, nil))
}

// ControllerDocs lists every controller variable in declaration order.
func ControllerDocs() []Var { return controllerFields.docs() }

// ControllerUsage prints every controller variable, for `controller help`.
func ControllerUsage(w io.Writer) { usage(w, ControllerDocs()) }

// ControllerMarkdownTable renders the controller variables as the README's
// table, ending in a newline.
func ControllerMarkdownTable() string { return markdownTable(ControllerDocs()) }

// ControllerUnknown flags likely typos of controller variables in environ.
func ControllerUnknown(environ []string) []string {
	return controllerFields.unknown(environ, "a controller")
}
