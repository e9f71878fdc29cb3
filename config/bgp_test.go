package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func parseBGP(t *testing.T, bgp string) (*Config, error) {
	t.Helper()
	return Parse("t.yaml", []byte("bgp:\n"+bgp))
}

func TestBGPDefaults(t *testing.T) {
	cfg, err := parseBGP(t, `
  asn: 65001
  router_id: 192.0.2.10
  neighbors:
    - address: 192.0.2.1
      asn: 65000
    - address: 2001:db8::1
      asn: 1.10
      hold_time: 30s
`)
	if err != nil {
		t.Fatal(err)
	}
	b := cfg.BGP
	if b.ListenPort != 0 {
		t.Errorf("listen_port default = %d, want 0 (do not listen)", b.ListenPort)
	}
	n := b.Neighbors[0]
	if n.Port != 179 || n.HoldTime.D() != 9*time.Second || n.Keepalive.D() != 3*time.Second ||
		n.ConnectRetry.D() != 5*time.Second || !reflect.DeepEqual(n.Families, []string{"ipv4"}) {
		t.Errorf("neighbor 0 defaults: port %d hold %s keepalive %s retry %s families %v",
			n.Port, n.HoldTime, n.Keepalive, n.ConnectRetry, n.Families)
	}
	n = b.Neighbors[1]
	if n.ASN != 65546 || n.HoldTime.D() != 30*time.Second || n.Keepalive.D() != 10*time.Second ||
		!reflect.DeepEqual(n.Families, []string{"ipv6"}) {
		t.Errorf("neighbor 1: asn %d hold %s keepalive %s families %v", n.ASN, n.HoldTime, n.Keepalive, n.Families)
	}
}

func TestBGPAttributes(t *testing.T) {
	cfg, err := Parse("t.yaml", []byte(`
bgp:
  asn: 4200000000
  router_id: 192.0.2.10
  communities: ["65000:100", no-export, BLACKHOLE]
  large_communities: ["4200000000:1:2"]
  local_pref: 200
  med: 0
services:
  - name: web
    vip: 198.51.100.1
    port: 80
    bgp:
      communities: ["65000:200"]
      large_communities: ["1:2:3"]
      med: 50
`))
	if err != nil {
		t.Fatal(err)
	}
	b := cfg.BGP
	want := []Community{65000<<16 | 100, 0xFFFFFF01, 0xFFFF029A}
	if !reflect.DeepEqual(b.Communities, want) {
		t.Errorf("communities = %v, want %v", b.Communities, want)
	}
	if b.LargeCommunities[0] != (LargeCommunity{4200000000, 1, 2}) || *b.LocalPref != 200 || b.MED == nil || *b.MED != 0 {
		t.Errorf("large %v local_pref %v med %v", b.LargeCommunities, b.LocalPref, b.MED)
	}
	s := cfg.Services[0].BGP
	if s.Communities[0] != 65000<<16|200 || s.LargeCommunities[0] != (LargeCommunity{1, 2, 3}) || *s.MED != 50 || s.LocalPref != nil {
		t.Errorf("service bgp = %+v", s)
	}
	if got := Community(65000<<16 | 100).String(); got != "65000:100" {
		t.Errorf("String = %q", got)
	}
	if got := Community(0xFFFFFF01).String(); got != "no-export" {
		t.Errorf("String = %q", got)
	}
}

func TestBGPErrors(t *testing.T) {
	base := "  asn: 65001\n  router_id: 192.0.2.10\n"
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"missing asn and router id", "  neighbors: []\n", []string{
			"t.yaml:1: bgp.asn: is required (1-4294967295)",
			"t.yaml:1: bgp.router_id: is required (an IPv4 address)",
		}},
		{"asn out of range", "  asn: 4294967296\n  router_id: 192.0.2.10\n", []string{
			`t.yaml:2: bgp.asn: invalid AS number "4294967296" (1-4294967295, or asdot such as 1.10)`,
		}},
		{"asn not a number", "  asn: sixty\n  router_id: 192.0.2.10\n", []string{
			`t.yaml:2: bgp.asn: invalid AS number "sixty" (1-4294967295, or asdot such as 1.10)`,
		}},
		{"router id ipv6", "  asn: 1\n  router_id: 2001:db8::1\n", []string{
			"t.yaml:3: bgp.router_id: must be a non-zero IPv4 address, got 2001:db8::1",
		}},
		{"neighbor address syntax", base + "  neighbors:\n    - asn: 1\n      address: 192.0.2.300\n", []string{
			`t.yaml:6: bgp.neighbors[0].address: invalid IP address "192.0.2.300"`,
		}},
		{"neighbor address missing and asn zero", base + "  neighbors:\n    - asn: 0\n", []string{
			"t.yaml:5: bgp.neighbors[0].address: is required",
			"t.yaml:5: bgp.neighbors[0].asn: is required (1-4294967295)",
		}},
		{"neighbor address unspecified", base + "  neighbors:\n    - address: 0.0.0.0\n      asn: 1\n", []string{
			"t.yaml:5: bgp.neighbors[0].address: 0.0.0.0 cannot be a BGP neighbor (unspecified or multicast)",
		}},
		{"duplicate neighbor", base + "  neighbors:\n    - {address: 192.0.2.1, asn: 1}\n    - {address: 192.0.2.1, asn: 2}\n", []string{
			"t.yaml:6: bgp.neighbors[1].address: duplicate neighbor 192.0.2.1 (also neighbors[0])",
		}},
		{"password too long", base + "  neighbors:\n    - address: 192.0.2.1\n      asn: 1\n      password: " + strings.Repeat("x", 81) + "\n", []string{
			"t.yaml:7: bgp.neighbors[0].password: is 81 characters long; TCP MD5 keys are at most 80",
		}},
		{"community syntax", base + "  communities: [\"65536:1\", \"1:2:3\", no-such]\n", []string{
			`t.yaml:4: bgp.communities: invalid community "65536:1" (ASN:VALUE with both 0-65535, or a well-known name such as no-export)`,
			`t.yaml:4: bgp.communities: invalid community "1:2:3" (ASN:VALUE with both 0-65535, or a well-known name such as no-export)`,
			`t.yaml:4: bgp.communities: invalid community "no-such" (ASN:VALUE with both 0-65535, or a well-known name such as no-export)`,
		}},
		{"large community syntax", base + "  large_communities:\n    - \"1:2\"\n", []string{
			`t.yaml:5: bgp.large_communities[0]: invalid large community "1:2" (GLOBAL:LOCAL1:LOCAL2, each 0-4294967295)`,
		}},
		{"service community syntax", "services:\n  - name: a\n    vip: 198.51.100.1\n    port: 80\n    bgp:\n      communities:\n        - \"1:x\"\n", []string{
			`t.yaml:7: services[0].bgp.communities[0]: invalid community "1:x" (ASN:VALUE with both 0-65535, or a well-known name such as no-export)`,
		}},
		{"timers", base + "  neighbors:\n    - address: 192.0.2.1\n      asn: 1\n      hold_time: 2s\n      connect_retry: 500ms\n", []string{
			"t.yaml:7: bgp.neighbors[0].hold_time: must be whole seconds from 3s to 65535s, got 2s",
			"t.yaml:8: bgp.neighbors[0].connect_retry: must be whole seconds, at least 1s, got 500ms",
		}},
		{"hold time zero", base + "  neighbors:\n    - address: 192.0.2.1\n      asn: 1\n      hold_time: 0s\n", []string{
			"t.yaml:7: bgp.neighbors[0].hold_time: must be whole seconds from 3s to 65535s, got 0s",
		}},
		{"keepalive not below hold", base + "  neighbors:\n    - address: 192.0.2.1\n      asn: 1\n      hold_time: 9s\n      keepalive: 9s\n", []string{
			"t.yaml:8: bgp.neighbors[0].keepalive: must be whole seconds, at least 1s and less than hold_time 9s, got 9s",
		}},
		{"passive without listener", base + "  neighbors:\n    - address: 192.0.2.1\n      asn: 1\n      passive: true\n", []string{
			"t.yaml:7: bgp.neighbors[0].passive: needs bgp.listen_port: a passive neighbor must connect to the director",
		}},
		{"multihop on ibgp", base + "  neighbors:\n    - address: 192.0.2.1\n      asn: 65001\n      multihop: 3\n", []string{
			"t.yaml:7: bgp.neighbors[0].multihop: applies to eBGP neighbors only (this neighbor is in the local AS 65001)",
		}},
		{"families", base + "  neighbors:\n    - address: 192.0.2.1\n      asn: 1\n      families: [ipv4, IPv4, ipv6, vpnv4]\n", []string{
			`t.yaml:7: bgp.neighbors[0].families[1]: duplicate address family "ipv4"`,
			"t.yaml:7: bgp.neighbors[0].families[2]: ipv6 over the IPv4 session with 192.0.2.1 needs bgp.next_hop_ipv6",
			`t.yaml:7: bgp.neighbors[0].families[3]: unknown address family "vpnv4" (ipv4 or ipv6)`,
		}},
		{"next hops", base + "  next_hop: 2001:db8::1\n  next_hop_ipv6: 192.0.2.1\n  standby_prepend: 11\n", []string{
			"t.yaml:4: bgp.next_hop: must be a unicast IPv4 address, got 2001:db8::1",
			"t.yaml:5: bgp.next_hop_ipv6: must be a unicast IPv6 address, got 192.0.2.1",
			"t.yaml:6: bgp.standby_prepend: must be 0-10, got 11",
		}},
		{"unknown field", base + "  neighbours: []\n", []string{
			`t.yaml:4: bgp.neighbours: unknown field "neighbours"`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			y := "bgp:\n" + tt.yaml
			if strings.HasPrefix(tt.yaml, "services:") {
				y = tt.yaml
			}
			_, err := Parse("t.yaml", []byte(y))
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("Parse error = %v, want config.Errors", err)
			}
			var got []string
			for _, e := range errs {
				got = append(got, e.Error())
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}
