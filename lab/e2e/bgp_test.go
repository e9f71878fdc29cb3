//go:build lab

package e2e

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// bgpLab is the NAT topology with a BGP router between the client and the director:
//
//	user (eth0 10.100.2.2) <-> (eth1 10.100.2.1) router (eth0 10.100.1.2) <-> (eth0 10.100.1.1) director <-> rs...
//
// The router is the NAT topology's "client" namespace without its default route: it reaches
// the VIP only through what BGP taught it (BIRD's protocol kernel installs the routes).
type bgpLab struct {
	*serverLab
	router *Router
	user   *NS
}

const (
	directorASN = 65001
	routerASN   = 65000
)

func newBGPLab(t *testing.T, names ...string) *bgpLab {
	t.Helper()
	sl := newServerLab(t, names...)
	bl := &bgpLab{serverLab: sl, user: sl.lab.NS("user")}
	r := sl.client
	sl.lab.Veth(bl.user, "eth0", r, "eth1")
	bl.user.IPBatch("addr add 10.100.2.2/24 dev eth0", "route add default via 10.100.2.1")
	r.IPBatch("route del default", "addr add 10.100.2.1/24 dev eth1")
	r.EnableForwarding()
	sl.director.IPBatch("route add 10.100.2.0/24 via 10.100.1.2")
	bl.router = StartRouter(t, r, "10.100.1.2", []BGPPeer{{Name: "director", Local: "10.100.1.2", Neighbor: "10.100.1.1", LocalASN: routerASN, PeerASN: directorASN}})
	return bl
}

// bgpSection is the director's top-level bgp section peering with the router.
const bgpSection = `bgp:
  asn: 65001
  router_id: 10.100.1.1
  neighbors:
    - {address: 10.100.1.2, asn: 65000, connect_retry: 1s}
`

func (bl *bgpLab) vipPrefix() string { return bl.vip + "/32" }

// waitRoute waits until the router's best route for the VIP has next hop want ("" = no route)
// and returns when that was seen; it polls birdc as fast as it answers.
func (bl *bgpLab) waitRoute(t *testing.T, timeout time.Duration, want string) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		nh, out := bl.router.BestNextHop(bl.vipPrefix())
		if nh == want {
			return time.Now()
		}
		if time.Now().After(deadline) {
			bl.d.Fatalf("router: want the best route for %s via %q, got %q after %v; birdc show route:\n%s",
				bl.vipPrefix(), want, nh, timeout, indent(out))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// userSpread sends n requests from the user namespace (through the router) and wants them
// all answered, spread as want.
func (bl *bgpLab) userSpread(t *testing.T, n int, want map[string]int) {
	t.Helper()
	s := Labnode(t, bl.user, "client", "--url", bl.url("/"), "--count", fmt.Sprint(n), "--timeout", "2s")
	if s.OK != n || s.Failed != 0 || fmt.Sprint(s.ByName) != fmt.Sprint(want) {
		bl.d.Fatalf("%d requests user -> router -> %s: want %v and no failure, got ok=%d failed=%d by_name=%v errors=%q\nrouter: %s",
			n, bl.vipPort(), want, s.OK, s.Failed, s.ByName, s.Errors, bl.router.KernelRoute(bl.vip))
	}
}

// TestBGPAnnounceWithdraw (issue 6): the router learns VIP/32 via the director's address; an
// unhealthy service (every real server down, no sorry server) is withdrawn and re-announced
// when healthy; the user reaches the VIP through the router only by the BGP route; SIGTERM
// withdraws the route before the process exits.
func TestBGPAnnounceWithdraw(t *testing.T) {
	bl := newBGPLab(t, "rs1", "rs2", "rs3")
	all := map[int]int{0: 1, 1: 1, 2: 1}
	// Before the director: no route to the VIP on the router (so traffic can only follow BGP).
	if out, err := bl.router.NS.Exec("ip", "route", "get", bl.vip); err == nil {
		t.Fatalf("router reaches %s before any BGP route: %s", bl.vip, out)
	}
	bl.d = StartDirector(t, bl.director, bl.webConfig("rr", all, healthCheck)+bgpSection)
	bl.router.WaitEstablished(20*time.Second, "director")
	tUp := time.Now()
	bl.waitRoute(t, 15*time.Second, "10.100.1.1")
	t.Logf("VIP announced %v after the session was seen established", time.Since(tUp).Round(time.Millisecond))
	rs, out, _ := bl.router.Routes(bl.vipPrefix())
	if len(rs) != 1 || rs[0].Proto != "director" || rs[0].ASPath != fmt.Sprint(directorASN) {
		bl.d.Fatalf("router: want one route from protocol director with AS path %d, got %+v\n%s", directorASN, rs, out)
	}
	Eventually(t, 5*time.Second, 100*time.Millisecond, "the kernel route in the router", func() (bool, string) {
		kr := bl.router.KernelRoute(bl.vip)
		return strings.Contains(kr, "via 10.100.1.1") && strings.Contains(kr, "proto bird"), kr
	})
	// The route comes with the first healthy real server (quorum 1); the others pass their
	// first checks within an interval of it (the checks are spread over it).
	bl.waitIPVS(t, 10*time.Second, "every real server up", func(svcs []IPVSService) bool { return len(weights(svcs, bl.vipPort())) == 3 })
	bl.userSpread(t, 9, map[string]int{"rs1": 3, "rs2": 3, "rs3": 3})

	// Unhealthy: every real server down, quorum (1) lost, no sorry server -> withdrawn.
	for i := range bl.srv {
		bl.stopServer(i)
	}
	tDown := time.Now()
	tGone := bl.waitRoute(t, 10*time.Second, "")
	t.Logf("all real servers down: route withdrawn after %v (health: interval 500ms x fall 2)", tGone.Sub(tDown).Round(time.Millisecond))
	Eventually(t, 5*time.Second, 100*time.Millisecond, "the kernel route gone in the router", func() (bool, string) {
		kr := bl.router.KernelRoute(bl.vip)
		return kr == "", kr
	})
	if st := bl.d.Status(); len(st.Services) != 1 || st.Services[0].Healthy || st.Services[0].Announce != "not announced" {
		bl.d.Fatalf("status: want the service unhealthy and not announced, got %+v", st.Services)
	}

	// Healthy again -> re-announced.
	tStart := time.Now()
	for i := range bl.srv {
		bl.startServer(t, i)
	}
	tBack := bl.waitRoute(t, 10*time.Second, "10.100.1.1")
	t.Logf("real servers back: route re-announced %v after the servers were started (rise 2 x 500ms)", tBack.Sub(tStart).Round(time.Millisecond))
	Eventually(t, 10*time.Second, 100*time.Millisecond, "all real servers back in IPVS", func() (bool, string) {
		w := weights(bl.director.IPVS(), bl.vipPort())
		return len(w) == 3, fmt.Sprint(w)
	})
	bl.userSpread(t, 9, map[string]int{"rs1": 3, "rs2": 3, "rs3": 3})
	if st := bl.d.Status(); st.Services[0].Announce != "announced" {
		bl.d.Fatalf("status: want announced, got %+v", st.Services)
	}

	// SIGTERM: the route goes before the process ends.
	exited := make(chan time.Time, 1)
	p := bl.d.Proc
	go func() {
		_, _ = p.Wait(30 * time.Second)
		exited <- time.Now()
	}()
	logAt := len(bl.router.Log())
	tTerm := time.Now()
	p.Signal(syscall.SIGTERM)
	var tWithdrawn time.Time
	wasRunning := false
	for time.Since(tTerm) < 5*time.Second {
		nh, _ := bl.router.BestNextHop(bl.vipPrefix())
		if nh == "" {
			tWithdrawn = time.Now()
			wasRunning = !p.Exited()
			break
		}
	}
	tExit := <-exited
	if tWithdrawn.IsZero() {
		bl.d.Fatalf("SIGTERM: the route is still on the router after 5s")
	}
	withdrawn, exit := tWithdrawn.Sub(tTerm), tExit.Sub(tTerm)
	t.Logf("SIGTERM: route gone from the router after %v (seen, upper bound); process exited after %v",
		withdrawn.Round(time.Millisecond), exit.Round(time.Millisecond))
	if withdrawn > 2*time.Second {
		bl.d.Fatalf("SIGTERM: route withdrawn after %v, want within 2s", withdrawn)
	}
	// Proof of order: the route was seen gone while the process still ran, or BIRD logged the
	// removal before the session left Established.
	birdLog := bl.router.Log()[logAt:]
	logFirst := false
	for _, line := range strings.Split(birdLog, "\n") {
		if strings.Contains(line, "State changed") {
			break
		}
		if strings.Contains(line, " removed ") && strings.Contains(line, " "+bl.vipPrefix()+" ") {
			logFirst = true
			break
		}
	}
	t.Logf("SIGTERM order: route gone while the process ran=%v; BIRD logged the removal before any session state change=%v", wasRunning, logFirst)
	if !wasRunning && !logFirst {
		bl.d.Fatalf("SIGTERM: no proof that the route was withdrawn before the session dropped (gone seen at %v, exit %v); BIRD log since SIGTERM:\n%s", withdrawn, exit, indent(birdLog))
	}
	if !strings.Contains(bl.d.Log(), "stopped") {
		bl.d.Fatalf("no stop message in the log")
	}
	st, _ := bl.router.Established("director")
	t.Logf("session after the director stopped: established=%v", st["director"])
}
