package agent

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/csr-agent/csr-agent/internal/config"
	"github.com/csr-agent/csr-agent/internal/kube"
)

func TestIdentityWithAutoNamesOnlyServicesSelectingThePod(t *testing.T) {
	api := &fakeAPI{
		pod: pod(map[string]string{"app": "web", "tier": "front"}),
		services: []kube.Service{
			service("web", map[string]string{"app": "web"}),
			service("front", map[string]string{"app": "web", "tier": "front"}),
			service("db", map[string]string{"app": "db"}),
			service("back", map[string]string{"app": "web", "tier": "back"}),
			service("manual", nil),                // endpoints managed by hand
			service("empty", map[string]string{}), // selects nothing, unlike a label selector
			service("more", map[string]string{"app": "web", "zone": "a"}),
		},
	}
	a := newTestAgent(t, api, nil)
	a.cfg.ServiceNames = config.Services{Auto: true}
	id, err := a.Identity(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, svc := range []string{"web", "front"} {
		for _, name := range []string{svc + ".shop.svc.cluster.local", svc + ".shop.svc"} {
			if !slices.Contains(id.DNSNames, name) {
				t.Errorf("DNS names %v lack %s", id.DNSNames, name)
			}
		}
	}
	for _, svc := range []string{"db", "back", "manual", "empty", "more"} {
		if slices.ContainsFunc(id.DNSNames, func(n string) bool { return strings.HasPrefix(n, svc+".") }) {
			t.Errorf("DNS names %v include Service %s, which does not select the pod", id.DNSNames, svc)
		}
	}
	if id.CommonName != "web.shop.svc.cluster.local" {
		t.Errorf("CN = %q, want the first Service's full name", id.CommonName)
	}
}

func TestIdentityWithListedServicesDoesNotReadTheAPI(t *testing.T) {
	for _, tc := range []struct {
		short bool
		want  []string
	}{
		{false, []string{"web.shop.svc.cluster.local", "web.shop.svc"}},
		// SHORT_SERVICE_NAMES=true asks for the forms outside the cluster's
		// domain too.
		{true, []string{"web.shop.svc.cluster.local", "web.shop.svc", "web.shop", "web"}},
	} {
		api := &fakeAPI{}
		a := newTestAgent(t, api, nil)
		a.cfg.ShortServiceNames = tc.short
		id, err := a.Identity(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(id.DNSNames, tc.want) {
			t.Errorf("SHORT_SERVICE_NAMES=%t: DNS names = %v, want %v", tc.short, id.DNSNames, tc.want)
		}
		if api.podCalls+api.serviceCalls != 0 {
			t.Errorf("read the pod %d and the Services %d times, want never", api.podCalls, api.serviceCalls)
		}
	}
}

func TestIdentityWithAutoReportsWhatItCouldNotRead(t *testing.T) {
	for _, tc := range []struct {
		name string
		api  *fakeAPI
		want string
	}{
		{"pod", &fakeAPI{podErr: errors.New("pods forbidden")}, "reading pod shop/web-0 for SERVICE_NAMES=auto: pods forbidden"},
		{"services", &fakeAPI{pod: pod(nil), servicesErr: errors.New("services forbidden")}, "listing services of shop for SERVICE_NAMES=auto: services forbidden"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newTestAgent(t, tc.api, nil)
			a.cfg.ServiceNames = config.Services{Auto: true}
			if _, err := a.Identity(t.Context()); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want it to say %q", err, tc.want)
			}
		})
	}
}

func TestIdentityWithAutoAndNoMatchingServiceFailsForAServingCertificate(t *testing.T) {
	api := &fakeAPI{pod: pod(map[string]string{"app": "web"}), services: []kube.Service{service("db", map[string]string{"app": "db"})}}
	a := newTestAgent(t, api, nil)
	a.cfg.ServiceNames = config.Services{Auto: true}
	if id, err := a.Identity(t.Context()); err == nil {
		t.Errorf("Identity = %+v, want an error: a serving certificate would name nothing", id)
	}
}
