package config

import "time"

// controllerSpec is what envconfig.Process reads for the controller; its
// tags follow spec's conventions and are the single source of the
// controller's documentation (ControllerDocs, ControllerUsage,
// ControllerMarkdownTable, the README table). Its fields are named and typed
// after Controller's (a test holds this).
type controllerSpec struct {
	SignerName         envVar[string]        `envconfig:"SIGNER_NAME" default:"csr-agent.io/pod" form:"signer name domain/path, e.g. example.com/pod" desc:"spec.signerName the controller approves and signs for; CSRs of other signers are never touched."`
	ClusterDomain      envVar[string]        `envconfig:"CLUSTER_DOMAIN" default:"cluster.local" form:"DNS-1123 subdomain" desc:"Cluster DNS domain, the suffix of the Service and pod DNS names a pod may ask for."`
	ShortServiceNames  envVar[bool]          `envconfig:"SHORT_SERVICE_NAMES" default:"false" form:"true or false" desc:"Also allow the short Service names <svc>.<ns> and <svc>, and leave them out of the generated CA's name constraints. Off by default: they are names outside the cluster domain (a namespace named com with a Service google would own google.com; a Service named localhost, localhost), and <svc> is the same name in every namespace. Turn on only where every namespace's owner is trusted with such names."`
	MaxExpiration      envVar[time.Duration] `envconfig:"MAX_EXPIRATION" default:"24h" form:"Go duration, e.g. 24h, at least 10m" desc:"Longest certificate lifetime: a request with a longer spec.expirationSeconds, or none, gets this (the CSR API lets a signer shorten the lifetime; the agent renews from the certificate it gets). Pods renew well before expiry, so a leaked key is useful for a day at most."`
	SPIFFETrustDomain  envVar[string]        `envconfig:"SPIFFE_TRUST_DOMAIN" empty:"unset" form:"SPIFFE trust domain: lowercase letters, digits, '.', '-', '_'" desc:"Allows the URI SAN spiffe://<trust domain>/ns/<ns>/sa/<sa> of the requesting pod. Unset: no URI SAN is allowed."`
	CASecretNamespace  envVar[string]        `envconfig:"CA_SECRET_NAMESPACE" default:"csr-agent-system" form:"DNS-1123 label" desc:"Namespace of the CA Secret."`
	CASecretName       envVar[string]        `envconfig:"CA_SECRET_NAME" default:"csr-agent-ca" form:"DNS-1123 subdomain" desc:"kubernetes.io/tls Secret holding the CA: tls.crt (signing certificate, then intermediates), tls.key, optional ca.crt (trust anchors). Reloaded when it changes."`
	CreateCA           envVar[bool]          `envconfig:"CREATE_CA" default:"false" form:"true or false" desc:"Create a self-signed CA (ECDSA P-256, 10 years) in the CA Secret when the Secret does not exist; for demos and first installs."`
	CADir              envVar[string]        `envconfig:"CA_DIR" empty:"unset" form:"absolute path; not with CREATE_CA=true" desc:"Directory holding the CA as files tls.crt, tls.key and optional ca.crt (e.g. a mounted Secret or a CSI volume), re-read every 10 s. Set: used instead of the CA Secret, and the controller needs no access to Secrets."`
	TrustBundleName    envVar[string]        `envconfig:"TRUST_BUNDLE_NAME" empty:"unset" form:"<signer name with / as :>:<DNS-1123 subdomain>" desc:"ClusterTrustBundle the CA certificates are published in, linked to SIGNER_NAME. Unset: <signer name with / as :>:ca, e.g. csr-agent.io:pod:ca."`
	LeaderElect        envVar[bool]          `envconfig:"LEADER_ELECT" default:"true" form:"true or false" desc:"Elect a leader with a Lease, so that replicas stand by and only one approves and signs."`
	LeaseNamespace     envVar[string]        `envconfig:"LEASE_NAMESPACE" default:"csr-agent-system" form:"DNS-1123 label" desc:"Namespace of the leader-election Lease."`
	LeaseName          envVar[string]        `envconfig:"LEASE_NAME" default:"csr-agent-controller" form:"DNS-1123 subdomain" desc:"Name of the leader-election Lease."`
	PodName            envVar[string]        `envconfig:"POD_NAME" empty:"unset" form:"DNS-1123 subdomain; downward API fieldRef metadata.name" desc:"Identity of this replica in the Lease and in logs. Unset: the host name, which in a pod is the pod name."`
	LeaseDuration      envVar[time.Duration] `envconfig:"LEASE_DURATION" default:"15s" form:"Go duration above LEASE_RENEW_DEADLINE" desc:"How long standbys wait after the last renewal before taking over from a leader that died."`
	LeaseRenewDeadline envVar[time.Duration] `envconfig:"LEASE_RENEW_DEADLINE" default:"10s" form:"Go duration above 1.2 × LEASE_RETRY_PERIOD" desc:"How long the leader keeps trying to renew before it gives up leading and exits."`
	LeaseRetryPeriod   envVar[time.Duration] `envconfig:"LEASE_RETRY_PERIOD" default:"2s" form:"Go duration above 0" desc:"Interval between attempts to acquire or renew the Lease."`
	Workers            envVar[int]           `envconfig:"WORKERS" default:"128" form:"integer 1 to 256" desc:"CSRs (and, apart, pod certificate requests) processed concurrently. Each waits on three API round trips in a row (its pod, the approval, the certificate), not on CPU, so many more workers than cores pay off: the pool bounds a rollout at WORKERS / (3 × round trip)."`
	KubeAPIQPS         envVar[float32]       `envconfig:"KUBE_API_QPS" default:"1000" form:"number above 0, at most 10000" desc:"Sustained client-side limit of API requests per second. A CSR costs three requests (the live read of its pod, the approval, the certificate), a pod certificate request two (the pod, the status): the 3000 requests of 1000 pods starting at once fit in the default burst, and the API server's priority and fairness (the shipped FlowSchema) is what protects it."`
	KubeAPIBurst       envVar[int]           `envconfig:"KUBE_API_BURST" default:"3000" form:"integer 1 to 100000" desc:"Requests allowed above KUBE_API_QPS in a burst."`
	MetricsAddr        envVar[string]        `envconfig:"METRICS_ADDR" default:":8080" empty:"disables" form:"host:port or :port" desc:"Address of the Prometheus /metrics endpoint."`
	HealthAddr         envVar[string]        `envconfig:"HEALTH_ADDR" default:":8081" empty:"disables" form:"host:port or :port, not METRICS_ADDR" desc:"Address of the /healthz (liveness) and /readyz (caches synced, CA loaded) endpoints."`
	LogFormat          envVar[LogFormat]     `envconfig:"LOG_FORMAT" default:"json" form:"json or text" desc:"Log encoding."`
	LogLevel           envVar[LogLevel]      `envconfig:"LOG_LEVEL" default:"info" form:"debug, info, warn or error" desc:"Minimum log level."`
	Kubeconfig         envVar[string]        `envconfig:"KUBECONFIG" empty:"unset" form:"path" desc:"kubeconfig file for running outside a pod. Unset: in-cluster config."`
}

// controllerFields are the controller's variables.
var controllerFields = varsOf[controllerSpec]()

// controller copies the parsed values; a variable that is unset, empty or
// did not parse leaves its field zero.
func (s *controllerSpec) controller() *Controller {
	return &Controller{
		SignerName:         s.SignerName.val,
		ClusterDomain:      s.ClusterDomain.val,
		ShortServiceNames:  s.ShortServiceNames.val,
		MaxExpiration:      s.MaxExpiration.val,
		SPIFFETrustDomain:  s.SPIFFETrustDomain.val,
		CASecretNamespace:  s.CASecretNamespace.val,
		CASecretName:       s.CASecretName.val,
		CreateCA:           s.CreateCA.val,
		CADir:              s.CADir.val,
		TrustBundleName:    s.TrustBundleName.val,
		LeaderElect:        s.LeaderElect.val,
		LeaseNamespace:     s.LeaseNamespace.val,
		LeaseName:          s.LeaseName.val,
		PodName:            s.PodName.val,
		LeaseDuration:      s.LeaseDuration.val,
		LeaseRenewDeadline: s.LeaseRenewDeadline.val,
		LeaseRetryPeriod:   s.LeaseRetryPeriod.val,
		Workers:            s.Workers.val,
		KubeAPIQPS:         s.KubeAPIQPS.val,
		KubeAPIBurst:       s.KubeAPIBurst.val,
		MetricsAddr:        s.MetricsAddr.val,
		HealthAddr:         s.HealthAddr.val,
		LogFormat:          s.LogFormat.val,
		LogLevel:           s.LogLevel.val,
		Kubeconfig:         s.Kubeconfig.val,
	}
}
