package config

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"k8s.io/apimachinery/pkg/util/validation"
)

const (
	// MinCertDuration is the API server's minimum spec.expirationSeconds
	// (600 s); a shorter request is rejected at create time, so we reject it
	// at start-up instead.
	MinCertDuration = 10 * time.Minute
	// maxCertDuration is the largest spec.expirationSeconds, an int32.
	maxCertDuration = math.MaxInt32 * time.Second
	// maxCommonName is ub-common-name from RFC 5280.
	maxCommonName = 64
)

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// Validate reports every problem with a, joined, each a *Problem matching
// ErrInvalid. FromEnv calls it; it is exported for configurations built in
// code (tests, the demo). It does no I/O.
func (a *Agent) Validate() error {
	return fields.join(validate(a, nil))
}

// checker collects problems, dropping those about variables that already
// failed to decode: their field holds a zero value that would only produce a
// second, misleading message.
type checker struct {
	vars     varSet
	failed   map[string]bool
	problems []*Problem
}

func (c *checker) add(name, format string, args ...any) {
	if c.failed[name] {
		return
	}
	c.problems = append(c.problems, &Problem{Var: name, Msg: fmt.Sprintf(format, args...), Form: c.vars.form(name)})
}

func (c *checker) anyFailed(names ...string) bool {
	for _, n := range names {
		if c.failed[n] {
			return true
		}
	}
	return false
}

// names reports each k8s validation failure of value under the variable.
func (c *checker) names(name, value string, errs []string) {
	if len(errs) > 0 {
		c.add(name, "%q is invalid: %s", value, strings.Join(errs, "; "))
	}
}

func validate(a *Agent, failed map[string]bool) []*Problem {
	c := &checker{vars: fields, failed: failed}
	if a.PodName == "" {
		c.add("POD_NAME", "is required")
	} else {
		c.names("POD_NAME", a.PodName, validation.IsDNS1123Subdomain(a.PodName))
	}
	if a.PodNamespace == "" {
		c.add("POD_NAMESPACE", "is required")
	} else {
		c.names("POD_NAMESPACE", a.PodNamespace, validation.IsDNS1123Label(a.PodNamespace))
	}
	if a.PodUID != "" && !uuidRE.MatchString(a.PodUID) {
		c.add("POD_UID", "%q is not a UUID", a.PodUID)
	}
	for _, ip := range a.PodIPs {
		c.ip("POD_IPS", ip)
	}
	if a.PodIP != nil {
		c.ip("POD_IP", a.PodIP)
	}
	if a.CAFile != "" && !filepath.IsAbs(a.CAFile) {
		c.add("CA_FILE", "%q is not an absolute path", a.CAFile)
	}
	if !filepath.IsAbs(a.CertDir) {
		c.add("CERT_DIR", "%q is not an absolute path", a.CertDir)
	}
	if msg := signerNameProblem(a.SignerName); msg != "" {
		c.add("SIGNER_NAME", "%q is invalid: %s", a.SignerName, msg)
	}
	if a.ServiceNames.Auto && len(a.ServiceNames.Names) > 0 {
		c.add("SERVICE_NAMES", "auto must be the only value")
	}
	for _, n := range a.ServiceNames.Names {
		c.names("SERVICE_NAMES", n, validation.IsDNS1035Label(n))
	}
	c.clusterDomain(a.ClusterDomain)
	c.headless(a)
	for _, n := range a.DNSNames {
		c.dnsName("DNS_NAMES", n)
	}
	for _, ip := range a.IPAddresses {
		c.ip("IP_ADDRESSES", ip)
	}
	c.commonName(a.CommonName)
	if !a.Usages.valid() {
		c.add("USAGES", "%q is not server, client or both", a.Usages)
	}
	if !a.KeyType.valid() {
		c.add("KEY_TYPE", "%q is not a known key type", a.KeyType)
	}
	c.certDuration("CERT_DURATION", a.CertDuration)
	if a.IssueTimeout <= 0 {
		c.add("ISSUE_TIMEOUT", "%q is not above 0", fmtDuration(a.IssueTimeout))
	}
	// A key readable by the group is a deliberate choice (fsGroup sharing
	// with an app container running as another user); a key readable by
	// every user of the node's filesystem view never is.
	c.mode("KEY_FILE_MODE", a.KeyFileMode, 0o037)
	c.mode("CERT_FILE_MODE", a.CertFileMode, 0o022)
	c.logging(a.LogFormat, a.LogLevel)
	c.nothingToServe(a)
	c.sidecar(a)
	return c.problems
}

// sidecar checks the variables of renewal, keystore, notification and the
// HTTP endpoint.
func (c *checker) sidecar(a *Agent) {
	switch {
	case a.RenewBefore < 0:
		c.add("RENEW_BEFORE", "%q is not above 0", fmtDuration(a.RenewBefore))
	case a.RenewBefore > 0 && a.RenewBefore >= a.CertDuration && !c.anyFailed("CERT_DURATION"):
		c.add("RENEW_BEFORE", "%q is not below CERT_DURATION %q", fmtDuration(a.RenewBefore), fmtDuration(a.CertDuration))
	}
	switch {
	case a.KeystorePassword != "" && a.KeystorePasswordFile != "":
		c.add("KEYSTORE_PASSWORD", "KEYSTORE_PASSWORD and KEYSTORE_PASSWORD_FILE cannot both be set")
	case a.KeystorePassword != "":
		if msg := passwordProblem(a.KeystorePassword); msg != "" {
			c.add("KEYSTORE_PASSWORD", "%s", msg) // never quote a password
		}
	case a.KeystorePasswordFile != "" && !filepath.IsAbs(a.KeystorePasswordFile):
		c.add("KEYSTORE_PASSWORD_FILE", "%q is not an absolute path", a.KeystorePasswordFile)
	}
	if p := a.NotifyProcess; p != "" && (strings.ContainsAny(p, "/\x00") || strings.TrimSpace(p) != p) {
		c.add("NOTIFY_PROCESS", "%q is not a process name", p)
	}
	if _, ok := signals[a.NotifySignal.String()]; !ok && a.NotifyProcess != "" {
		c.add("NOTIFY_SIGNAL", "%q is not a signal the agent sends", a.NotifySignal)
	}
	if a.NotifyURL != "" {
		u, err := url.Parse(a.NotifyURL)
		switch {
		case err != nil:
			c.add("NOTIFY_URL", "%q is not a URL", a.NotifyURL)
		case u.Scheme != "http" && u.Scheme != "https":
			c.add("NOTIFY_URL", "%q is not an http or https URL", a.NotifyURL)
		case u.Host == "":
			c.add("NOTIFY_URL", "%q has no host", a.NotifyURL)
		}
	}
	if a.HTTPAddr != "" {
		_, port, err := net.SplitHostPort(a.HTTPAddr)
		if n, perr := strconv.ParseUint(port, 10, 16); err != nil || perr != nil || (n == 0 && port != "0") {
			c.add("HTTP_ADDR", "%q is not host:port", a.HTTPAddr)
		}
	}
}

func (c *checker) clusterDomain(d string) {
	if strings.HasSuffix(d, ".") {
		c.add("CLUSTER_DOMAIN", "%q ends with a dot; drop it", d)
	} else {
		c.names("CLUSTER_DOMAIN", d, validation.IsDNS1123Subdomain(d))
	}
}

// certDuration checks a certificate lifetime against what
// spec.expirationSeconds can carry.
func (c *checker) certDuration(name string, d time.Duration) {
	switch {
	case d < MinCertDuration:
		c.add(name, "%q is below the minimum %s", fmtDuration(d), fmtDuration(MinCertDuration))
	case d > maxCertDuration:
		c.add(name, "%q is above the maximum %s", fmtDuration(d), fmtDuration(maxCertDuration))
	case d%time.Second != 0:
		c.add(name, "%q is not a whole number of seconds", fmtDuration(d))
	}
}

func (c *checker) logging(format LogFormat, level LogLevel) {
	if _, ok := logLevels[level]; !ok {
		c.add("LOG_LEVEL", "%q is not a log level", level)
	}
	if format != LogJSON && format != LogText {
		c.add("LOG_FORMAT", "%q is not a log format", format)
	}
}

func (c *checker) ip(name string, ip net.IP) {
	switch {
	case len(ip) != net.IPv4len && len(ip) != net.IPv6len:
		c.add(name, "%q is not an IP address", ip)
	case ip.IsUnspecified():
		c.add(name, "%s is the unspecified address, which names no host", ip)
	}
}

func (c *checker) headless(a *Agent) {
	switch {
	case a.PodHostname != "" && a.PodSubdomain == "":
		c.add("POD_SUBDOMAIN", "is required when POD_HOSTNAME is set")
	case a.PodHostname == "" && a.PodSubdomain != "":
		c.add("POD_HOSTNAME", "is required when POD_SUBDOMAIN is set")
	}
	if a.PodHostname != "" {
		c.names("POD_HOSTNAME", a.PodHostname, validation.IsDNS1123Label(a.PodHostname))
	}
	if a.PodSubdomain != "" {
		c.names("POD_SUBDOMAIN", a.PodSubdomain, validation.IsDNS1123Label(a.PodSubdomain))
	}
}

func (c *checker) dnsName(name, n string) {
	switch {
	case strings.Contains(n, "*"):
		c.add(name, "%q is a wildcard; wildcard certificates are not issued, list each name instead", n)
	case strings.HasSuffix(n, "."):
		c.add(name, "%q ends with a dot; drop it", n)
	default:
		c.names(name, n, validation.IsDNS1123Subdomain(n))
	}
}

func (c *checker) commonName(cn string) {
	switch {
	case cn == "":
	case len(cn) > maxCommonName:
		c.add("COMMON_NAME", "%q is longer than %d characters", cn, maxCommonName)
	case strings.Contains(cn, "*"):
		c.add("COMMON_NAME", "%q is a wildcard; wildcard certificates are not issued", cn)
	case strings.ContainsFunc(cn, func(r rune) bool { return !unicode.IsPrint(r) }):
		c.add("COMMON_NAME", "%q contains unprintable characters", cn)
	}
}

func (c *checker) mode(name string, m, forbidden fs.FileMode) {
	switch {
	case m&^fs.ModePerm != 0:
		c.add(name, "%#o has bits beyond the permissions 0777", uint32(m))
	case m&0o400 == 0:
		c.add(name, "%#o is not readable by its owner", uint32(m))
	case m&forbidden != 0:
		c.add(name, "%#o grants %#o, which is not allowed", uint32(m), uint32(m&forbidden))
	}
}

// nothingToServe rejects a serving certificate that could carry no DNS name
// and no IP: the signer would issue something no client can verify. With
// SERVICE_NAMES=auto the names are only known after discovery, so the check
// is left to the issuing code.
func (c *checker) nothingToServe(a *Agent) {
	if !a.Usages.Server() || a.ServiceNames.Auto || len(a.ServiceNames.Names) > 0 ||
		a.PodHostname != "" || len(a.DNSNames) > 0 || len(a.IPAddresses) > 0 ||
		(a.IncludePodIPs && len(a.PodIPs) > 0) {
		return
	}
	if c.anyFailed("USAGES", "SERVICE_NAMES", "POD_HOSTNAME", "DNS_NAMES", "IP_ADDRESSES",
		"POD_IPS", "POD_IP", "INCLUDE_POD_IPS") {
		return
	}
	c.add("USAGES", "%q needs a DNS name or IP address to certify; set SERVICE_NAMES, DNS_NAMES, IP_ADDRESSES, "+
		"POD_HOSTNAME and POD_SUBDOMAIN, or POD_IPS with INCLUDE_POD_IPS=true", a.Usages)
}

// signerNameProblem mirrors the API server's ValidateSignerName
// (k8s.io/kubernetes/pkg/apis/core/validation), which is not importable:
// <domain>/<path>, the domain at least two DNS labels, each dot-separated part
// of the path a DNS subdomain.
func signerNameProblem(s string) string {
	domain, path, ok := strings.Cut(s, "/")
	if !ok || strings.Contains(path, "/") {
		return "must be of the form domain/path with exactly one /"
	}
	if len(domain) > validation.DNS1123SubdomainMaxLength {
		return fmt.Sprintf("domain is longer than %d characters", validation.DNS1123SubdomainMaxLength)
	}
	labels := strings.Split(domain, ".")
	if len(labels) < 2 {
		return fmt.Sprintf("domain %q needs at least two labels, e.g. example.com", domain)
	}
	for _, l := range labels {
		if errs := validation.IsDNS1123Label(l); len(errs) > 0 {
			return fmt.Sprintf("domain label %q: %s", l, strings.Join(errs, "; "))
		}
	}
	for _, p := range strings.Split(path, ".") {
		if errs := validation.IsDNS1123Subdomain(p); len(errs) > 0 {
			return fmt.Sprintf("path part %q: %s", p, strings.Join(errs, "; "))
		}
	}
	// The API allows a path of a label, a dot and a subdomain.
	if limit := 2*validation.DNS1123SubdomainMaxLength + validation.DNS1123LabelMaxLength + 2; len(s) > limit {
		return fmt.Sprintf("is longer than %d characters", limit)
	}
	return ""
}

// fmtDuration prints 5m rather than time.Duration's 5m0s, so that messages
// quote durations the way they are usually written.
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func formOf(name string) string { return fields.form(name) }

func (vs varSet) form(name string) string {
	if i := vs.index(name); i < len(vs) {
		return vs[i].Form
	}
	return ""
}

// index is the position of the variable in vs, len(vs) if unknown.
func (vs varSet) index(name string) int {
	for i, f := range vs {
		if f.Name == name {
			return i
		}
	}
	return len(vs)
}

// join joins the problems in the order the variables are documented,
// whether they were found decoding or validating.
func (vs varSet) join(problems []*Problem) error {
	if len(problems) == 0 {
		return nil
	}
	slices.SortStableFunc(problems, func(a, b *Problem) int {
		return cmp.Compare(vs.index(a.Var), vs.index(b.Var))
	})
	errs := make([]error, len(problems))
	for i, p := range problems {
		errs[i] = p
	}
	return errors.Join(errs...)
}
