package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestExampleIsValidWithDefaults(t *testing.T) {
	cfg, err := Load("../examples/director.yaml")
	if err != nil {
		t.Fatalf("example config: %v", err)
	}
	if cfg.Director.Interface != "lvs0" || cfg.Director.SyncPeriod.D() != 30*time.Second {
		t.Errorf("director = %+v", cfg.Director)
	}
	s := cfg.Services[0]
	if s.Key() != "tcp/203.0.113.10:80" || s.Scheduler != "rr" || len(s.RealServers) != 3 {
		t.Errorf("service = %+v", s)
	}
	if got := s.RealServers[2].WeightOr(); got != 1 {
		t.Errorf("weight default = %d", got)
	}
}

func TestDefaults(t *testing.T) {
	cfg, err := Parse("d.yaml", []byte("services:\n  - {name: a, vip: 192.0.2.1, port: 53, protocol: UDP, real_servers: [{address: 10.0.0.1}]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.Director
	if d.Interface != DefaultInterface || d.SyncPeriod.D() != DefaultSyncPeriod || d.MinSyncPeriod.D() != DefaultMinSyncPeriod || d.DrainTimeout.D() != DefaultDrainTimeout {
		t.Errorf("director defaults: %+v", d)
	}
	s := cfg.Services[0]
	if s.Protocol != "udp" || s.Scheduler != "rr" || s.Failover != "active-active" || s.RealServers[0].Port != 53 || *s.RealServers[0].Weight != 1 {
		t.Errorf("service defaults: %+v rs %+v", s, s.RealServers[0])
	}
	if cfg.API.MetricsListen != DefaultMetricsListen || cfg.API.Socket != DefaultSocket || cfg.API.MaxRealServerMetrics() != DefaultMetricsMaxRealServers {
		t.Errorf("api defaults: %+v", cfg.API)
	}
}

// TestMetricsMaxRealServers: 0 is a value (no per-real-server series), not "unset".
func TestMetricsMaxRealServers(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want int
	}{
		{"api: {metrics_max_real_servers: 0}\n", 0},
		{"api: {metrics_max_real_servers: 200000}\n", 200000},
		{"api: {socket: /run/x.sock}\n", DefaultMetricsMaxRealServers},
	} {
		cfg, err := Parse("d.yaml", []byte(tc.yaml))
		if err != nil {
			t.Fatalf("%q: %v", tc.yaml, err)
		}
		if got := cfg.API.MaxRealServerMetrics(); got != tc.want {
			t.Errorf("%q: MaxRealServerMetrics() = %d, want %d", tc.yaml, got, tc.want)
		}
	}
	var unset API
	if unset.MaxRealServerMetrics() != DefaultMetricsMaxRealServers {
		t.Errorf("an API without defaults set: %d", unset.MaxRealServerMetrics())
	}
}

func TestEmptyFileIsValid(t *testing.T) {
	cfg, err := Parse("empty.yaml", nil)
	if err != nil || len(cfg.Services) != 0 {
		t.Fatalf("empty: %v %v", cfg, err)
	}
}

// TestInvalidFiles checks every file in testdata/invalid against its .err file, exactly.
func TestInvalidFiles(t *testing.T) {
	files, _ := filepath.Glob("testdata/invalid/*.yaml")
	if len(files) == 0 {
		t.Fatal("no test files")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			want, err := os.ReadFile(strings.TrimSuffix(f, ".yaml") + ".err")
			if err != nil {
				t.Fatal(err)
			}
			_, err = Load(f)
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("Load(%s) = %v, want config errors", f, err)
			}
			if got := es.Error(); got != strings.TrimSpace(string(want)) {
				t.Errorf("errors differ\n got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func TestMissingFile(t *testing.T) {
	_, err := Load("testdata/nope.yaml")
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v", err)
	}
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/invalid/*.yaml")
	files = append(files, "../examples/director.yaml")
	for _, p := range files {
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yaml", data)
		if err == nil {
			if cfg == nil {
				t.Fatal("nil config without error")
			}
			return
		}
		var es Errors
		if !errors.As(err, &es) || len(es) == 0 {
			t.Fatalf("rejection is not a list of config errors: %T %v", err, err)
		}
		for _, e := range es {
			if e.Msg == "" || e.File != "fuzz.yaml" {
				t.Fatalf("bad error %+v", e)
			}
		}
	})
}

func TestFullExampleIsValid(t *testing.T) {
	cfg, err := Load("../examples/full.yaml")
	if err != nil {
		t.Fatalf("examples/full.yaml: %v", err)
	}
	if len(cfg.Services) != 3 || cfg.BGP == nil || cfg.Cluster == nil || cfg.Services[1].Failover != "active-standby" {
		t.Fatalf("full example: %+v", cfg)
	}
}

// TestHasChecks: known from the parse for parsed services (a check on the service or on one
// real server), found by looking for services made otherwise.
func TestHasChecks(t *testing.T) {
	cfg, err := Parse("t.yaml", []byte(`director: {interface: lvs0}
services:
  - {name: none, vip: 10.0.0.1, port: 80, real_servers: [{address: 10.1.0.1, port: 80}]}
  - {name: svc, vip: 10.0.0.2, port: 80, health_check: {type: tcp}, real_servers: [{address: 10.1.0.1, port: 80}]}
  - name: rs
    vip: 10.0.0.3
    port: 80
    real_servers:
      - {address: 10.1.0.1, port: 80}
      - {address: 10.1.0.2, port: 80, health_check: {type: tcp}}
`))
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{false, true, true} {
		s := &cfg.Services[i]
		if s.checks == 0 || s.HasChecks() != want {
			t.Errorf("%s: HasChecks %v (cached %d), want %v", s.Name, s.HasChecks(), s.checks, want)
		}
	}
	made := Service{Name: "made", RealServers: []RealServer{{}, {HealthCheck: &HealthCheck{Type: "tcp"}}}}
	if !made.HasChecks() || (&Service{Name: "bare"}).HasChecks() {
		t.Error("HasChecks of services not parsed")
	}
}
