package main

import (
	"net/netip"
	"testing"

	"github.com/lvs-director/lvs-director/director"
)

func TestParseRules(t *testing.T) {
	ops, err := parseRules([]byte("-A -t 10.1.0.1:8000 -s wrr\n-a -t 10.1.0.1:8000 -r 10.2.0.1:8080 -m -w 3\n\n-A -u [2001:db8::1]:53 -s rr\n-a -u [2001:db8::1]:53 -r [2001:db8::2]:53 -m\n"))
	if err != nil {
		t.Fatal(err)
	}
	svc := director.ServiceKey{Protocol: director.ProtoTCP, Addr: netip.MustParseAddr("10.1.0.1"), Port: 8000}
	svc6 := director.ServiceKey{Protocol: director.ProtoUDP, Addr: netip.MustParseAddr("2001:db8::1"), Port: 53}
	want := []string{
		director.Op{Kind: director.OpAddService, Service: director.VirtualService{Key: svc, Scheduler: "wrr", Netmask: 0xffffffff}}.String(),
		director.Op{Kind: director.OpAddDest, Service: director.VirtualService{Key: svc}, Dest: director.Dest{Addr: netip.MustParseAddrPort("10.2.0.1:8080"), Weight: 3}}.String(),
		director.Op{Kind: director.OpAddService, Service: director.VirtualService{Key: svc6, Scheduler: "rr", Netmask: 128}}.String(),
		director.Op{Kind: director.OpAddDest, Service: director.VirtualService{Key: svc6}, Dest: director.Dest{Addr: netip.MustParseAddrPort("[2001:db8::2]:53"), Weight: 1}}.String(),
	}
	if len(ops) != len(want) {
		t.Fatalf("%d ops, want %d: %v", len(ops), len(want), ops)
	}
	for i := range ops {
		if got := ops[i].String(); got != want[i] {
			t.Errorf("op %d: %s, want %s", i, got, want[i])
		}
	}
	if ops[0].Service.Netmask != 0xffffffff || ops[2].Service.Netmask != 128 || ops[1].Service.Scheduler != "" {
		t.Errorf("attributes: %+v %+v %+v", ops[0].Service, ops[2].Service, ops[1].Service)
	}
}

func TestParseRulesRefuses(t *testing.T) {
	for _, c := range []struct{ in, err string }{
		{"-E -t 10.1.0.1:80 -s rr", `line 1: unknown command "-E" (want -A or -a)`},
		{"-A -t 10.1.0.1:80 -s rr\n-A -t 10.1.0.1 -s rr", `line 2: -t: not an ip:port`},
		{"-A -t 10.1.0.1:80", "line 1: no scheduler (-s)"},
		{"-a -t 10.1.0.1:80 -m", "line 1: no real server (-r)"},
		{"-a -r 10.2.0.1:80", "line 1: no virtual service (-t or -u)"},
		{"-a -t 10.1.0.1:80 -r 10.2.0.1:80 -w", "line 1: -w without a value"},
		{"-a -t 10.1.0.1:80 -r 10.2.0.1:80 -w -1", `line 1: -w: bad weight "-1"`},
		{"-A -t 10.1.0.1:80 -s rr -p 300", `line 1: unknown option "-p"`},
	} {
		if _, err := parseRules([]byte(c.in)); err == nil || err.Error() != c.err {
			t.Errorf("%q: error %v, want %q", c.in, err, c.err)
		}
	}
}
