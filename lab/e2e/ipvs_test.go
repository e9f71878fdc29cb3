//go:build lab

package e2e

import (
	"reflect"
	"testing"
)

// Real output of ipvsadm v1.31 on the lab kernel.
const ipvsList = `IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.100.0.10:80 rr
  -> 10.100.11.2:8080             Masq    1      3          7         
  -> 10.100.12.2:8080             Masq    5      0          0         
UDP  10.100.0.10:53 wlc persistent 300
  -> 10.100.11.2:53               Masq    0      0          0         
TCP  [2001:db8:100::10]:443 mh (mh-fallback,mh-port)
  -> [2001:db8:100:11::2]:8443    Masq    1      0          0         
FWM  7 sh
  -> 10.100.11.2:0                Route   1      0          0         
`

const ipvsStats = `IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
TCP  10.100.0.10:80                     30      180      150    12000    15000
  -> 10.100.11.2:8080                   10       60       50     4000     5000
  -> 10.100.12.2:8080                   20      120      100     8000    10000
UDP  10.100.0.10:53                      0        0        0        0        0
  -> 10.100.11.2:53                      0        0        0        0        0
TCP  [2001:db8:100::10]:443              0        0        0        0        0
  -> [2001:db8:100:11::2]:8443           0        0        0        0        0
FWM  7                                   1        2        3        4        5
  -> 10.100.11.2:0                       1        2        3        4        5
`

func TestParseIPVS(t *testing.T) {
	svcs, err := ParseIPVS(ipvsList)
	if err != nil {
		t.Fatal(err)
	}
	if err := parseIPVSStats(ipvsStats, svcs); err != nil {
		t.Fatal(err)
	}
	want := []IPVSService{
		{Proto: "TCP", Addr: "10.100.0.10:80", Scheduler: "rr", Flags: []string{},
			Stats: IPVSStats{30, 180, 150, 12000, 15000},
			Dests: []IPVSDest{
				{Addr: "10.100.11.2:8080", Forward: "Masq", Weight: 1, ActiveConn: 3, InActConn: 7, Stats: IPVSStats{10, 60, 50, 4000, 5000}},
				{Addr: "10.100.12.2:8080", Forward: "Masq", Weight: 5, Stats: IPVSStats{20, 120, 100, 8000, 10000}},
			}},
		{Proto: "UDP", Addr: "10.100.0.10:53", Scheduler: "wlc", Flags: []string{"persistent", "300"},
			Dests: []IPVSDest{{Addr: "10.100.11.2:53", Forward: "Masq"}}},
		{Proto: "TCP", Addr: "[2001:db8:100::10]:443", Scheduler: "mh", Flags: []string{"(mh-fallback,mh-port)"},
			Dests: []IPVSDest{{Addr: "[2001:db8:100:11::2]:8443", Forward: "Masq", Weight: 1}}},
		{Proto: "FWM", Addr: "7", Scheduler: "sh", Flags: []string{}, Stats: IPVSStats{1, 2, 3, 4, 5},
			Dests: []IPVSDest{{Addr: "10.100.11.2:0", Forward: "Route", Weight: 1, Stats: IPVSStats{1, 2, 3, 4, 5}}}},
	}
	if !reflect.DeepEqual(svcs, want) {
		t.Errorf("want:\n%s\ngot:\n%s\n(%#v)", FormatServices(want), FormatServices(svcs), svcs)
	}
	if d := svcs[0].Dest("10.100.12.2:8080"); d == nil || d.Weight != 5 {
		t.Errorf("Dest lookup: want weight 5, got %+v", d)
	}
	if empty, err := ParseIPVS("IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"); err != nil || len(empty) != 0 {
		t.Errorf("empty table: want no services, got %v, %v", empty, err)
	}
}
