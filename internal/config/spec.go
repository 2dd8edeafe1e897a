package config

import (
	"fmt"
	"io/fs"
	"net"
	"reflect"
	"time"

	"github.com/kelseyhightower/envconfig"
)

// spec is what envconfig.Process reads, and its tags are the single source of
// the documentation (Docs, Usage, MarkdownTable, the README table):
//
//	envconfig  the variable name
//	default    the value used when the variable is unset (applied by envconfig)
//	mandatory  "true" when the variable must be set
//	empty      "unset" when empty means the same as unset; without it, empty is an error
//	form       the expected form, repeated in every error about the variable
//	desc       what the variable does
//
// mandatory is not envconfig's required tag: Process would stop at the first
// missing variable, and FromEnv reports every problem at once. Its fields are
// named and typed after Agent's (a test holds this).
type spec struct {
	PodName           envVar[string]        `envconfig:"POD_NAME" mandatory:"true" form:"DNS-1123 subdomain; downward API fieldRef metadata.name" desc:"Name of this pod; in the CSR's labels."`
	PodNamespace      envVar[string]        `envconfig:"POD_NAMESPACE" mandatory:"true" form:"DNS-1123 label; downward API fieldRef metadata.namespace" desc:"Namespace of this pod; part of every Service and pod DNS name."`
	PodUID            envVar[string]        `envconfig:"POD_UID" form:"UUID; downward API fieldRef metadata.uid" desc:"UID of this pod. The CSR is named csr-agent-<uid>, the one name the admission policy csr-agent-pod-requests lets a pod use for csr-agent.io/pod, and labelled with it. Unset: the CSR is named after namespace and pod, which that policy refuses for csr-agent.io/pod."`
	PodIPs            envVar[[]net.IP]      `envconfig:"POD_IPS" form:"comma-separated IPv4/IPv6 addresses; downward API fieldRef status.podIPs" desc:"IPs of this pod, added to a serving certificate unless INCLUDE_POD_IPS=false. Wins over POD_IP when both are set."`
	PodIP             envVar[net.IP]        `envconfig:"POD_IP" form:"IPv4 or IPv6 address; downward API fieldRef status.podIP" desc:"Primary IP of this pod; used as POD_IPS when POD_IPS is unset."`
	CertDir           envVar[string]        `envconfig:"CERT_DIR" default:"/var/run/csr-agent" form:"absolute path" desc:"Directory (the shared emptyDir) the key and certificate are written to."`
	SignerName        envVar[string]        `envconfig:"SIGNER_NAME" default:"csr-agent.io/pod" form:"signer name domain/path, e.g. example.com/pod" desc:"spec.signerName of the CSR."`
	ServiceNames      envVar[Services]      `envconfig:"SERVICE_NAMES" form:"comma-separated Service names (DNS-1035 labels), or auto" desc:"Services whose DNS names the certificate carries: <svc>.<ns>.svc.<domain> and <svc>.<ns>.svc (see SHORT_SERVICE_NAMES). auto: every Service in the namespace whose selector matches this pod. Unset: none."`
	ShortServiceNames envVar[bool]          `envconfig:"SHORT_SERVICE_NAMES" default:"false" form:"true or false" desc:"Also ask for <svc>.<ns> and <svc> for each Service. Risky: <svc> is the same name in every namespace, and <svc>.<ns> leaves the cluster when a namespace is named like a top-level domain (Service google in namespace com is google.com). The csr-agent controller grants them only when its own SHORT_SERVICE_NAMES is true; otherwise the request is denied."`
	ClusterDomain     envVar[string]        `envconfig:"CLUSTER_DOMAIN" default:"cluster.local" form:"DNS-1123 subdomain" desc:"Cluster DNS domain."`
	PodHostname       envVar[string]        `envconfig:"POD_HOSTNAME" form:"DNS-1123 label; set with POD_SUBDOMAIN" desc:"spec.hostname of this pod (a StatefulSet pod's name); with POD_SUBDOMAIN adds <host>.<subdomain>.<ns>.svc.<domain>."`
	PodSubdomain      envVar[string]        `envconfig:"POD_SUBDOMAIN" form:"DNS-1123 label; set with POD_HOSTNAME" desc:"spec.subdomain of this pod (the headless Service name)."`
	DNSNames          envVar[[]string]      `envconfig:"DNS_NAMES" empty:"unset" form:"comma-separated DNS-1123 subdomains, no wildcards" desc:"Extra DNS names, listed before the derived ones; the first is the default CN."`
	IPAddresses       envVar[[]net.IP]      `envconfig:"IP_ADDRESSES" empty:"unset" form:"comma-separated IPv4/IPv6 addresses" desc:"Extra IP addresses, listed before the pod IPs."`
	IncludePodIPs     envVar[bool]          `envconfig:"INCLUDE_POD_IPS" default:"true" form:"true or false" desc:"Add the pod IPs, and <a-b-c-d>.<ns>.pod.<domain> for each IPv4 one, to a serving certificate."`
	CommonName        envVar[string]        `envconfig:"COMMON_NAME" form:"1 to 64 characters, no wildcard" desc:"Subject CN. Unset: the first DNS name of at most 64 characters, else empty (the csr-agent controller allows only a CN that is one of the pod's DNS names). A client-only certificate with no DNS name needs it."`
	Usages            envVar[Usages]        `envconfig:"USAGES" default:"server" form:"server, client, or server,client" desc:"Extended key usages requested."`
	KeyType           envVar[KeyType]       `envconfig:"KEY_TYPE" default:"ecdsa-p256" form:"ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072, rsa-4096 or ed25519" desc:"Private key algorithm; the key never leaves the pod."`
	CertDuration      envVar[time.Duration] `envconfig:"CERT_DURATION" default:"24h" form:"Go duration, e.g. 24h, at least 10m" desc:"Requested lifetime, sent as spec.expirationSeconds; the signer may shorten it."`
	IssueTimeout      envVar[time.Duration] `envconfig:"ISSUE_TIMEOUT" default:"5m" form:"Go duration, e.g. 5m, above 0" desc:"How long one CSR may wait to be approved and signed: init then fails, the sidecar retries later."`
	KeyFileMode       envVar[fs.FileMode]   `envconfig:"KEY_FILE_MODE" default:"0600" form:"octal permissions, e.g. 0600 or 0640; owner-readable, group read at most, nothing for other" desc:"Permissions of the key file."`
	CertFileMode      envVar[fs.FileMode]   `envconfig:"CERT_FILE_MODE" default:"0644" form:"octal permissions, e.g. 0644; owner-readable, no write for group/other" desc:"Permissions of the certificate and CA files."`
	DeleteCSR         envVar[bool]          `envconfig:"DELETE_CSR" default:"true" form:"true or false" desc:"Delete the CSR once the certificate is stored."`
	LogFormat         envVar[LogFormat]     `envconfig:"LOG_FORMAT" default:"json" form:"json or text" desc:"Log encoding."`
	LogLevel          envVar[LogLevel]      `envconfig:"LOG_LEVEL" default:"info" form:"debug, info, warn or error" desc:"Minimum log level."`
	CAFile            envVar[string]        `envconfig:"CA_FILE" empty:"unset" form:"absolute path" desc:"PEM file written as ca.crt (e.g. a mounted ConfigMap or clusterTrustBundle projection). Unset: the signer's ClusterTrustBundles, then the cert-manager CA annotation of the CSR."`
	Kubeconfig        envVar[string]        `envconfig:"KUBECONFIG" empty:"unset" form:"path" desc:"kubeconfig file for running outside a pod. Unset: in-cluster config."`

	// Renewal, keystore, notification and HTTP variables (sidecar; the
	// keystore also for init).
	RenewBefore          envVar[time.Duration] `envconfig:"RENEW_BEFORE" empty:"unset" form:"Go duration, e.g. 8h, above 0 and below CERT_DURATION" desc:"Sidecar: renew this long before the certificate expires. Unset: at a random point between 70% and 90% of its lifetime, so that pods issued together do not renew together."`
	NewKeyOnRenewal      envVar[bool]          `envconfig:"NEW_KEY_ON_RENEWAL" default:"true" form:"true or false" desc:"Sidecar: generate a new private key for every renewal; false keeps the published key."`
	KeystorePassword     envVar[string]        `envconfig:"KEYSTORE_PASSWORD" empty:"unset" form:"password of characters of the Basic Multilingual Plane; not with KEYSTORE_PASSWORD_FILE" desc:"Also publish keystore.p12 (PKCS#12: key, chain and CA bundle) in every generation, encrypted with this password. Prefer a Secret reference or KEYSTORE_PASSWORD_FILE."`
	KeystorePasswordFile envVar[string]        `envconfig:"KEYSTORE_PASSWORD_FILE" empty:"unset" form:"absolute path; not with KEYSTORE_PASSWORD" desc:"File holding the keystore password (a mounted Secret), read at start-up; one trailing newline is ignored. Publishes keystore.p12 like KEYSTORE_PASSWORD."`
	NotifyProcess        envVar[string]        `envconfig:"NOTIFY_PROCESS" empty:"unset" form:"process name as in /proc/<pid>/comm, or the base name of its program; no /" desc:"Sidecar: after each publish that replaces files, send NOTIFY_SIGNAL to every process of this name whose parent has another name (nginx's master, not its workers). Needs shareProcessNamespace: true, and the app's user or CAP_KILL."`
	NotifySignal         envVar[Signal]        `envconfig:"NOTIFY_SIGNAL" default:"SIGHUP" form:"SIGHUP, SIGUSR1, SIGUSR2, SIGINT, SIGQUIT, SIGTERM or SIGWINCH; the SIG prefix is optional" desc:"Signal sent to NOTIFY_PROCESS."`
	NotifyURL            envVar[string]        `envconfig:"NOTIFY_URL" empty:"unset" form:"http or https URL, e.g. http://localhost:8080/-/reload" desc:"Sidecar: after each publish that replaces files, POST to this URL (the app's reload endpoint); any 2xx answer is success."`
	NotifyCommand        envVar[Command]       `envconfig:"NOTIFY_COMMAND" empty:"unset" form:"program and arguments separated by spaces, no shell quoting, e.g. /bin/reload --certs /certs" desc:"Sidecar: after each publish that replaces files, run this program in the agent's container; exit status 0 is success."`
	HTTPAddr             envVar[string]        `envconfig:"HTTP_ADDR" default:":9910" empty:"disables" form:"host:port, e.g. :9910 or 127.0.0.1:9910; port 0 picks a free port" desc:"Sidecar: address of the /healthz, /readyz and /metrics endpoint."`
}

// envVar is one variable as envconfig hands it over. Its Decode never fails,
// so that Process visits every variable; FromEnv then reports every problem,
// each with the variable's name and form, which a Decode error could not carry.
type envVar[T any] struct {
	state
	val T
}

var _ envconfig.Decoder = (*envVar[string])(nil)

// state is what FromEnv needs to know of a variable, whatever its type.
type state struct {
	// seen is whether envconfig called Decode: the variable is set, or it is
	// unset and has a default. For a variable without default it is "set".
	seen bool
	raw  string // what Decode was given
	err  error  // why raw does not parse; nil when raw is ""
}

func (s *state) get() *state { return s }

// Decode implements envconfig.Decoder. Envconfig passes "" for a variable set
// to the empty string, and the default for one that is unset; "" is left for
// FromEnv to judge, since whether it is allowed depends on the tags.
func (v *envVar[T]) Decode(raw string) error {
	var zero T
	v.state, v.val = state{seen: true, raw: raw}, zero
	if raw != "" {
		v.err = parse(raw, &v.val)
	}
	return nil
}

// field is one variable as declared by the tags of a spec field.
type field struct {
	index int // in spec
	Var
}

// varSet is the variables of one program (the agent's spec, the
// controller's controllerSpec), in declaration order.
type varSet []field

// varsOf lists the variables S declares. It is computed once per program
// from constant tags, so it cannot differ between calls.
func varsOf[S any]() varSet {
	t := reflect.TypeFor[S]()
	out := make(varSet, 0, t.NumField())
	for i := range t.NumField() {
		tag := t.Field(i).Tag
		out = append(out, field{
			index: i,
			Var: Var{
				Name:          tag.Get("envconfig"),
				Default:       tag.Get("default"),
				Required:      tag.Get("mandatory") == "true",
				Form:          tag.Get("form"),
				Desc:          tag.Get("desc"),
				EmptyIsUnset:  tag.Get("empty") == "unset",
				EmptyDisables: tag.Get("empty") == "disables",
			},
		})
	}
	return out
}

// fields are the agent's variables.
var fields = varsOf[spec]()

// docs returns the variables' documentation.
func (vs varSet) docs() []Var {
	out := make([]Var, len(vs))
	for i, f := range vs {
		out[i] = f.Var
	}
	return out
}

// process reads the environment into *s, a spec struct whose variables are
// vs, and reports the variables that are missing, empty or do not parse.
func (vs varSet) process(s any) (failed map[string]bool, problems []*Problem, err error) {
	if err := envconfig.Process("", s); err != nil {
		// Not expected: no field is envconfig-required and no Decode fails.
		return nil, nil, fmt.Errorf("reading the environment: %w", err)
	}
	failed, problems = vs.problems(reflect.ValueOf(s).Elem())
	return failed, problems, nil
}

// FromEnv reads the configuration from the process environment with
// envconfig.Process, which also applies the defaults, and validates it. It
// does no other I/O. On failure the error joins one *Problem per problem,
// every one of them, and matches ErrInvalid.
//
// A variable set to the empty string is an error unless it is documented as
// the same as unset (DNS_NAMES, IP_ADDRESSES, KUBECONFIG): an empty value is
// usually a template that rendered nothing, and silently taking the default
// would hide it.
func FromEnv() (*Agent, error) {
	var s spec
	failed, problems, err := fields.process(&s)
	if err != nil {
		return nil, err
	}
	a := s.agent()
	problems = append(problems, validate(a, failed)...)
	if err := fields.join(problems); err != nil {
		return nil, err
	}
	return a, nil
}

// problems reports the variables of the spec struct v that are missing,
// empty or do not parse, and returns their names as failed, so that
// validation does not report them again from the zero value left in their
// field.
func (vs varSet) problems(v reflect.Value) (failed map[string]bool, problems []*Problem) {
	failed = make(map[string]bool)
	for _, f := range vs {
		st := v.Field(f.index).Addr().Interface().(interface{ get() *state }).get()
		var msg string
		switch {
		case st.seen && st.raw == "" && (f.EmptyIsUnset || f.EmptyDisables):
		case !st.seen && f.Required:
			msg = "is required"
		case st.seen && st.raw == "":
			msg = emptyMsg(f.Var)
		case st.err != nil:
			msg = st.err.Error()
		}
		if msg != "" {
			failed[f.Name] = true
			problems = append(problems, &Problem{Var: f.Name, Msg: msg, Form: f.Form})
		}
	}
	return failed, problems
}

func emptyMsg(v Var) string {
	switch {
	case v.Required:
		return "is set but empty; it is required"
	case v.Default != "":
		return fmt.Sprintf("is set but empty; unset it to use the default %q", v.Default)
	default:
		return "is set but empty; unset it or give a value"
	}
}

// agent copies the parsed values; a variable that is unset, empty or did not
// parse leaves its field zero.
func (s *spec) agent() *Agent {
	a := &Agent{
		PodName:           s.PodName.val,
		PodNamespace:      s.PodNamespace.val,
		PodUID:            s.PodUID.val,
		PodIPs:            s.PodIPs.val,
		PodIP:             s.PodIP.val,
		CertDir:           s.CertDir.val,
		SignerName:        s.SignerName.val,
		ServiceNames:      s.ServiceNames.val,
		ShortServiceNames: s.ShortServiceNames.val,
		ClusterDomain:     s.ClusterDomain.val,
		PodHostname:       s.PodHostname.val,
		PodSubdomain:      s.PodSubdomain.val,
		DNSNames:          s.DNSNames.val,
		IPAddresses:       s.IPAddresses.val,
		IncludePodIPs:     s.IncludePodIPs.val,
		CommonName:        s.CommonName.val,
		Usages:            s.Usages.val,
		KeyType:           s.KeyType.val,
		CertDuration:      s.CertDuration.val,
		IssueTimeout:      s.IssueTimeout.val,
		KeyFileMode:       s.KeyFileMode.val,
		CertFileMode:      s.CertFileMode.val,
		DeleteCSR:         s.DeleteCSR.val,
		LogFormat:         s.LogFormat.val,
		LogLevel:          s.LogLevel.val,
		CAFile:            s.CAFile.val,
		Kubeconfig:        s.Kubeconfig.val,

		RenewBefore:          s.RenewBefore.val,
		NewKeyOnRenewal:      s.NewKeyOnRenewal.val,
		KeystorePassword:     s.KeystorePassword.val,
		KeystorePasswordFile: s.KeystorePasswordFile.val,
		NotifyProcess:        s.NotifyProcess.val,
		NotifySignal:         s.NotifySignal.val,
		NotifyURL:            s.NotifyURL.val,
		NotifyCommand:        s.NotifyCommand.val,
		HTTPAddr:             s.HTTPAddr.val,
	}
	// Kubernetes keeps status.podIP equal to status.podIPs[0], so POD_IP only
	// matters for manifests written before the dual-stack podIPs field.
	// POD_IPS has no default, so not seen means unset.
	if !s.PodIPs.seen && a.PodIP != nil {
		a.PodIPs = []net.IP{a.PodIP}
	}
	return a
}
