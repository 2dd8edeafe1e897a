package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kelseyhightower/envconfig"
)

// fromEnv runs FromEnv with env as the agent's whole environment: the
// agent variables env lists are set, the others unset, all restored after the
// test. Like t.Setenv, it cannot be used in parallel tests.
func fromEnv(t *testing.T, env map[string]string) (*Agent, error) {
	t.Helper()
	setEnv(t, fields, env)
	return FromEnv()
}

// setEnv sets the variables of vs that env lists and unsets the others.
func setEnv(t *testing.T, vs varSet, env map[string]string) {
	t.Helper()
	for k := range env {
		if vs.index(k) == len(vs) {
			t.Fatalf("%s is not a variable of this program", k)
		}
	}
	for _, v := range vs.docs() {
		val, ok := env[v.Name]
		t.Setenv(v.Name, val) // also restores the variable after the test
		if !ok {
			if err := os.Unsetenv(v.Name); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// podEnv is the smallest valid environment: what the downward API gives.
func podEnv() map[string]string {
	return map[string]string{"POD_NAME": "web-0", "POD_NAMESPACE": "shop", "POD_IPS": "10.1.2.3"}
}

// problems unpacks FromEnv's joined error.
func problems(t *testing.T, err error) []*Problem {
	t.Helper()
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("error %v does not match ErrInvalid", err)
	}
	var out []*Problem
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var p *Problem
		if !errors.As(e, &p) {
			t.Fatalf("error %v is not a *Problem", e)
		}
		out = append(out, p)
	}
	return out
}

func TestAppliesDefaults(t *testing.T) {
	a, err := fromEnv(t, podEnv())
	if err != nil {
		t.Fatal(err)
	}
	want := Agent{
		PodName:       "web-0",
		PodNamespace:  "shop",
		PodIPs:        []net.IP{net.IPv4(10, 1, 2, 3).To4()},
		CertDir:       "/var/run/csr-agent",
		SignerName:    "csr-agent.io/pod",
		ClusterDomain: "cluster.local",
		IncludePodIPs: true,
		Usages:        UsageServer,
		KeyType:       KeyECDSAP256,
		CertDuration:  24 * time.Hour,
		IssueTimeout:  5 * time.Minute,
		KeyFileMode:   0o600,
		CertFileMode:  0o644,
		DeleteCSR:     true,
		LogFormat:     LogJSON,
		LogLevel:      LogInfo,

		NewKeyOnRenewal: true,
		NotifySignal:    Signal(syscall.SIGHUP),
		HTTPAddr:        ":9910",
	}
	if got, want := fmt.Sprintf("%#v", *a), fmt.Sprintf("%#v", want); got != want {
		t.Errorf("defaults:\n got %s\nwant %s", got, want)
	}
}

func TestAcceptsEveryDocumentedForm(t *testing.T) {
	env := podEnv()
	for k, v := range map[string]string{
		"POD_UID":         "0f8e6a3c-1b2d-4e5f-8a9b-0c1d2e3f4a5b",
		"POD_IPS":         "10.1.2.3, fd00::3",
		"SERVICE_NAMES":   "web, api",
		"POD_HOSTNAME":    "web-0",
		"POD_SUBDOMAIN":   "web",
		"DNS_NAMES":       "shop.example.com,web.example.com",
		"IP_ADDRESSES":    "::ffff:192.0.2.1,2001:db8::1",
		"INCLUDE_POD_IPS": "false",
		"COMMON_NAME":     "shop web",
		"USAGES":          "client,server",
		"KEY_TYPE":        "ed25519",
		"CERT_DURATION":   "10m",
		"KEY_FILE_MODE":   "440",
		"CERT_FILE_MODE":  "0o444",
		"LOG_FORMAT":      "text",
		"LOG_LEVEL":       "debug",
		"KUBECONFIG":      "/etc/kube/config",
	} {
		env[k] = v
	}
	a, err := fromEnv(t, env)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(a.PodIPs, a.IPAddresses); got != "[10.1.2.3 fd00::3] [192.0.2.1 2001:db8::1]" {
		t.Errorf("IPs = %s", got)
	}
	if len(a.IPAddresses[0]) != net.IPv4len {
		t.Errorf("IPv4-mapped %v was not unmapped", a.IPAddresses[0])
	}
	if !slices.Equal(a.ServiceNames.Names, []string{"web", "api"}) || a.ServiceNames.Auto {
		t.Errorf("ServiceNames = %+v", a.ServiceNames)
	}
	if !a.Usages.Server() || !a.Usages.Client() || a.Usages.String() != "server,client" {
		t.Errorf("Usages = %v", a.Usages)
	}
	if a.KeyFileMode != 0o440 || a.CertFileMode != 0o444 {
		t.Errorf("modes = %#o %#o; a mode without its leading 0 is still octal", a.KeyFileMode, a.CertFileMode)
	}
	if a.LogLevel.Slog().String() != "DEBUG" || a.CertDuration != MinCertDuration {
		t.Errorf("LogLevel %v, CertDuration %v", a.LogLevel, a.CertDuration)
	}
}

func TestPodIPIsUsedWhenPodIPsIsUnset(t *testing.T) {
	env := podEnv()
	delete(env, "POD_IPS")
	env["POD_IP"] = "fd00::7"
	a, err := fromEnv(t, env)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(a.PodIPs) != "[fd00::7]" {
		t.Errorf("PodIPs = %v, want POD_IP", a.PodIPs)
	}
}

func TestPodIPsWinsOverPodIP(t *testing.T) {
	env := podEnv()
	env["POD_IP"] = "10.9.9.9"
	a, err := fromEnv(t, env)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(a.PodIPs) != "[10.1.2.3]" {
		t.Errorf("PodIPs = %v, want POD_IPS alone", a.PodIPs)
	}
}

func TestSetButEmptyIsAnErrorUnlessDocumentedAsUnset(t *testing.T) {
	for _, v := range Docs() {
		t.Run(v.Name, func(t *testing.T) {
			env := podEnv()
			env[v.Name] = ""
			_, err := fromEnv(t, env)
			if v.EmptyIsUnset || v.EmptyDisables {
				if err != nil {
					t.Fatalf("%s=\"\" should mean unset or off: %v", v.Name, err)
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

func TestServiceNamesAutoDefersTheNothingToServeCheck(t *testing.T) {
	a, err := fromEnv(t, map[string]string{"POD_NAME": "p", "POD_NAMESPACE": "ns", "SERVICE_NAMES": "auto"})
	if err != nil {
		t.Fatal(err)
	}
	if !a.ServiceNames.Auto || a.ServiceNames.Names != nil {
		t.Errorf("ServiceNames = %+v, want Auto", a.ServiceNames)
	}
}

func TestServingCertificateNeedsSomethingToName(t *testing.T) {
	for name, env := range map[string]map[string]string{
		"no pod IPs":         {"POD_NAME": "p", "POD_NAMESPACE": "ns"},
		"pod IPs turned off": {"POD_NAME": "p", "POD_NAMESPACE": "ns", "POD_IPS": "10.0.0.1", "INCLUDE_POD_IPS": "false"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := fromEnv(t, env)
			if ps := problems(t, err); len(ps) != 1 || ps[0].Var != "USAGES" {
				t.Errorf("got %v, want one USAGES problem", err)
			}
		})
	}
}

func TestClientOnlyCertificateNeedsOnlyThePodName(t *testing.T) {
	a, err := fromEnv(t, map[string]string{"POD_NAME": "p", "POD_NAMESPACE": "ns", "USAGES": "client"})
	if err != nil {
		t.Fatal(err)
	}
	if a.Usages.Server() || !a.Usages.Client() {
		t.Errorf("Usages = %v", a.Usages)
	}
}

func TestValidateReportsAZeroAgent(t *testing.T) {
	var got []string
	for _, p := range problems(t, (&Agent{}).Validate()) {
		got = append(got, p.Var)
	}
	want := []string{"POD_NAME", "POD_NAMESPACE", "CERT_DIR", "SIGNER_NAME", "CLUSTER_DOMAIN", "USAGES", "KEY_TYPE",
		"CERT_DURATION", "ISSUE_TIMEOUT", "KEY_FILE_MODE", "CERT_FILE_MODE", "LOG_FORMAT", "LOG_LEVEL"}
	if !slices.Equal(got, want) {
		t.Errorf("problems with a zero Agent:\n got %v\nwant %v", got, want)
	}
}

func TestEveryDefaultDecodes(t *testing.T) {
	checkDefaultsDecode(t, fields, &spec{})
	checkDefaultsDecode(t, controllerFields, &controllerSpec{})
}

func checkDefaultsDecode(t *testing.T, vs varSet, s any) {
	v := reflect.ValueOf(s).Elem()
	for _, f := range vs {
		if f.Default == "" {
			continue
		}
		d := v.Field(f.index).Addr().Interface()
		if err := d.(envconfig.Decoder).Decode(f.Default); err != nil {
			t.Fatalf("%s: Decode returned %v; it must never fail", f.Name, err)
		}
		if err := d.(interface{ get() *state }).get().err; err != nil {
			t.Errorf("%s: default %q: %v", f.Name, f.Default, err)
		}
	}
}

// TestSpecMatchesAgent keeps the struct envconfig reads and the struct FromEnv
// returns alike: one field per variable, same name, same order, same type.
// spec.agent copies field by field; the Go compiler checks the types there,
// and TestAppliesDefaults and TestReadsEveryVariable that no copy is missed.
func TestSpecMatchesAgent(t *testing.T) {
	checkSpecMatches(t, reflect.TypeFor[spec](), reflect.TypeFor[Agent]())
}

func checkSpecMatches(t *testing.T, st, at reflect.Type) {
	if st.NumField() != at.NumField() {
		t.Fatalf("%s has %d fields, %s %d", st, st.NumField(), at, at.NumField())
	}
	for i := range st.NumField() {
		sf, af := st.Field(i), at.Field(i)
		val, ok := sf.Type.FieldByName("val")
		if sf.Name != af.Name || !ok || val.Type != af.Type {
			t.Errorf("spec field %d is %s %s, %s's is %s %s; want envVar[%[6]s]", i, sf.Name, sf.Type, at, af.Name, af.Type)
		}
		if sf.Tag.Get("envconfig") == "" {
			t.Errorf("%s.%s has no envconfig tag", st, sf.Name)
		}
	}
}

// TestReadsEveryVariable sets every variable to a value other than its
// default and, but for the two booleans that default to true (which
// TestAppliesDefaults covers), other than the zero value, so that a variable
// FromEnv does not read, or does not copy into Agent, shows.
func TestReadsEveryVariable(t *testing.T) {
	env := map[string]string{
		"POD_NAME": "web-0", "POD_NAMESPACE": "shop", "POD_UID": "0f8e6a3c-1b2d-4e5f-8a9b-0c1d2e3f4a5b",
		"POD_IPS": "10.1.2.3,fd00::3", "POD_IP": "10.1.2.3", "CERT_DIR": "/certs", "SIGNER_NAME": "example.com/pod",
		"SERVICE_NAMES": "web,api", "SHORT_SERVICE_NAMES": "true", "CLUSTER_DOMAIN": "example.local", "POD_HOSTNAME": "web-0",
		"POD_SUBDOMAIN": "web", "DNS_NAMES": "shop.example.com", "IP_ADDRESSES": "192.0.2.1",
		"INCLUDE_POD_IPS": "false", "COMMON_NAME": "shop", "USAGES": "server,client", "KEY_TYPE": "rsa-3072",
		"CERT_DURATION": "1h", "ISSUE_TIMEOUT": "30s", "KEY_FILE_MODE": "0640", "CERT_FILE_MODE": "0444",
		"DELETE_CSR": "false", "LOG_FORMAT": "text", "LOG_LEVEL": "warn", "CA_FILE": "/ca.pem", "KUBECONFIG": "/kubeconfig",
		"RENEW_BEFORE": "20m", "NEW_KEY_ON_RENEWAL": "false", "KEYSTORE_PASSWORD_FILE": "/secret/password",
		"NOTIFY_PROCESS": "nginx", "NOTIFY_SIGNAL": "USR1", "NOTIFY_URL": "http://localhost:8080/-/reload",
		"NOTIFY_COMMAND": "/bin/reload  --all", "HTTP_ADDR": "127.0.0.1:9000",
	}
	// KEYSTORE_PASSWORD cannot be set with KEYSTORE_PASSWORD_FILE;
	// TestKeystorePasswordFromTheEnvironment reads it.
	for _, v := range Docs() {
		if v.Name == "KEYSTORE_PASSWORD" {
			continue
		}
		if _, ok := env[v.Name]; !ok {
			t.Fatalf("%s is not set by this test", v.Name)
		}
	}
	a, err := fromEnv(t, env)
	if err != nil {
		t.Fatal(err)
	}
	want := Agent{
		PodName:           "web-0",
		PodNamespace:      "shop",
		PodUID:            "0f8e6a3c-1b2d-4e5f-8a9b-0c1d2e3f4a5b",
		PodIPs:            []net.IP{net.IPv4(10, 1, 2, 3).To4(), net.ParseIP("fd00::3")},
		PodIP:             net.IPv4(10, 1, 2, 3).To4(),
		CertDir:           "/certs",
		SignerName:        "example.com/pod",
		ServiceNames:      Services{Names: []string{"web", "api"}},
		ShortServiceNames: true,
		ClusterDomain:     "example.local",
		PodHostname:       "web-0",
		PodSubdomain:      "web",
		DNSNames:          []string{"shop.example.com"},
		IPAddresses:       []net.IP{net.IPv4(192, 0, 2, 1).To4()},
		CommonName:        "shop",
		Usages:            UsageServer | UsageClient,
		KeyType:           KeyRSA3072,
		CertDuration:      time.Hour,
		IssueTimeout:      30 * time.Second,
		KeyFileMode:       0o640,
		CertFileMode:      0o444,
		LogFormat:         LogText,
		LogLevel:          LogWarn,
		CAFile:            "/ca.pem",
		Kubeconfig:        "/kubeconfig",

		RenewBefore:          20 * time.Minute,
		KeystorePasswordFile: "/secret/password",
		NotifyProcess:        "nginx",
		NotifySignal:         Signal(syscall.SIGUSR1),
		NotifyURL:            "http://localhost:8080/-/reload",
		NotifyCommand:        Command{"/bin/reload", "--all"},
		HTTPAddr:             "127.0.0.1:9000",
	}
	if got, want := fmt.Sprintf("%#v", *a), fmt.Sprintf("%#v", want); got != want {
		t.Errorf("FromEnv:\n got %s\nwant %s", got, want)
	}
}

func TestUnknownFlagsLikelyTypos(t *testing.T) {
	got := Unknown([]string{"SERVICE_NAME=web", "PATH=/bin", "POD_IP=10.0.0.1", "CERT_DURATON=1h", "HOME=/", "WEB_PORT=tcp://x"})
	want := []string{
		"SERVICE_NAME is not an agent variable; did you mean SERVICE_NAMES?",
		"CERT_DURATON is not an agent variable; did you mean CERT_DURATION?",
	}
	if !slices.Equal(got, want) {
		t.Errorf("Unknown:\n got %q\nwant %q", got, want)
	}
}

func TestModesAreOctal(t *testing.T) {
	for in, want := range map[string]fs.FileMode{"0600": 0o600, "600": 0o600, "0o640": 0o640, "0": 0} {
		if got, err := parseMode(in); err != nil || got != want {
			t.Errorf("parseMode(%q) = %#o, %v; want %#o", in, got, err, want)
		}
	}
}
