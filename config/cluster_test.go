package config

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

func parseClusterYAML(t *testing.T, body string) (*Config, error) {
	t.Helper()
	return Parse("c.yaml", []byte("cluster:\n"+body))
}

func TestClusterDefaults(t *testing.T) {
	cfg, err := parseClusterYAML(t, "  join: [\"10.0.0.2:7946\"]\n")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	prio := DefaultClusterPriority
	want := Cluster{
		NodeName:         "",
		BindAddress:      Addr{netip.MustParseAddr("0.0.0.0")},
		BindPort:         7946,
		Join:             []string{"10.0.0.2:7946"},
		ProbeInterval:    Duration(200 * time.Millisecond),
		ProbeTimeout:     Duration(100 * time.Millisecond),
		SuspicionMult:    2,
		GossipInterval:   Duration(100 * time.Millisecond),
		GossipNodes:      3,
		RetransmitMult:   4,
		PushPullInterval: Duration(15 * time.Second),
		TCPTimeout:       Duration(2 * time.Second),
		RejoinInterval:   Duration(10 * time.Second),
		Priority:         &prio,
		Quorum:           "none",
	}
	if !reflect.DeepEqual(*cfg.Cluster, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", *cfg.Cluster, want)
	}
	// Parsing twice gives the same result: no host name or clock leaks into defaults.
	cfg2, err := parseClusterYAML(t, "  join: [\"10.0.0.2:7946\"]\n")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg.Cluster, cfg2.Cluster) {
		t.Errorf("defaults are not deterministic")
	}
}

func TestClusterAbsent(t *testing.T) {
	cfg, err := Parse("c.yaml", []byte("services: []\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Cluster != nil {
		t.Errorf("Cluster = %+v, want nil when the section is absent", cfg.Cluster)
	}
}

func TestClusterFull(t *testing.T) {
	cfg, err := parseClusterYAML(t, `  node_name: lvs-a.dc1
  bind_address: 192.0.2.10
  bind_port: 8000
  advertise_address: 192.0.2.10
  join: ["192.0.2.11:8000", "lvs-c.example.net:8000", "[2001:db8::1]:8000"]
  secret_key_file: /etc/lvs-director/gossip.key
  probe_interval: 500ms
  probe_timeout: 250ms
  suspicion_mult: 3
  gossip_interval: 50ms
  gossip_nodes: 2
  retransmit_mult: 3
  push_pull_interval: 30s
  tcp_timeout: 1s
  rejoin_interval: 5s
  priority: 250
  quorum: Majority
  expected_members: 3
`)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	c := cfg.Cluster
	if c.NodeName != "lvs-a.dc1" || c.BindPort != 8000 || c.BindAddress.String() != "192.0.2.10" ||
		c.AdvertiseAddress.String() != "192.0.2.10" || len(c.Join) != 3 || c.SecretKeyFile != "/etc/lvs-director/gossip.key" ||
		c.ProbeInterval.D() != 500*time.Millisecond || c.ProbeTimeout.D() != 250*time.Millisecond || c.SuspicionMult != 3 ||
		c.GossipInterval.D() != 50*time.Millisecond || c.GossipNodes != 2 || c.RetransmitMult != 3 ||
		c.PushPullInterval.D() != 30*time.Second || c.TCPTimeout.D() != time.Second || c.RejoinInterval.D() != 5*time.Second ||
		c.PriorityOr() != 250 || c.Quorum != "majority" || c.ExpectedMembers != 3 {
		t.Errorf("unexpected cluster config %+v", *c)
	}
}

func TestClusterErrors(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []string
	}{
		{"bad node name", "  node_name: \"a b\"\n",
			[]string{`c.yaml:2: cluster.node_name: invalid name "a b" (letters, digits, '-', '_' and '.' only, at most 63)`}},
		{"multicast bind", "  bind_address: 224.0.0.1\n",
			[]string{`c.yaml:2: cluster.bind_address: 224.0.0.1 cannot be bound (multicast)`}},
		{"bad bind address", "  bind_address: nope\n",
			[]string{`c.yaml:2: cluster.bind_address: invalid IP address "nope"`}},
		{"unspecified advertise", "  advertise_address: \"::\"\n",
			[]string{`c.yaml:2: cluster.advertise_address: :: cannot be advertised (unspecified or multicast)`}},
		{"bad port type", "  bind_port: 70000\n",
			[]string{`c.yaml:2: cluster.bind_port: cannot unmarshal !!int ` + "`70000`" + ` into uint16`}},
		{"join entries", "  join:\n    - 10.0.0.1\n    - 10.0.0.1:0\n    - \":7946\"\n    - 0.0.0.0:7946\n    - bad_host!:7946\n    - -x.example:7946\n    - ok.example:7946\n",
			[]string{
				`c.yaml:3: cluster.join[0]: invalid peer "10.0.0.1": want host:port`,
				`c.yaml:4: cluster.join[1]: invalid peer "10.0.0.1:0": port must be 1-65535`,
				`c.yaml:5: cluster.join[2]: invalid peer ":7946": host is empty`,
				`c.yaml:6: cluster.join[3]: invalid peer "0.0.0.0:7946": unspecified or multicast address`,
				`c.yaml:7: cluster.join[4]: invalid peer "bad_host!:7946": host is neither an IP address nor a DNS name`,
				`c.yaml:8: cluster.join[5]: invalid peer "-x.example:7946": host is neither an IP address nor a DNS name`,
			}},
		{"relative key file", "  secret_key_file: gossip.key\n",
			[]string{`c.yaml:2: cluster.secret_key_file: must be an absolute path, got "gossip.key"`}},
		{"timeout not shorter", "  probe_interval: 100ms\n  probe_timeout: 100ms\n",
			[]string{`c.yaml:3: cluster.probe_timeout: 100ms must be shorter than probe_interval 100ms`}},
		{"negative durations", "  probe_interval: -1s\n  gossip_interval: -1s\n  push_pull_interval: -1s\n  tcp_timeout: -1s\n  rejoin_interval: -1s\n",
			[]string{
				`c.yaml:2: cluster.probe_interval: must be positive, got -1s`,
				`c.yaml:3: cluster.gossip_interval: must be positive, got -1s`,
				`c.yaml:4: cluster.push_pull_interval: must be positive, got -1s`,
				`c.yaml:5: cluster.tcp_timeout: must be positive, got -1s`,
				`c.yaml:6: cluster.rejoin_interval: must be positive, got -1s`,
			}},
		{"bad duration", "  probe_interval: fast\n",
			[]string{`c.yaml:2: cluster.probe_interval: invalid duration "fast" (use a unit, e.g. 500ms, 30s, 1m)`}},
		{"multipliers", "  suspicion_mult: -1\n  gossip_nodes: 101\n  retransmit_mult: -2\n",
			[]string{
				`c.yaml:2: cluster.suspicion_mult: must be 1-100, got -1`,
				`c.yaml:3: cluster.gossip_nodes: must be 1-100, got 101`,
				`c.yaml:4: cluster.retransmit_mult: must be 1-100, got -2`,
			}},
		{"priority zero", "  priority: 0\n",
			[]string{`c.yaml:2: cluster.priority: must be 1-1000, got 0`}},
		{"priority too high", "  priority: 1001\n",
			[]string{`c.yaml:2: cluster.priority: must be 1-1000, got 1001`}},
		{"unknown quorum", "  quorum: most\n",
			[]string{`c.yaml:2: cluster.quorum: unknown quorum mode "most" (none or majority)`}},
		{"majority needs expected", "  quorum: majority\n",
			[]string{`c.yaml:2: cluster.quorum: majority needs expected_members (the number of directors)`}},
		{"negative expected", "  quorum: majority\n  expected_members: -3\n",
			[]string{`c.yaml:3: cluster.expected_members: must not be negative, got -3`}},
		{"unknown field", "  peers: []\n",
			[]string{`c.yaml:2: cluster.peers: unknown field "peers"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseClusterYAML(t, tt.body)
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("err = %v, want config.Errors", err)
			}
			got := make([]string, len(es))
			for i, e := range es {
				got[i] = e.Error()
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("errors:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(tt.want, "\n     "))
			}
		})
	}
}
