package daemon

import (
	"net/netip"
	"testing"

	"github.com/lvs-director/lvs-director/bgp"
	"github.com/lvs-director/lvs-director/cluster"
	"github.com/lvs-director/lvs-director/config"
	"github.com/lvs-director/lvs-director/director"
)

func TestAnnounceInputs(t *testing.T) {
	cfg, err := config.Parse("a.yaml", []byte(`
bgp:
  asn: 65001
  router_id: 192.0.2.1
  med: 10
  neighbors: [{address: 127.0.0.2, asn: 65000}]
services:
  - {name: aa, vip: 203.0.113.10, port: 80, real_servers: [{address: 10.0.0.1}]}
  - {name: as, vip: 203.0.113.20, port: 80, failover: active-standby, standby_announce: true, real_servers: [{address: 10.0.0.1}]}
  - {name: down, vip: 203.0.113.30, port: 80, real_servers: [{address: 10.0.0.1}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	health := []director.ServiceHealth{{Name: "aa", Healthy: true}, {Name: "as", Healthy: true}, {Name: "down", Healthy: false}}
	roles := map[string]cluster.Role{"203.0.113.10": cluster.RoleOwner, "203.0.113.20": cluster.RoleStandby, "203.0.113.30": cluster.RoleOwner}
	role := func(key, mode string) cluster.Role {
		if key == "203.0.113.20" && mode != "active-standby" {
			t.Errorf("mode for %s = %s", key, mode)
		}
		return roles[key]
	}
	tests := []struct {
		name   string
		role   func(string, string) cluster.Role
		quorum bool
		want   []bgp.Role
	}{
		{"no cluster: owner of all", nil, true, []bgp.Role{bgp.Owner, bgp.Owner, bgp.Owner}},
		{"cluster roles", role, true, []bgp.Role{bgp.Owner, bgp.Standby, bgp.Owner}},
		{"no quorum: owns nothing", role, false, []bgp.Role{bgp.NotOwner, bgp.NotOwner, bgp.NotOwner}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := AnnounceInputs(cfg.Services, cfg.BGP, health, tt.role, tt.quorum)
			for i, a := range in {
				if a.Role != tt.want[i] {
					t.Errorf("%s: role %v, want %v", cfg.Services[i].Name, a.Role, tt.want[i])
				}
				if a.VIP != cfg.Services[i].VIP.Addr || a.Healthy != health[i].Healthy {
					t.Errorf("%s: %+v", cfg.Services[i].Name, a)
				}
				if a.Attrs.MED == nil || *a.Attrs.MED != 10 {
					t.Errorf("%s: attrs %+v", cfg.Services[i].Name, a.Attrs)
				}
			}
			if !in[1].StandbyAnnounce || in[0].StandbyAnnounce {
				t.Errorf("standby_announce not carried")
			}
		})
	}
	// End to end through the pure decision: only the healthy owner VIP and the standby are routes.
	routes := bgp.Decide(AnnounceInputs(cfg.Services, cfg.BGP, health, role, true))
	var got []netip.Prefix
	for _, r := range routes {
		got = append(got, r.Prefix)
	}
	if len(got) != 2 || got[0] != netip.MustParsePrefix("203.0.113.10/32") || got[1] != netip.MustParsePrefix("203.0.113.20/32") {
		t.Fatalf("routes %v", got)
	}
	if routes[1].MED == nil || *routes[1].MED <= 10 {
		t.Fatalf("standby route MED %v, want worse than 10", routes[1].MED)
	}
}

func TestEligible(t *testing.T) {
	up := []director.ServiceHealth{{Healthy: false}, {Healthy: true}}
	down := []director.ServiceHealth{{Healthy: false}}
	for _, tt := range []struct {
		err    string
		health []director.ServiceHealth
		want   bool
	}{
		{"", nil, true}, {"", up, true}, {"", down, false}, {"netlink: EPERM", up, false},
	} {
		if got := Eligible(tt.err, tt.health); got != tt.want {
			t.Errorf("Eligible(%q, %v) = %v", tt.err, tt.health, got)
		}
	}
}
