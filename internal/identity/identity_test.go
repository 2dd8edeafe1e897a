package identity

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
)

func ips(s ...string) []net.IP {
	var out []net.IP
	for _, v := range s {
		out = append(out, net.ParseIP(v))
	}
	return out
}

// pod is a serving pod in namespace shop with one IPv4 and one IPv6 address.
func pod() Input {
	return Input{
		PodName:       "web-0",
		Namespace:     "shop",
		ClusterDomain: "cluster.local",
		PodIPs:        ips("10.1.2.3", "fd00::3"),
		IncludePodIPs: true,
		Serving:       true,
	}
}

func TestDerive(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Input)
		cn     string
		dns    string // space-separated
		ips    string // space-separated
	}{
		{
			name:   "pod IPs only",
			modify: func(*Input) {},
			cn:     "10-1-2-3.shop.pod.cluster.local",
			dns:    "10-1-2-3.shop.pod.cluster.local",
			ips:    "10.1.2.3 fd00::3",
		},
		{
			name:   "services, most qualified first, only the cluster's forms by default",
			modify: func(in *Input) { in.ServiceNames = []string{"web", "api"}; in.IncludePodIPs = false },
			cn:     "web.shop.svc.cluster.local",
			dns:    "web.shop.svc.cluster.local web.shop.svc api.shop.svc.cluster.local api.shop.svc",
		},
		{
			name: "short service names only when asked for",
			modify: func(in *Input) {
				in.ServiceNames = []string{"web", "api"}
				in.ShortServiceNames = true
				in.IncludePodIPs = false
			},
			cn: "web.shop.svc.cluster.local",
			dns: "web.shop.svc.cluster.local web.shop.svc web.shop web " +
				"api.shop.svc.cluster.local api.shop.svc api.shop api",
		},
		{
			// A namespace named like a top-level domain must not turn a
			// Service into a public name.
			name:   "a namespace named com gives no google.com by default",
			modify: func(in *Input) { in.Namespace = "com"; in.ServiceNames = []string{"google"}; in.IncludePodIPs = false },
			cn:     "google.com.svc.cluster.local",
			dns:    "google.com.svc.cluster.local google.com.svc",
		},
		{
			name: "extra names first, then services, headless, pod DNS",
			modify: func(in *Input) {
				in.DNSNames = []string{"shop.example.com"}
				in.IPs = ips("192.0.2.1")
				in.ServiceNames = []string{"web"}
				in.Hostname, in.Subdomain = "web-0", "web-headless"
				in.ClusterDomain = "example.local"
			},
			cn: "shop.example.com",
			dns: "shop.example.com web.shop.svc.example.local web.shop.svc " +
				"web-0.web-headless.shop.svc.example.local 10-1-2-3.shop.pod.example.local",
			ips: "192.0.2.1 10.1.2.3 fd00::3",
		},
		{
			name: "duplicates dropped, IPv4-mapped addresses unmapped",
			modify: func(in *Input) {
				in.DNSNames = []string{"web.shop.svc", "a.example.com", "a.example.com"}
				in.ServiceNames = []string{"web", "web"}
				in.IPs = ips("::ffff:10.1.2.3", "192.0.2.1", "192.0.2.1")
				in.IncludePodIPs = true
			},
			cn: "web.shop.svc",
			dns: "web.shop.svc a.example.com web.shop.svc.cluster.local " +
				"10-1-2-3.shop.pod.cluster.local",
			ips: "10.1.2.3 192.0.2.1 fd00::3",
		},
		{
			name:   "IPv6 pod IPs have no pod DNS name",
			modify: func(in *Input) { in.PodIPs = ips("fd00::3", "2001:db8::1") },
			cn:     "",
			ips:    "fd00::3 2001:db8::1",
		},
		{
			name:   "pod IPs turned off",
			modify: func(in *Input) { in.IncludePodIPs = false; in.IPs = ips("192.0.2.1") },
			cn:     "",
			ips:    "192.0.2.1",
		},
		{
			name:   "client certificates carry no pod IPs",
			modify: func(in *Input) { in.Serving = false; in.CommonName = "reporter" },
			cn:     "reporter",
		},
		{
			name:   "client certificates carry configured names",
			modify: func(in *Input) { in.Serving = false; in.ServiceNames = []string{"web"} },
			cn:     "web.shop.svc.cluster.local",
			dns:    "web.shop.svc.cluster.local web.shop.svc",
		},
		{
			name:   "common name given",
			modify: func(in *Input) { in.CommonName = "shop web"; in.IncludePodIPs = false; in.IPs = ips("192.0.2.1") },
			cn:     "shop web",
			ips:    "192.0.2.1",
		},
		{
			name: "common name skips names too long for a CN",
			modify: func(in *Input) {
				in.ServiceNames = []string{"a-service-name-long-enough"}
				in.Namespace = "a-namespace-name-long-enough"
				in.IncludePodIPs = false
			},
			cn: "a-service-name-long-enough.a-namespace-name-long-enough.svc",
			dns: "a-service-name-long-enough.a-namespace-name-long-enough.svc.cluster.local " +
				"a-service-name-long-enough.a-namespace-name-long-enough.svc",
		},
		{
			name:   "no common name rather than a truncated one",
			modify: func(in *Input) { in.PodName = strings.Repeat("p", 65); in.PodIPs = ips("fd00::3") },
			ips:    "fd00::3",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := pod()
			tt.modify(&in)
			id, err := Derive(in)
			if err != nil {
				t.Fatal(err)
			}
			if id.CommonName != tt.cn {
				t.Errorf("CN = %q, want %q", id.CommonName, tt.cn)
			}
			if got := strings.Join(id.DNSNames, " "); got != tt.dns {
				t.Errorf("DNS names:\n got %s\nwant %s", got, tt.dns)
			}
			if got := strings.Trim(fmt.Sprint(id.IPs), "[]"); got != tt.ips {
				t.Errorf("IPs = %s, want %s", got, tt.ips)
			}
			for _, ip := range id.IPs {
				if ip.To4() != nil && len(ip) != net.IPv4len {
					t.Errorf("IPv4 %v is not in its 4-byte form", ip)
				}
			}
		})
	}
}

func TestDeriveRejects(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Input)
		want   error
		msg    string
	}{
		{"bad namespace", func(in *Input) { in.Namespace = "Shop" }, ErrInvalid, `namespace "Shop"`},
		{"bad cluster domain", func(in *Input) { in.ClusterDomain = "" }, ErrInvalid, `cluster domain ""`},
		{"bad service name", func(in *Input) { in.ServiceNames = []string{"web", "9lives"} }, ErrInvalid, `service name "9lives"`},
		{"wildcard DNS name", func(in *Input) { in.DNSNames = []string{"*.example.com"} }, ErrInvalid, "wildcards are not issued"},
		{"wildcard CN", func(in *Input) { in.CommonName = "*" }, ErrInvalid, "wildcards are not issued"},
		{"CN too long", func(in *Input) { in.CommonName = strings.Repeat("c", 65) }, ErrInvalid, "longer than 64"},
		{"hostname alone", func(in *Input) { in.Hostname = "web-0" }, ErrInvalid, "must be set together"},
		{"bad subdomain", func(in *Input) { in.Hostname, in.Subdomain = "web-0", "a.b" }, ErrInvalid, `subdomain "a.b"`},
		{"unspecified IP", func(in *Input) { in.IPs = ips("::ffff:0.0.0.0") }, ErrInvalid, "names no host"},
		{"malformed IP", func(in *Input) { in.PodIPs = []net.IP{{1, 2, 3}} }, ErrInvalid, "names no host"},
		{
			name: "derived name too long",
			modify: func(in *Input) {
				// 250 characters: a valid domain, too long once prefixed.
				in.ClusterDomain = strings.Repeat(strings.Repeat("d", 63)+".", 3) + strings.Repeat("d", 58)
				in.ServiceNames = []string{"web"}
			},
			want: ErrInvalid, msg: "must be no more than 253 characters",
		},
		{"serving with nothing", func(in *Input) { in.IncludePodIPs = false }, ErrEmpty, "serving certificate"},
		{"client with nothing", func(in *Input) { in.Serving = false; in.PodName = "" }, ErrEmpty, "no common name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := pod()
			tt.modify(&in)
			id, err := Derive(in)
			if !errors.Is(err, tt.want) || !strings.Contains(fmt.Sprint(err), tt.msg) {
				t.Errorf("got %v, want %v containing %q", err, tt.want, tt.msg)
			}
			if id.CommonName != "" || id.DNSNames != nil || id.IPs != nil {
				t.Errorf("got %+v along with the error", id)
			}
		})
	}
}

func TestDeriveReportsEveryBadInput(t *testing.T) {
	in := pod()
	in.Namespace, in.ServiceNames, in.DNSNames = "Shop", []string{"Web"}, []string{"*"}
	_, err := Derive(in)
	if n := len(err.(interface{ Unwrap() []error }).Unwrap()); n != 3 {
		t.Errorf("got %d errors, want 3: %v", n, err)
	}
}

func TestSelects(t *testing.T) {
	labels := map[string]string{"app": "web", "tier": "front", "empty": ""}
	tests := []struct {
		name     string
		selector map[string]string
		want     bool
	}{
		{"nil selector selects nothing", nil, false},
		{"empty selector selects nothing", map[string]string{}, false},
		{"subset matches", map[string]string{"app": "web"}, true},
		{"all labels match", map[string]string{"app": "web", "tier": "front"}, true},
		{"one value differs", map[string]string{"app": "web", "tier": "back"}, false},
		{"missing key", map[string]string{"app": "web", "zone": "a"}, false},
		{"empty value matches a present empty label", map[string]string{"empty": ""}, true},
		{"empty value does not match an absent label", map[string]string{"absent": ""}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Selects(tt.selector, labels); got != tt.want {
				t.Errorf("Selects(%v) = %v, want %v", tt.selector, got, tt.want)
			}
		})
	}
	if Selects(map[string]string{"app": "web"}, nil) {
		t.Error("a selector selected a pod without labels")
	}
}
