package bgp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lvs-director/lvs-director/config"
)

// syncBuffer is a log sink safe for the speaker's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testLogger(t testing.TB) (*slog.Logger, *syncBuffer) {
	buf := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("speaker log:\n%s", buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// neighbor is a validated-looking neighbor config with fast timers.
func neighbor(addr string, port int, asn uint32) config.BGPNeighbor {
	a := netip.MustParseAddr(addr)
	hold, keep := config.Duration(9*time.Second), config.Duration(3*time.Second)
	fam := config.FamilyIPv4
	if a.Is6() {
		fam = config.FamilyIPv6
	}
	local := "127.0.0.1"
	if a.Is6() {
		local = "::1"
	}
	return config.BGPNeighbor{
		Address: config.Addr{Addr: a}, ASN: config.ASN(asn), Port: uint16(port),
		LocalAddress: config.Addr{Addr: netip.MustParseAddr(local)},
		HoldTime:     &hold, Keepalive: &keep, ConnectRetry: config.Duration(time.Second),
		Families: []string{fam},
	}
}

func newSpeaker(t testing.TB, cfg *config.BGP) (*Speaker, *prometheus.Registry, *syncBuffer) {
	t.Helper()
	log, buf := testLogger(t)
	reg := prometheus.NewRegistry()
	s, err := New(log, reg, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop(ctxT(t)) })
	return s, reg, buf
}

func route(prefix string) Route { return Route{Prefix: netip.MustParsePrefix(prefix)} }

func routesEqual(got map[string]peerRoute, want ...peerRoute) string {
	w := map[string]peerRoute{}
	for _, r := range want {
		w[r.Prefix] = r
	}
	if len(got) == 0 && len(w) == 0 {
		return ""
	}
	if !reflect.DeepEqual(got, w) {
		return fmt.Sprintf("peer has %+v, want %+v", got, w)
	}
	return ""
}

func neighborState(s *Speaker, addr string) NeighborStatus {
	for _, n := range s.Neighbors() {
		if n.Address.String() == addr {
			return n
		}
	}
	return NeighborStatus{}
}

// TestSpeakerBIRD announces, changes and withdraws routes over eBGP to BIRD, survives BIRD's
// restart and withdraws everything on Stop.
func TestSpeakerBIRD(t *testing.T) {
	const peer = "127.0.0.21"
	port := freePort(t, peer)
	b := startBird(t, birdOpts{addr: peer, peer: "127.0.0.1", port: port, asn: 65000, peerASN: 65001})
	cfg := &config.BGP{ASN: 65001, RouterID: config.Addr{Addr: netip.MustParseAddr("10.0.0.1")},
		Neighbors: []config.BGPNeighbor{neighbor(peer, port, 65000)}}
	s, reg, logs := newSpeaker(t, cfg)

	eventually(t, 15*time.Second, "session established", func() string {
		if n := neighborState(s, peer); n.State != "established" {
			return "state " + n.State
		}
		return ""
	})
	if got := testutil.ToFloat64(mustGauge(t, reg, "lvs_director_bgp_session_up", peer)); got != 1 {
		t.Errorf("lvs_director_bgp_session_up = %v, want 1", got)
	}
	if !strings.Contains(logs.String(), "bgp session established") {
		t.Errorf("no log of the session coming up")
	}

	r1 := route("198.51.100.1/32")
	r1.Communities = []uint32{65000<<16 | 100, 0xFFFFFF01}
	r1.LargeCommunities = []LargeCommunity{{65001, 1, 2}}
	r1.MED = u32(10)
	r1.LocalPref = u32(300) // not sent over eBGP
	r2 := route("198.51.100.2/32")
	r2.ASPathPrepend = 2
	r2.MED = u32(110)
	ctx := ctxT(t)
	if err := s.Set(ctx, []Route{r1, r2}); err != nil {
		t.Fatal(err)
	}
	want1 := peerRoute{Prefix: "198.51.100.1/32", NextHop: "127.0.0.1", ASPath: "65001",
		Communities: []string{"65000:100", "65535:65281"}, Large: []string{"65001:1:2"}, MED: "10", LocalPref: "100"}
	want2 := peerRoute{Prefix: "198.51.100.2/32", NextHop: "127.0.0.1", ASPath: "65001 65001 65001", MED: "110", LocalPref: "100"}
	eventually(t, 10*time.Second, "routes at BIRD", func() string {
		rs, err := b.routes()
		if err != nil {
			return err.Error()
		}
		return routesEqual(rs, want1, want2)
	})
	announces := testutil.ToFloat64(s.m.updates.WithLabelValues("announce"))
	if announces != 2 {
		t.Errorf("announce count = %v, want 2", announces)
	}
	// The same routes again change nothing.
	if err := s.Set(ctx, []Route{r2, r1}); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(s.m.updates.WithLabelValues("announce")); got != announces {
		t.Errorf("Set of the same routes announced again (%v -> %v)", announces, got)
	}
	if n := neighborState(s, peer); n.RoutesSent != 2 || n.ASN != 65000 {
		t.Errorf("neighbor status = %+v, want 2 routes sent to AS 65000", n)
	}

	// Withdraw one, change the other's MED.
	r1.MED = u32(20)
	if err := s.Set(ctx, []Route{r1}); err != nil {
		t.Fatal(err)
	}
	want1.MED = "20"
	eventually(t, 10*time.Second, "withdrawal and change at BIRD", func() string {
		rs, err := b.routes()
		if err != nil {
			return err.Error()
		}
		return routesEqual(rs, want1)
	})
	if got := testutil.ToFloat64(mustGauge(t, reg, "lvs_director_bgp_routes_announced", "")); got != 1 {
		t.Errorf("lvs_director_bgp_routes_announced = %v, want 1", got)
	}

	// Demote (graceful stop): the same route, least preferred, with GRACEFUL_SHUTDOWN.
	if err := s.Demote(ctx); err != nil {
		t.Fatal(err)
	}
	demoted := want1
	demoted.ASPath = "65001" + strings.Repeat(" 65001", config.MaxStandbyPrepend)
	demoted.Communities = []string{"65000:100", "65535:0", "65535:65281"}
	eventually(t, 10*time.Second, "the demoted route at BIRD", func() string {
		rs, err := b.routes()
		if err != nil {
			return err.Error()
		}
		return routesEqual(rs, demoted)
	})
	if err := s.Set(ctx, []Route{r1}); err != nil {
		t.Fatal(err)
	}

	// BIRD restarts: the session comes back and the route is announced again.
	b.restart()
	eventually(t, 20*time.Second, "route back at BIRD after its restart", func() string {
		rs, err := b.routes()
		if err != nil {
			return err.Error()
		}
		return routesEqual(rs, want1)
	})
	if !strings.Contains(logs.String(), "bgp session down") {
		t.Errorf("no log of the session going down")
	}

	// Stop withdraws.
	start := time.Now()
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Stop took %s", d)
	}
	eventually(t, 10*time.Second, "routes gone from BIRD after Stop", func() string {
		rs, err := b.routes()
		if err != nil {
			return err.Error()
		}
		return routesEqual(rs)
	})
	if got := s.Neighbors(); got != nil {
		t.Errorf("Neighbors after Stop = %v", got)
	}
	if err := s.Set(ctx, []Route{r1}); err == nil {
		t.Errorf("Set after Stop did not fail")
	}
}

func mustGauge(t *testing.T, reg *prometheus.Registry, name, neighbor string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if neighbor == "" || len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == neighbor {
				return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: name}, func() float64 { return m.GetGauge().GetValue() })
			}
		}
	}
	t.Fatalf("metric %s{neighbor=%q} not registered", name, neighbor)
	return nil
}

// TestSpeakerGoBGPdIBGP checks the attributes an iBGP peer (gobgpd) sees, including local_pref
// and a configured next hop, and an IPv6 VIP over a ::1 session with next hop self.
func TestSpeakerGoBGPdIBGP(t *testing.T) {
	const peer4 = "127.0.0.22"
	port := freePort(t, peer4)
	port6 := freePort(t, "::1")
	g := startGoBGPd(t, peer4, port, 65010, peer4,
		gobgpdNeighbor{addr: "127.0.0.1", asn: 65010, families: []string{"ipv4-unicast"}})
	g6 := startGoBGPd(t, "::1", port6, 65010, "127.0.0.122",
		gobgpdNeighbor{addr: "::1", asn: 65010, families: []string{"ipv6-unicast"}})
	cfg := &config.BGP{ASN: 65010, RouterID: config.Addr{Addr: netip.MustParseAddr("10.0.0.1")},
		NextHop:   config.Addr{Addr: netip.MustParseAddr("192.0.2.99")},
		Neighbors: []config.BGPNeighbor{neighbor(peer4, port, 65010), neighbor("::1", port6, 65010)}}
	s, _, _ := newSpeaker(t, cfg)

	a := ServiceAttributes(&config.BGP{Communities: []config.Community{65010<<16 | 7}, LocalPref: u32(250)},
		&config.ServiceBGP{LargeCommunities: []config.LargeCommunity{{Global: 65010, Local1: 3, Local2: 4}}, MED: u32(5)})
	routes := Decide([]ServiceAnnounce{
		{VIP: netip.MustParseAddr("198.51.100.10"), Healthy: true, Role: Owner, Attrs: a},
		{VIP: netip.MustParseAddr("198.51.100.11"), Healthy: true, Role: Owner},
		{VIP: netip.MustParseAddr("2001:db8::10"), Healthy: true, Role: Owner, Attrs: a},
		{VIP: netip.MustParseAddr("198.51.100.12"), Healthy: false, Role: Owner},
	})
	routes[1].NextHop = netip.MustParseAddr("192.0.2.98") // a route's own next hop wins
	if err := s.Set(ctxT(t), routes); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "IPv4 routes at gobgpd", func() string {
		rs, err := g.routes("ipv4")
		if err != nil {
			return err.Error()
		}
		return routesEqual(rs,
			peerRoute{Prefix: "198.51.100.10/32", NextHop: "192.0.2.99", Communities: []string{"65010:7"},
				Large: []string{"65010:3:4"}, MED: "5", LocalPref: "250"},
			peerRoute{Prefix: "198.51.100.11/32", NextHop: "192.0.2.98", LocalPref: "100"})
	})
	eventually(t, 15*time.Second, "IPv6 route at gobgpd over ::1", func() string {
		rs, err := g6.routes("ipv6")
		if err != nil {
			return err.Error()
		}
		return routesEqual(rs, peerRoute{Prefix: "2001:db8::10/128", NextHop: "::1", Communities: []string{"65010:7"},
			Large: []string{"65010:3:4"}, MED: "5", LocalPref: "250"})
	})
	if err := s.Set(ctxT(t), routes[:1]); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "IPv6 route withdrawn", func() string {
		rs, err := g6.routes("ipv6")
		if err != nil {
			return err.Error()
		}
		return routesEqual(rs)
	})

	// Stop sends an explicit withdrawal of the remaining route before it closes the session.
	before := g.withdrawnPrefixes(t, "127.0.0.1")
	if err := s.Stop(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "withdrawal received by gobgpd on Stop", func() string {
		if got := g.withdrawnPrefixes(t, "127.0.0.1"); got != before+1 {
			return fmt.Sprintf("withdrawn prefixes %d, want %d", got, before+1)
		}
		return ""
	})
}

// TestSpeakerMD5: a matching TCP MD5 password brings the session up; a wrong one never does,
// silently, while the right one works next to it.
func TestSpeakerMD5(t *testing.T) {
	const good, bad = "127.0.0.23", "127.0.0.24"
	pg, pb := freePort(t, good), freePort(t, bad)
	startBird(t, birdOpts{addr: good, peer: "127.0.0.1", port: pg, asn: 65000, peerASN: 65001, password: "s3cret-md5"})
	bb := startBird(t, birdOpts{addr: bad, peer: "127.0.0.1", port: pb, asn: 65000, peerASN: 65001, password: "s3cret-md5"})
	ng, nb := neighbor(good, pg, 65000), neighbor(bad, pb, 65000)
	ng.Password, nb.Password = "s3cret-md5", "wrong"
	cfg := &config.BGP{ASN: 65001, RouterID: config.Addr{Addr: netip.MustParseAddr("10.0.0.1")},
		Neighbors: []config.BGPNeighbor{ng, nb}}
	s, _, _ := newSpeaker(t, cfg)
	eventually(t, 15*time.Second, "session with the right password", func() string {
		if n := neighborState(s, good); n.State != "established" {
			return "state " + n.State
		}
		return ""
	})
	time.Sleep(3 * time.Second) // several connect attempts (connect_retry 1s)
	if n := neighborState(s, bad); n.State == "established" || bb.established() {
		t.Fatalf("session with a wrong MD5 password came up: %+v", n)
	}
}

// TestSpeakerListen: with listen_port, a passive neighbor (BIRD) connects to the director.
func TestSpeakerListen(t *testing.T) {
	const peer, local = "127.0.0.31", "127.0.0.1"
	listen := freePort(t, local)
	b := startBird(t, birdOpts{addr: peer, peer: local, port: freePort(t, peer), asn: 65000, peerASN: 65001,
		active: true, peerPort: listen})
	n := neighbor(peer, 179, 65000) // never dialled
	n.Passive = true
	cfg := &config.BGP{ASN: 65001, RouterID: config.Addr{Addr: netip.MustParseAddr("10.0.0.1")},
		ListenPort: uint16(listen), ListenAddress: config.Addr{Addr: netip.MustParseAddr(local)},
		Neighbors: []config.BGPNeighbor{n}}
	s, _, _ := newSpeaker(t, cfg)
	if err := s.Set(ctxT(t), []Route{route("198.51.100.7/32")}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "route at BIRD over the session BIRD opened", func() string {
		rs, err := b.routes()
		if err != nil {
			return err.Error()
		}
		return routesEqual(rs, peerRoute{Prefix: "198.51.100.7/32", NextHop: local, ASPath: "65001", LocalPref: "100"})
	})
}

// TestSpeakerPeerDown: a neighbor that does not answer blocks neither Start, Set nor Stop.
func TestSpeakerPeerDown(t *testing.T) {
	port := freePort(t, "127.0.0.25") // nothing listens there
	cfg := &config.BGP{ASN: 65001, RouterID: config.Addr{Addr: netip.MustParseAddr("10.0.0.1")},
		Neighbors: []config.BGPNeighbor{neighbor("127.0.0.25", port, 65000)}}
	s, reg, _ := newSpeaker(t, cfg)
	if err := s.Set(ctxT(t), []Route{route("198.51.100.1/32"), route("2001:db8::1/128")}); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(mustGauge(t, reg, "lvs_director_bgp_routes_announced", "")); got != 2 {
		t.Errorf("routes announced = %v, want 2", got)
	}
	ns := s.Neighbors()
	if len(ns) != 1 || ns[0].State == "established" || ns[0].Address.String() != "127.0.0.25" {
		t.Errorf("Neighbors = %+v", ns)
	}
	if got := testutil.ToFloat64(mustGauge(t, reg, "lvs_director_bgp_session_up", "127.0.0.25")); got != 0 {
		t.Errorf("session_up = %v, want 0", got)
	}
	if err := s.Stop(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

func TestSpeakerSetRejectsBadRoutes(t *testing.T) {
	s, err := New(nil, nil, &config.BGP{ASN: 1, RouterID: config.Addr{Addr: netip.MustParseAddr("10.0.0.1")}})
	if err != nil {
		t.Fatal(err)
	}
	r := route("198.51.100.1/32")
	bad := []struct {
		name   string
		routes []Route
		want   string
	}{
		{"duplicate", []Route{r, r}, "bgp: prefix 198.51.100.1/32 given twice"},
		{"no prefix", []Route{{}}, "bgp: invalid prefix in route invalid Prefix"},
		{"next hop family", []Route{{Prefix: r.Prefix, NextHop: netip.MustParseAddr("2001:db8::1")}}, "bgp: next hop 2001:db8::1 of 198.51.100.1/32 is of another family"},
		{"prepend", []Route{{Prefix: r.Prefix, ASPathPrepend: 11}}, "bgp: AS-path prepend 11 of 198.51.100.1/32 out of range 0-10"},
	}
	for _, b := range bad {
		if err := s.Set(ctxT(t), b.routes); err == nil || err.Error() != b.want {
			t.Errorf("%s: Set error = %v, want %q", b.name, err, b.want)
		}
	}
	// Before Start, Set records the routes.
	if err := s.Set(ctxT(t), []Route{r}); err != nil {
		t.Fatal(err)
	}
	if got := s.Routes(); len(got) != 1 || got[0].Prefix != r.Prefix {
		t.Errorf("Routes = %v", got)
	}
}

func TestSpeakerReconfigure(t *testing.T) {
	cfg := &config.BGP{ASN: 65001, RouterID: config.Addr{Addr: netip.MustParseAddr("10.0.0.1")},
		Neighbors: []config.BGPNeighbor{neighbor("127.0.0.26", 1790, 65000)}}
	s, reg, _ := newSpeaker(t, cfg)
	c2 := *cfg
	c2.ASN = 65002
	if err := s.Reconfigure(ctxT(t), &c2); !errors.Is(err, ErrRestartRequired) {
		t.Fatalf("Reconfigure with a new ASN = %v, want ErrRestartRequired", err)
	}
	c3 := *cfg
	c3.Neighbors = []config.BGPNeighbor{neighbor("127.0.0.27", 1790, 65000), neighbor("127.0.0.28", 1790, 65000)}
	if err := s.Reconfigure(ctxT(t), &c3); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range s.Neighbors() {
		got = append(got, n.Address.String())
	}
	if want := []string{"127.0.0.27", "127.0.0.28"}; !reflect.DeepEqual(got, want) {
		t.Errorf("neighbors after Reconfigure = %v, want %v", got, want)
	}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "lvs_director_bgp_session_up" && len(mf.GetMetric()) != 2 {
			t.Errorf("session_up series = %d, want 2 (the removed neighbor's series is deleted)", len(mf.GetMetric()))
		}
	}
}

func TestNewRegistersMetricsOnce(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := &config.BGP{ASN: 1, RouterID: config.Addr{Addr: netip.MustParseAddr("10.0.0.1")}}
	if _, err := New(nil, reg, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := New(nil, reg, cfg); err == nil {
		t.Errorf("second New on the same registry did not fail")
	}
	if _, err := New(nil, nil, nil); err == nil {
		t.Errorf("New without config did not fail")
	}
}

// BenchmarkSet10k measures Set of 10,000 routes until an iBGP peer (gobgpd) holds all of them
// (ns/op covers announce + withdraw; the two halves are reported as metrics).
func BenchmarkSet10k(b *testing.B) {
	const peer, n = "127.0.0.30", 10000
	port := freePort(b, peer)
	g := startGoBGPd(b, peer, port, 65010, peer, gobgpdNeighbor{addr: "127.0.0.1", asn: 65010, families: []string{"ipv4-unicast"}})
	cfg := &config.BGP{ASN: 65010, RouterID: config.Addr{Addr: netip.MustParseAddr("10.0.0.1")},
		NextHop:   config.Addr{Addr: netip.MustParseAddr("192.0.2.99")},
		Neighbors: []config.BGPNeighbor{neighbor(peer, port, 65010)}}
	s, _, _ := newSpeaker(b, cfg)
	eventually(b, 15*time.Second, "session", func() string {
		if st := neighborState(s, peer).State; st != "established" {
			return st
		}
		return ""
	})
	routes := make([]Route, n)
	for i := range routes {
		routes[i] = Route{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32), MED: u32(uint32(i))}
	}
	waitRIB := func(want int) {
		eventually(b, 120*time.Second, "peer RIB size", func() string {
			got, err := g.ribSize("ipv4")
			if err != nil {
				return err.Error()
			}
			if got != want {
				return fmt.Sprintf("%d routes, want %d", got, want)
			}
			return ""
		})
	}
	var setDur, announceDur, withdrawDur time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if err := s.Set(context.Background(), routes); err != nil {
			b.Fatal(err)
		}
		setDur += time.Since(start)
		waitRIB(n)
		announceDur += time.Since(start)
		start = time.Now()
		if err := s.Set(context.Background(), nil); err != nil {
			b.Fatal(err)
		}
		waitRIB(0)
		withdrawDur += time.Since(start)
	}
	b.ReportMetric(setDur.Seconds()/float64(b.N), "s-set/op")
	b.ReportMetric(announceDur.Seconds()/float64(b.N), "s-until-peer-has-all/op")
	b.ReportMetric(withdrawDur.Seconds()/float64(b.N), "s-until-peer-withdrew-all/op")
}
