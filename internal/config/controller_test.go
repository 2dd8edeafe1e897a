package config

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	controllerReadmeBegin = "<!-- controller-config:begin -->"
	controllerReadmeEnd   = "<!-- controller-config:end -->"
)

func controllerFromEnv(t *testing.T, env map[string]string) (*Controller, error) {
	t.Helper()
	setEnv(t, controllerFields, env)
	return ControllerFromEnv()
}

func TestControllerAppliesDefaults(t *testing.T) {
	c, err := controllerFromEnv(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Controller{
		SignerName:         "csr-agent.io/pod",
		ClusterDomain:      "cluster.local",
		MaxExpiration:      24 * time.Hour,
		CASecretNamespace:  "csr-agent-system",
		CASecretName:       "csr-agent-ca",
		TrustBundleName:    "csr-agent.io:pod:ca",
		LeaderElect:        true,
		LeaseNamespace:     "csr-agent-system",
		LeaseName:          "csr-agent-controller",
		LeaseDuration:      15 * time.Second,
		LeaseRenewDeadline: 10 * time.Second,
		LeaseRetryPeriod:   2 * time.Second,
		Workers:            128,
		KubeAPIQPS:         1000,
		KubeAPIBurst:       3000,
		MetricsAddr:        ":8080",
		HealthAddr:         ":8081",
		LogFormat:          LogJSON,
		LogLevel:           LogInfo,
	}
	if got, want := fmt.Sprintf("%#v", *c), fmt.Sprintf("%#v", want); got != want {
		t.Errorf("defaults:\n got %s\nwant %s", got, want)
	}
}

// TestControllerReadsEveryVariable sets every variable to a value other
// than its default and its zero value, so that a variable that is not read,
// or not copied, shows.
func TestControllerReadsEveryVariable(t *testing.T) {
	env := map[string]string{
		"SIGNER_NAME": "example.com/pods", "CLUSTER_DOMAIN": "example.local", "SHORT_SERVICE_NAMES": "true", "MAX_EXPIRATION": "1h",
		"SPIFFE_TRUST_DOMAIN": "example.org", "CA_SECRET_NAMESPACE": "pki", "CA_SECRET_NAME": "pod-ca",
		"CREATE_CA": "false", "CA_DIR": "/etc/ca", "TRUST_BUNDLE_NAME": "example.com:pods:root", "LEADER_ELECT": "true",
		"LEASE_NAMESPACE": "ops", "LEASE_NAME": "signer", "POD_NAME": "controller-0", "LEASE_DURATION": "30s",
		"LEASE_RENEW_DEADLINE": "20s", "LEASE_RETRY_PERIOD": "5s", "WORKERS": "4", "KUBE_API_QPS": "50.5",
		"KUBE_API_BURST": "100", "METRICS_ADDR": "127.0.0.1:9090", "HEALTH_ADDR": "[::1]:9091",
		"LOG_FORMAT": "text", "LOG_LEVEL": "debug", "KUBECONFIG": "/kubeconfig",
	}
	for _, v := range ControllerDocs() {
		if _, ok := env[v.Name]; !ok {
			t.Fatalf("%s is not set by this test", v.Name)
		}
	}
	c, err := controllerFromEnv(t, env)
	if err != nil {
		t.Fatal(err)
	}
	want := Controller{
		SignerName: "example.com/pods", ClusterDomain: "example.local", ShortServiceNames: true, MaxExpiration: time.Hour,
		SPIFFETrustDomain: "example.org", CASecretNamespace: "pki", CASecretName: "pod-ca", CADir: "/etc/ca",
		TrustBundleName: "example.com:pods:root", LeaderElect: true, LeaseNamespace: "ops", LeaseName: "signer",
		PodName: "controller-0", LeaseDuration: 30 * time.Second, LeaseRenewDeadline: 20 * time.Second,
		LeaseRetryPeriod: 5 * time.Second, Workers: 4, KubeAPIQPS: 50.5, KubeAPIBurst: 100,
		MetricsAddr: "127.0.0.1:9090", HealthAddr: "[::1]:9091", LogFormat: LogText, LogLevel: LogDebug,
		Kubeconfig: "/kubeconfig",
	}
	if got, want := fmt.Sprintf("%#v", *c), fmt.Sprintf("%#v", want); got != want {
		t.Errorf("ControllerFromEnv:\n got %s\nwant %s", got, want)
	}
}

func TestControllerSpecMatchesController(t *testing.T) {
	checkSpecMatches(t, reflect.TypeFor[controllerSpec](), reflect.TypeFor[Controller]())
}

func TestTrustBundleNameFollowsTheSignerName(t *testing.T) {
	c, err := controllerFromEnv(t, map[string]string{"SIGNER_NAME": "example.com/pods"})
	if err != nil {
		t.Fatal(err)
	}
	if c.TrustBundleName != "example.com:pods:ca" {
		t.Errorf("TrustBundleName = %q, want the default derived from SIGNER_NAME", c.TrustBundleName)
	}
}

func TestEmptyAddressTurnsTheEndpointOff(t *testing.T) {
	c, err := controllerFromEnv(t, map[string]string{"METRICS_ADDR": "", "HEALTH_ADDR": ""})
	if err != nil {
		t.Fatal(err)
	}
	if c.MetricsAddr != "" || c.HealthAddr != "" {
		t.Errorf("MetricsAddr %q HealthAddr %q, want both off", c.MetricsAddr, c.HealthAddr)
	}
}

func TestControllerSetButEmptyIsAnErrorUnlessDocumented(t *testing.T) {
	for _, v := range ControllerDocs() {
		t.Run(v.Name, func(t *testing.T) {
			_, err := controllerFromEnv(t, map[string]string{v.Name: ""})
			if v.EmptyIsUnset || v.EmptyDisables {
				if err != nil {
					t.Fatalf("%s=\"\" is documented as allowed: %v", v.Name, err)
				}
				return
			}
			ps := problems(t, err)
			if len(ps) != 1 || ps[0].Var != v.Name || !strings.Contains(ps[0].Msg, "set but empty") {
				t.Errorf("%s=\"\": got %v", v.Name, err)
			}
		})
	}
}

func TestControllerRejectsBadValues(t *testing.T) {
	tests := []struct {
		env     map[string]string
		wantVar string
		wantMsg string
	}{
		{map[string]string{"SIGNER_NAME": "pod"}, "SIGNER_NAME", "domain/path"},
		{map[string]string{"CLUSTER_DOMAIN": "cluster.local."}, "CLUSTER_DOMAIN", "ends with a dot"},
		{map[string]string{"MAX_EXPIRATION": "5m"}, "MAX_EXPIRATION", "below the minimum 10m"},
		{map[string]string{"MAX_EXPIRATION": "day"}, "MAX_EXPIRATION", "not a Go duration"},
		{map[string]string{"SPIFFE_TRUST_DOMAIN": "spiffe://example.org"}, "SPIFFE_TRUST_DOMAIN", "without spiffe://"},
		{map[string]string{"CA_SECRET_NAMESPACE": "Kube_System"}, "CA_SECRET_NAMESPACE", "invalid"},
		{map[string]string{"CA_SECRET_NAME": "ca/secret"}, "CA_SECRET_NAME", "invalid"},
		{map[string]string{"CREATE_CA": "yes please"}, "CREATE_CA", "not a boolean"},
		{map[string]string{"CA_DIR": "ca"}, "CA_DIR", "not an absolute path"},
		{map[string]string{"CA_DIR": "/ca", "CREATE_CA": "true"}, "CA_DIR", "cannot both be set"},
		{map[string]string{"TRUST_BUNDLE_NAME": "my-bundle"}, "TRUST_BUNDLE_NAME", `must start with "csr-agent.io:pod:"`},
		{map[string]string{"TRUST_BUNDLE_NAME": "csr-agent.io:pod:"}, "TRUST_BUNDLE_NAME", "invalid"},
		{map[string]string{"LEASE_NAME": "UPPER"}, "LEASE_NAME", "invalid"},
		{map[string]string{"POD_NAME": "a b"}, "POD_NAME", "invalid"},
		{map[string]string{"LEASE_DURATION": "10s"}, "LEASE_DURATION", "not above LEASE_RENEW_DEADLINE"},
		{map[string]string{"LEASE_RETRY_PERIOD": "9s"}, "LEASE_RENEW_DEADLINE", "1.2 × LEASE_RETRY_PERIOD"},
		{map[string]string{"LEASE_RETRY_PERIOD": "0s"}, "LEASE_RETRY_PERIOD", "not above 0"},
		{map[string]string{"WORKERS": "0"}, "WORKERS", "between 1 and 256"},
		{map[string]string{"WORKERS": "many"}, "WORKERS", "not an integer"},
		{map[string]string{"KUBE_API_QPS": "NaN"}, "KUBE_API_QPS", "above 0"},
		{map[string]string{"KUBE_API_QPS": "-1"}, "KUBE_API_QPS", "above 0"},
		{map[string]string{"KUBE_API_BURST": "0"}, "KUBE_API_BURST", "between 1 and 100000"},
		{map[string]string{"METRICS_ADDR": "8080"}, "METRICS_ADDR", "not host:port"},
		{map[string]string{"HEALTH_ADDR": ":http"}, "HEALTH_ADDR", "port number"},
		{map[string]string{"METRICS_ADDR": ":9000", "HEALTH_ADDR": ":9000"}, "HEALTH_ADDR", "cannot both"},
		{map[string]string{"LOG_LEVEL": "trace"}, "LOG_LEVEL", "not a log level"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.env), func(t *testing.T) {
			_, err := controllerFromEnv(t, tt.env)
			ps := problems(t, err)
			if len(ps) != 1 || ps[0].Var != tt.wantVar || !strings.Contains(ps[0].Msg, tt.wantMsg) {
				t.Fatalf("got %v, want one %s problem containing %q", err, tt.wantVar, tt.wantMsg)
			}
			if form := controllerFields.form(tt.wantVar); !strings.HasSuffix(err.Error(), " ("+form+")") {
				t.Errorf("%q does not end with the form %q", err, form)
			}
		})
	}
}

func TestLeaseTimingsAreIgnoredWithoutLeaderElection(t *testing.T) {
	_, err := controllerFromEnv(t, map[string]string{"LEADER_ELECT": "false", "LEASE_DURATION": "1s", "LEASE_NAME": "UPPER"})
	if err != nil {
		t.Errorf("lease settings were checked with LEADER_ELECT=false: %v", err)
	}
}

func TestControllerReportsEveryProblemAtOnce(t *testing.T) {
	_, err := controllerFromEnv(t, map[string]string{"SIGNER_NAME": "x", "WORKERS": "-3", "LOG_FORMAT": "xml", "MAX_EXPIRATION": ""})
	var got []string
	for _, p := range problems(t, err) {
		got = append(got, p.Var)
	}
	if want := []string{"SIGNER_NAME", "MAX_EXPIRATION", "WORKERS", "LOG_FORMAT"}; !slices.Equal(got, want) {
		t.Errorf("problems for %v, want %v in documentation order:\n%v", got, want, err)
	}
}

func TestValidateReportsAZeroController(t *testing.T) {
	var got []string
	for _, p := range problems(t, (&Controller{}).Validate()) {
		got = append(got, p.Var)
	}
	want := []string{"SIGNER_NAME", "CLUSTER_DOMAIN", "MAX_EXPIRATION", "CA_SECRET_NAMESPACE", "CA_SECRET_NAME",
		"WORKERS", "KUBE_API_QPS", "KUBE_API_BURST", "LOG_FORMAT", "LOG_LEVEL"}
	if !slices.Equal(got, want) {
		t.Errorf("problems with a zero Controller:\n got %v\nwant %v", got, want)
	}
}

func TestControllerUnknownFlagsLikelyTypos(t *testing.T) {
	got := ControllerUnknown([]string{"WORKER=3", "PATH=/bin", "CREATE_CA=true", "SIGNER=x"})
	want := []string{"WORKER is not a controller variable; did you mean WORKERS?"}
	if !slices.Equal(got, want) {
		t.Errorf("ControllerUnknown:\n got %q\nwant %q", got, want)
	}
}

// TestREADMEListsEveryControllerVariable keeps the README's controller
// table rendered from the tags, between its own markers.
func TestREADMEListsEveryControllerVariable(t *testing.T) {
	checkREADME(t, controllerReadmeBegin, controllerReadmeEnd, ControllerMarkdownTable())
}

// TestControllerReadsCreateCA: CREATE_CA=true conflicts with the CA_DIR of
// TestControllerReadsEveryVariable, so it is read here.
func TestControllerReadsCreateCA(t *testing.T) {
	c, err := controllerFromEnv(t, map[string]string{"CREATE_CA": "true"})
	if err != nil || !c.CreateCA {
		t.Errorf("CREATE_CA=true: %+v, %v", c, err)
	}
}
