package config

import (
	"errors"
	"strings"
	"testing"
)

// FuzzFromEnv sets variable i to the i-th line of values when bit i of mask
// is set. Whatever the values, FromEnv returns either a valid configuration
// or ErrInvalid problems that each name a known variable.
func FuzzFromEnv(f *testing.F) {
	seed := []string{
		"web-0", "shop", "0f8e6a3c-1b2d-4e5f-8a9b-0c1d2e3f4a5b", "10.1.2.3,fd00::3", "10.1.2.3", "/certs",
		"example.com/pod", "web,api", "cluster.local", "web-0", "web", "a.example.com", "192.0.2.1", "true",
		"shop", "server,client", "rsa-2048", "1h", "1m", "0640", "0644", "false", "text", "debug", "/kubeconfig",
	}
	f.Add(^uint64(0), strings.Join(seed, "\n"))
	f.Add(uint64(0b11), "web-0\nshop")
	f.Add(uint64(0b1000011), "p\nns\n\n\n\n\nauto")
	f.Add(uint64(1<<15|0b11), "p\nns\n\n\n\n\n\n\n\n\n\n\n\n\n\nclient")
	f.Add(^uint64(0), "\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n")
	f.Add(uint64(0b1111), "*\n*\n*\n::ffff:0.0.0.0,fe80::1%lo")
	// Not parallel: fromEnv sets the process environment.
	f.Fuzz(func(t *testing.T, mask uint64, values string) {
		fuzzProgram(t, fields, mask, values, func() (validator, error) {
			a, err := FromEnv()
			if a == nil { // not a typed nil in the interface
				return nil, err
			}
			return a, err
		})
	})
}

// FuzzControllerFromEnv is FuzzFromEnv for the controller's variables.
func FuzzControllerFromEnv(f *testing.F) {
	seed := []string{
		"example.com/pod", "cluster.local", "1h", "example.org", "pki", "ca", "true", "/ca", "example.com:pod:x",
		"true", "ops", "lease", "c-0", "15s", "10s", "2s", "8", "100", "200", ":9090", ":9091", "text", "debug", "/kc",
	}
	f.Add(^uint64(0), strings.Join(seed, "\n"))
	f.Add(uint64(0), "")
	f.Add(uint64(1<<8|1), "a/b\n\n\n\n\n\n\n\n\na:b:c")
	f.Add(uint64(0b111<<13), "1s\n1s\n1s")
	f.Add(^uint64(0), "\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n")
	f.Fuzz(func(t *testing.T, mask uint64, values string) {
		fuzzProgram(t, controllerFields, mask, values, func() (validator, error) {
			c, err := ControllerFromEnv()
			if c == nil {
				return nil, err
			}
			return c, err
		})
	})
}

type validator interface{ Validate() error }

// fuzzProgram sets variable i of vs to the i-th line of values when bit i of
// mask is set. Whatever the values, read returns either a configuration that
// validates or ErrInvalid problems that each name a variable of vs.
func fuzzProgram(t *testing.T, vs varSet, mask uint64, values string, read func() (validator, error)) {
	if strings.ContainsRune(values, 0) {
		t.Skip("an environment variable cannot hold NUL")
	}
	lines := strings.Split(values, "\n")
	env := make(map[string]string)
	for i, v := range vs.docs() {
		if mask&(1<<i) != 0 && i < len(lines) {
			env[v.Name] = lines[i]
		}
	}
	setEnv(t, vs, env)
	cfg, err := read()
	if err == nil {
		if cfg == nil {
			t.Fatal("no configuration and no error")
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("accepted a configuration Validate rejects: %v", err)
		}
		return
	}
	if cfg != nil {
		t.Fatalf("returned a configuration along with %v", err)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("error %v does not match ErrInvalid", err)
	}
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var p *Problem
		if !errors.As(e, &p) || vs.index(p.Var) == len(vs) || !strings.HasPrefix(p.Error(), p.Var+": ") {
			t.Fatalf("%q does not name a known variable", e)
		}
	}
}
