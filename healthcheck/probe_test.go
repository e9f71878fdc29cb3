package healthcheck

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/lvs-director/lvs-director/config"
)

func probe(t *testing.T, tg Target) Result {
	t.Helper()
	p, err := NewProber(tg.Spec)
	if err != nil {
		t.Fatalf("NewProber: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), tg.Spec.Timeout.D())
	defer cancel()
	return p(ctx, tg)
}

func checkResult(t *testing.T, got Result, ok bool, kind, reasonPrefix string) {
	t.Helper()
	if got.OK != ok || got.Kind != kind || !strings.HasPrefix(got.Reason, reasonPrefix) {
		t.Errorf("got %+v, want ok=%v kind=%s reason starting %q", got, ok, kind, reasonPrefix)
	}
}

func TestProbeTCP(t *testing.T) {
	s := spec("tcp")
	s.Timeout = config.Duration(200 * time.Millisecond)
	checkResult(t, probe(t, target(acceptCloser(t), s)), true, KindOK, "tcp connect ok")
	checkResult(t, probe(t, target(closedPort(t), s)), false, KindRefused, "connection refused")
	start := time.Now()
	checkResult(t, probe(t, target(blackhole(t), s)), false, KindTimeout, "timeout after 200ms")
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("timeout check took %s", d)
	}
	// ProbeTCP works without NewProber too.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	checkResult(t, ProbeTCP(ctx, target(acceptCloser(t), s)), true, KindOK, "tcp connect ok")
}

// sourceListener listens on 127.0.0.1 and reports the source address of its first connection.
func sourceListener(t *testing.T) (net.Listener, <-chan string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	from := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			from <- c.RemoteAddr().(*net.TCPAddr).IP.String()
			c.Close()
		}
	}()
	return l, from
}

func TestProbeTCPSource(t *testing.T) {
	l, from := sourceListener(t)
	s := spec("tcp")
	s.Source = config.Addr{Addr: addrOf(t, l.Addr()).Addr().Next()} // 127.0.0.2
	checkResult(t, probe(t, target(addrOf(t, l.Addr()), s)), true, KindOK, "tcp connect ok")
	if got := <-from; got != "127.0.0.2" {
		t.Errorf("connection came from %s, want the source 127.0.0.2", got)
	}
}

func TestProbeHTTP(t *testing.T) {
	var mu sync.Mutex
	var lastMethod, lastHost, lastUA string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		lastMethod, lastHost, lastUA = r.Method, r.Host, r.UserAgent()
		mu.Unlock()
		switch r.URL.Path {
		case "/ok":
			fmt.Fprint(w, "status: all good")
		case "/503":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "/204":
			w.WriteHeader(http.StatusNoContent)
		case "/redirect":
			http.Redirect(w, r, "/ok", http.StatusFound)
		case "/host":
			fmt.Fprintf(w, "host=%s", r.Host)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	addr := addrOf(t, srv.Listener.Addr())

	tests := []struct {
		name   string
		mod    func(s *config.HealthCheck)
		ok     bool
		kind   string
		reason string
		method string
		host   string
	}{
		{"200 default", func(s *config.HealthCheck) { s.Path = "/ok" }, true, KindOK, "http status 200", "GET", addr.String()},
		{"503", func(s *config.HealthCheck) { s.Path = "/503" }, false, KindStatus, "http status 503", "GET", ""},
		{"503 expected", func(s *config.HealthCheck) { s.Path = "/503"; s.ExpectStatus = []int{200, 503} }, true, KindOK, "http status 503", "", ""},
		{"204 not in default list", func(s *config.HealthCheck) { s.Path = "/204" }, false, KindStatus, "http status 204", "", ""},
		{"redirect not followed", func(s *config.HealthCheck) { s.Path = "/redirect" }, false, KindStatus, "http status 302", "", ""},
		{"body matches", func(s *config.HealthCheck) { s.Path = "/ok"; s.ExpectBody = "all (good|fine)$" }, true, KindOK, "http status 200", "", ""},
		{"body mismatch", func(s *config.HealthCheck) { s.Path = "/ok"; s.ExpectBody = "^broken" }, false, KindMismatch,
			`http status 200, body does not match "^broken"`, "", ""},
		{"HEAD", func(s *config.HealthCheck) { s.Path = "/ok"; s.Method = "HEAD" }, true, KindOK, "http status 200", "HEAD", ""},
		{"Host header", func(s *config.HealthCheck) {
			s.Path = "/host"
			s.Host = "www.example.test"
			s.ExpectBody = "^host=www.example.test$"
		},
			true, KindOK, "http status 200", "", "www.example.test"},
		{"wrong Host header", func(s *config.HealthCheck) {
			s.Path = "/host"
			s.Host = "other.test"
			s.ExpectBody = "^host=www.example.test$"
		},
			false, KindMismatch, "http status 200, body does not match", "", "other.test"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := spec("http")
			s.Method, s.Path, s.ExpectStatus = "GET", "/", []int{200}
			tc.mod(&s)
			checkResult(t, probe(t, target(addr, s)), tc.ok, tc.kind, tc.reason)
			mu.Lock()
			defer mu.Unlock()
			if tc.method != "" && lastMethod != tc.method {
				t.Errorf("server saw method %s, want %s", lastMethod, tc.method)
			}
			if tc.host != "" && lastHost != tc.host {
				t.Errorf("server saw Host %s, want %s", lastHost, tc.host)
			}
			if lastUA != "lvs-director-healthcheck" {
				t.Errorf("User-Agent %q", lastUA)
			}
		})
	}

	s := spec("http")
	checkResult(t, probe(t, target(closedPort(t), s)), false, KindRefused, "connection refused")
	s.Timeout = config.Duration(200 * time.Millisecond)
	hang := newHangServer(t)
	checkResult(t, probe(t, target(hang.addr, s)), false, KindTimeout, "timeout after 200ms")
}

func TestProbeHTTPS(t *testing.T) {
	pki := newTestPKI(t)
	var mu sync.Mutex
	var sni string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "secure ok")
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pki.cert}, GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		mu.Lock()
		sni = h.ServerName
		mu.Unlock()
		return nil, nil
	}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	addr := addrOf(t, srv.Listener.Addr())

	tests := []struct {
		name    string
		mod     func(s *config.HealthCheck)
		ok      bool
		kind    string
		reason  string
		wantSNI string
	}{
		{"CA and SNI", func(s *config.HealthCheck) { s.CAFile = pki.caFile; s.SNI = "www.example.test" }, true, KindOK, "http status 200", "www.example.test"},
		{"SNI from Host", func(s *config.HealthCheck) { s.CAFile = pki.caFile; s.Host = "www.example.test:8443" }, true, KindOK, "http status 200", "www.example.test"},
		{"CA without SNI: IP not in cert", func(s *config.HealthCheck) { s.CAFile = pki.caFile }, false, KindTLS,
			"tls: x509: cannot validate certificate for 127.0.0.1 because it doesn't contain any IP SANs", ""},
		{"wrong SNI", func(s *config.HealthCheck) { s.CAFile = pki.caFile; s.SNI = "other.test" }, false, KindTLS,
			"tls: x509: certificate is valid for www.example.test, not other.test", "other.test"},
		{"unknown CA", func(s *config.HealthCheck) { s.SNI = "www.example.test" }, false, KindTLS,
			"tls: x509: certificate signed by unknown authority", "www.example.test"},
		{"skip verify", func(s *config.HealthCheck) { s.InsecureSkipVerify = true; s.ExpectBody = "secure" }, true, KindOK, "http status 200", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			sni = "unset"
			mu.Unlock()
			s := spec("https")
			tc.mod(&s)
			checkResult(t, probe(t, target(addr, s)), tc.ok, tc.kind, tc.reason)
			mu.Lock()
			defer mu.Unlock()
			if sni != tc.wantSNI {
				t.Errorf("server saw SNI %q, want %q", sni, tc.wantSNI)
			}
		})
	}
	// plain http against the TLS port fails with a status 400 from the Go server.
	checkResult(t, probe(t, target(addr, spec("http"))), false, KindStatus, "http status 400")

	s := spec("https")
	s.CAFile = filepath.Join(t.TempDir(), "missing.pem")
	if _, err := NewProber(s); err == nil || !strings.Contains(err.Error(), "ca_file") {
		t.Errorf("NewProber with a missing CA file: %v", err)
	}
}

func TestProbeUDP(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(append([]byte("pong:"), buf[:n]...), from)
		}
	}()
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	closed, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := addrOf(t, closed.LocalAddr())
	closed.Close()

	s := spec("udp")
	s.Payload, s.Expect = "ping\x00", "^pong:ping\x00$"
	s.Timeout = config.Duration(200 * time.Millisecond)
	checkResult(t, probe(t, target(addrOf(t, pc.LocalAddr()), s)), true, KindOK, "udp reply of 10 bytes")
	s.Expect = "^nope"
	checkResult(t, probe(t, target(addrOf(t, pc.LocalAddr()), s)), false, KindMismatch, `udp reply does not match "^nope"`)
	checkResult(t, probe(t, target(addrOf(t, silent.LocalAddr()), s)), false, KindTimeout, "timeout after 200ms")
	checkResult(t, probe(t, target(closedAddr, s)), false, KindRefused, "connection refused")
}

func TestProbeDNS(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := dns.NewServeMux()
	mux.HandleFunc(".", func(w dns.ResponseWriter, q *dns.Msg) {
		r := new(dns.Msg)
		r.SetReply(q)
		name := q.Question[0].Name
		switch name {
		case "ok.test.":
			rr, _ := dns.NewRR("ok.test. 60 IN A 192.0.2.1")
			r.Answer = append(r.Answer, rr)
		case "alias.test.":
			rr, _ := dns.NewRR("alias.test. 60 IN CNAME elsewhere.test.")
			r.Answer = append(r.Answer, rr)
		case "fail.test.":
			r.Rcode = dns.RcodeServerFailure
		case "slow.test.":
			return // no answer
		default:
			r.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(r)
	})
	srv := &dns.Server{PacketConn: pc, Handler: mux}
	go func() { _ = srv.ActivateAndServe() }()
	defer srv.Shutdown()
	addr := addrOf(t, pc.LocalAddr())

	tests := []struct {
		name, qtype string
		ok          bool
		kind        string
		reason      string
	}{
		{"ok.test", "A", true, KindOK, "dns: 1 A records"},
		{"ok.test.", "", true, KindOK, "dns: 1 A records"},
		{"ok.test", "AAAA", false, KindDNS, "dns: no AAAA record in the answer (1 other records)"},
		{"alias.test", "A", false, KindDNS, "dns: no A record in the answer (1 other records)"},
		{"alias.test", "ANY", true, KindOK, "dns: 1 ANY records"},
		{"fail.test", "A", false, KindDNS, "dns rcode SERVFAIL"},
		{"missing.test", "A", false, KindDNS, "dns rcode NXDOMAIN"},
		{"slow.test", "A", false, KindTimeout, "timeout after 200ms"},
	}
	for _, tc := range tests {
		s := spec("dns")
		s.QueryName, s.QueryType = tc.name, tc.qtype
		s.Timeout = config.Duration(200 * time.Millisecond)
		checkResult(t, probe(t, target(addr, s)), tc.ok, tc.kind, tc.reason)
	}
	s := spec("dns")
	s.QueryName, s.QueryType = "ok.test", "NOPE"
	if _, err := NewProber(s); err == nil {
		t.Error("NewProber accepted query type NOPE")
	}
}

func TestProbeExec(t *testing.T) {
	dir := t.TempDir()
	s := spec("exec")
	s.Timeout = config.Duration(10 * time.Second) // generous: a loaded machine starts shells slowly
	tg := target(addrOf(t, &net.TCPAddr{IP: net.IPv4(10, 1, 0, 1), Port: 8080}), s)
	tg.Address = addrOf(t, &net.TCPAddr{IP: net.IPv4(10, 1, 0, 1), Port: 9090})
	tg.Service = "web"

	tg.Spec.Command = []string{"/bin/sh", "-c", `test "$LVS_RS_ADDRESS $LVS_RS_PORT $LVS_VIP $LVS_VIP_PORT $LVS_SERVICE $LVS_CHECK_ADDRESS $LVS_CHECK_PORT" = "10.1.0.1 8080 10.0.0.1 80 web 10.1.0.1 9090" || { echo "env: $LVS_RS_ADDRESS $LVS_RS_PORT $LVS_VIP $LVS_VIP_PORT $LVS_SERVICE $LVS_CHECK_ADDRESS $LVS_CHECK_PORT"; exit 3; }`}
	checkResult(t, probe(t, tg), true, KindOK, "exit status 0")

	tg.Spec.Command = []string{"/bin/sh", "-c", "echo first line; echo second; exit 2"}
	checkResult(t, probe(t, tg), false, KindExit, "exit status 2: first line")
	if r := probe(t, tg); r.Reason != "exit status 2: first line" {
		t.Errorf("reason %q", r.Reason)
	}

	tg.Spec.Command = []string{filepath.Join(dir, "missing")}
	checkResult(t, probe(t, tg), false, KindExit, "cannot run "+filepath.Join(dir, "missing"))

	// A command that outlives its timeout is killed with everything it started.
	pidFile := filepath.Join(dir, "pid")
	tg.Spec.Command = []string{"/bin/sh", "-c", `sleep 30 & echo $! > ` + pidFile + `; wait`}
	tg.Spec.Timeout = config.Duration(time.Second)
	start := time.Now()
	checkResult(t, probe(t, tg), false, KindTimeout, "timeout after 1s")
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("timed-out exec check took %s", d)
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !processGone(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("background child %d of the timed-out check still runs", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// processGone reports whether pid has exited (gone, or a zombie waiting for init).
func processGone(pid int) bool {
	if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	return len(f) > 0 && f[0] == "Z"
}

func TestProbeCancel(t *testing.T) {
	// Cancelling (the manager stopping) ends a stuck check at once, whatever its timeout.
	hang := newHangServer(t)
	s := spec("http")
	s.Timeout = config.Duration(time.Minute)
	p, err := NewProber(s)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan Result)
	go func() { done <- p(ctx, target(hang.addr, s)) }()
	for hang.count() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case r := <-done:
		checkResult(t, r, false, KindOther, "check canceled")
	case <-time.After(5 * time.Second):
		t.Fatal("a cancelled check did not return")
	}
}
