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
		if strings.ContainsRune(values, 0) {
			t.Skip("an environment variable cannot hold NUL")
		}
		lines := strings.Split(values, "\n")
		env := make(map[string]string)
		for i, v := range Docs() {
			if mask&(1<<i) != 0 && i < len(lines) {
				env[v.Name] = lines[i]
			}
		}
		a, err := fromEnv(t, env)
		if err == nil {
			if a == nil {
				t.Fatal("FromEnv returned neither a configuration nor an error")
			}
			if err := a.Validate(); err != nil {
				t.Fatalf("FromEnv accepted a configuration Validate rejects: %v", err)
			}
			return
		}
		if a != nil {
			t.Fatalf("FromEnv returned a configuration along with %v", err)
		}
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("error %v does not match ErrInvalid", err)
		}
		for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
			var p *Problem
			if !errors.As(e, &p) || varIndex(p.Var) == len(fields) || !strings.HasPrefix(p.Error(), p.Var+": ") {
				t.Fatalf("%q does not name a known variable", e)
			}
		}
	})
}
