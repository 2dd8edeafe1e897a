package config

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"
)

// ErrInvalid is matched (errors.Is) by every error FromEnv and Validate
// return, so main can map a bad configuration to exit code 2.
var ErrInvalid = errors.New("invalid configuration")

// Problem is one thing wrong with one variable. FromEnv and Validate return
// all problems joined with errors.Join; errors.As finds each of them.
type Problem struct {
	Var  string // the variable, e.g. "CERT_DURATION"
	Msg  string // what is wrong, quoting the value
	Form string // the expected form, from the variable's form tag
}

func (p *Problem) Error() string {
	if p.Form == "" {
		return p.Var + ": " + p.Msg
	}
	return p.Var + ": " + p.Msg + " (" + p.Form + ")"
}

// Is makes errors.Is(err, ErrInvalid) true for any Problem.
func (p *Problem) Is(target error) bool { return target == ErrInvalid }

// Agent is the agent's configuration, one typed field per variable. The
// variables themselves (name, default, form, description) are declared once,
// in the struct tags of spec, which FromEnv hands to envconfig.Process; a test
// keeps the two structs field for field alike.
type Agent struct {
	PodName           string        // POD_NAME
	PodNamespace      string        // POD_NAMESPACE
	PodUID            string        // POD_UID
	PodIPs            []net.IP      // POD_IPS, else POD_IP
	PodIP             net.IP        // POD_IP
	CertDir           string        // CERT_DIR
	SignerName        string        // SIGNER_NAME
	ServiceNames      Services      // SERVICE_NAMES
	ShortServiceNames bool          // SHORT_SERVICE_NAMES
	ClusterDomain     string        // CLUSTER_DOMAIN
	PodHostname       string        // POD_HOSTNAME
	PodSubdomain      string        // POD_SUBDOMAIN
	DNSNames          []string      // DNS_NAMES
	IPAddresses       []net.IP      // IP_ADDRESSES
	IncludePodIPs     bool          // INCLUDE_POD_IPS
	CommonName        string        // COMMON_NAME
	Usages            Usages        // USAGES
	KeyType           KeyType       // KEY_TYPE
	CertDuration      time.Duration // CERT_DURATION
	IssueTimeout      time.Duration // ISSUE_TIMEOUT
	KeyFileMode       fs.FileMode   // KEY_FILE_MODE
	CertFileMode      fs.FileMode   // CERT_FILE_MODE
	DeleteCSR         bool          // DELETE_CSR
	LogFormat         LogFormat     // LOG_FORMAT
	LogLevel          LogLevel      // LOG_LEVEL
	CAFile            string        // CA_FILE
	Kubeconfig        string        // KUBECONFIG

	RenewBefore          time.Duration // RENEW_BEFORE; 0: jittered 70–90% of the lifetime
	NewKeyOnRenewal      bool          // NEW_KEY_ON_RENEWAL
	KeystorePassword     string        // KEYSTORE_PASSWORD
	KeystorePasswordFile string        // KEYSTORE_PASSWORD_FILE
	NotifyProcess        string        // NOTIFY_PROCESS
	NotifySignal         Signal        // NOTIFY_SIGNAL
	NotifyURL            string        // NOTIFY_URL
	NotifyCommand        Command       // NOTIFY_COMMAND
	HTTPAddr             string        // HTTP_ADDR; "": no HTTP endpoint
}

// ReadKeystorePassword returns the keystore password from KEYSTORE_PASSWORD
// or the file KEYSTORE_PASSWORD_FILE names, nil when neither is set. It is
// the one part of the configuration read from a file, and is called once at
// start-up, after FromEnv. A problem with the file matches ErrInvalid.
func (a *Agent) ReadKeystorePassword() ([]byte, error) {
	if a.KeystorePasswordFile == "" {
		if a.KeystorePassword == "" {
			return nil, nil
		}
		return []byte(a.KeystorePassword), nil
	}
	data, err := os.ReadFile(a.KeystorePasswordFile)
	if err != nil {
		return nil, &Problem{Var: "KEYSTORE_PASSWORD_FILE", Msg: err.Error(), Form: formOf("KEYSTORE_PASSWORD_FILE")}
	}
	// Files made with echo or an editor end in a newline that is not part
	// of the password; a Secret made with --from-literal does not.
	password := strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r")
	if msg := passwordProblem(password); msg != "" {
		return nil, &Problem{Var: "KEYSTORE_PASSWORD_FILE", Msg: "the password in " + a.KeystorePasswordFile + " " + msg, Form: formOf("KEYSTORE_PASSWORD_FILE")}
	}
	return []byte(password), nil
}

// passwordProblem says why a password cannot protect a PKCS#12 file, whose
// passwords are BMPStrings: UTF-16 without surrogate pairs.
func passwordProblem(p string) string {
	switch {
	case p == "":
		return "is empty"
	case !utf8.ValidString(p):
		return "is not valid UTF-8"
	case strings.ContainsFunc(p, func(r rune) bool { return r > 0xFFFF }):
		return "has characters outside the Basic Multilingual Plane"
	}
	return ""
}

// Signal is NOTIFY_SIGNAL: one of the signals an application may take as
// "reload".
type Signal syscall.Signal

var signals = map[string]syscall.Signal{
	"SIGHUP": syscall.SIGHUP, "SIGUSR1": syscall.SIGUSR1, "SIGUSR2": syscall.SIGUSR2, "SIGINT": syscall.SIGINT,
	"SIGQUIT": syscall.SIGQUIT, "SIGTERM": syscall.SIGTERM, "SIGWINCH": syscall.SIGWINCH,
}

// UnmarshalText accepts the names in signals, with or without "SIG".
func (s *Signal) UnmarshalText(b []byte) error {
	name := string(b)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	sig, ok := signals[name]
	if !ok {
		return fmt.Errorf("%q is not a signal the agent sends", b)
	}
	*s = Signal(sig)
	return nil
}

// String returns the signal's name, e.g. SIGHUP.
func (s Signal) String() string {
	for name, sig := range signals {
		if Signal(sig) == s {
			return name
		}
	}
	return fmt.Sprintf("signal %d", int(s))
}

// Command is NOTIFY_COMMAND: a program and its arguments. There is no shell
// to interpret quotes (the agent's image is distroless), so the value is
// split on white space; a program needing arguments with spaces belongs in
// a script.
type Command []string

// UnmarshalText splits on white space.
func (c *Command) UnmarshalText(b []byte) error {
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		return fmt.Errorf("%q names no program", b)
	}
	*c = fields
	return nil
}

// KeyType is the private key algorithm.
type KeyType string

// The key types; the names are the values of KEY_TYPE.
const (
	KeyECDSAP256 KeyType = "ecdsa-p256"
	KeyECDSAP384 KeyType = "ecdsa-p384"
	KeyRSA2048   KeyType = "rsa-2048"
	KeyRSA3072   KeyType = "rsa-3072"
	KeyRSA4096   KeyType = "rsa-4096"
	KeyEd25519   KeyType = "ed25519"
)

var keyTypes = []KeyType{KeyECDSAP256, KeyECDSAP384, KeyRSA2048, KeyRSA3072, KeyRSA4096, KeyEd25519}

func (k KeyType) valid() bool {
	for _, known := range keyTypes {
		if k == known {
			return true
		}
	}
	return false
}

// UnmarshalText accepts the names of the KeyType constants.
func (k *KeyType) UnmarshalText(b []byte) error {
	if v := KeyType(b); v.valid() {
		*k = v
		return nil
	}
	return fmt.Errorf("%q is not a known key type", b)
}

// Usages is the set of extended key usages: server, client or both.
type Usages uint8

// The usages; combine with |.
const (
	UsageServer Usages = 1 << iota
	UsageClient
)

// Server reports whether the certificate is for serving (server auth).
func (u Usages) Server() bool { return u&UsageServer != 0 }

// Client reports whether the certificate is for client auth.
func (u Usages) Client() bool { return u&UsageClient != 0 }

func (u Usages) valid() bool { return u != 0 && u&^(UsageServer|UsageClient) == 0 }

// String returns the USAGES form: "server", "client" or "server,client".
func (u Usages) String() string {
	var s []string
	if u.Server() {
		s = append(s, "server")
	}
	if u.Client() {
		s = append(s, "client")
	}
	return strings.Join(s, ",")
}

// UnmarshalText accepts server and client, comma-separated, each at most once.
func (u *Usages) UnmarshalText(b []byte) error {
	var v Usages
	for _, item := range strings.Split(string(b), ",") {
		var bit Usages
		switch strings.TrimSpace(item) {
		case "server":
			bit = UsageServer
		case "client":
			bit = UsageClient
		default:
			return fmt.Errorf("%q is not server or client", item)
		}
		if v&bit != 0 {
			return fmt.Errorf("%q is listed twice", strings.TrimSpace(item))
		}
		v |= bit
	}
	*u = v
	return nil
}

// Services is SERVICE_NAMES: either Auto, or a list of Service names.
type Services struct {
	// Auto asks for discovery: every Service in the pod's namespace whose
	// selector matches the pod's labels.
	Auto  bool
	Names []string
}

// UnmarshalText accepts "auto" or a comma-separated list of names; the names
// are checked by Validate, so that every bad one is reported.
func (s *Services) UnmarshalText(b []byte) error {
	names, err := splitList(string(b))
	if err != nil {
		return err
	}
	for _, n := range names {
		if n == "auto" && len(names) > 1 {
			return fmt.Errorf("%q mixes auto with names; auto must be the only value", b)
		}
	}
	if len(names) == 1 && names[0] == "auto" {
		*s = Services{Auto: true}
		return nil
	}
	*s = Services{Names: names}
	return nil
}

// LogFormat is the log encoding.
type LogFormat string

// The log formats.
const (
	LogJSON LogFormat = "json"
	LogText LogFormat = "text"
)

// UnmarshalText accepts json and text.
func (f *LogFormat) UnmarshalText(b []byte) error {
	switch v := LogFormat(b); v {
	case LogJSON, LogText:
		*f = v
		return nil
	}
	return fmt.Errorf("%q is not a log format", b)
}

// LogLevel is the minimum log level.
type LogLevel string

// The log levels.
const (
	LogDebug LogLevel = "debug"
	LogInfo  LogLevel = "info"
	LogWarn  LogLevel = "warn"
	LogError LogLevel = "error"
)

var logLevels = map[LogLevel]slog.Level{
	LogDebug: slog.LevelDebug,
	LogInfo:  slog.LevelInfo,
	LogWarn:  slog.LevelWarn,
	LogError: slog.LevelError,
}

// Slog returns the slog level; an unknown level is Info.
func (l LogLevel) Slog() slog.Level { return logLevels[l] }

// UnmarshalText accepts debug, info, warn and error. slog.Level's own
// UnmarshalText is not used: it also accepts "INFO+2" and friends, which we
// would then have to document.
func (l *LogLevel) UnmarshalText(b []byte) error {
	if _, ok := logLevels[LogLevel(b)]; ok {
		*l = LogLevel(b)
		return nil
	}
	return fmt.Errorf("%q is not a log level", b)
}
