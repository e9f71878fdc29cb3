package cluster

import (
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestNoticeRoundTrip(t *testing.T) {
	n := notice{Kind: noticeLeaving, Name: "director-1"}
	got, err := decodeNotice(encodeNotice(n))
	if err != nil || got != n {
		t.Fatalf("decode(encode(%+v)) = %+v, %v", n, got, err)
	}
}

func TestNoticeErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "notice of 0 bytes, want at least 3"},
		{"no name", []byte{1, 'L'}, "notice of 2 bytes, want at least 3"},
		{"version", []byte{2, 'L', 'a'}, "notice version 2, want 1"},
		{"kind", []byte{1, 'X', 'a'}, "unknown notice kind 0x58"},
		{"long name", append([]byte{1, 'L'}, strings.Repeat("a", 256)...), "notice node name of 256 bytes, want at most 255"},
		{"not utf-8", []byte{1, 'L', 0xff, 0xfe}, "notice node name is not UTF-8"},
	} {
		if _, err := decodeNotice(tc.in); err == nil || err.Error() != tc.want {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}

func FuzzDecodeNotice(f *testing.F) {
	f.Add(encodeNotice(notice{Kind: noticeLeaving, Name: "d1"}))
	f.Add([]byte{1, 'L'})
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := decodeNotice(b)
		if err != nil {
			return
		}
		if again, err := decodeNotice(encodeNotice(n)); err != nil || again != n {
			t.Fatalf("re-encoding %+v gave %+v, %v", n, again, err)
		}
	})
}

// A leaving director tells its peers directly: they see it ineligible long before gossip could
// carry its leaving meta or piggyback it on a probe (both every 10 s here; the wait is 4 s).
func TestClusterLeavingNoticeBeatsGossip(t *testing.T) {
	slow := "  gossip_interval: 10s\n  probe_interval: 10s\n  push_pull_interval: 60s\n"
	a := startNode(t, "a", nil, slow)
	c := startNode(t, "c", []string{a.addr()}, slow)
	ok := func(n *node, name string) bool { m, _ := n.member(name); return m.State == StateAlive && m.Eligible }
	waitFor(t, 5*time.Second, "a and c to see each other", func() bool { return ok(a, "c") && ok(c, "a") })
	key := "tcp/198.51.100.7:443"
	owner, _ := Owner(a.Members(), key)
	go func() { _ = c.Leave(2 * time.Second) }()
	waitFor(t, 4*time.Second, "a to see c ineligible", func() bool { m, _ := a.member("c"); return !m.Eligible })
	if got, _ := Owner(a.Members(), key); got != "a" {
		t.Errorf("owner of %s after c's notice = %q (was %q), want a", key, got, owner)
	}
	if m, _ := a.member("c"); m.State != StateAlive {
		t.Logf("c is %v in a's view already", m.State)
	}
}

func TestReceiveNotice(t *testing.T) {
	n := newNode(t, "a", nil, "")
	now := time.Now()
	n.mu.Lock()
	n.members["b"] = &Member{Name: "b", State: StateAlive, Eligible: true}
	n.members["gone"] = &Member{Name: "gone", State: StateDead, Eligible: true}
	n.mu.Unlock()

	n.receiveNotice([]byte{9, 9, 9}, now)
	if got := testutil.ToFloat64(n.metrics.metaErrors); got != 1 {
		t.Errorf("meta errors after a bad notice = %v, want 1", got)
	}
	n.receiveNotice(encodeNotice(notice{Kind: noticeLeaving, Name: "gone"}), now)
	n.receiveNotice(encodeNotice(notice{Kind: noticeLeaving, Name: "nobody"}), now)
	n.receiveNotice(encodeNotice(notice{Kind: noticeLeaving, Name: "a"}), now)
	if len(n.leavingPeers) != 0 {
		t.Errorf("notices about dead, unknown or self members were recorded: %v", n.leavingPeers)
	}
	n.receiveNotice(encodeNotice(notice{Kind: noticeLeaving, Name: "b"}), now)
	if m, _ := n.member("b"); m.Eligible || m.State != StateAlive {
		t.Errorf("b after its leaving notice: %+v, want alive and ineligible", m)
	}
	// A join (b restarted) clears the notice.
	n.observe(&memberlist.Node{Name: "b", Meta: encodeMeta(meta{Eligible: true, Priority: 100})}, "join")
	if m, _ := n.member("b"); !m.Eligible {
		t.Errorf("b after it joined again: %+v, want eligible", m)
	}
	// An expired notice no longer counts.
	n.receiveNotice(encodeNotice(notice{Kind: noticeLeaving, Name: "b"}), now.Add(-leavingNoticeTTL-time.Second))
	if m, _ := n.member("b"); !m.Eligible {
		t.Errorf("b with an expired notice: %+v, want eligible", m)
	}
}
