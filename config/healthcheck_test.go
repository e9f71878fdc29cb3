package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// hcYAML puts lines (already indented by 6) under a service's health_check; the first one is on line 8.
func hcYAML(lines ...string) string {
	return `services:
  - name: web
    vip: 10.0.0.1
    port: 80
    real_servers:
      - address: 10.1.0.1
    health_check:
` + strings.Join(lines, "\n") + "\n"
}

func parseHC(t *testing.T, data string) (*HealthCheck, []string) {
	t.Helper()
	cfg, err := Parse("t.yaml", []byte(data))
	if err != nil {
		es, ok := err.(Errors)
		if !ok {
			t.Fatalf("Parse returned %T %v, want Errors", err, err)
		}
		var got []string
		for _, e := range es {
			got = append(got, e.Error())
		}
		return nil, got
	}
	return cfg.Services[0].HealthCheck, nil
}

func writeCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestHealthCheckDefaults(t *testing.T) {
	j := DefaultCheckJitter
	base := HealthCheck{
		Type: "tcp", Interval: Duration(2 * time.Second), Timeout: Duration(time.Second),
		Rise: 2, Fall: 3, InitialState: "down", Jitter: &j,
	}
	http := base
	http.Type, http.Method, http.Path, http.ExpectStatus = "http", "GET", "/", []int{200}
	dnsc := base
	dnsc.Type, dnsc.QueryName, dnsc.QueryType = "dns", "example.org.", "A"
	half := base
	half.Type = "tcp_half_open"
	tests := []struct {
		name  string
		lines []string
		want  HealthCheck
	}{
		{"empty block is tcp", []string{"      port: 0"}, base},
		{"http", []string{"      type: HTTP"}, http},
		{"tcp_half_open", []string{"      type: TCP_Half_Open"}, half},
		{"dns", []string{"      type: dns", "      query_name: example.org."}, dnsc},
		{"none fills nothing", []string{"      type: none"}, HealthCheck{Type: "none"}},
		{"explicit values kept", []string{"      type: https", "      method: head", "      path: /hz", "      expect_status: [200, 204]",
			"      interval: 5s", "      timeout: 5s", "      rise: 1", "      fall: 1", "      initial_state: UP", "      jitter: 0"},
			HealthCheck{Type: "https", Method: "HEAD", Path: "/hz", ExpectStatus: []int{200, 204}, Interval: Duration(5 * time.Second),
				Timeout: Duration(5 * time.Second), Rise: 1, Fall: 1, InitialState: "up", Jitter: new(float64)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hc, errs := parseHC(t, hcYAML(tc.lines...))
			if errs != nil {
				t.Fatalf("unexpected errors: %q", errs)
			}
			if !reflect.DeepEqual(*hc, tc.want) {
				t.Errorf("got  %+v\nwant %+v", *hc, tc.want)
			}
		})
	}
}

func TestHealthCheckNoBlock(t *testing.T) {
	cfg, err := Parse("t.yaml", []byte(strings.TrimSuffix(hcYAML(), "    health_check:\n\n")+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Services[0].HealthCheck != nil {
		t.Errorf("service without health_check got %+v", cfg.Services[0].HealthCheck)
	}
}

func TestHealthCheckValid(t *testing.T) {
	ca := writeCA(t)
	tests := [][]string{
		{"      type: tcp", "      port: 8080", "      source: 10.9.9.9", "      jitter: 1"},
		{"      type: tcp_half_open", "      port: 8080", "      source: 10.9.9.9", "      interval: 1s", "      timeout: 1s",
			"      rise: 1", "      fall: 5", "      initial_state: up", "      jitter: 0.5"},
		{"      type: http", "      host: www.example.org:8080", "      expect_status: [200, 301]", "      expect_body: '^ok'"},
		{"      type: https", "      sni: www.example.org", "      ca_file: " + ca},
		{"      type: https", "      insecure_skip_verify: true", "      method: HEAD"},
		{"      type: udp", `      payload: "ping\x00"`, "      expect: pong"},
		{"      type: dns", "      query_name: example.org", "      query_type: aaaa", "      port: 53"},
		{"      type: exec", "      command: [/bin/sh, -c, 'exit 0']", "      timeout: 2s"},
		{"      type: exec", "      command: [sh]"},
		{"      type: none"},
	}
	for _, lines := range tests {
		if _, errs := parseHC(t, hcYAML(lines...)); errs != nil {
			t.Errorf("%q: unexpected errors %q", lines, errs)
		}
	}
}

func TestHealthCheckErrors(t *testing.T) {
	ca := writeCA(t)
	notPEM := filepath.Join(t.TempDir(), "x.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	const hc = "services[0].health_check"
	tests := []struct {
		name  string
		lines []string
		want  []string
	}{
		{"unknown type", []string{"      type: icmp", "      path: /"},
			[]string{`t.yaml:8: ` + hc + `.type: unknown health check type "icmp" (one of tcp tcp_half_open http https udp dns exec none)`}},
		{"http fields on tcp", []string{"      type: tcp", "      path: /x", "      expect_status: [200]", "      sni: a"},
			[]string{
				`t.yaml:9: ` + hc + `.path: not valid for a tcp check`,
				`t.yaml:10: ` + hc + `.expect_status: not valid for a tcp check`,
				`t.yaml:11: ` + hc + `.sni: not valid for a tcp check`,
			}},
		{"other types' fields on tcp_half_open", []string{"      type: tcp_half_open", "      path: /x", "      payload: x", "      command: [sh]"},
			[]string{
				`t.yaml:9: ` + hc + `.path: not valid for a tcp_half_open check`,
				`t.yaml:10: ` + hc + `.payload: not valid for a tcp_half_open check`,
				`t.yaml:11: ` + hc + `.command: not valid for a tcp_half_open check`,
			}},
		{"tcp_half_open common fields checked", []string{"      type: tcp_half_open", "      interval: 10ms", "      source: 0.0.0.0"},
			[]string{
				`t.yaml:7: ` + hc + `.timeout: 1s is longer than interval 10ms`, // the default timeout
				`t.yaml:9: ` + hc + `.interval: must be at least 100ms, got 10ms`,
				`t.yaml:10: ` + hc + `.source: 0.0.0.0 cannot be a source address (unspecified or multicast)`,
			}},
		{"https fields on http", []string{"      type: http", "      sni: a.b", "      insecure_skip_verify: true", "      ca_file: " + ca},
			[]string{
				`t.yaml:9: ` + hc + `.sni: not valid for a http check`,
				`t.yaml:10: ` + hc + `.insecure_skip_verify: not valid for a http check`,
				`t.yaml:11: ` + hc + `.ca_file: not valid for a http check`,
			}},
		{"none takes nothing", []string{"      type: none", "      interval: 1s", "      port: 80"},
			[]string{
				`t.yaml:9: ` + hc + `.interval: not valid for a none check`,
				`t.yaml:10: ` + hc + `.port: not valid for a none check`,
			}},
		{"source on exec", []string{"      type: exec", "      command: [sh]", "      source: 10.0.0.9"},
			[]string{`t.yaml:10: ` + hc + `.source: not valid for a exec check`}},
		{"timing", []string{"      interval: 50ms", "      timeout: -1s", "      rise: -1", "      fall: 1001"},
			[]string{
				`t.yaml:8: ` + hc + `.interval: must be at least 100ms, got 50ms`,
				`t.yaml:9: ` + hc + `.timeout: must be positive, got -1s`,
				`t.yaml:10: ` + hc + `.rise: must be 1-1000, got -1`,
				`t.yaml:11: ` + hc + `.fall: must be 1-1000, got 1001`,
			}},
		{"timeout over interval", []string{"      interval: 1s", "      timeout: 2s"},
			[]string{`t.yaml:9: ` + hc + `.timeout: 2s is longer than interval 1s`}},
		{"default timeout over interval", []string{"      interval: 500ms"},
			[]string{`t.yaml:7: ` + hc + `.timeout: 1s is longer than interval 500ms`}},
		{"state source jitter", []string{"      initial_state: maybe", "      source: 0.0.0.0", "      jitter: 1.5"},
			[]string{
				`t.yaml:8: ` + hc + `.initial_state: unknown state "maybe" (down or up)`,
				`t.yaml:9: ` + hc + `.source: 0.0.0.0 cannot be a source address (unspecified or multicast)`,
				`t.yaml:10: ` + hc + `.jitter: must be a fraction of the interval between 0 and 1, got 1.5`,
			}},
		{"negative jitter", []string{"      jitter: -0.1"},
			[]string{`t.yaml:8: ` + hc + `.jitter: must be a fraction of the interval between 0 and 1, got -0.1`}},
		{"http fields", []string{"      type: http", "      method: POST", "      path: health", "      host: 'a b'", "      expect_status: [200, 99, 600]", "      expect_body: '(('"},
			[]string{
				`t.yaml:9: ` + hc + `.method: unknown method "POST" (GET or HEAD)`,
				`t.yaml:10: ` + hc + `.path: must start with / and contain no spaces, got "health"`,
				`t.yaml:11: ` + hc + `.host: invalid Host header "a b" (want name or name:port)`,
				`t.yaml:12: ` + hc + `.expect_status[1]: HTTP status must be 100-599, got 99`,
				`t.yaml:12: ` + hc + `.expect_status[2]: HTTP status must be 100-599, got 600`,
				`t.yaml:13: ` + hc + `.expect_body: invalid regexp: error parsing regexp: missing closing ): ` + "`((`",
			}},
		{"empty expect_status", []string{"      type: http", "      expect_status: []"},
			[]string{`t.yaml:9: ` + hc + `.expect_status: must list at least one status code`}},
		{"HEAD with body", []string{"      type: http", "      method: HEAD", "      expect_body: ok"},
			[]string{`t.yaml:10: ` + hc + `.expect_body: cannot be used with method HEAD (no body)`}},
		{"https tls fields", []string{"      type: https", "      sni: 'bad name:1'", "      insecure_skip_verify: true", "      ca_file: " + ca},
			[]string{
				`t.yaml:9: ` + hc + `.sni: invalid server name "bad name:1"`,
				`t.yaml:11: ` + hc + `.ca_file: cannot be used with insecure_skip_verify (nothing would be verified)`,
			}},
		{"missing CA file", []string{"      type: https", "      ca_file: /nonexistent/ca.pem"},
			[]string{`t.yaml:9: ` + hc + `.ca_file: cannot read CA file: open /nonexistent/ca.pem: no such file or directory`}},
		{"CA file without PEM", []string{"      type: https", "      ca_file: " + notPEM},
			[]string{`t.yaml:9: ` + hc + `.ca_file: no PEM certificate found in ` + notPEM}},
		{"udp needs expect", []string{"      type: udp", "      payload: x"},
			[]string{`t.yaml:7: ` + hc + `.expect: is required for a udp check (a regexp the reply must match)`}},
		{"udp bad expect", []string{"      type: udp", "      expect: '['"},
			[]string{`t.yaml:9: ` + hc + `.expect: invalid regexp: error parsing regexp: missing closing ]: ` + "`[`"}},
		{"dns needs name", []string{"      type: dns", "      query_type: BOGUS"},
			[]string{
				`t.yaml:7: ` + hc + `.query_name: is required for a dns check`,
				`t.yaml:9: ` + hc + `.query_type: unknown DNS record type "BOGUS" (e.g. A, AAAA, CNAME, MX, NS, PTR, SOA, SRV, TXT)`,
			}},
		{"dns bad name and AXFR", []string{"      type: dns", "      query_name: 'a..b'", "      query_type: axfr"},
			[]string{
				`t.yaml:9: ` + hc + `.query_name: invalid domain name "a..b"`,
				`t.yaml:10: ` + hc + `.query_type: unknown DNS record type "AXFR" (e.g. A, AAAA, CNAME, MX, NS, PTR, SOA, SRV, TXT)`,
			}},
		{"exec needs command", []string{"      type: exec"},
			[]string{`t.yaml:7: ` + hc + `.command: is required for an exec check (a list: program and arguments)`}},
		{"exec empty program", []string{"      type: exec", "      command: ['', x]"},
			[]string{`t.yaml:9: ` + hc + `.command[0]: program name is empty`}},
		{"exec missing program", []string{"      type: exec", "      command: [/nonexistent/check]"},
			[]string{`t.yaml:9: ` + hc + `.command[0]: program "/nonexistent/check" not found or not executable: stat /nonexistent/check: no such file or directory`}},
		{"unknown key", []string{"      type: tcp", "      url: /"},
			[]string{`t.yaml:9: ` + hc + `.url: unknown field "url"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, got := parseHC(t, hcYAML(tc.lines...))
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("errors:\n got  %q\n want %q", got, tc.want)
			}
		})
	}
}

func TestHealthCheckRealServerPath(t *testing.T) {
	data := `services:
  - name: web
    vip: 10.0.0.1
    port: 80
    health_check:
      type: http
    real_servers:
      - address: 10.1.0.1
        health_check:
          type: tcp
          path: /
`
	_, got := parseHC(t, data)
	want := []string{`t.yaml:11: services[0].real_servers[0].health_check.path: not valid for a tcp check`}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("errors:\n got  %q\n want %q", got, want)
	}
	ok := strings.Replace(data, "          path: /\n", "", 1)
	cfg, err := Parse("t.yaml", []byte(ok))
	if err != nil {
		t.Fatal(err)
	}
	rs := cfg.Services[0].RealServers[0].HealthCheck
	if rs == nil || rs.Type != "tcp" || rs.Rise != DefaultCheckRise || rs.Path != "" {
		t.Errorf("real server check not defaulted as tcp: %+v", rs)
	}
}
