package healthcheck

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/lvs-director/lvs-director/config"
)

// Target is one real server to check.
type Target struct {
	// Key identifies the target across Update calls (e.g. "tcp/10.0.0.1:80/10.1.0.1:80").
	Key string
	// Service is the service name (a metric label and LVS_SERVICE).
	Service string
	// Address is where the check goes: the real server's address and the check port.
	Address netip.AddrPort
	// RealServer is the real server as the service knows it (a metric label).
	RealServer netip.AddrPort
	// VIP is the virtual service address.
	VIP netip.AddrPort
	// Spec is the check, with defaults filled by config.
	Spec config.HealthCheck
}

// Prober runs one check of t. ctx carries the deadline (the check's timeout); the prober
// returns when it passes, at the latest, and never panics.
type Prober func(ctx context.Context, t Target) Result

// maxBody bounds what is read of an http body or a udp reply.
const maxBody = 64 << 10

// NewProber builds the prober for spec: regexps are compiled and TLS settings loaded once.
// It fails on a spec that config validation would reject.
func NewProber(spec config.HealthCheck) (Prober, error) {
	if spec.Type == config.CheckNone {
		return func(context.Context, Target) Result { return ok("not checked") }, nil
	}
	if spec.Timeout <= 0 {
		return nil, fmt.Errorf("timeout must be positive, got %s", spec.Timeout)
	}
	dialer := &net.Dialer{KeepAlive: -1} // connections live for one check
	if spec.Source.IsValid() {
		dialer.LocalAddr = localAddr(spec.Type, spec.Source.Addr)
	}
	switch spec.Type {
	case config.CheckTCP, "":
		return tcpProber(dialer), nil
	case config.CheckTCPHalfOpen:
		// The Manager checks these with its half-open loop; where that cannot run (no raw
		// socket, not Linux), a connect is the check.
		return tcpProber(dialer), nil
	case config.CheckHTTP, config.CheckHTTPS:
		return httpProber(spec, dialer)
	case config.CheckUDP:
		return udpProber(spec, dialer)
	case config.CheckDNS:
		return dnsProber(spec, dialer)
	case config.CheckExec:
		if len(spec.Command) == 0 || spec.Command[0] == "" {
			return nil, errors.New("exec check without command")
		}
		return ProbeExec, nil
	}
	return nil, fmt.Errorf("unknown health check type %q", spec.Type)
}

func localAddr(typ string, a netip.Addr) net.Addr {
	if typ == config.CheckUDP || typ == config.CheckDNS {
		return net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, 0))
	}
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(a, 0))
}

// ProbeTCP passes when a TCP connection to t.Address is established. The connection is then
// reset (SO_LINGER 0) rather than closed, so checks leave no TIME_WAIT sockets behind.
func ProbeTCP(ctx context.Context, t Target) Result {
	return tcpProber(&net.Dialer{KeepAlive: -1})(ctx, t)
}

func tcpProber(d *net.Dialer) Prober {
	return func(ctx context.Context, t Target) Result {
		c, err := d.DialContext(ctx, "tcp", t.Address.String())
		if err != nil {
			return errResult(ctx, err, t.Spec.Timeout.D())
		}
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = c.Close()
		return ok("tcp connect ok")
	}
}

func httpProber(spec config.HealthCheck, d *net.Dialer) (Prober, error) {
	var body *regexp.Regexp
	if spec.ExpectBody != "" {
		re, err := regexp.Compile(spec.ExpectBody)
		if err != nil {
			return nil, fmt.Errorf("expect_body: %w", err)
		}
		body = re
	}
	expect := spec.ExpectStatus
	if len(expect) == 0 {
		expect = config.DefaultCheckExpectStatus()
	}
	method := spec.Method
	if method == "" {
		method = http.MethodGet
	}
	path := spec.Path
	if path == "" {
		path = "/"
	}
	tr := &http.Transport{
		Proxy:                  nil, // never the environment's proxy
		DialContext:            d.DialContext,
		DisableKeepAlives:      true, // one fresh connection per check
		DisableCompression:     true,
		MaxResponseHeaderBytes: maxBody,
	}
	scheme := "http"
	if spec.Type == config.CheckHTTPS {
		scheme = "https"
		cfg := &tls.Config{InsecureSkipVerify: spec.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
		cfg.ServerName = spec.SNI
		if cfg.ServerName == "" && spec.Host != "" {
			if h, _, err := net.SplitHostPort(spec.Host); err == nil {
				cfg.ServerName = h
			} else {
				cfg.ServerName = spec.Host
			}
		}
		if spec.CAFile != "" {
			pem, err := os.ReadFile(spec.CAFile)
			if err != nil {
				return nil, fmt.Errorf("ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("ca_file: no PEM certificate in %s", spec.CAFile)
			}
			cfg.RootCAs = pool
		}
		tr.TLSClientConfig = cfg
	}
	client := &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return func(ctx context.Context, t Target) Result {
		u := scheme + "://" + t.Address.String() + path
		req, err := http.NewRequestWithContext(ctx, method, u, nil)
		if err != nil {
			return fail(KindOther, "bad request: %v", err)
		}
		if spec.Host != "" {
			req.Host = spec.Host
		}
		req.Header.Set("User-Agent", "lvs-director-healthcheck")
		resp, err := client.Do(req)
		if err != nil {
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			return errResult(ctx, err, t.Spec.Timeout.D())
		}
		defer resp.Body.Close()
		if !slices.Contains(expect, resp.StatusCode) {
			return fail(KindStatus, "http status %d", resp.StatusCode)
		}
		if body != nil {
			b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
			if err != nil {
				r := errResult(ctx, err, t.Spec.Timeout.D())
				r.Reason = fmt.Sprintf("http status %d, reading body: %s", resp.StatusCode, r.Reason)
				return r
			}
			if !body.Match(b) {
				return fail(KindMismatch, "http status %d, body does not match %q", resp.StatusCode, spec.ExpectBody)
			}
		}
		return ok(fmt.Sprintf("http status %d", resp.StatusCode))
	}, nil
}

// interruptOnDone makes blocked reads and writes on c return when ctx ends; call the returned
// function when done with c.
func interruptOnDone(ctx context.Context, c net.Conn) func() bool {
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	return context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
}

func udpProber(spec config.HealthCheck, d *net.Dialer) (Prober, error) {
	expect, err := regexp.Compile(spec.Expect)
	if err != nil {
		return nil, fmt.Errorf("expect: %w", err)
	}
	if spec.Expect == "" {
		return nil, errors.New("udp check without expect")
	}
	payload := []byte(spec.Payload)
	bufs := sync.Pool{New: func() any { b := make([]byte, maxBody); return &b }}
	return func(ctx context.Context, t Target) Result {
		c, err := d.DialContext(ctx, "udp", t.Address.String())
		if err != nil {
			return errResult(ctx, err, t.Spec.Timeout.D())
		}
		defer c.Close()
		defer interruptOnDone(ctx, c)()
		if _, err := c.Write(payload); err != nil {
			return errResult(ctx, err, t.Spec.Timeout.D())
		}
		bp := bufs.Get().(*[]byte)
		defer bufs.Put(bp)
		buf := *bp
		n, err := c.Read(buf)
		if err != nil {
			return errResult(ctx, err, t.Spec.Timeout.D())
		}
		if !expect.Match(buf[:n]) {
			return fail(KindMismatch, "udp reply does not match %q", spec.Expect)
		}
		return ok(fmt.Sprintf("udp reply of %d bytes", n))
	}, nil
}

func dnsProber(spec config.HealthCheck, d *net.Dialer) (Prober, error) {
	qtypeName := spec.QueryType
	if qtypeName == "" {
		qtypeName = config.DefaultCheckQueryType
	}
	qtype, found := dns.StringToType[strings.ToUpper(qtypeName)]
	if !found {
		return nil, fmt.Errorf("unknown DNS record type %q", spec.QueryType)
	}
	if _, valid := dns.IsDomainName(spec.QueryName); !valid || spec.QueryName == "" {
		return nil, fmt.Errorf("invalid query name %q", spec.QueryName)
	}
	name := dns.Fqdn(spec.QueryName)
	client := &dns.Client{Net: "udp", Dialer: d, UDPSize: dns.DefaultMsgSize}
	return func(ctx context.Context, t Target) Result {
		q := new(dns.Msg)
		q.SetQuestion(name, qtype)
		q.RecursionDesired = true
		// ExchangeContext honours only the deadline: run the exchange on our own connection so
		// that cancellation interrupts it too.
		c, err := client.DialContext(ctx, t.Address.String())
		if err != nil {
			return errResult(ctx, err, t.Spec.Timeout.D())
		}
		defer c.Close()
		defer interruptOnDone(ctx, c.Conn)()
		r, _, err := client.ExchangeWithConnContext(ctx, q, c)
		if err != nil {
			return errResult(ctx, err, t.Spec.Timeout.D())
		}
		if r.Rcode != dns.RcodeSuccess {
			return fail(KindDNS, "dns rcode %s", dns.RcodeToString[r.Rcode])
		}
		n := 0
		for _, rr := range r.Answer {
			if qtype == dns.TypeANY || rr.Header().Rrtype == qtype {
				n++
			}
		}
		if n == 0 {
			return fail(KindDNS, "dns: no %s record in the answer (%d other records)", qtypeName, len(r.Answer))
		}
		return ok(fmt.Sprintf("dns: %d %s records", n, qtypeName))
	}, nil
}

// execOutputMax bounds the output of an exec check kept for its reason.
const execOutputMax = 512

// ProbeExec runs t.Spec.Command and passes when it exits with status 0. The command runs in its
// own process group with the environment LVS_RS_ADDRESS, LVS_RS_PORT, LVS_VIP, LVS_VIP_PORT,
// LVS_SERVICE, LVS_CHECK_ADDRESS and LVS_CHECK_PORT added to the director's; when ctx ends the
// whole group is killed. The first line of its output is appended to a failure's reason.
func ProbeExec(ctx context.Context, t Target) Result {
	argv := t.Spec.Command
	if len(argv) == 0 {
		return fail(KindExit, "no command")
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(),
		"LVS_RS_ADDRESS="+t.RealServer.Addr().String(),
		"LVS_RS_PORT="+strconv.Itoa(int(t.RealServer.Port())),
		"LVS_VIP="+t.VIP.Addr().String(),
		"LVS_VIP_PORT="+strconv.Itoa(int(t.VIP.Port())),
		"LVS_SERVICE="+t.Service,
		"LVS_CHECK_ADDRESS="+t.Address.Addr().String(),
		"LVS_CHECK_PORT="+strconv.Itoa(int(t.Address.Port())),
	)
	out := &limitedBuffer{max: execOutputMax}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// The negative pid names the process group: the command and everything it started.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	// A grandchild that left the group may still hold the output pipe: stop waiting for it.
	cmd.WaitDelay = 100 * time.Millisecond
	err := cmd.Run()
	if ctx.Err() == context.DeadlineExceeded {
		return fail(KindTimeout, "timeout after %s", t.Spec.Timeout)
	}
	if ctx.Err() != nil {
		return fail(KindOther, "check canceled")
	}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return ok("exit status 0")
	case errors.As(err, &exitErr):
		return fail(KindExit, "%s%s", exitErr.String(), out.firstLine())
	case errors.Is(err, exec.ErrWaitDelay):
		return ok("exit status 0 (output left open by a child)")
	}
	return fail(KindExit, "cannot run %s: %v", argv[0], err)
}

// limitedBuffer keeps the first max bytes written to it and discards the rest.
type limitedBuffer struct {
	bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *limitedBuffer) firstLine() string {
	s := strings.TrimSpace(b.String())
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if s == "" {
		return ""
	}
	return ": " + s
}
