package bgp

import (
	"math"
	"net/netip"
	"reflect"
	"testing"

	"github.com/lvs-director/lvs-director/config"
)

func u32(v uint32) *uint32 { return &v }

func TestDecide(t *testing.T) {
	vip4 := netip.MustParseAddr("198.51.100.1")
	vip4b := netip.MustParseAddr("198.51.100.2")
	vip6 := netip.MustParseAddr("2001:db8::1")
	p4 := netip.MustParsePrefix("198.51.100.1/32")
	p4b := netip.MustParsePrefix("198.51.100.2/32")
	p6 := netip.MustParsePrefix("2001:db8::1/128")
	tests := []struct {
		name string
		in   []ServiceAnnounce
		want []Route
	}{
		{"nothing", nil, nil},
		{"healthy owner announced as host route", []ServiceAnnounce{
			{VIP: vip4, Healthy: true, Role: Owner, Attrs: Attributes{Communities: []uint32{2, 1, 2}, MED: u32(10)}},
			{VIP: vip6, Healthy: true, Role: Owner},
		}, []Route{
			{Prefix: p4, Communities: []uint32{1, 2}, MED: u32(10)},
			{Prefix: p6},
		}},
		{"unhealthy owner withdrawn", []ServiceAnnounce{
			{VIP: vip4, Healthy: false, Role: Owner},
		}, nil},
		{"healthy not owner withdrawn", []ServiceAnnounce{
			{VIP: vip4, Healthy: true, Role: NotOwner, StandbyAnnounce: true},
		}, nil},
		{"standby without standby_announce withdrawn", []ServiceAnnounce{
			{VIP: vip4, Healthy: true, Role: Standby},
		}, nil},
		{"standby with standby_announce: worse MED and prepend", []ServiceAnnounce{
			{VIP: vip4, Healthy: true, Role: Standby, StandbyAnnounce: true, Attrs: Attributes{MED: u32(10), StandbyPrepend: 2, LocalPref: u32(200)}},
			{VIP: vip4b, Healthy: true, Role: Standby, StandbyAnnounce: true},
		}, []Route{
			{Prefix: p4, MED: u32(110), ASPathPrepend: 2, LocalPref: u32(200)},
			{Prefix: p4b, MED: u32(100)},
		}},
		{"standby MED saturates", []ServiceAnnounce{
			{VIP: vip4, Healthy: true, Role: Standby, StandbyAnnounce: true, Attrs: Attributes{MED: u32(math.MaxUint32 - 1)}},
		}, []Route{{Prefix: p4, MED: u32(math.MaxUint32)}}},
		{"unhealthy standby withdrawn", []ServiceAnnounce{
			{VIP: vip4, Healthy: false, Role: Standby, StandbyAnnounce: true},
		}, nil},
		{"two services, one healthy: announced with that service's attributes", []ServiceAnnounce{
			{VIP: vip4, Healthy: false, Role: Owner, Attrs: Attributes{Communities: []uint32{7}}},
			{VIP: vip4, Healthy: true, Role: Owner, Attrs: Attributes{Communities: []uint32{8}}},
		}, []Route{{Prefix: p4, Communities: []uint32{8}}}},
		{"two services, none healthy: withdrawn", []ServiceAnnounce{
			{VIP: vip4, Healthy: false, Role: Owner},
			{VIP: vip4, Healthy: false, Role: Owner},
		}, nil},
		{"two healthy services merged", []ServiceAnnounce{
			{VIP: vip4, Healthy: true, Role: Owner, Attrs: Attributes{
				Communities: []uint32{3, 1}, LargeCommunities: []LargeCommunity{{1, 2, 3}}, LocalPref: u32(100), MED: u32(50)}},
			{VIP: vip4, Healthy: true, Role: Owner, Attrs: Attributes{
				Communities: []uint32{2, 3}, LargeCommunities: []LargeCommunity{{1, 2, 3}, {1, 1, 9}}, LocalPref: u32(300), MED: u32(20)}},
		}, []Route{{Prefix: p4, Communities: []uint32{1, 2, 3}, LargeCommunities: []LargeCommunity{{1, 1, 9}, {1, 2, 3}},
			LocalPref: u32(300), MED: u32(20)}}},
		{"owner service wins over standby service on the same VIP", []ServiceAnnounce{
			{VIP: vip4, Healthy: true, Role: Standby, StandbyAnnounce: true, Attrs: Attributes{Communities: []uint32{1}}},
			{VIP: vip4, Healthy: true, Role: Owner, Attrs: Attributes{Communities: []uint32{2}}},
		}, []Route{{Prefix: p4, Communities: []uint32{2}}}},
		{"standby used when the owned service is unhealthy", []ServiceAnnounce{
			{VIP: vip4, Healthy: true, Role: Standby, StandbyAnnounce: true, Attrs: Attributes{StandbyPrepend: 3}},
			{VIP: vip4, Healthy: true, Role: Standby, StandbyAnnounce: true, Attrs: Attributes{StandbyPrepend: 1}},
			{VIP: vip4, Healthy: false, Role: Owner},
		}, []Route{{Prefix: p4, MED: u32(100), ASPathPrepend: 1}}},
		{"IPv4-mapped VIP is announced as IPv4, invalid VIP ignored", []ServiceAnnounce{
			{VIP: netip.MustParseAddr("::ffff:198.51.100.1"), Healthy: true, Role: Owner},
			{Healthy: true, Role: Owner},
		}, []Route{{Prefix: p4}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Decide(tt.in)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Decide:\n got %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestDecideDoesNotAlias(t *testing.T) {
	med := u32(5)
	in := []ServiceAnnounce{{VIP: netip.MustParseAddr("198.51.100.1"), Healthy: true, Role: Owner, Attrs: Attributes{MED: med, Communities: []uint32{1}}}}
	out := Decide(in)
	*out[0].MED = 99
	out[0].Communities[0] = 42
	if *med != 5 || in[0].Attrs.Communities[0] != 1 {
		t.Fatalf("Decide's output shares memory with its input")
	}
}

func TestServiceAttributes(t *testing.T) {
	global := &config.BGP{
		Communities:      []config.Community{65000<<16 | 1},
		LargeCommunities: []config.LargeCommunity{{Global: 1, Local1: 2, Local2: 3}},
		LocalPref:        u32(150), MED: u32(10), StandbyPrepend: 2,
	}
	got := ServiceAttributes(global, &config.ServiceBGP{
		Communities: []config.Community{65000<<16 | 2},
		MED:         u32(20),
	})
	want := Attributes{
		Communities:      []uint32{65000<<16 | 1, 65000<<16 | 2},
		LargeCommunities: []LargeCommunity{{1, 2, 3}},
		LocalPref:        u32(150), MED: u32(20), StandbyPrepend: 2,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ServiceAttributes = %+v, want %+v", got, want)
	}
	if got := ServiceAttributes(global, nil); *got.MED != 10 || len(got.Communities) != 1 {
		t.Errorf("without service bgp: %+v", got)
	}
	if got := ServiceAttributes(nil, &config.ServiceBGP{MED: u32(1)}); !reflect.DeepEqual(got, Attributes{}) {
		t.Errorf("without global bgp: %+v", got)
	}
}

func TestRouteString(t *testing.T) {
	r := Route{Prefix: netip.MustParsePrefix("198.51.100.1/32"), NextHop: netip.MustParseAddr("192.0.2.1"),
		Communities: []uint32{65000<<16 | 100, 0xFFFFFF01}, LargeCommunities: []LargeCommunity{{1, 2, 3}},
		LocalPref: u32(200), MED: u32(0), ASPathPrepend: 2}
	want := "198.51.100.1/32 nh=192.0.2.1 comm=65000:100,no-export large=1:2:3 lp=200 med=0 prepend=2"
	if got := r.String(); got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
}
