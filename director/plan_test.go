package director

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

var (
	vip1  = netip.MustParseAddr("203.0.113.10")
	vip2  = netip.MustParseAddr("203.0.113.20")
	vip6  = netip.MustParseAddr("2001:db8::10")
	exVIP = netip.MustParseAddr("10.255.0.5")
	t0    = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
)

func rs(s string, w int32) Dest { return Dest{Addr: netip.MustParseAddrPort(s), Weight: w} }

func svc(a netip.Addr, port uint16, sched string, dests ...Dest) VirtualService {
	nm := uint32(0xffffffff)
	if a.Is6() {
		nm = 128
	}
	return VirtualService{Key: ServiceKey{Protocol: ProtoTCP, Addr: a, Port: port}, Scheduler: sched, Netmask: nm, Dests: dests}
}

func opStrings(ops []Op) []string {
	out := make([]string, len(ops))
	for i, o := range ops {
		out[i] = o.String()
	}
	return out
}

func TestMakePlan(t *testing.T) {
	web := svc(vip1, 80, "rr", rs("10.0.1.11:8080", 1), rs("10.0.1.12:8080", 2))
	tests := []struct {
		name     string
		desired  []VirtualService
		observed []VirtualService
		vips     []netip.Addr
		drain    DrainState
		now      time.Time
		keep     bool
		want     []string
	}{
		{
			name:    "empty kernel: add VIP, service, real servers",
			desired: []VirtualService{web},
			want: []string{
				"add-vip 203.0.113.10",
				"add-service tcp/203.0.113.10:80 rr",
				"add-dest tcp/203.0.113.10:80 -> 10.0.1.11:8080 masq weight 1",
				"add-dest tcp/203.0.113.10:80 -> 10.0.1.12:8080 masq weight 2",
			},
		},
		{
			name: "in sync: nothing", desired: []VirtualService{web},
			observed: []VirtualService{web}, vips: []netip.Addr{vip1},
		},
		{
			name:     "one real server added: one operation",
			desired:  []VirtualService{svc(vip1, 80, "rr", rs("10.0.1.11:8080", 1), rs("10.0.1.12:8080", 2), rs("10.0.1.13:8080", 1))},
			observed: []VirtualService{web}, vips: []netip.Addr{vip1},
			want: []string{"add-dest tcp/203.0.113.10:80 -> 10.0.1.13:8080 masq weight 1"},
		},
		{
			name:     "weight and scheduler changed",
			desired:  []VirtualService{svc(vip1, 80, "wrr", rs("10.0.1.11:8080", 5), rs("10.0.1.12:8080", 2))},
			observed: []VirtualService{web}, vips: []netip.Addr{vip1},
			want: []string{
				"update-service tcp/203.0.113.10:80 wrr (was tcp/203.0.113.10:80 rr)",
				"update-dest tcp/203.0.113.10:80 -> 10.0.1.11:8080 masq weight 5 (was masq weight 1)",
			},
		},
		{
			name:     "forwarding method repaired to masq",
			desired:  []VirtualService{web},
			observed: []VirtualService{svc(vip1, 80, "rr", Dest{Addr: netip.MustParseAddrPort("10.0.1.11:8080"), Weight: 1, Fwd: fwdDirect}, rs("10.0.1.12:8080", 2))},
			vips:     []netip.Addr{vip1},
			want:     []string{"update-dest tcp/203.0.113.10:80 -> 10.0.1.11:8080 masq weight 1 (was route weight 1)"},
		},
		{
			name:     "removed real server with connections drains at weight 0",
			desired:  []VirtualService{svc(vip1, 80, "rr", rs("10.0.1.11:8080", 1))},
			observed: []VirtualService{svc(vip1, 80, "rr", rs("10.0.1.11:8080", 1), Dest{Addr: netip.MustParseAddrPort("10.0.1.12:8080"), Weight: 2, ActiveConns: 3})},
			vips:     []netip.Addr{vip1}, now: t0,
			want: []string{"update-dest tcp/203.0.113.10:80 -> 10.0.1.12:8080 masq weight 0 (draining 3 connections)"},
		},
		{
			name:     "draining real server still busy before timeout: nothing",
			desired:  []VirtualService{svc(vip1, 80, "rr", rs("10.0.1.11:8080", 1))},
			observed: []VirtualService{svc(vip1, 80, "rr", rs("10.0.1.11:8080", 1), Dest{Addr: netip.MustParseAddrPort("10.0.1.12:8080"), Weight: 0, ActiveConns: 3})},
			vips:     []netip.Addr{vip1},
			drain:    DrainState{ServiceKey{ProtoTCP, vip1, 80}: {netip.MustParseAddrPort("10.0.1.12:8080"): t0}},
			now:      t0.Add(29 * time.Second),
		},
		{
			name:     "draining real server deleted at drain timeout",
			desired:  []VirtualService{svc(vip1, 80, "rr", rs("10.0.1.11:8080", 1))},
			observed: []VirtualService{svc(vip1, 80, "rr", rs("10.0.1.11:8080", 1), Dest{Addr: netip.MustParseAddrPort("10.0.1.12:8080"), Weight: 0, ActiveConns: 3})},
			vips:     []netip.Addr{vip1},
			drain:    DrainState{ServiceKey{ProtoTCP, vip1, 80}: {netip.MustParseAddrPort("10.0.1.12:8080"): t0}},
			now:      t0.Add(30 * time.Second),
			want:     []string{"del-dest tcp/203.0.113.10:80 -> 10.0.1.12:8080 (drain timeout with 3 connections)"},
		},
		{
			name:     "idle removed real server deleted at once",
			desired:  []VirtualService{svc(vip1, 80, "rr", rs("10.0.1.11:8080", 1))},
			observed: []VirtualService{web}, vips: []netip.Addr{vip1},
			want: []string{"del-dest tcp/203.0.113.10:80 -> 10.0.1.12:8080 (drained: no connections)"},
		},
		{
			name:     "udp counts inactive entries as connections",
			desired:  []VirtualService{{Key: ServiceKey{ProtoUDP, vip1, 53}, Scheduler: "rr", Netmask: 0xffffffff}},
			observed: []VirtualService{{Key: ServiceKey{ProtoUDP, vip1, 53}, Scheduler: "rr", Netmask: 0xffffffff, Dests: []Dest{{Addr: netip.MustParseAddrPort("10.0.1.11:53"), Weight: 1, InactiveConns: 2}}}},
			vips:     []netip.Addr{vip1},
			want:     []string{"update-dest udp/203.0.113.10:53 -> 10.0.1.11:53 masq weight 0 (draining 2 connections)"},
		},
		{
			name:     "unhealthy real server deleted at once, inhibited one at weight 0",
			desired:  []VirtualService{svc(vip1, 80, "rr", Dest{Addr: netip.MustParseAddrPort("10.0.1.11:8080"), Absent: true}, rs("10.0.1.12:8080", 0))},
			observed: []VirtualService{svc(vip1, 80, "rr", Dest{Addr: netip.MustParseAddrPort("10.0.1.11:8080"), Weight: 1, ActiveConns: 5}, rs("10.0.1.12:8080", 2))},
			vips:     []netip.Addr{vip1},
			want: []string{
				"update-dest tcp/203.0.113.10:80 -> 10.0.1.12:8080 masq weight 0 (was masq weight 2)",
				"del-dest tcp/203.0.113.10:80 -> 10.0.1.11:8080 (unhealthy)",
			},
		},
		{
			name:     "unhealthy real server never added",
			desired:  []VirtualService{svc(vip1, 80, "rr", Dest{Addr: netip.MustParseAddrPort("10.0.1.11:8080"), Absent: true})},
			observed: []VirtualService{svc(vip1, 80, "rr")}, vips: []netip.Addr{vip1},
		},
		{
			name:     "foreign service (VIP not on our interface) is never touched",
			observed: []VirtualService{svc(vip2, 80, "rr", rs("10.0.9.1:80", 1))},
			vips:     nil,
		},
		{
			name:     "excluded service is never touched even with its VIP on our interface",
			observed: []VirtualService{svc(exVIP, 80, "rr", rs("10.0.9.1:80", 1))},
			vips:     []netip.Addr{exVIP},
		},
		{
			name:     "removed service drains its busy real servers, keeps its VIP",
			observed: []VirtualService{svc(vip1, 80, "rr", Dest{Addr: netip.MustParseAddrPort("10.0.1.11:8080"), Weight: 1, ActiveConns: 1}, rs("10.0.1.12:8080", 2))},
			vips:     []netip.Addr{vip1}, now: t0,
			want: []string{
				"update-dest tcp/203.0.113.10:80 -> 10.0.1.11:8080 masq weight 0 (draining 1 connections)",
				"del-dest tcp/203.0.113.10:80 -> 10.0.1.12:8080 (drained: no connections)",
			},
		},
		{
			name:     "removed idle service deleted with its VIP",
			observed: []VirtualService{web}, vips: []netip.Addr{vip1},
			want: []string{
				"del-dest tcp/203.0.113.10:80 -> 10.0.1.11:8080 (drained: no connections)",
				"del-dest tcp/203.0.113.10:80 -> 10.0.1.12:8080 (drained: no connections)",
				"del-service tcp/203.0.113.10:80 (removed from config)",
				"del-vip 203.0.113.10 (no service uses it)",
			},
		},
		{
			name:     "keep undesired: a source has not reported, nothing is removed",
			observed: []VirtualService{web}, vips: []netip.Addr{vip1}, keep: true,
		},
		{
			name:     "VIP kept while another service uses it",
			desired:  []VirtualService{svc(vip1, 443, "rr")},
			observed: []VirtualService{svc(vip1, 80, "rr"), svc(vip1, 443, "rr")}, vips: []netip.Addr{vip1},
			want: []string{"del-service tcp/203.0.113.10:80 (removed from config)"},
		},
		{
			name:     "deleted VIP address is restored (drift)",
			desired:  []VirtualService{web},
			observed: []VirtualService{web},
			want:     []string{"add-vip 203.0.113.10"},
		},
		{
			name:    "IPv6 service",
			desired: []VirtualService{svc(vip6, 80, "rr", rs("[2001:db8:1::11]:8080", 1))},
			want: []string{
				"add-vip 2001:db8::10",
				"add-service tcp/[2001:db8::10]:80 rr",
				"add-dest tcp/[2001:db8::10]:80 -> [2001:db8:1::11]:8080 masq weight 1",
			},
		},
		{
			name: "persistence change updates the service",
			desired: []VirtualService{func() VirtualService {
				s := web
				s.Flags, s.Timeout, s.Netmask = FlagPersistent, 300, 0xffffff00
				return s
			}()},
			observed: []VirtualService{web}, vips: []netip.Addr{vip1},
			want: []string{"update-service tcp/203.0.113.10:80 rr persistent 300 mask 255.255.255.0 (was tcp/203.0.113.10:80 rr)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := PlanInput{
				Desired: tt.desired, Observed: tt.observed, VIPs: tt.vips,
				Exclude: []netip.Prefix{netip.MustParsePrefix("10.255.0.0/16")},
				Drain:   tt.drain, DrainTimeout: 30 * time.Second, Now: tt.now, KeepUndesired: tt.keep,
			}
			before := tt.drain.Clone()
			got := opStrings(MakePlan(in).Ops)
			if len(got) == 0 {
				got = nil
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("plan:\n got: %s\nwant: %s", strings.Join(got, "\n      "), strings.Join(tt.want, "\n      "))
			}
			if !reflect.DeepEqual(before, tt.drain.Clone()) {
				t.Errorf("MakePlan modified its input drain state")
			}
		})
	}
}

func TestMakePlanDrainStateCarriesStart(t *testing.T) {
	key := ServiceKey{ProtoTCP, vip1, 80}
	busy := Dest{Addr: netip.MustParseAddrPort("10.0.1.12:8080"), Weight: 0, ActiveConns: 1}
	in := PlanInput{
		Desired:  []VirtualService{svc(vip1, 80, "rr")},
		Observed: []VirtualService{svc(vip1, 80, "rr", busy)},
		VIPs:     []netip.Addr{vip1}, DrainTimeout: time.Minute, Now: t0,
	}
	p := MakePlan(in)
	if got := p.Drain[key][busy.Addr]; !got.Equal(t0) {
		t.Fatalf("drain start = %v, want %v", got, t0)
	}
	in.Drain, in.Now = p.Drain, t0.Add(10*time.Second)
	if got := MakePlan(in).Drain[key][busy.Addr]; !got.Equal(t0) {
		t.Fatalf("drain start moved to %v, want %v", got, t0)
	}
	// Re-desired: no longer draining, weight restored.
	in.Desired = []VirtualService{svc(vip1, 80, "rr", rs("10.0.1.12:8080", 3))}
	p = MakePlan(in)
	if p.Drain.Len() != 0 {
		t.Fatalf("drain state %v, want empty", p.Drain)
	}
	if got := opStrings(p.Ops); len(got) != 1 || got[0] != "update-dest tcp/203.0.113.10:80 -> 10.0.1.12:8080 masq weight 3 (was masq weight 0)" {
		t.Fatalf("ops %v", got)
	}
}

func TestCleanupPlan(t *testing.T) {
	observed := []VirtualService{svc(vip1, 80, "rr", rs("10.0.1.11:8080", 1)), svc(vip2, 80, "rr"), svc(exVIP, 80, "rr")}
	got := opStrings(CleanupPlan(observed, []netip.Addr{vip1, exVIP}, []netip.Prefix{netip.MustParsePrefix("10.255.0.0/16")}))
	want := []string{"del-service tcp/203.0.113.10:80 (cleanup)", "del-vip 203.0.113.10 (cleanup)"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}
