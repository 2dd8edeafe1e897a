package config

import (
	"encoding"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// parse reads raw into *dst, one of the types of spec's fields. Its errors
// quote the value; FromEnv adds the variable and the expected form.
func parse(raw string, dst any) error {
	switch p := dst.(type) {
	case *string:
		*p = raw
	case *bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return fmt.Errorf("%q is not a boolean", raw)
		}
		*p = b
	case *int:
		n, err := strconv.Atoi(raw)
		if err != nil {
			return fmt.Errorf("%q is not an integer", raw)
		}
		*p = n
	case *float32:
		f, err := strconv.ParseFloat(raw, 32)
		if err != nil {
			return fmt.Errorf("%q is not a number", raw)
		}
		*p = float32(f)
	case *time.Duration:
		d, err := time.ParseDuration(raw)
		if err != nil {
			return fmt.Errorf("%q is not a Go duration", raw)
		}
		*p = d
	case *fs.FileMode:
		m, err := parseMode(raw)
		if err != nil {
			return err
		}
		*p = m
	case *net.IP: // before TextUnmarshaler: net.IP's keeps zones and mapped forms
		ip, err := parseIP(raw)
		if err != nil {
			return err
		}
		*p = ip
	case *[]net.IP:
		items, err := splitList(raw)
		if err != nil {
			return err
		}
		ips := make([]net.IP, len(items))
		for i, s := range items {
			if ips[i], err = parseIP(s); err != nil {
				return err
			}
		}
		*p = ips
	case *[]string:
		items, err := splitList(raw)
		if err != nil {
			return err
		}
		*p = items
	case encoding.TextUnmarshaler:
		return p.UnmarshalText([]byte(raw))
	default:
		// Unreachable while every spec field has a case above; a test
		// decodes every field's default to keep it so.
		return fmt.Errorf("cannot decode into %T", dst)
	}
	return nil
}

// parseMode reads octal permissions. The leading 0 is optional: "600" means
// 0600, as it does to chmod, not decimal 600.
func parseMode(raw string) (fs.FileMode, error) {
	s := strings.TrimPrefix(strings.TrimPrefix(raw, "0o"), "0O")
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || s == "" {
		return 0, fmt.Errorf("%q is not an octal file mode", raw)
	}
	return fs.FileMode(m), nil
}

// parseIP accepts IPv4 and IPv6 addresses without zone. IPv4-mapped IPv6
// addresses are unmapped, so that ::ffff:10.0.0.1 and 10.0.0.1 are one SAN.
func parseIP(raw string) (net.IP, error) {
	addr, err := netip.ParseAddr(raw)
	if err != nil {
		return nil, fmt.Errorf("%q is not an IP address", raw)
	}
	if addr.Zone() != "" {
		// A zone (fe80::1%eth0) cannot be put in a certificate.
		return nil, fmt.Errorf("%q has a zone", raw)
	}
	return net.IP(addr.Unmap().AsSlice()), nil
}

// splitList splits a comma-separated list, trimming spaces around items. An
// empty item ("a,,b", "a,") is an error rather than skipped: it usually means
// a template variable rendered nothing.
func splitList(raw string) ([]string, error) {
	if raw == "" {
		return nil, nil
	}
	items := strings.Split(raw, ",")
	for i, s := range items {
		items[i] = strings.TrimSpace(s)
		if items[i] == "" {
			return nil, fmt.Errorf("%q has an empty item", raw)
		}
	}
	return items, nil
}
