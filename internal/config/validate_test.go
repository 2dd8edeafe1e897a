package config

import (
	"strings"
	"testing"
)

func TestRejectsBadValues(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string // on top of podEnv; "-" unsets
		wantVar string
		wantMsg string
	}{
		{"POD_NAME unset", map[string]string{"POD_NAME": "-"}, "POD_NAME", "is required"},
		{"POD_NAME not a subdomain", map[string]string{"POD_NAME": "Web_0"}, "POD_NAME", `"Web_0" is invalid: a lowercase RFC 1123 subdomain`},
		{"POD_NAMESPACE unset", map[string]string{"POD_NAMESPACE": "-"}, "POD_NAMESPACE", "is required"},
		{"POD_NAMESPACE with dots", map[string]string{"POD_NAMESPACE": "kube.system"}, "POD_NAMESPACE", "must not contain dots"},
		{"POD_UID not a UUID", map[string]string{"POD_UID": "pod-1"}, "POD_UID", `"pod-1" is not a UUID`},
		{"POD_IPS not an IP", map[string]string{"POD_IPS": "10.1.2.3,banana"}, "POD_IPS", `"banana" is not an IP address`},
		{"POD_IPS unspecified", map[string]string{"POD_IPS": "0.0.0.0"}, "POD_IPS", "0.0.0.0 is the unspecified address"},
		{"POD_IPS with zone", map[string]string{"POD_IPS": "fe80::1%eth0"}, "POD_IPS", `"fe80::1%eth0" has a zone`},
		{"POD_IPS trailing comma", map[string]string{"POD_IPS": "10.1.2.3,"}, "POD_IPS", `"10.1.2.3," has an empty item`},
		{"POD_IP not an IP", map[string]string{"POD_IP": "300.1.1.1"}, "POD_IP", `"300.1.1.1" is not an IP address`},
		{"CERT_DIR relative", map[string]string{"CERT_DIR": "certs"}, "CERT_DIR", `"certs" is not an absolute path`},
		{"CA_FILE relative", map[string]string{"CA_FILE": "ca.pem"}, "CA_FILE", `"ca.pem" is not an absolute path`},
		{"SIGNER_NAME without path", map[string]string{"SIGNER_NAME": "csr-agent.io"}, "SIGNER_NAME", "domain/path with exactly one /"},
		{"SIGNER_NAME two slashes", map[string]string{"SIGNER_NAME": "csr-agent.io/pod/x"}, "SIGNER_NAME", "exactly one /"},
		{"SIGNER_NAME one-label domain", map[string]string{"SIGNER_NAME": "agent/pod"}, "SIGNER_NAME", "at least two labels"},
		{"SIGNER_NAME bad domain", map[string]string{"SIGNER_NAME": "Agent.io/pod"}, "SIGNER_NAME", `domain label "Agent"`},
		{"SIGNER_NAME bad path", map[string]string{"SIGNER_NAME": "agent.io/Pod"}, "SIGNER_NAME", `path part "Pod"`},
		{"SERVICE_NAMES bad name", map[string]string{"SERVICE_NAMES": "web,1api"}, "SERVICE_NAMES", `"1api" is invalid: a DNS-1035 label`},
		{"SERVICE_NAMES auto and names", map[string]string{"SERVICE_NAMES": "auto,web"}, "SERVICE_NAMES", "auto must be the only value"},
		{"CLUSTER_DOMAIN trailing dot", map[string]string{"CLUSTER_DOMAIN": "cluster.local."}, "CLUSTER_DOMAIN", "ends with a dot"},
		{"CLUSTER_DOMAIN underscore", map[string]string{"CLUSTER_DOMAIN": "my_cluster"}, "CLUSTER_DOMAIN", `"my_cluster" is invalid`},
		{"POD_HOSTNAME alone", map[string]string{"POD_HOSTNAME": "web-0"}, "POD_SUBDOMAIN", "is required when POD_HOSTNAME is set"},
		{"POD_HOSTNAME with dots", map[string]string{"POD_HOSTNAME": "web.0", "POD_SUBDOMAIN": "web"}, "POD_HOSTNAME", "must not contain dots"},
		{"POD_SUBDOMAIN alone", map[string]string{"POD_SUBDOMAIN": "web"}, "POD_HOSTNAME", "is required when POD_SUBDOMAIN is set"},
		{"POD_SUBDOMAIN upper case", map[string]string{"POD_HOSTNAME": "web-0", "POD_SUBDOMAIN": "Web"}, "POD_SUBDOMAIN", `"Web" is invalid`},
		{"DNS_NAMES wildcard", map[string]string{"DNS_NAMES": "*.example.com"}, "DNS_NAMES", `"*.example.com" is a wildcard`},
		{"DNS_NAMES bare star", map[string]string{"DNS_NAMES": "a.example.com,*"}, "DNS_NAMES", `"*" is a wildcard`},
		{"DNS_NAMES trailing dot", map[string]string{"DNS_NAMES": "example.com."}, "DNS_NAMES", "ends with a dot"},
		{"DNS_NAMES upper case", map[string]string{"DNS_NAMES": "Example.com"}, "DNS_NAMES", `"Example.com" is invalid`},
		{"DNS_NAMES empty item", map[string]string{"DNS_NAMES": "a.example.com,,b.example.com"}, "DNS_NAMES", "has an empty item"},
		{"IP_ADDRESSES unspecified", map[string]string{"IP_ADDRESSES": "::"}, "IP_ADDRESSES", ":: is the unspecified address"},
		{"IP_ADDRESSES not an IP", map[string]string{"IP_ADDRESSES": "1.2.3"}, "IP_ADDRESSES", `"1.2.3" is not an IP address`},
		{"SHORT_SERVICE_NAMES not a bool", map[string]string{"SHORT_SERVICE_NAMES": "yes"}, "SHORT_SERVICE_NAMES", `"yes" is not a boolean`},
		{"INCLUDE_POD_IPS not a bool", map[string]string{"INCLUDE_POD_IPS": "maybe"}, "INCLUDE_POD_IPS", `"maybe" is not a boolean`},
		{"COMMON_NAME too long", map[string]string{"COMMON_NAME": strings.Repeat("a", 65)}, "COMMON_NAME", "is longer than 64 characters"},
		{"COMMON_NAME wildcard", map[string]string{"COMMON_NAME": "*.example.com"}, "COMMON_NAME", "is a wildcard"},
		{"COMMON_NAME control character", map[string]string{"COMMON_NAME": "a\nb"}, "COMMON_NAME", "unprintable"},
		{"USAGES unknown", map[string]string{"USAGES": "both"}, "USAGES", `"both" is not server or client`},
		{"USAGES repeated", map[string]string{"USAGES": "server,server"}, "USAGES", `"server" is listed twice`},
		{"KEY_TYPE unknown", map[string]string{"KEY_TYPE": "rsa-1024"}, "KEY_TYPE", `"rsa-1024" is not a known key type`},
		{"CERT_DURATION not a duration", map[string]string{"CERT_DURATION": "1d"}, "CERT_DURATION", `"1d" is not a Go duration`},
		{"CERT_DURATION too long", map[string]string{"CERT_DURATION": "600000h"}, "CERT_DURATION", "is above the maximum"},
		{"CERT_DURATION fractional", map[string]string{"CERT_DURATION": "1h0.5s"}, "CERT_DURATION", "not a whole number of seconds"},
		{"ISSUE_TIMEOUT zero", map[string]string{"ISSUE_TIMEOUT": "0s"}, "ISSUE_TIMEOUT", `"0s" is not above 0`},
		{"ISSUE_TIMEOUT negative", map[string]string{"ISSUE_TIMEOUT": "-1m"}, "ISSUE_TIMEOUT", `"-1m" is not above 0`},
		{"KEY_FILE_MODE not octal", map[string]string{"KEY_FILE_MODE": "0689"}, "KEY_FILE_MODE", `"0689" is not an octal file mode`},
		{"KEY_FILE_MODE group writable", map[string]string{"KEY_FILE_MODE": "0620"}, "KEY_FILE_MODE", "0620 grants 020"},
		{"KEY_FILE_MODE other executable", map[string]string{"KEY_FILE_MODE": "0601"}, "KEY_FILE_MODE", "0601 grants 01"},
		{"KEY_FILE_MODE unreadable", map[string]string{"KEY_FILE_MODE": "0200"}, "KEY_FILE_MODE", "not readable by its owner"},
		{"KEY_FILE_MODE world readable", map[string]string{"KEY_FILE_MODE": "0644"}, "KEY_FILE_MODE", "0644 grants 04"},
		{"KEY_FILE_MODE setuid", map[string]string{"KEY_FILE_MODE": "04600"}, "KEY_FILE_MODE", "bits beyond the permissions"},
		{"CERT_FILE_MODE world writable", map[string]string{"CERT_FILE_MODE": "0666"}, "CERT_FILE_MODE", "0666 grants 022"},
		{"CERT_FILE_MODE unreadable", map[string]string{"CERT_FILE_MODE": "0044"}, "CERT_FILE_MODE", "not readable by its owner"},
		{"DELETE_CSR not a bool", map[string]string{"DELETE_CSR": "yes please"}, "DELETE_CSR", `"yes please" is not a boolean`},
		{"LOG_FORMAT unknown", map[string]string{"LOG_FORMAT": "yaml"}, "LOG_FORMAT", `"yaml" is not a log format`},
		{"LOG_LEVEL unknown", map[string]string{"LOG_LEVEL": "trace"}, "LOG_LEVEL", `"trace" is not a log level`},
		{"LOG_LEVEL upper case", map[string]string{"LOG_LEVEL": "INFO"}, "LOG_LEVEL", `"INFO" is not a log level`},
		{"RENEW_BEFORE negative", map[string]string{"RENEW_BEFORE": "-1h"}, "RENEW_BEFORE", `"-1h" is not above 0`},
		{"RENEW_BEFORE not below CERT_DURATION", map[string]string{"RENEW_BEFORE": "24h"}, "RENEW_BEFORE", `"24h" is not below CERT_DURATION "24h"`},
		{"NEW_KEY_ON_RENEWAL not a bool", map[string]string{"NEW_KEY_ON_RENEWAL": "always"}, "NEW_KEY_ON_RENEWAL", `"always" is not a boolean`},
		{"KEYSTORE_PASSWORD with its file", map[string]string{"KEYSTORE_PASSWORD": "changeit", "KEYSTORE_PASSWORD_FILE": "/p"}, "KEYSTORE_PASSWORD", "cannot both be set"},
		{"KEYSTORE_PASSWORD outside the BMP", map[string]string{"KEYSTORE_PASSWORD": "key\U0001F511"}, "KEYSTORE_PASSWORD", "outside the Basic Multilingual Plane"},
		{"KEYSTORE_PASSWORD_FILE relative", map[string]string{"KEYSTORE_PASSWORD_FILE": "password"}, "KEYSTORE_PASSWORD_FILE", `"password" is not an absolute path`},
		{"NOTIFY_PROCESS a path", map[string]string{"NOTIFY_PROCESS": "/usr/sbin/nginx"}, "NOTIFY_PROCESS", `"/usr/sbin/nginx" is not a process name`},
		{"NOTIFY_SIGNAL unknown", map[string]string{"NOTIFY_SIGNAL": "SIGKILL"}, "NOTIFY_SIGNAL", `"SIGKILL" is not a signal the agent sends`},
		{"NOTIFY_URL not http", map[string]string{"NOTIFY_URL": "ftp://localhost/reload"}, "NOTIFY_URL", "is not an http or https URL"},
		{"NOTIFY_URL without host", map[string]string{"NOTIFY_URL": "http:///reload"}, "NOTIFY_URL", "has no host"},
		{"NOTIFY_COMMAND blank", map[string]string{"NOTIFY_COMMAND": "  "}, "NOTIFY_COMMAND", "names no program"},
		{"HTTP_ADDR without port", map[string]string{"HTTP_ADDR": "9910"}, "HTTP_ADDR", `"9910" is not host:port`},
		{"HTTP_ADDR port out of range", map[string]string{"HTTP_ADDR": ":99100"}, "HTTP_ADDR", `":99100" is not host:port`},
	}
	covered := map[string]bool{
		// Any path is accepted: the agent reads no file while parsing, and
		// client-go reports a missing kubeconfig with its path.
		"KUBECONFIG": true,
	}
	for _, tt := range tests {
		covered[tt.wantVar] = true
		t.Run(tt.name, func(t *testing.T) {
			env := podEnv()
			for k, v := range tt.env {
				if v == "-" {
					delete(env, k)
				} else {
					env[k] = v
				}
			}
			a, err := fromEnv(t, env)
			if a != nil {
				t.Errorf("FromEnv returned a configuration along with %v", err)
			}
			ps := problems(t, err)
			if len(ps) != 1 {
				t.Fatalf("got %d problems, want 1: %v", len(ps), err)
			}
			p := ps[0]
			if p.Var != tt.wantVar || !strings.Contains(p.Msg, tt.wantMsg) {
				t.Errorf("got %q, want a %s problem containing %q", p, tt.wantVar, tt.wantMsg)
			}
			if want := tt.wantVar + ": "; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("message %q does not start with %q", err, want)
			}
			if form := formOf(tt.wantVar); form == "" || !strings.HasSuffix(err.Error(), " ("+form+")") {
				t.Errorf("message %q does not end with the expected form %q", err, form)
			}
		})
	}
	for _, v := range Docs() {
		if !covered[v.Name] {
			t.Errorf("no bad value of %s is tested", v.Name)
		}
	}
}

func TestCertDurationMessageQuotesTheValueAndTheForm(t *testing.T) {
	env := podEnv()
	env["CERT_DURATION"] = "5m"
	_, err := fromEnv(t, env)
	const want = `CERT_DURATION: "5m" is below the minimum 10m (Go duration, e.g. 24h, at least 10m)`
	if err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
}

func TestReportsEveryProblemAtOnce(t *testing.T) {
	_, err := fromEnv(t, map[string]string{
		"POD_NAMESPACE":  "Shop",
		"SERVICE_NAMES":  "",
		"DNS_NAMES":      "*.shop.example.com,ok.example.com,Bad",
		"KEY_TYPE":       "dsa",
		"CERT_DURATION":  "5m",
		"KEY_FILE_MODE":  "0666",
		"POD_HOSTNAME":   "web-0",
		"LOG_LEVEL":      "",
		"ISSUE_TIMEOUT":  "soon",
		"CERT_FILE_MODE": "0644",
	})
	var got []string
	for _, p := range problems(t, err) {
		got = append(got, p.Var)
	}
	// In documentation order, however they were found.
	want := "POD_NAME POD_NAMESPACE SERVICE_NAMES POD_SUBDOMAIN DNS_NAMES DNS_NAMES " +
		"KEY_TYPE CERT_DURATION ISSUE_TIMEOUT KEY_FILE_MODE LOG_LEVEL"
	if strings.Join(got, " ") != want {
		t.Errorf("problems for\n got %v\nwant %s\nerror:\n%v", got, want, err)
	}
}

func TestDecodeFailureIsNotReportedTwice(t *testing.T) {
	// A USAGES that fails to decode leaves the field zero; the "needs a DNS
	// name" rule must not then report USAGES a second time.
	_, err := fromEnv(t, map[string]string{"POD_NAME": "p", "POD_NAMESPACE": "ns", "USAGES": "peer"})
	if ps := problems(t, err); len(ps) != 1 {
		t.Errorf("got %v, want one problem", err)
	}
}
