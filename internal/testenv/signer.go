package testenv

import (
	"context"
	"testing"

	"github.com/csr-agent/csr-agent/internal/localcluster"
)

// Verdict is what a test signer does with a pending request.
type Verdict = localcluster.Verdict

const (
	Approve = localcluster.Approve // approve and sign
	Deny    = localcluster.Deny    // set Denied
	Fail    = localcluster.Fail    // approve, then set Failed instead of signing
	Ignore  = localcluster.Ignore  // leave it pending (a person, or nobody, decides)
)

// SignerOptions configure StartSigner.
type SignerOptions = localcluster.SignerOptions

// Signer plays approver and signer for one signer name, so tests of the agent
// do not depend on the project's controller.
type Signer = localcluster.Signer

// StartSigner runs a test signer until the test ends. Requests it cannot
// handle are reported with t.Logf unless opts.Logf is set.
func (e *Env) StartSigner(t testing.TB, opts SignerOptions) *Signer {
	t.Helper()
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	s, err := e.cluster.StartSigner(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}
