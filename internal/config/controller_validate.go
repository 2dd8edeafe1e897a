package config

import (
	"math"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

// leaderElectionJitter is client-go's leaderelection.JitterFactor: the
// renew deadline must exceed the retry period by that factor, or
// NewLeaderElector refuses the configuration.
const leaderElectionJitter = 1.2

// spiffeTrustDomain is the character set the SPIFFE ID specification allows
// in a trust domain name.
var spiffeTrustDomain = regexp.MustCompile(`^[a-z0-9._-]{1,255}$`)

func validateController(cfg *Controller, failed map[string]bool) []*Problem {
	c := &checker{vars: controllerFields, failed: failed}
	if msg := signerNameProblem(cfg.SignerName); msg != "" {
		c.add("SIGNER_NAME", "%q is invalid: %s", cfg.SignerName, msg)
	}
	c.clusterDomain(cfg.ClusterDomain)
	c.certDuration("MAX_EXPIRATION", cfg.MaxExpiration)
	if td := cfg.SPIFFETrustDomain; td != "" && !spiffeTrustDomain.MatchString(td) {
		c.add("SPIFFE_TRUST_DOMAIN", "%q is not a trust domain name; give the bare name, e.g. example.org, without spiffe:// or a port", td)
	}
	c.names("CA_SECRET_NAMESPACE", cfg.CASecretNamespace, validation.IsDNS1123Label(cfg.CASecretNamespace))
	c.names("CA_SECRET_NAME", cfg.CASecretName, validation.IsDNS1123Subdomain(cfg.CASecretName))
	if cfg.CADir != "" && !filepath.IsAbs(cfg.CADir) {
		c.add("CA_DIR", "%q is not an absolute path", cfg.CADir)
	}
	if cfg.CADir != "" && cfg.CreateCA && !c.anyFailed("CREATE_CA", "CA_DIR") {
		c.add("CA_DIR", "is set with CREATE_CA=true; CA_DIR and CREATE_CA=true cannot both be set (a CA is created only in the Secret)")
	}
	c.trustBundleName(cfg)
	if cfg.LeaderElect {
		c.names("LEASE_NAMESPACE", cfg.LeaseNamespace, validation.IsDNS1123Label(cfg.LeaseNamespace))
		c.names("LEASE_NAME", cfg.LeaseName, validation.IsDNS1123Subdomain(cfg.LeaseName))
		c.lease(cfg)
	}
	if cfg.PodName != "" {
		c.names("POD_NAME", cfg.PodName, validation.IsDNS1123Subdomain(cfg.PodName))
	}
	if cfg.Workers < 1 || cfg.Workers > 256 {
		c.add("WORKERS", "%d is not between 1 and 256", cfg.Workers)
	}
	// !(q > 0) also catches NaN, which strconv accepts.
	if q := float64(cfg.KubeAPIQPS); !(q > 0) || q > 10000 {
		c.add("KUBE_API_QPS", "%v is not above 0 and at most 10000", cfg.KubeAPIQPS)
	}
	if cfg.KubeAPIBurst < 1 || cfg.KubeAPIBurst > 100000 {
		c.add("KUBE_API_BURST", "%d is not between 1 and 100000", cfg.KubeAPIBurst)
	}
	c.listenAddr("METRICS_ADDR", cfg.MetricsAddr)
	c.listenAddr("HEALTH_ADDR", cfg.HealthAddr)
	if cfg.MetricsAddr != "" && cfg.MetricsAddr == cfg.HealthAddr && !c.anyFailed("METRICS_ADDR", "HEALTH_ADDR") {
		c.add("HEALTH_ADDR", "%q is also METRICS_ADDR; METRICS_ADDR and HEALTH_ADDR cannot both be set to one address", cfg.HealthAddr)
	}
	c.logging(cfg.LogFormat, cfg.LogLevel)
	return c.problems
}

// trustBundleName mirrors the API server's ValidateClusterTrustBundleName
// for a bundle linked to a signer: the signer-derived prefix, then a
// DNS-1123 subdomain.
func (c *checker) trustBundleName(cfg *Controller) {
	if c.anyFailed("SIGNER_NAME") || signerNameProblem(cfg.SignerName) != "" {
		return // the prefix is unknown; SIGNER_NAME is reported
	}
	prefix := TrustBundlePrefix(cfg.SignerName)
	rest, ok := strings.CutPrefix(cfg.TrustBundleName, prefix)
	if !ok {
		c.add("TRUST_BUNDLE_NAME", "%q must start with %q, the API's prefix for SIGNER_NAME %q", cfg.TrustBundleName, prefix, cfg.SignerName)
		return
	}
	c.names("TRUST_BUNDLE_NAME", cfg.TrustBundleName, validation.IsDNS1123Subdomain(rest))
}

func (c *checker) lease(cfg *Controller) {
	d, renew, retry := cfg.LeaseDuration, cfg.LeaseRenewDeadline, cfg.LeaseRetryPeriod
	if retry <= 0 {
		c.add("LEASE_RETRY_PERIOD", "%q is not above 0", fmtDuration(retry))
	}
	if float64(renew) <= leaderElectionJitter*float64(retry) && !c.anyFailed("LEASE_RETRY_PERIOD") {
		c.add("LEASE_RENEW_DEADLINE", "%q is not above 1.2 × LEASE_RETRY_PERIOD (%s)", fmtDuration(renew), fmtDuration(retry))
	}
	if d <= renew && !c.anyFailed("LEASE_RENEW_DEADLINE") {
		c.add("LEASE_DURATION", "%q is not above LEASE_RENEW_DEADLINE (%s)", fmtDuration(d), fmtDuration(renew))
	}
	if d > time.Duration(math.MaxInt32)*time.Second {
		c.add("LEASE_DURATION", "%q does not fit the Lease's leaseDurationSeconds", fmtDuration(d))
	}
}

// listenAddr accepts what net.Listen("tcp", addr) does with a numeric port;
// "" (the feature turned off) is fine.
func (c *checker) listenAddr(name, addr string) {
	if addr == "" {
		return
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		c.add(name, "%q is not host:port", addr)
		return
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		c.add(name, "%q does not end in a port number 1 to 65535", addr)
	}
}
