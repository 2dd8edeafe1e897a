package issue

import (
	"errors"
	"fmt"
)

// Outcomes of a request that did not produce a certificate. Each is returned
// inside a *RequestError naming the CSR; test with errors.Is.
var (
	// ErrDenied: an approver (or a person) denied the request.
	ErrDenied = errors.New("certificate request denied")
	// ErrFailed: the request was approved but the signer could not sign it.
	ErrFailed = errors.New("certificate request failed")
	// ErrDeleted: the CSR was deleted (or replaced) while the agent waited.
	ErrDeleted = errors.New("certificate request deleted while waiting")
	// ErrTimeout: nobody approved and signed the request in time.
	ErrTimeout = errors.New("timed out waiting for the certificate")
)

// ReasonWatchRefused is the Reason of an ErrTimeout during which the API
// server refused to let the agent watch its request.
const ReasonWatchRefused = "WatchRefused"

// RequestError tells a person which CSR ended how, and why.
type RequestError struct {
	Err     error // one of the sentinels above
	CSR     string
	Signer  string
	Reason  string // the condition's machine reason, if any
	Message string // the condition's human message, if any
	// Hint is what a person can look at about a request that timed out;
	// default: Hint with no pod.
	Hint string
}

func (e *RequestError) Error() string {
	msg := fmt.Sprintf("%v: csr %s", e.Err, e.CSR)
	if e.Reason != "" || e.Message != "" {
		msg += fmt.Sprintf(": %s: %s", e.Reason, e.Message)
	}
	switch {
	case errors.Is(e.Err, ErrTimeout) && e.Reason == ReasonWatchRefused:
		msg += " (the API server did not let the agent watch its request: does its role grant watch on certificatesigningrequests?)"
	case errors.Is(e.Err, ErrTimeout):
		hint := e.Hint
		if hint == "" {
			hint = Hint(e.Signer, e.CSR, "", "")
		}
		msg += " (" + hint + ")"
	case errors.Is(e.Err, ErrDenied):
		msg += " (see `kubectl describe csr " + e.CSR + "` and the events of this pod)"
	}
	return msg
}

func (e *RequestError) Unwrap() error { return e.Err }
