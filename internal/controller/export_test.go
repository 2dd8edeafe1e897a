package controller

import (
	certificatesv1 "k8s.io/api/certificates/v1"
)

// SetAfterCachedFacts makes f run, in the worker, between the cached read of
// a decision that the caches would approve and its fresh read: the moment a
// decision from the caches alone would be taken. Call it before Run.
func SetAfterCachedFacts(c *Controller, f func(*certificatesv1.CertificateSigningRequest)) {
	c.afterCachedFacts = f
}

// Caches reports whether the controller's caches hold the pod and the
// Service, with at least the given pod labels.
func Caches(c *Controller, namespace, pod, service string, labels map[string]string) bool {
	p, err := c.informer.cachedPodFacts(namespace, pod)
	if err != nil || p == nil {
		return false
	}
	for k, v := range labels {
		if p.Labels[k] != v {
			return false
		}
	}
	_, err = c.informer.svcLister.Services(namespace).Get(service)
	return err == nil
}

// ExtraNamesPolicyWarmup is how long after the extra-names policy was
// created a request must be, for its annotation to be honoured.
const ExtraNamesPolicyWarmup = extraNamesPolicyWarmup

// Retries is how many times the controller has retried the CSR since it
// last finished with it.
func Retries(c *Controller, csr string) int { return c.queue.NumRequeues(csr) }
