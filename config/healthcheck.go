package config

import (
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// HealthCheck configures the active check of a real server. A service's health_check applies to
// each of its real servers; a real server's own health_check replaces it whole. A service without
// a health_check block is not checked: its real servers count as up.
//
// The spec is flat: common fields (type, port, interval, timeout, rise, fall, initial_state,
// source, jitter) and the fields of each type. A field that does not belong to the type is an
// error. The healthcheck package documents what each type does.
type HealthCheck struct {
	// Type is tcp, tcp_half_open, http, https, udp, dns, exec or none (default tcp).
	Type string `yaml:"type"`
	// Port is the port checked; 0 means the real server's port.
	Port uint16 `yaml:"port"`
	// Interval is the time between the starts of two checks (default 2s).
	Interval Duration `yaml:"interval"`
	// Timeout bounds one check (default 1s); it must not exceed Interval.
	Timeout Duration `yaml:"timeout"`
	// Rise is how many successes in a row bring a down server up (default 2).
	Rise int `yaml:"rise"`
	// Fall is how many failures in a row take an up server down (default 3).
	Fall int `yaml:"fall"`
	// InitialState is the state before the checks decide: down (default) or up.
	InitialState string `yaml:"initial_state"`
	// Source is the local address checks are sent from; unset means the kernel chooses.
	Source Addr `yaml:"source,omitempty"`
	// Jitter spreads checks in time: each wait is Interval times a random factor in
	// [1-Jitter/2, 1+Jitter/2), so the mean stays Interval. A fraction 0..1 (default 0.1).
	Jitter *float64 `yaml:"jitter,omitempty"`

	// http and https.
	Method             string `yaml:"method"`        // GET (default) or HEAD
	Path               string `yaml:"path"`          // default /
	Host               string `yaml:"host"`          // Host header; default the check address
	ExpectStatus       []int  `yaml:"expect_status"` // default [200]
	ExpectBody         string `yaml:"expect_body"`   // regexp the body must match
	SNI                string `yaml:"sni"`           // https: server name sent and verified
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
	CAFile             string `yaml:"ca_file"` // https: PEM bundle to verify the server with

	// udp.
	Payload string `yaml:"payload"` // datagram sent
	Expect  string `yaml:"expect"`  // regexp the reply must match (required)

	// dns.
	QueryName string `yaml:"query_name"` // required
	QueryType string `yaml:"query_type"` // default A

	// exec.
	Command []string `yaml:"command"` // argv; exit status 0 means up
}

// Health check types.
const (
	CheckTCP   = "tcp"
	CheckHTTP  = "http"
	CheckHTTPS = "https"
	CheckUDP   = "udp"
	CheckDNS   = "dns"
	CheckExec  = "exec"
	CheckNone  = "none"
	// CheckTCPHalfOpen sends a SYN and passes on a SYN-ACK, never completing the handshake.
	CheckTCPHalfOpen = "tcp_half_open"
)

// Health check defaults, filled by setDefaults.
const (
	DefaultCheckType         = CheckTCP
	DefaultCheckInterval     = 2 * time.Second
	DefaultCheckTimeout      = 1 * time.Second
	DefaultCheckRise         = 2
	DefaultCheckFall         = 3
	DefaultCheckInitialState = "down"
	DefaultCheckJitter       = 0.1
	DefaultCheckMethod       = "GET"
	DefaultCheckPath         = "/"
	DefaultCheckQueryType    = "A"
	// MinCheckInterval is the shortest interval accepted.
	MinCheckInterval = 100 * time.Millisecond
)

// DefaultCheckExpectStatus is the status list of an http(s) check without expect_status.
func DefaultCheckExpectStatus() []int { return []int{200} }

// JitterOr returns the jitter fraction (DefaultCheckJitter when unset).
func (h *HealthCheck) JitterOr() float64 {
	if h.Jitter == nil {
		return DefaultCheckJitter
	}
	return *h.Jitter
}

func (h *HealthCheck) setDefaults() {
	h.Type = strings.ToLower(h.Type)
	if h.Type == "" {
		h.Type = DefaultCheckType
	}
	if h.Type == CheckNone {
		return // nothing is checked: every other field is an error
	}
	if h.Interval == 0 {
		h.Interval = Duration(DefaultCheckInterval)
	}
	if h.Timeout == 0 {
		h.Timeout = Duration(DefaultCheckTimeout)
	}
	if h.Rise == 0 {
		h.Rise = DefaultCheckRise
	}
	if h.Fall == 0 {
		h.Fall = DefaultCheckFall
	}
	h.InitialState = strings.ToLower(h.InitialState)
	if h.InitialState == "" {
		h.InitialState = DefaultCheckInitialState
	}
	if h.Jitter == nil {
		j := DefaultCheckJitter
		h.Jitter = &j
	}
	switch h.Type {
	case CheckHTTP, CheckHTTPS:
		h.Method = strings.ToUpper(h.Method)
		if h.Method == "" {
			h.Method = DefaultCheckMethod
		}
		if h.Path == "" {
			h.Path = DefaultCheckPath
		}
		if h.ExpectStatus == nil {
			h.ExpectStatus = DefaultCheckExpectStatus()
		}
	case CheckDNS:
		h.QueryType = strings.ToUpper(h.QueryType)
		if h.QueryType == "" {
			h.QueryType = DefaultCheckQueryType
		}
	}
}

// checkFields lists, for each type-specific field, the types it is valid for.
var checkFields = []struct {
	name  string
	types []string
	set   func(h *HealthCheck) bool
}{
	{"port", []string{CheckTCP, CheckTCPHalfOpen, CheckHTTP, CheckHTTPS, CheckUDP, CheckDNS, CheckExec}, func(h *HealthCheck) bool { return h.Port != 0 }},
	{"interval", []string{CheckTCP, CheckTCPHalfOpen, CheckHTTP, CheckHTTPS, CheckUDP, CheckDNS, CheckExec}, func(h *HealthCheck) bool { return h.Interval != 0 }},
	{"timeout", []string{CheckTCP, CheckTCPHalfOpen, CheckHTTP, CheckHTTPS, CheckUDP, CheckDNS, CheckExec}, func(h *HealthCheck) bool { return h.Timeout != 0 }},
	{"rise", []string{CheckTCP, CheckTCPHalfOpen, CheckHTTP, CheckHTTPS, CheckUDP, CheckDNS, CheckExec}, func(h *HealthCheck) bool { return h.Rise != 0 }},
	{"fall", []string{CheckTCP, CheckTCPHalfOpen, CheckHTTP, CheckHTTPS, CheckUDP, CheckDNS, CheckExec}, func(h *HealthCheck) bool { return h.Fall != 0 }},
	{"initial_state", []string{CheckTCP, CheckTCPHalfOpen, CheckHTTP, CheckHTTPS, CheckUDP, CheckDNS, CheckExec}, func(h *HealthCheck) bool { return h.InitialState != "" }},
	{"jitter", []string{CheckTCP, CheckTCPHalfOpen, CheckHTTP, CheckHTTPS, CheckUDP, CheckDNS, CheckExec}, func(h *HealthCheck) bool { return h.Jitter != nil }},
	{"source", []string{CheckTCP, CheckTCPHalfOpen, CheckHTTP, CheckHTTPS, CheckUDP, CheckDNS}, func(h *HealthCheck) bool { return h.Source.IsValid() }},
	{"method", []string{CheckHTTP, CheckHTTPS}, func(h *HealthCheck) bool { return h.Method != "" }},
	{"path", []string{CheckHTTP, CheckHTTPS}, func(h *HealthCheck) bool { return h.Path != "" }},
	{"host", []string{CheckHTTP, CheckHTTPS}, func(h *HealthCheck) bool { return h.Host != "" }},
	{"expect_status", []string{CheckHTTP, CheckHTTPS}, func(h *HealthCheck) bool { return h.ExpectStatus != nil }},
	{"expect_body", []string{CheckHTTP, CheckHTTPS}, func(h *HealthCheck) bool { return h.ExpectBody != "" }},
	{"sni", []string{CheckHTTPS}, func(h *HealthCheck) bool { return h.SNI != "" }},
	{"insecure_skip_verify", []string{CheckHTTPS}, func(h *HealthCheck) bool { return h.InsecureSkipVerify }},
	{"ca_file", []string{CheckHTTPS}, func(h *HealthCheck) bool { return h.CAFile != "" }},
	{"payload", []string{CheckUDP}, func(h *HealthCheck) bool { return h.Payload != "" }},
	{"expect", []string{CheckUDP}, func(h *HealthCheck) bool { return h.Expect != "" }},
	{"query_name", []string{CheckDNS}, func(h *HealthCheck) bool { return h.QueryName != "" }},
	{"query_type", []string{CheckDNS}, func(h *HealthCheck) bool { return h.QueryType != "" }},
	{"command", []string{CheckExec}, func(h *HealthCheck) bool { return h.Command != nil }},
}

// CheckTypes lists the accepted health check types.
var CheckTypes = []string{CheckTCP, CheckTCPHalfOpen, CheckHTTP, CheckHTTPS, CheckUDP, CheckDNS, CheckExec, CheckNone}

func (h *HealthCheck) validate(v *validator, p string) {
	if !contains(CheckTypes, h.Type) {
		v.errorf(p+".type", "unknown health check type %q (one of %s)", h.Type, strings.Join(CheckTypes, " "))
		return // the other fields cannot be judged without a type
	}
	for _, f := range checkFields {
		if f.set(h) && !slices.Contains(f.types, h.Type) {
			v.errorf(p+"."+f.name, "not valid for a %s check", h.Type)
		}
	}
	if h.Type == CheckNone {
		return
	}

	// Common fields.
	if h.Interval.D() < MinCheckInterval {
		v.errorf(p+".interval", "must be at least %s, got %s", MinCheckInterval, h.Interval)
	}
	if h.Timeout <= 0 {
		v.errorf(p+".timeout", "must be positive, got %s", h.Timeout)
	} else if h.Timeout > h.Interval {
		v.errorf(p+".timeout", "%s is longer than interval %s", h.Timeout, h.Interval)
	}
	if h.Rise < 1 || h.Rise > 1000 {
		v.errorf(p+".rise", "must be 1-1000, got %d", h.Rise)
	}
	if h.Fall < 1 || h.Fall > 1000 {
		v.errorf(p+".fall", "must be 1-1000, got %d", h.Fall)
	}
	switch h.InitialState {
	case "down", "up":
	default:
		v.errorf(p+".initial_state", "unknown state %q (down or up)", h.InitialState)
	}
	if h.Source.IsValid() && (h.Source.IsUnspecified() || h.Source.IsMulticast()) {
		v.errorf(p+".source", "%s cannot be a source address (unspecified or multicast)", h.Source)
	}
	if j := h.JitterOr(); !(j >= 0 && j <= 1) {
		v.errorf(p+".jitter", "must be a fraction of the interval between 0 and 1, got %g", j)
	}

	switch h.Type {
	case CheckHTTP, CheckHTTPS:
		h.validateHTTP(v, p)
	case CheckUDP:
		if h.Expect == "" {
			v.errorf(p+".expect", "is required for a udp check (a regexp the reply must match)")
		} else if _, err := regexp.Compile(h.Expect); err != nil {
			v.errorf(p+".expect", "invalid regexp: %v", err)
		}
	case CheckDNS:
		if h.QueryName == "" {
			v.errorf(p+".query_name", "is required for a dns check")
		} else if _, ok := dns.IsDomainName(h.QueryName); !ok {
			v.errorf(p+".query_name", "invalid domain name %q", h.QueryName)
		}
		if _, ok := dns.StringToType[h.QueryType]; !ok || contains(badQueryTypes, h.QueryType) {
			v.errorf(p+".query_type", "unknown DNS record type %q (e.g. A, AAAA, CNAME, MX, NS, PTR, SOA, SRV, TXT)", h.QueryType)
		}
	case CheckExec:
		switch {
		case len(h.Command) == 0:
			v.errorf(p+".command", "is required for an exec check (a list: program and arguments)")
		case h.Command[0] == "":
			v.errorf(p+".command[0]", "program name is empty")
		default:
			if _, err := exec.LookPath(h.Command[0]); err != nil {
				v.errorf(p+".command[0]", "program %q not found or not executable: %v", h.Command[0], unwrapExecErr(err))
			}
		}
	}
}

func (h *HealthCheck) validateHTTP(v *validator, p string) {
	switch h.Method {
	case "GET", "HEAD":
	default:
		v.errorf(p+".method", "unknown method %q (GET or HEAD)", h.Method)
	}
	if !strings.HasPrefix(h.Path, "/") || strings.ContainsAny(h.Path, " \t\r\n") {
		v.errorf(p+".path", "must start with / and contain no spaces, got %q", h.Path)
	}
	if h.Host != "" && (strings.ContainsAny(h.Host, " \t\r\n/") || strings.HasPrefix(h.Host, ":")) {
		v.errorf(p+".host", "invalid Host header %q (want name or name:port)", h.Host)
	}
	if len(h.ExpectStatus) == 0 {
		v.errorf(p+".expect_status", "must list at least one status code")
	}
	for i, c := range h.ExpectStatus {
		if c < 100 || c > 599 {
			v.errorf(fmt.Sprintf("%s.expect_status[%d]", p, i), "HTTP status must be 100-599, got %d", c)
		}
	}
	if h.ExpectBody != "" {
		if h.Method == "HEAD" {
			v.errorf(p+".expect_body", "cannot be used with method HEAD (no body)")
		}
		if _, err := regexp.Compile(h.ExpectBody); err != nil {
			v.errorf(p+".expect_body", "invalid regexp: %v", err)
		}
	}
	if h.Type != CheckHTTPS {
		return // the TLS fields were reported as not valid for http
	}
	if h.SNI != "" {
		if _, ok := dns.IsDomainName(h.SNI); !ok || strings.ContainsAny(h.SNI, " :/") {
			v.errorf(p+".sni", "invalid server name %q", h.SNI)
		}
	}
	if h.CAFile != "" {
		if h.InsecureSkipVerify {
			v.errorf(p+".ca_file", "cannot be used with insecure_skip_verify (nothing would be verified)")
		}
		if err := checkCAFile(h.CAFile); err != nil {
			v.errorf(p+".ca_file", "%v", err)
		}
	}
}

// checkCAFile reads a PEM bundle as the https prober will, so a bad file fails the load and not
// every check after a reload.
func checkCAFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("cannot read CA file: %w", err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(data) {
		return fmt.Errorf("no PEM certificate found in %s", path)
	}
	return nil
}

// badQueryTypes are record types miekg/dns knows that make no sense as a UDP query.
var badQueryTypes = []string{"None", "Reserved", "OPT", "AXFR", "IXFR", "TSIG", "TKEY", "MAILA", "MAILB"}

func unwrapExecErr(err error) error {
	if e, ok := err.(*exec.Error); ok {
		return e.Err
	}
	return err
}
