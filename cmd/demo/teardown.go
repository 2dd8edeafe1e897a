package main

import "errors"

// teardown stops what the demo started, last started first, and reports
// each step.
type teardown struct {
	steps []teardownStep
}

type teardownStep struct {
	what string
	do   func() error
}

func (t *teardown) add(what string, do func() error) {
	t.steps = append(t.steps, teardownStep{what, do})
}

func (t *teardown) run(u *ui) error {
	if len(t.steps) == 0 {
		return nil
	}
	u.step("Tearing down")
	var errs []error
	for i := len(t.steps) - 1; i >= 0; i-- {
		s := t.steps[i]
		if err := s.do(); err != nil {
			u.info("FAILED: %s: %v", s.what, err)
			errs = append(errs, err)
			continue
		}
		u.info("%s", s.what)
	}
	return errors.Join(errs...)
}
