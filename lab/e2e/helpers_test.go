//go:build lab

package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestLabHelpers checks the helpers themselves: namespaces, veth, a
// background UDP echo server, and that cleanup removes all of it.
func TestLabHelpers(t *testing.T) {
	if !InLab() {
		t.Skip("lab test: run inside the lab VM, see lab/README.md")
	}
	NeedLabnode(t)
	var names []string
	var srv *Proc
	t.Run("inner", func(t *testing.T) {
		l := New(t)
		nss := l.NSs("a", "b")
		a, b := nss[0], nss[1]
		names = []string{a.Name, b.Name}
		l.Veth(a, "eth0", b, "eth0")
		a.AddAddr("eth0", "10.100.200.1/24")
		b.AddAddr("eth0", "10.100.200.2/24")
		srv = b.Start("labnode", "serve", "--udp", "--name", "echo", "--listen", "10.100.200.2:5353")
		Eventually(t, 10*time.Second, 100*time.Millisecond, "UDP echo answers", func() (bool, string) {
			out, err := a.Exec("labnode", "udp", "--addr", "10.100.200.2:5353", "--count", "3", "--timeout", "500ms")
			return err == nil && strings.Contains(out, `"ok":3`) && strings.Contains(out, `"echo":3`), out
		})
		if out := b.MustRun("ip", "-br", "addr", "show", "eth0"); !strings.Contains(out, "10.100.200.2/24") {
			t.Errorf("want 10.100.200.2/24 on eth0 in %s, got %q", b, out)
		}
	})
	if !srv.Exited() {
		t.Errorf("want the background process stopped after cleanup, it still runs: %s", srv)
	}
	out, err := run(t.Context(), "ip", "netns", "list")
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	for _, n := range names {
		for _, line := range strings.Split(out, "\n") {
			if strings.Fields(line + " x")[0] == n {
				t.Errorf("want namespace %s removed after cleanup, ip netns list shows:\n%s", n, out)
			}
		}
	}
}
