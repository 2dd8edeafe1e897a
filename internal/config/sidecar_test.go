package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeystorePasswordFromTheEnvironment(t *testing.T) {
	env := podEnv()
	env["KEYSTORE_PASSWORD"] = "changeit"
	a, err := fromEnv(t, env)
	if err != nil {
		t.Fatal(err)
	}
	got, err := a.ReadKeystorePassword()
	if err != nil || string(got) != "changeit" {
		t.Errorf("ReadKeystorePassword() = %q, %v; want changeit", got, err)
	}
}

func TestKeystorePasswordFileDropsOneTrailingNewline(t *testing.T) {
	for content, want := range map[string]string{
		"changeit\n":   "changeit",
		"changeit\r\n": "changeit",
		"changeit":     "changeit",
		" spaced \n\n": " spaced \n",
	} {
		path := filepath.Join(t.TempDir(), "password")
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := (&Agent{KeystorePasswordFile: path}).ReadKeystorePassword()
		if err != nil || string(got) != want {
			t.Errorf("file %q: got %q, %v; want %q", content, got, err, want)
		}
	}
}

func TestKeystorePasswordFileProblemsNameTheVariable(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		filepath.Join(dir, "missing"): "no such file",
		empty:                         "is empty",
	} {
		_, err := (&Agent{KeystorePasswordFile: path}).ReadKeystorePassword()
		var p *Problem
		if !errors.As(err, &p) || p.Var != "KEYSTORE_PASSWORD_FILE" || !strings.Contains(p.Msg, want) || !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want a KEYSTORE_PASSWORD_FILE problem saying %q", path, err, want)
		}
	}
}

func TestNoKeystoreWithoutPassword(t *testing.T) {
	got, err := (&Agent{}).ReadKeystorePassword()
	if got != nil || err != nil {
		t.Errorf("got %q, %v; want no password", got, err)
	}
}

func TestHTTPAddrEmptyTurnsTheEndpointOff(t *testing.T) {
	env := podEnv()
	env["HTTP_ADDR"] = ""
	a, err := fromEnv(t, env)
	if err != nil || a.HTTPAddr != "" {
		t.Errorf("HTTP_ADDR=\"\": got %q, %v; want off", a.HTTPAddr, err)
	}
}

func TestSignalNamesWithOrWithoutPrefix(t *testing.T) {
	for _, name := range []string{"HUP", "SIGHUP"} {
		var s Signal
		if err := s.UnmarshalText([]byte(name)); err != nil || s.String() != "SIGHUP" {
			t.Errorf("%s: got %v, %v", name, s, err)
		}
	}
}

func TestKeystorePasswordIsNeverQuoted(t *testing.T) {
	env := podEnv()
	env["KEYSTORE_PASSWORD"] = "s3cret\U0001F511"
	_, err := fromEnv(t, env)
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("got %v; want a problem that does not quote the password", err)
	}
}
