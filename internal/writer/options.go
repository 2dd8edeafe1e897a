package writer

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
	"unicode/utf8"

	"k8s.io/utils/clock"
)

// Default file names and modes.
const (
	DefaultKeyFile      = "tls.key"
	DefaultCertFile     = "tls.crt"
	DefaultCAFile       = "ca.crt"
	DefaultBundleFile   = "tls.pem"
	DefaultKeystoreFile = "keystore.p12"

	// DefaultKeyMode protects key material to the agent's (and a same-UID
	// application's) user; use 0640 with a pod fsGroup to share it with a
	// container running as another user.
	DefaultKeyMode fs.FileMode = 0o600
	// DefaultCertMode is what the kubelet uses for projected files.
	DefaultCertMode fs.FileMode = 0o644
)

// Internal names. They start with ".." so they cannot clash with a visible
// name (validate rejects those) and so "ls" hides them, as in the kubelet.
const (
	dataLink = "..data"
	dataTmp  = "..data_tmp"
	linkTmp  = "..link_tmp"
	genMode  = fs.FileMode(0o755)
)

// ErrOptions is wrapped by every problem New reports.
var ErrOptions = errors.New("invalid writer options")

// Options configures a Writer. Zero values take the defaults above.
type Options struct {
	// Dir is the shared directory to publish into. Required; it must exist
	// when Publish runs (it is the pod's volume mount, never created here).
	Dir string

	// Visible file names: plain names inside Dir, pairwise distinct, not
	// starting with "..".
	KeyFile, CertFile, CAFile, BundleFile, KeystoreFile string

	// KeyMode applies to tls.key, tls.pem and keystore.p12, CertMode to
	// tls.crt and ca.crt. Permission bits only, readable by the owner, not
	// writable by group or other (nor executable, for KeyMode).
	KeyMode, CertMode fs.FileMode

	// KeystorePassword, when non-empty, adds keystore.p12 to every
	// generation. An empty password is treated as "no keystore" because an
	// unset variable easily becomes an empty, non-nil slice.
	KeystorePassword []byte

	// Clock names generations. Defaults to the real clock.
	Clock clock.PassiveClock

	// Rand feeds the PKCS#12 salts. Defaults to crypto/rand.Reader.
	Rand io.Reader
}

// Writer publishes certificate material into one directory. See the package
// documentation for the algorithm and the concurrency rules.
type Writer struct {
	opts Options
	// mu serialises Publish and Recover: both move ..data and remove
	// generations, and two of them interleaving could remove the generation
	// the other just published.
	mu sync.Mutex
}

// New applies defaults to opts, validates them and returns a Writer. All
// problems are reported together, each wrapping ErrOptions.
func New(opts Options) (*Writer, error) {
	opts = withDefaults(opts)
	if err := validate(opts); err != nil {
		return nil, err
	}
	return &Writer{opts: opts}, nil
}

func withDefaults(o Options) Options {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&o.KeyFile, DefaultKeyFile)
	def(&o.CertFile, DefaultCertFile)
	def(&o.CAFile, DefaultCAFile)
	def(&o.BundleFile, DefaultBundleFile)
	def(&o.KeystoreFile, DefaultKeystoreFile)
	if o.KeyMode == 0 {
		o.KeyMode = DefaultKeyMode
	}
	if o.CertMode == 0 {
		o.CertMode = DefaultCertMode
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	// Copy the password so a caller zeroing or reusing its slice cannot
	// change what later generations are encrypted with.
	o.KeystorePassword = append([]byte(nil), o.KeystorePassword...)
	return o
}

func validate(o Options) error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrOptions}, args...)...))
	}
	if o.Dir == "" {
		bad("Dir must be set")
	}
	seen := map[string]string{}
	for _, f := range []struct{ field, name string }{
		{"KeyFile", o.KeyFile}, {"CertFile", o.CertFile}, {"CAFile", o.CAFile},
		{"BundleFile", o.BundleFile}, {"KeystoreFile", o.KeystoreFile},
	} {
		switch {
		case f.name != filepath.Base(f.name) || strings.ContainsAny(f.name, `/\`) || f.name == ".":
			bad("%s %q must be a plain file name without a directory", f.field, f.name)
		case strings.HasPrefix(f.name, ".."):
			bad("%s %q must not start with \"..\" (reserved for %s and generations)", f.field, f.name, dataLink)
		case seen[f.name] != "":
			bad("%s %q is already used by %s", f.field, f.name, seen[f.name])
		default:
			seen[f.name] = f.field
		}
	}
	// The same rules as the agent's KEY_FILE_MODE and CERT_FILE_MODE, so a
	// mode the config accepts is never refused here: group read of the key
	// may be granted deliberately (fsGroup sharing), nothing else.
	for _, m := range []struct {
		field     string
		mode      fs.FileMode
		forbidden fs.FileMode
	}{{"KeyMode", o.KeyMode, 0o037}, {"CertMode", o.CertMode, 0o022}} {
		switch {
		case m.mode&^fs.ModePerm != 0:
			bad("%s %#o must hold permission bits only (e.g. 0640)", m.field, uint32(m.mode))
		case m.mode&0o400 == 0:
			bad("%s %#o must let the owner read the file", m.field, uint32(m.mode))
		case m.mode&m.forbidden != 0:
			bad("%s %#o must not grant %#o", m.field, uint32(m.mode), uint32(m.mode&m.forbidden))
		}
	}
	// PKCS#12 passwords are BMPStrings: UTF-16 without surrogate pairs.
	if len(o.KeystorePassword) > 0 {
		if !utf8.Valid(o.KeystorePassword) {
			bad("KeystorePassword must be valid UTF-8")
		} else if strings.IndexFunc(string(o.KeystorePassword), func(r rune) bool { return r > 0xFFFF }) >= 0 {
			bad("KeystorePassword must not contain characters outside the Basic Multilingual Plane")
		}
	}
	return errors.Join(errs...)
}
