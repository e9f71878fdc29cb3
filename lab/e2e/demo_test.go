//go:build lab

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lvs-director/lvs-director/config"
)

// demo prints a line for `make demo` (which shows only these lines).
func demo(format string, args ...any) {
	for _, line := range strings.Split(strings.TrimRight(fmt.Sprintf(format, args...), "\n"), "\n") {
		fmt.Println("DEMO " + line)
	}
}

// TestDemo is the product's main job, shown: lvs-director runs examples/director.yaml (copied
// next to the binaries), a client sends requests through the VIP, and each answer names the
// real server that served it; then the kernel's table as ipvsadm sees it, and the director's
// own status.
func TestDemo(t *testing.T) {
	l := New(t)
	NeedLabnode(t)
	NeedDirector(t)
	bin, _ := exec.LookPath("lvs-director")
	example := filepath.Join(filepath.Dir(bin), "director.yaml")
	raw, err := os.ReadFile(example)
	if err != nil {
		t.Fatalf("the example config must be in the VM next to lvs-director (make lab-bins copies it): %v", err)
	}
	cfg, err := config.Parse(example, raw)
	if err != nil {
		t.Fatal(err)
	}
	web := cfg.Services[0]

	// client 198.51.100.2 -- 198.51.100.1 director, bridge 10.0.1.1/24 -- real servers
	names := []string{"client", "director"}
	for i := range web.RealServers {
		names = append(names, fmt.Sprintf("rs%d", i+1))
	}
	nss := l.NSs(names...)
	client, dir, rss := nss[0], nss[1], nss[2:]
	links := []string{fmt.Sprintf("link add eth0 netns %s type veth peer name eth0 netns %s", client, dir)}
	for i, rs := range rss {
		links = append(links, fmt.Sprintf("link add rs%d netns %s type veth peer name eth0 netns %s", i+1, dir, rs))
	}
	l.IPBatch(links...)
	client.IPBatch("link set eth0 up", "addr add 198.51.100.2/24 dev eth0", "route add default via 198.51.100.1")
	dl := []string{"link set eth0 up", "addr add 198.51.100.1/24 dev eth0", "link add br0 type bridge", "link set br0 up", "addr add 10.0.1.1/24 dev br0"}
	for i, rs := range rss {
		dl = append(dl, fmt.Sprintf("link set rs%d master br0", i+1), fmt.Sprintf("link set rs%d up", i+1))
		a := web.RealServers[i].Address.String()
		rs.IPBatch("link set eth0 up", "addr add "+a+"/24 dev eth0", "route add default via 10.0.1.1")
		rs.Start("labnode", "serve", "--name", fmt.Sprintf("rs%d (%s)", i+1, a), "--listen", fmt.Sprintf("%s:%d", a, web.RealServers[i].Port))
	}
	dir.IPBatch(dl...)

	demo("lvs-director demo: Debian's kernel %s under qemu, with network namespaces", strings.TrimSpace(dir.MustRun("uname", "-r")))
	demo("config: examples/director.yaml -> service %q %s, %d real servers", web.Name, web.Key(), len(web.RealServers))
	// The example as shipped, with the status socket in the test's own directory.
	d := StartDirector(t, dir, string(raw)+"api: {socket: \"%SOCK%\"}\n")
	time.Sleep(300 * time.Millisecond)

	url := "http://" + web.VIP.String() + ":" + fmt.Sprint(web.Port) + "/"
	demo("")
	demo("client 198.51.100.2 -> %s, 9 requests, each on a new connection:", url)
	for i := 1; i <= 9; i++ {
		s := Labnode(t, client, "client", "--url", url, "--timeout", "2s")
		who := "FAILED " + strings.Join(s.Errors, "; ")
		for name := range s.ByName {
			who = "answered by " + name
		}
		demo("  request %d: %s", i, who)
		if s.OK != 1 {
			d.Fatalf("request %d failed: %v", i, s.Errors)
		}
	}
	demo("")
	demo("the kernel's IPVS table (ipvsadm -Ln, read independently):")
	demo("%s", dir.MustRun("ipvsadm", "-Ln"))
	demo("")
	demo("the director's view (lvs-director status):")
	demo("%s", dir.MustRun("lvs-director", "status", "--socket", d.Socket))
}
