package director

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/lvs-director/lvs-director/config"
)

func mustConfig(t *testing.T, y string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("t.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestDesired(t *testing.T) {
	cfg := mustConfig(t, `
services:
  - name: web
    vip: 203.0.113.10
    port: 80
    scheduler: wrr
    persistence: 5m
    persistence_netmask: 24
    full_nat: true
    health_check: {type: tcp}
    quorum: 2
    sorry_server: {address: 10.0.9.9, port: 8080}
    real_servers:
      - {address: 10.0.1.11, port: 8080, weight: 3}
      - {address: 10.0.1.12, port: 8080, weight: 2}
      - {address: 10.0.1.13, port: 8080}
  - name: inhibit
    vip: "2001:db8::10"
    port: 443
    inhibit_on_failure: true
    health_check: {type: tcp}
    real_servers:
      - {address: "2001:db8:1::11", weight: 4}
      - {address: "2001:db8:1::12", weight: 4}
  - name: unchecked
    vip: 203.0.113.20
    port: 53
    protocol: udp
    real_servers:
      - {address: 10.0.2.1}
`)
	ap := netip.MustParseAddrPort
	tests := []struct {
		name    string
		up      map[netip.AddrPort]bool
		drained map[netip.AddrPort]bool
		web     []Dest
		webH    ServiceHealth
		inhib   []Dest
	}{
		{
			name:  "all up",
			up:    map[netip.AddrPort]bool{ap("10.0.1.11:8080"): true, ap("10.0.1.12:8080"): true, ap("10.0.1.13:8080"): true, ap("[2001:db8:1::11]:443"): true, ap("[2001:db8:1::12]:443"): true},
			web:   []Dest{{Addr: ap("10.0.1.11:8080"), Weight: 3}, {Addr: ap("10.0.1.12:8080"), Weight: 2}, {Addr: ap("10.0.1.13:8080"), Weight: 1}},
			webH:  ServiceHealth{Up: 3, Total: 3, Quorum: 2, Healthy: true},
			inhib: []Dest{{Addr: ap("[2001:db8:1::11]:443"), Weight: 4}, {Addr: ap("[2001:db8:1::12]:443"), Weight: 4}},
		},
		{
			name:  "one down: absent; inhibited one at weight 0",
			up:    map[netip.AddrPort]bool{ap("10.0.1.11:8080"): true, ap("10.0.1.13:8080"): true, ap("[2001:db8:1::11]:443"): true},
			web:   []Dest{{Addr: ap("10.0.1.11:8080"), Weight: 3}, {Addr: ap("10.0.1.12:8080"), Weight: 2, Absent: true}, {Addr: ap("10.0.1.13:8080"), Weight: 1}},
			webH:  ServiceHealth{Up: 2, Total: 3, Quorum: 2, Healthy: true},
			inhib: []Dest{{Addr: ap("[2001:db8:1::11]:443"), Weight: 4}, {Addr: ap("[2001:db8:1::12]:443"), Weight: 0}},
		},
		{
			name:  "quorum lost: sorry server takes new connections",
			up:    map[netip.AddrPort]bool{ap("10.0.1.11:8080"): true},
			web:   []Dest{{Addr: ap("10.0.1.11:8080"), Weight: 0}, {Addr: ap("10.0.1.12:8080"), Weight: 2, Absent: true}, {Addr: ap("10.0.1.13:8080"), Weight: 1, Absent: true}, {Addr: ap("10.0.9.9:8080"), Weight: 1}},
			webH:  ServiceHealth{Up: 1, Total: 3, Quorum: 2, Healthy: false, Sorry: true},
			inhib: []Dest{{Addr: ap("[2001:db8:1::11]:443"), Weight: 0}, {Addr: ap("[2001:db8:1::12]:443"), Weight: 0}},
		},
		{
			name:    "drained by the operator: left out",
			up:      map[netip.AddrPort]bool{ap("10.0.1.11:8080"): true, ap("10.0.1.12:8080"): true, ap("10.0.1.13:8080"): true},
			drained: map[netip.AddrPort]bool{ap("10.0.1.12:8080"): true},
			web:     []Dest{{Addr: ap("10.0.1.11:8080"), Weight: 3}, {Addr: ap("10.0.1.13:8080"), Weight: 1}},
			webH:    ServiceHealth{Up: 2, Total: 3, Quorum: 2, Healthy: true},
			inhib:   []Dest{{Addr: ap("[2001:db8:1::11]:443"), Weight: 0}, {Addr: ap("[2001:db8:1::12]:443"), Weight: 0}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vs, hs := Desired(cfg.Services,
				func(_ string, a netip.AddrPort) bool { return tt.up[a] },
				func(s string, a netip.AddrPort) bool { return s == "web" && tt.drained[a] })
			byName := map[string]int{}
			for i, h := range hs {
				byName[h.Name] = i
			}
			var web, inhib, unchecked VirtualService
			for _, s := range vs {
				switch s.Key.Port {
				case 80:
					web = s
				case 443:
					inhib = s
				case 53:
					unchecked = s
				}
			}
			if !reflect.DeepEqual(web.Dests, tt.web) {
				t.Errorf("web dests\n got %+v\nwant %+v", web.Dests, tt.web)
			}
			h := hs[byName["web"]]
			h.Name, h.Key = "", ServiceKey{}
			if h != tt.webH {
				t.Errorf("web health %+v, want %+v", h, tt.webH)
			}
			if !reflect.DeepEqual(inhib.Dests, tt.inhib) {
				t.Errorf("inhibit dests\n got %+v\nwant %+v", inhib.Dests, tt.inhib)
			}
			if len(unchecked.Dests) != 1 || unchecked.Dests[0].Weight != 1 || !hs[byName["unchecked"]].Healthy {
				t.Errorf("unchecked service: %+v %+v", unchecked, hs[byName["unchecked"]])
			}
			if web.Flags != FlagPersistent || web.Timeout != 300 || web.Netmask != 0xffffff00 || !web.FullNAT || web.Scheduler != "wrr" {
				t.Errorf("web attrs %+v", web)
			}
			if inhib.Netmask != 128 || unchecked.Key.Protocol != ProtoUDP {
				t.Errorf("attrs: %+v %+v", inhib, unchecked)
			}
		})
	}
}
