//go:build lab

package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"reflect"
	"strconv"
	"testing"
	"time"
)

// natTopology is the smoke test's network:
//
//	client (eth0) <-> (eth0) director (eth1..3) <-> (eth0) rs1..rs3
//	director: lvs0 dummy holding the VIP, forwarding on
//	real servers: default route via the director (IPVS NAT)
type natTopology struct {
	client, director *NS
	rs               []*NS
	vip              string   // bare address
	rsAddr           []string // bare addresses
}

// buildNATTopology builds the topology for IPv4 (v6=false) or IPv6 with a
// few batched ip calls. All addresses are test-only and exist only inside
// the lab VM.
func buildNATTopology(t *testing.T, l *Lab, v6 bool, nrs int) *natTopology {
	return buildTopology(t, l, v6, nrs, true)
}

// buildTopology builds the NAT topology; with handVIP the test puts the VIP on a dummy lvs0
// itself, without it the director under test does.
func buildTopology(t *testing.T, l *Lab, v6 bool, nrs int, handVIP bool) *natTopology {
	t.Helper()
	// addr(net, host) gives an address; plen is the subnets' prefix length.
	addr := func(net, host int) string {
		if v6 {
			return fmt.Sprintf("2001:db8:100:%d::%d", net, host)
		}
		return fmt.Sprintf("10.100.%d.%d", net, host)
	}
	plen, vip, nodad := "/24", "10.100.0.10", ""
	if v6 {
		plen, vip, nodad = "/64", "2001:db8:100::10", " nodad"
	}
	names := []string{"client", "director"}
	for i := 1; i <= nrs; i++ {
		names = append(names, fmt.Sprintf("rs%d", i))
	}
	nss := l.NSs(names...)
	tp := &natTopology{client: nss[0], director: nss[1], rs: nss[2:], vip: vip}
	d := tp.director

	// veth pairs: client eth0 <-> director eth0, director ethI <-> rsI eth0
	veths := []string{fmt.Sprintf("link add eth0 netns %s type veth peer name eth0 netns %s", tp.client, d)}
	for i, rs := range tp.rs {
		veths = append(veths, fmt.Sprintf("link add eth%d netns %s type veth peer name eth0 netns %s", i+1, d, rs))
	}
	l.IPBatch(veths...)

	tp.client.IPBatch(
		"link set eth0 up",
		"addr add "+addr(1, 2)+plen+" dev eth0"+nodad,
		"route add default via "+addr(1, 1),
	)
	dl := []string{
		"link set eth0 up",
		"addr add " + addr(1, 1) + plen + " dev eth0" + nodad,
	}
	if handVIP {
		dl = append(dl,
			"link add lvs0 type dummy",
			"link set lvs0 up",
			"addr add "+vip+" dev lvs0"+nodad, // a host address (/32, /128)
		)
	}
	for i, rs := range tp.rs {
		dev := fmt.Sprintf("eth%d", i+1)
		dl = append(dl, "link set "+dev+" up", "addr add "+addr(11+i, 1)+plen+" dev "+dev+nodad)
		rs.IPBatch(
			"link set eth0 up",
			"addr add "+addr(11+i, 2)+plen+" dev eth0"+nodad,
			"route add default via "+addr(11+i, 1),
		)
		tp.rsAddr = append(tp.rsAddr, addr(11+i, 2))
	}
	d.IPBatch(dl...)
	d.EnableForwarding()
	return tp
}

func testNATSmoke(t *testing.T, v6 bool) {
	start := time.Now()
	l := New(t)
	NeedLabnode(t)
	const nrs, requests = 3, 30
	tp := buildNATTopology(t, l, v6, nrs)
	d := tp.director

	vipPort := net.JoinHostPort(tp.vip, "80")
	d.MustRun("ipvsadm", "-A", "-t", vipPort, "-s", "rr")
	var wantDests []string
	for i, rs := range tp.rs {
		rsPort := net.JoinHostPort(tp.rsAddr[i], "8080")
		wantDests = append(wantDests, rsPort)
		rs.Start("labnode", "serve", "--name", fmt.Sprintf("rs%d", i+1), "--listen", rsPort)
		d.MustRun("ipvsadm", "-a", "-t", vipPort, "-r", rsPort, "-m", "-w", "1")
	}
	// Wait until every real server answers directly (from the director).
	for i := range tp.rs {
		url := "http://" + net.JoinHostPort(tp.rsAddr[i], "8080") + "/"
		want := fmt.Sprintf("rs%d", i+1)
		Eventually(t, 10*time.Second, 100*time.Millisecond, want+" to answer on "+url, func() (bool, string) {
			out, err := d.Exec("labnode", "client", "--url", url, "--timeout", "1s")
			var s ClientSummary
			if err != nil || json.Unmarshal([]byte(out), &s) != nil {
				return false, fmt.Sprintf("%v: %s", err, out)
			}
			return s.ByName[want] == 1, out
		})
	}
	setup := time.Since(start)

	// The table as the kernel sees it.
	svcs := d.IPVS()
	if len(svcs) != 1 || svcs[0].Proto != "TCP" || svcs[0].Addr != vipPort || svcs[0].Scheduler != "rr" {
		t.Fatalf("IPVS table: want one service TCP %s rr, got:\n%s", vipPort, FormatServices(svcs))
	}
	for _, a := range wantDests {
		dst := svcs[0].Dest(a)
		if dst == nil || dst.Forward != "Masq" || dst.Weight != 1 {
			t.Errorf("IPVS table: want real server %s Masq weight 1, got:\n%s", a, FormatServices(svcs))
		}
	}
	if len(svcs[0].Dests) != nrs {
		t.Errorf("IPVS table: want %d real servers, got:\n%s", nrs, FormatServices(svcs))
	}

	// Traffic from the client through the VIP.
	t0 := time.Now()
	sum := Labnode(t, tp.client, "client", "--url", "http://"+vipPort+"/",
		"--count", strconv.Itoa(requests), "--timeout", "2s")
	traffic := time.Since(t0)
	want := map[string]int{}
	for i := range tp.rs {
		want[fmt.Sprintf("rs%d", i+1)] = requests / nrs
	}
	if sum.OK != requests || sum.Failed != 0 || !reflect.DeepEqual(sum.ByName, want) {
		t.Fatalf("client through VIP %s: want ok=%d failed=0 by_name=%v, got ok=%d failed=%d by_name=%v errors=%q",
			vipPort, requests, want, sum.OK, sum.Failed, sum.ByName, sum.Errors)
	}

	// IPVS counted the connections (the counters lag a little).
	Eventually(t, 10*time.Second, 200*time.Millisecond, fmt.Sprintf("IPVS stats: %d conns per real server", requests/nrs),
		func() (bool, string) {
			svcs := d.IPVSWithStats()
			if len(svcs) != 1 {
				return false, FormatServices(svcs)
			}
			seen := ""
			ok := svcs[0].Stats.Conns == requests
			for _, dst := range svcs[0].Dests {
				seen += fmt.Sprintf("%s conns=%d inactive=%d; ", dst.Addr, dst.Stats.Conns, dst.InActConn)
				ok = ok && dst.Stats.Conns == requests/nrs
			}
			return ok, fmt.Sprintf("service conns=%d; %s", svcs[0].Stats.Conns, seen)
		})
	t.Logf("setup %v, %d requests %v, total %v", setup.Round(time.Millisecond),
		requests, traffic.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

// TestLabSmoke proves the lab: hand-made IPVS NAT rules (VIP:80 -> 3 real
// servers on :8080, rr) spread 30 client requests evenly.
func TestLabSmoke(t *testing.T) { testNATSmoke(t, false) }

// TestLabSmokeIPv6 is the same over IPv6.
func TestLabSmokeIPv6(t *testing.T) { testNATSmoke(t, true) }
