package agent

import (
	"context"
	"fmt"

	"k8s.io/klog/v2"

	"github.com/csr-agent/csr-agent/internal/identity"
)

// Identity derives the names the certificate should carry now. With
// SERVICE_NAMES=auto it reads the pod's labels and the Services of its
// namespace, so a renewal picks up Services added or removed since.
func (a *Agent) Identity(ctx context.Context) (identity.Identity, error) {
	services := a.cfg.ServiceNames.Names
	if a.cfg.ServiceNames.Auto {
		var err error
		if services, err = a.selectingServices(ctx); err != nil {
			return identity.Identity{}, err
		}
		klog.FromContext(ctx).V(1).Info("Discovered Services selecting this pod", "services", services)
	}
	id, err := identity.Derive(identity.Input{
		PodName:           a.cfg.PodName,
		Namespace:         a.cfg.PodNamespace,
		ClusterDomain:     a.cfg.ClusterDomain,
		ServiceNames:      services,
		ShortServiceNames: a.cfg.ShortServiceNames,
		Hostname:          a.cfg.PodHostname,
		Subdomain:         a.cfg.PodSubdomain,
		DNSNames:          a.cfg.DNSNames,
		IPs:               a.cfg.IPAddresses,
		PodIPs:            a.cfg.PodIPs,
		IncludePodIPs:     a.cfg.IncludePodIPs,
		Serving:           a.cfg.Usages.Server(),
		CommonName:        a.cfg.CommonName,
	})
	if err != nil {
		return identity.Identity{}, fmt.Errorf("deriving certificate names: %w", err)
	}
	return id, nil
}

func (a *Agent) selectingServices(ctx context.Context) ([]string, error) {
	pod, err := a.api.GetPod(ctx, a.cfg.PodNamespace, a.cfg.PodName)
	if err != nil {
		return nil, fmt.Errorf("reading pod %s/%s for SERVICE_NAMES=auto: %w", a.cfg.PodNamespace, a.cfg.PodName, err)
	}
	list, err := a.api.ListServices(ctx, a.cfg.PodNamespace)
	if err != nil {
		return nil, fmt.Errorf("listing services of %s for SERVICE_NAMES=auto: %w", a.cfg.PodNamespace, err)
	}
	var names []string
	for _, svc := range list {
		if identity.Selects(svc.Spec.Selector, pod.Metadata.Labels) {
			names = append(names, svc.Metadata.Name)
		}
	}
	return names, nil
}
