package bgp

// Independent BGP daemons for the tests: BIRD 2 and GoBGP's gobgpd (Debian packages, installed by
// scripts/install-bgp-peers.sh), started as children of the test on loopback addresses and killed
// at cleanup. Without them the tests skip, unless LVS_REQUIRE_EXTERNAL=1 makes them fail.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func needBinaries(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			if os.Getenv("LVS_REQUIRE_EXTERNAL") == "1" {
				t.Fatalf("%s not found and LVS_REQUIRE_EXTERNAL=1 (run scripts/install-bgp-peers.sh)", n)
			}
			t.Skipf("%s not found: run scripts/install-bgp-peers.sh (or set LVS_REQUIRE_EXTERNAL=1 to fail)", n)
		}
	}
}

// freePort returns a TCP port free on ip.
func freePort(t testing.TB, ip string) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("finding a free port on %s: %v", ip, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// daemon is a peer process the test started.
type daemon struct {
	t      testing.TB
	cmd    *exec.Cmd
	out    *bytes.Buffer
	done   chan struct{}
	argv   []string
	ready  func() error
	killed bool
}

func startDaemon(t testing.TB, ready func() error, argv ...string) *daemon {
	t.Helper()
	d := &daemon{t: t, argv: argv, ready: ready}
	d.start()
	t.Cleanup(d.kill)
	return d
}

func (d *daemon) start() {
	d.t.Helper()
	d.out = &bytes.Buffer{}
	d.cmd = exec.Command(d.argv[0], d.argv[1:]...)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	if err := d.cmd.Start(); err != nil {
		d.t.Fatalf("starting %s: %v", d.argv[0], err)
	}
	d.done = make(chan struct{})
	go func() { _ = d.cmd.Wait(); close(d.done) }()
	d.killed = false
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := d.ready()
		if err == nil {
			return
		}
		select {
		case <-d.done:
			d.t.Fatalf("%s exited: %s", d.argv[0], d.out.String())
		default:
		}
		if time.Now().After(deadline) {
			d.kill()
			d.t.Fatalf("%s not ready after 10s: %v\n%s", d.argv[0], err, d.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (d *daemon) kill() {
	if d.killed {
		return
	}
	d.killed = true
	_ = d.cmd.Process.Kill()
	<-d.done
}

// restart kills the daemon and starts it again with the same arguments.
func (d *daemon) restart() {
	d.t.Helper()
	d.kill()
	d.start()
}

// bird is a BIRD 2 instance with one eBGP or iBGP session to the speaker.
type bird struct {
	*daemon
	sock string
}

type birdOpts struct {
	addr, peer   string // BIRD's address, the speaker's address
	port         int
	asn, peerASN uint32
	password     string
	ipv6         bool
	// active: BIRD connects to the speaker at peerPort (which listens) instead of waiting.
	active   bool
	peerPort int
}

func startBird(t testing.TB, o birdOpts) *bird {
	t.Helper()
	needBinaries(t, "bird", "birdc")
	dir := t.TempDir()
	ch := "ipv4 { import all; export none; gateway recursive; igp table master4; };"
	if o.ipv6 {
		ch = "ipv6 { import all; export none; gateway recursive; igp table master6; };"
	}
	pw := ""
	if o.password != "" {
		pw = fmt.Sprintf("password %q;", o.password)
	}
	mode := "passive on;"
	neighborPort := ""
	if o.active {
		mode = "passive off; connect delay time 1; connect retry time 1;"
		neighborPort = fmt.Sprintf("port %d", o.peerPort)
	}
	rid := o.addr
	if strings.Contains(rid, ":") {
		rid = "10.255.255.1"
	}
	conf := fmt.Sprintf(`router id %s;
log stderr all;
protocol device { scan time 10; }
protocol bgp director {
  local %s port %d as %d;
  neighbor %s %s as %d;
  %s
  multihop;
  hold time 9;
  %s
  %s
}
`, rid, o.addr, o.port, o.asn, o.peer, neighborPort, o.peerASN, mode, pw, ch)
	path := filepath.Join(dir, "bird.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	b := &bird{sock: filepath.Join(dir, "bird.ctl")}
	b.daemon = startDaemon(t, func() error { _, err := b.birdc("show status"); return err },
		"bird", "-f", "-c", path, "-s", b.sock, "-P", filepath.Join(dir, "bird.pid"))
	return b
}

func (b *bird) birdc(args ...string) (string, error) {
	out, err := exec.Command("birdc", append([]string{"-s", b.sock}, args...)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("birdc %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// peerRoute is a route as a peer daemon holds it.
type peerRoute struct {
	Prefix      string
	NextHop     string
	ASPath      string // space-separated ASNs
	Communities []string
	Large       []string
	MED         string // "" = none
	LocalPref   string // "" = none
}

var birdRouteRe = regexp.MustCompile(`^([0-9a-f.:]+/\d+)\s`)

// routes parses "show route all protocol director".
func (b *bird) routes() (map[string]peerRoute, error) {
	out, err := b.birdc("show route all protocol director")
	if err != nil {
		return nil, err
	}
	rs := map[string]peerRoute{}
	var cur *peerRoute
	flush := func() {
		if cur != nil {
			rs[cur.Prefix] = *cur
		}
	}
	for _, line := range strings.Split(out, "\n") {
		if m := birdRouteRe.FindStringSubmatch(line); m != nil {
			flush()
			cur = &peerRoute{Prefix: m[1]}
			continue
		}
		if cur == nil {
			continue
		}
		k, v, ok := strings.Cut(strings.TrimSpace(line), ": ")
		if !ok {
			continue
		}
		switch k {
		case "BGP.next_hop":
			cur.NextHop = strings.Fields(v)[0]
		case "BGP.as_path":
			cur.ASPath = v
		case "BGP.med":
			cur.MED = v
		case "BGP.local_pref":
			cur.LocalPref = v
		case "BGP.community":
			for _, c := range regexp.MustCompile(`\((\d+),(\d+)\)`).FindAllStringSubmatch(v, -1) {
				cur.Communities = append(cur.Communities, c[1]+":"+c[2])
			}
		case "BGP.large_community":
			for _, c := range regexp.MustCompile(`\((\d+), (\d+), (\d+)\)`).FindAllStringSubmatch(v, -1) {
				cur.Large = append(cur.Large, c[1]+":"+c[2]+":"+c[3])
			}
		}
	}
	flush()
	return rs, nil
}

func (b *bird) established() bool {
	out, err := b.birdc("show protocols director")
	return err == nil && strings.Contains(out, "Established")
}

// gobgpd is a GoBGP daemon with sessions to the speaker.
type gobgpd struct {
	*daemon
	api int
}

type gobgpdNeighbor struct {
	addr     string
	asn      uint32
	password string
	families []string // afi-safi names: ipv4-unicast, ipv6-unicast
}

func startGoBGPd(t testing.TB, addr string, port int, asn uint32, routerID string, neighbors ...gobgpdNeighbor) *gobgpd {
	t.Helper()
	needBinaries(t, "gobgpd", "gobgp")
	var b strings.Builder
	fmt.Fprintf(&b, "[global.config]\n  as = %d\n  router-id = %q\n  port = %d\n  local-address-list = [%q]\n", asn, routerID, port, addr)
	for _, n := range neighbors {
		fmt.Fprintf(&b, "\n[[neighbors]]\n  [neighbors.config]\n    neighbor-address = %q\n    peer-as = %d\n", n.addr, n.asn)
		if n.password != "" {
			fmt.Fprintf(&b, "    auth-password = %q\n", n.password)
		}
		fmt.Fprintf(&b, "  [neighbors.transport.config]\n    passive-mode = true\n")
		for _, f := range n.families {
			fmt.Fprintf(&b, "  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = %q\n", f)
		}
	}
	path := filepath.Join(t.TempDir(), "gobgpd.toml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	g := &gobgpd{api: freePort(t, "127.0.0.1")}
	g.daemon = startDaemon(t, func() error { _, err := g.cli("global"); return err },
		"gobgpd", "-f", path, "-t", "toml", "--api-hosts", "127.0.0.1:"+strconv.Itoa(g.api), "--pprof-disable")
	return g
}

func (g *gobgpd) cli(args ...string) ([]byte, error) {
	out, err := exec.Command("gobgp", append([]string{"-u", "127.0.0.1", "-p", strconv.Itoa(g.api)}, args...)...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("gobgp %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return out, nil
}

// routes reads the global RIB of one family (ipv4 or ipv6) as JSON.
func (g *gobgpd) routes(family string) (map[string]peerRoute, error) {
	out, err := g.cli("global", "rib", "-a", family, "-j")
	if err != nil {
		return nil, err
	}
	var rib map[string][]struct {
		Attrs []map[string]any `json:"attrs"`
	}
	if err := json.Unmarshal(out, &rib); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", out, err)
	}
	rs := map[string]peerRoute{}
	for prefix, paths := range rib {
		if len(paths) == 0 {
			continue
		}
		r := peerRoute{Prefix: prefix}
		for _, a := range paths[0].Attrs {
			typ, _ := a["type"].(float64)
			switch int(typ) {
			case 2: // AS_PATH
				if segs, ok := a["as_paths"].([]any); ok {
					var asns []string
					for _, s := range segs {
						for _, n := range s.(map[string]any)["asns"].([]any) {
							asns = append(asns, strconv.Itoa(int(n.(float64))))
						}
					}
					r.ASPath = strings.Join(asns, " ")
				}
			case 3: // NEXT_HOP
				r.NextHop, _ = a["nexthop"].(string)
			case 4:
				r.MED = strconv.Itoa(int(a["metric"].(float64)))
			case 5:
				r.LocalPref = strconv.Itoa(int(a["value"].(float64)))
			case 8:
				for _, c := range a["communities"].([]any) {
					v := uint32(c.(float64))
					r.Communities = append(r.Communities, fmt.Sprintf("%d:%d", v>>16, v&0xFFFF))
				}
			case 14: // MP_REACH_NLRI
				r.NextHop, _ = a["nexthop"].(string)
			case 32:
				for _, c := range a["value"].([]any) {
					m := c.(map[string]any)
					r.Large = append(r.Large, fmt.Sprintf("%d:%d:%d", uint32(m["ASN"].(float64)), uint32(m["LocalData1"].(float64)), uint32(m["LocalData2"].(float64))))
				}
			}
		}
		slices.Sort(r.Communities)
		rs[prefix] = r
	}
	return rs, nil
}

// withdrawnPrefixes is how many prefixes the neighbor has withdrawn in UPDATEs.
func (g *gobgpd) withdrawnPrefixes(t testing.TB, neighbor string) int {
	t.Helper()
	out, err := g.cli("neighbor", neighbor, "-j")
	if err != nil {
		t.Fatal(err)
	}
	var n struct {
		State struct {
			Messages struct {
				Received struct {
					WithdrawPrefix int `json:"withdraw_prefix"`
				} `json:"received"`
			} `json:"messages"`
		} `json:"state"`
	}
	if err := json.Unmarshal(out, &n); err != nil {
		t.Fatalf("parsing %s: %v", out, err)
	}
	return n.State.Messages.Received.WithdrawPrefix
}

// ribSize is the number of destinations in one family's global RIB.
func (g *gobgpd) ribSize(family string) (int, error) {
	out, err := g.cli("global", "rib", "-a", family, "summary")
	if err != nil {
		return 0, err
	}
	m := regexp.MustCompile(`Destination: (\d+)`).FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no destination count in %q", out)
	}
	return strconv.Atoi(string(m[1]))
}

// eventually polls cond until it returns "" or the timeout passes; it fails with cond's last
// explanation.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		why := cond()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %s", what, timeout, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
