// Package injector is the single source of the agent injector's per-pod
// settings (manifests/injector): which pod annotation sets which agent
// variable, what a valid value looks like, and how it is documented.
//
// The injector itself runs no code: a MutatingAdmissionPolicy adds the agent
// and a ValidatingAdmissionPolicy rejects a pod whose annotations the agent
// would refuse, both evaluated by the API server. The parts of those policies
// that depend on the annotations, and the README's annotation table, are
// rendered from Annotations and kept in sync by this package's tests
// (`go test ./internal/injector -update` rewrites them), so a setting is
// added in one place.
//
// An end-to-end test on a real node reuses the pieces the integration tests
// in manifests/ use: apply Files with manifests.Apply after the default
// install, create a pod labelled OptInLabel: OptInValue, compare what the
// API server stored with Expected, and wait for ContainerName to be ready.
package injector

// The names the policies and their users share. An end-to-end test injects
// a pod by setting OptInLabel to OptInValue and finds the agent as
// ContainerName.
const (
	// OptInLabel opts a pod, or every pod of a namespace, in: set it to
	// OptInValue on the pod or on the namespace. On a pod of an opted-in
	// namespace, any other value opts that pod out.
	OptInLabel = "csr-agent.io/inject"
	OptInValue = "true"

	// AnnotationPrefix begins every annotation of Annotations; the
	// validating policy rejects an opted-in pod with an unknown one, a
	// likely typo that would otherwise be ignored.
	AnnotationPrefix = "csr-agent.io/"

	// ContainerName is the injected native sidecar. A pod that already has
	// a container or init container of this name is left as it is.
	ContainerName = "csr-agent"
	// CertVolume is the memory-backed emptyDir the agent writes to, mounted
	// read-only at CertDir in every other container.
	CertVolume = "csr-agent-certs"
	CertDir    = "/var/run/csr-agent"
	// TokenVolume is the agent's own projected service-account token,
	// mounted at TokenDir in the agent alone.
	TokenVolume = "csr-agent-token"
	TokenDir    = "/var/run/secrets/kubernetes.io/serviceaccount"
	// HTTPPort serves the agent's /healthz, /readyz and /metrics (its
	// HTTP_ADDR default), named HTTPPortName.
	HTTPPort     = 9910
	HTTPPortName = "csr-agent-http"

	// ParamsNamespace and ParamsName locate the parameters ConfigMap: the
	// agent's image, its resources, and cluster-wide defaults for the
	// variables of Annotations (keyed by the variable's name).
	ParamsNamespace = "csr-agent-system"
	ParamsName      = "csr-agent-injector"
)

// Annotation is one per-pod setting: a pod annotation copied into one agent
// variable.
type Annotation struct {
	// Name is the annotation, AnnotationPrefix and a lower-case form of Var.
	Name string
	// Var is the agent variable it sets (internal/config).
	Var string
	// Form is the expected form, repeated in the rejection message.
	Form string
	// Desc is the README's description.
	Desc string
	// Check is a CEL expression over the string v, true when v is a value
	// the agent accepts. It may be stricter than the agent, never looser:
	// a test holds every example of Valid and Invalid against both.
	Check string
	// Secret means the value names a Secret key, "<secret>/<key>", and Var
	// is set from it with secretKeyRef, so that the secret itself never
	// appears in the pod spec.
	Secret bool
	// Valid and Invalid are examples of values, for the tests.
	Valid, Invalid []string
}

// durationCheck accepts the Go durations CEL's duration() parses too, from
// 10m (the API server's minimum spec.expirationSeconds) on. CEL's && is
// short-circuiting on false, so duration() never sees a malformed value.
const durationCheck = `v.matches('^([0-9]+(\\.[0-9]+)?(h|m|s|ms|us|ns))+$') && duration(v) >= duration('10m')`

// SecretRefPattern is the form of a Secret annotation's value: a Secret name
// (DNS-1123 subdomain), a slash, a key. The mutating policy copies only a
// value of this form into the pod, where a malformed name would make the
// pod's own validation refuse it without naming the annotation; the
// validating policy refuses the others, naming it.
const SecretRefPattern = `^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/[-._a-zA-Z0-9]{1,253}$`

// Annotations are the per-pod settings, in the order of the README table and
// of the variables in the injected container.
var Annotations = []Annotation{
	{
		Name:    "csr-agent.io/service-names",
		Var:     "SERVICE_NAMES",
		Form:    "auto, or comma-separated Service names (DNS-1035 labels)",
		Desc:    "Services whose DNS names the certificate carries; auto: every Service of the namespace that selects the pod.",
		Check:   `v == 'auto' || (v.matches('^[a-z]([-a-z0-9]{0,61}[a-z0-9])?(,[a-z]([-a-z0-9]{0,61}[a-z0-9])?)*$') && !v.split(',').exists(n, n == 'auto'))`,
		Valid:   []string{"auto", "web", "web,web-admin"},
		Invalid: []string{"Web", "web,,admin", "auto,web", "web.example.com", "-web"},
	},
	{
		Name:    "csr-agent.io/short-service-names",
		Var:     "SHORT_SERVICE_NAMES",
		Form:    "true or false",
		Desc:    "Also ask for <svc>.<ns> and <svc>; the controller must allow them too.",
		Check:   `v in ['true', 'false']`,
		Valid:   []string{"true", "false"},
		Invalid: []string{"yes", "banana"},
	},
	{
		Name:    "csr-agent.io/usages",
		Var:     "USAGES",
		Form:    "server, client, or server,client",
		Desc:    "Extended key usages requested.",
		Check:   `v in ['server', 'client', 'server,client', 'client,server']`,
		Valid:   []string{"server", "client", "server,client"},
		Invalid: []string{"email", "server,server"},
	},
	{
		Name:    "csr-agent.io/key-type",
		Var:     "KEY_TYPE",
		Form:    "ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072, rsa-4096 or ed25519",
		Desc:    "Private key algorithm.",
		Check:   `v in ['ecdsa-p256', 'ecdsa-p384', 'rsa-2048', 'rsa-3072', 'rsa-4096', 'ed25519']`,
		Valid:   []string{"ecdsa-p384", "rsa-3072", "ed25519"},
		Invalid: []string{"rsa-1024", "ECDSA-P256"},
	},
	{
		Name:    "csr-agent.io/cert-duration",
		Var:     "CERT_DURATION",
		Form:    "a Go duration of at least 10m, e.g. 24h",
		Desc:    "Requested certificate lifetime; the signer may shorten it.",
		Check:   durationCheck,
		Valid:   []string{"10m", "1h30m", "720h"},
		Invalid: []string{"5m", "1d", "24", "-1h"},
	},
	{
		Name:    "csr-agent.io/key-file-mode",
		Var:     "KEY_FILE_MODE",
		Form:    "0600, 0640, 0400 or 0440",
		Desc:    "Permissions of the key files; 0640 with the pod's fsGroup lets an app that runs as another user read them.",
		Check:   `v.matches('^0?[46][04]0$')`,
		Valid:   []string{"0640", "0400", "600"},
		Invalid: []string{"0644", "0777", "rw"},
	},
	{
		Name:    "csr-agent.io/notify-process",
		Var:     "NOTIFY_PROCESS",
		Form:    "a process name without / or surrounding spaces, in a pod with shareProcessNamespace: true",
		Desc:    "Signal this process after each renewal, as the app's user.",
		Check:   `v.matches('^[^/\\s](.*[^/\\s])?$') && !v.contains('/')`,
		Valid:   []string{"nginx", "java"},
		Invalid: []string{"/usr/sbin/nginx", " nginx"},
	},
	{
		Name:    "csr-agent.io/notify-signal",
		Var:     "NOTIFY_SIGNAL",
		Form:    "SIGHUP, SIGUSR1, SIGUSR2, SIGINT, SIGQUIT, SIGTERM or SIGWINCH; the SIG prefix is optional",
		Desc:    "Signal sent to the notify-process (default SIGHUP).",
		Check:   `v.matches('^(SIG)?(HUP|USR1|USR2|INT|QUIT|TERM|WINCH)$')`,
		Valid:   []string{"SIGUSR1", "HUP"},
		Invalid: []string{"SIGKILL", "hup"},
	},
	{
		Name:    "csr-agent.io/notify-url",
		Var:     "NOTIFY_URL",
		Form:    "an http or https URL with a host, e.g. http://localhost:8080/-/reload",
		Desc:    "POST to this URL after each renewal.",
		Check:   `isURL(v) && url(v).getScheme() in ['http', 'https'] && url(v).getHost() != ''`,
		Valid:   []string{"http://localhost:8080/-/reload", "https://127.0.0.1:9443/reload"},
		Invalid: []string{"localhost:8080", "ftp://localhost/", "http:///reload"},
	},
	{
		Name:    "csr-agent.io/keystore-password-secret",
		Var:     "KEYSTORE_PASSWORD",
		Form:    "<secret>/<key>: a Secret of the pod's namespace and its key",
		Desc:    "Also publish keystore.p12, encrypted with the password in this Secret key.",
		Check:   `v.matches('` + SecretRefPattern + `')`,
		Secret:  true,
		Valid:   []string{"app-keystore/password"},
		Invalid: []string{"app-keystore", "App/password", "a/b/c"},
	},
}

// Files are the component's manifests, relative to manifests/ (for
// manifests.Apply, e.g. in an end-to-end test), in the order of its
// kustomization.yaml: the parameters before the policies that read them.
var Files = []string{"injector/params.yaml", "injector/mutating.yaml", "injector/validating.yaml"}
