package cluster

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// A director that changed its eligibility many times (so its peers hold a high incarnation for
// it) crashes and comes back under the same name and address, ineligible at first and eligible
// a little later: every peer must see it alive and eligible again, whatever the timing of its
// eligibility change against its join.
func TestClusterCrashedMemberRestartsIneligible(t *testing.T) {
	timers := "  probe_interval: 1s\n  probe_timeout: 500ms\n  suspicion_mult: 3\n  gossip_interval: 200ms\n"
	a := startNode(t, "a", nil, timers)
	b := startNode(t, "b", []string{a.addr()}, timers)
	c := startNode(t, "c", []string{a.addr(), b.addr()}, timers)
	ok := func(n *node, name string) bool { m, _ := n.member(name); return m.State == StateAlive && m.Eligible }
	waitFor(t, 5*time.Second, "all", func() bool { return ok(a, "c") && ok(b, "c") && ok(c, "a") })
	for round := 0; round < 3; round++ {
		for i := 0; i < round*4; i++ {
			_ = c.SetEligible(i%2 == 0)
			time.Sleep(20 * time.Millisecond)
		}
		_ = c.SetEligible(true)
		time.Sleep(500 * time.Millisecond)
		port := c.Port()
		_ = c.Shutdown()
		waitFor(t, 10*time.Second, "c dead", func() bool {
			m, _ := a.member("c")
			m2, _ := b.member("c")
			return m.State == StateDead && m2.State == StateDead
		})
		time.Sleep(time.Duration(round) * 300 * time.Millisecond)
		c = newNode(t, "c", []string{a.addr(), b.addr()}, timers, WithEligible(false), withMemberlistConfig(func(mc *memberlist.Config) {
			mc.BindPort, mc.AdvertisePort = port, port
		}))
		if err := c.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(round*100) * time.Millisecond)
		_ = c.SetEligible(true)
		d := waitFor(t, 20*time.Second, fmt.Sprintf("round %d: c alive eligible", round), func() bool { return ok(a, "c") && ok(b, "c") && ok(c, "a") && ok(c, "b") })
		t.Logf("round %d: %v", round, d)
	}
}

// A meta change memberlist dropped (see publishMetaLocked) is found and published again by the
// join loop's check.
func TestClusterCheckMetaRepairsADroppedUpdate(t *testing.T) {
	a := startNode(t, "a", nil, "")
	c := startNode(t, "c", []string{a.addr()}, "", WithEligible(false))
	waitFor(t, 5*time.Second, "a to see c, ineligible", func() bool { m, ok := a.member("c"); return ok && m.State == StateAlive && !m.Eligible })
	// The flag changes but no update reaches memberlist, as when a refute overtook it.
	c.mu.Lock()
	c.eligible = true
	c.mu.Unlock()
	c.checkMeta()
	waitFor(t, 5*time.Second, "a to see c eligible after the check", func() bool { m, _ := a.member("c"); return m.Eligible })
	if !strings.Contains(c.log.String(), "node meta gossiped by memberlist is stale") {
		t.Errorf("the repair was not logged; log:\n%s", c.log.String())
	}
	// After Leave, memberlist ignores the node's own updates: no retries, no error.
	if err := c.Leave(time.Second); err != nil {
		t.Logf("leave: %v", err)
	}
	if err := c.SetEligible(false); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(c.log.String(), "not taken by memberlist") {
		t.Errorf("an update after Leave was retried; log:\n%s", c.log.String())
	}
}
