package controller_test

import (
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/csr-agent/csr-agent/internal/testenv"
)

func TestBurstAdHoc(t *testing.T) {
	if os.Getenv("CSR_AGENT_BURST") == "" {
		t.Skip("ad hoc")
	}
	testVerbosity = 0
	s := newSetup(t)
	issued := watchIssuance(t, s)
	ns := s.env.NewNamespace(t)
	createService(t, s.env, ns, service{name: "web"}, web)
	const pods, per = 10, 100
	var wg sync.WaitGroup
	r := dns("web." + ns + ".svc")
	raw := request{raw: r.pem(t)}
	for i := range pods {
		pod := s.env.NewPod(t, testenv.PodOptions{Namespace: ns, Labels: web})
		cfg := rest.CopyConfig(pod.Config)
		cfg.QPS, cfg.Burst = 10000, 10000
		client := must(kubernetes.NewForConfig(cfg))
		_ = i
		wg.Go(func() {
			for range per {
				if _, err := createCSR(t, client, s.signer, raw); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if q := os.Getenv("CSR_AGENT_BURST_QPS"); q != "" {
		n, _ := strconv.Atoi(q)
		s.userConfig.QPS, s.userConfig.Burst = float32(n), 2*n
		s.user = must(kubernetes.NewForConfig(s.userConfig))
	}
	start := time.Now()
	w, _ := strconv.Atoi(os.Getenv("CSR_AGENT_BURST_WORKERS"))
	s.start(t, startOptions{createCA: true, workers: w})
	issued.waitAtLeast(t, pods*per)
	t.Logf("%d certificates issued in %s after the controller started", pods*per, time.Since(start))
}
