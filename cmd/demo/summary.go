package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// summarize prints what happened: the requests and their approvals, the
// certificate now served, the files, the renewal and the handshakes.
func summarize(u *ui, requests []request, first, renewed *handshake, certDir string) {
	u.step("Summary")
	for i, r := range requests {
		label := "CSR"
		if i > 0 {
			label = "renewal CSR"
		}
		u.info("%-15s %s", label, r.name)
		u.info("%-15s requested by %s with a token bound to pod %q", "", r.requester, r.pod)
		u.info("%-15s %s: %s (%s)", "", r.decision, r.reason, r.message)
	}
	leaf := renewed.leaf
	u.info("%-15s %s", "subject", leaf.Subject)
	u.info("%-15s %s", "SANs", sans(leaf))
	u.info("%-15s %s", "issuer", leaf.Issuer)
	u.info("%-15s %s to %s (%s, of which %s backdated against clock skew)", "validity",
		leaf.NotBefore.Format(time.TimeOnly), leaf.NotAfter.Format(time.TimeOnly),
		leaf.NotAfter.Sub(leaf.NotBefore), leaf.NotAfter.Sub(leaf.NotBefore)-certDuration)
	u.info("%-15s %s, usages %s", "key", keyText(leaf), extUsages(leaf))
	u.info("%-15s %s", "files", certDir)
	for _, line := range listFiles(certDir) {
		u.info("%-15s   %s", "", line)
	}
	sameKey := false
	if k, ok := first.leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); ok {
		sameKey = k.Equal(renewed.leaf.PublicKey)
	}
	u.info("%-15s serial %s replaced by %s, %s after the first was issued; new key: %t",
		"renewal seen", serial(first.leaf), serial(renewed.leaf),
		renewed.leaf.NotBefore.Sub(first.leaf.NotBefore).Round(100*time.Millisecond), !sameKey)
	u.info("%-15s %d HTTPS requests to %s, each verified against ca.crt and the name (%s)",
		"TLS", 2, serviceDNSName, tls.VersionName(renewed.version))
	u.info("%-15s %s", "chain", chainText(renewed.chain))
}

func sans(c *x509.Certificate) string {
	var out []string
	for _, d := range c.DNSNames {
		out = append(out, "DNS:"+d)
	}
	for _, ip := range c.IPAddresses {
		out = append(out, "IP:"+ip.String())
	}
	return wrap(strings.Join(out, ", "), 90, strings.Repeat(" ", 20))
}

func keyText(c *x509.Certificate) string {
	if k, ok := c.PublicKey.(*ecdsa.PublicKey); ok {
		return "ECDSA " + k.Curve.Params().Name
	}
	return c.PublicKeyAlgorithm.String()
}

func extUsages(c *x509.Certificate) string {
	names := map[x509.ExtKeyUsage]string{x509.ExtKeyUsageServerAuth: "server auth", x509.ExtKeyUsageClientAuth: "client auth"}
	var out []string
	for _, u := range c.ExtKeyUsage {
		if n, ok := names[u]; ok {
			out = append(out, n)
		} else {
			out = append(out, fmt.Sprint(u))
		}
	}
	return strings.Join(out, ", ")
}

func chainText(chain []*x509.Certificate) string {
	var out []string
	for _, c := range chain {
		out = append(out, c.Subject.String())
	}
	return strings.Join(out, " <- ")
}

// listFiles describes the agent's directory: the visible names, which are
// symlinks through ..data, with the mode of what they point to.
func listFiles(dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return []string{err.Error()}
	}
	var out []string
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		line := e.Name()
		if target, err := os.Readlink(p); err == nil {
			line += " -> " + target
		}
		if fi, err := os.Stat(p); err == nil {
			kind := ""
			if fi.IsDir() {
				kind = " (directory)"
			}
			line = fmt.Sprintf("%-10v %s%s", fi.Mode().Perm()|fi.Mode()&fs.ModeDir, line, kind)
		}
		out = append(out, line)
	}
	return out
}

func parseCerts(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return out, nil
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
}

// wrap breaks s after commas so that lines stay near width, indenting the
// continuation lines.
func wrap(s string, width int, indent string) string {
	var b strings.Builder
	line := 0
	for i, part := range strings.SplitAfter(s, ", ") {
		if i > 0 && line+len(part) > width {
			trimmed := strings.TrimRight(b.String(), " ")
			b.Reset()
			b.WriteString(trimmed + "\n" + indent)
			line = 0
		}
		b.WriteString(part)
		line += len(part)
	}
	return b.String()
}
