package cluster

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

func mem(name string, prio int) Member {
	return Member{Name: name, Priority: prio, Eligible: true, State: StateAlive}
}

func keys(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("tcp/198.51.100.%d:%d", i%250, 80+i/250)
	}
	return out
}

func owners(t *testing.T, members []Member, ks []string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, k := range ks {
		o, ok := Owner(members, k)
		if !ok {
			t.Fatalf("Owner(%q): no owner among %v", k, members)
		}
		out[k] = o
	}
	return out
}

func without(members []Member, name string) []Member {
	var out []Member
	for _, m := range members {
		if m.Name != name {
			out = append(out, m)
		}
	}
	return out
}

func TestOwnerNoneCount(t *testing.T) {
	dead := mem("a", 100)
	dead.State = StateDead
	left := mem("b", 100)
	left.State = StateLeft
	inel := mem("c", 100)
	inel.Eligible = false
	zero := mem("d", 0)
	for _, ms := range [][]Member{nil, {dead}, {left}, {inel}, {zero}, {dead, left, inel, zero}} {
		if o, ok := Owner(ms, "k"); ok {
			t.Errorf("Owner(%v) = %q, want none", ms, o)
		}
	}
}

func TestOwnerOnlyCountingMembers(t *testing.T) {
	ks := keys(300)
	live := mem("live", 100)
	suspect := mem("suspect", 100)
	suspect.State = StateSuspect
	others := []Member{mem("dead", 100), mem("left", 100), mem("inel", 100), mem("zero", 0)}
	others[0].State = StateDead
	others[1].State = StateLeft
	others[2].Eligible = false
	all := append([]Member{live, suspect}, others...)
	got := owners(t, all, ks)
	seen := map[string]int{}
	for _, o := range got {
		seen[o]++
	}
	if len(seen) != 2 || seen["live"] == 0 || seen["suspect"] == 0 {
		t.Errorf("owners = %v, want only live and suspect (suspect members still count)", seen)
	}
	// Same result as if the non-counting members were not there.
	want := owners(t, []Member{live, suspect}, ks)
	for k := range want {
		if got[k] != want[k] {
			t.Fatalf("key %s: %s with non-counting members present, %s without", k, got[k], want[k])
		}
	}
}

func TestOwnerOrderIndependent(t *testing.T) {
	ms := []Member{mem("a", 100), mem("b", 100), mem("c", 300), mem("d", 50)}
	ks := keys(500)
	want := owners(t, ms, ks)
	r := rand.New(rand.NewPCG(1, 2))
	for range 10 {
		sh := append([]Member(nil), ms...)
		r.Shuffle(len(sh), func(i, j int) { sh[i], sh[j] = sh[j], sh[i] })
		got := owners(t, sh, ks)
		for k := range want {
			if got[k] != want[k] {
				t.Fatalf("key %s: owner %s for order %v, %s for %v", k, got[k], sh, want[k], ms)
			}
		}
	}
}

func TestOwnerEvenSpread(t *testing.T) {
	ms := []Member{mem("lvs-a", 100), mem("lvs-b", 100), mem("lvs-c", 100)}
	ks := keys(3000)
	count := map[string]int{}
	for _, o := range owners(t, ms, ks) {
		count[o]++
	}
	for _, m := range ms {
		if c := count[m.Name]; c < 850 || c > 1150 {
			t.Errorf("%s owns %d of 3000 keys, want about 1000 (%v)", m.Name, c, count)
		}
	}
}

func TestOwnerPriorityShare(t *testing.T) {
	ms := []Member{mem("big", 300), mem("small1", 100), mem("small2", 100)}
	ks := keys(4000)
	count := map[string]int{}
	for _, o := range owners(t, ms, ks) {
		count[o]++
	}
	// Weighted rendezvous: shares proportional to priority, 3/5, 1/5, 1/5.
	if c := count["big"]; c < 2200 || c > 2600 {
		t.Errorf("priority 300 owns %d of 4000 keys, want about 2400 (%v)", c, count)
	}
	for _, n := range []string{"small1", "small2"} {
		if c := count[n]; c < 600 || c > 1000 {
			t.Errorf("priority 100 %s owns %d of 4000 keys, want about 800 (%v)", n, c, count)
		}
	}
}

func TestOwnerLeaveMovesOnlyItsKeys(t *testing.T) {
	ms := []Member{mem("a", 100), mem("b", 100), mem("c", 100), mem("d", 100), mem("e", 100)}
	ks := keys(1000)
	before := owners(t, ms, ks)
	for _, gone := range []string{"a", "c", "e"} {
		after := owners(t, without(ms, gone), ks)
		moved := 0
		for _, k := range ks {
			if before[k] != gone && after[k] != before[k] {
				t.Fatalf("removing %s moved key %s from %s to %s", gone, k, before[k], after[k])
			}
			if after[k] != before[k] {
				moved++
			}
		}
		// Only the keys of the member that left move: about 1/5.
		if moved < 130 || moved > 270 {
			t.Errorf("removing %s moved %d of 1000 keys, want about 200", gone, moved)
		}
	}
}

func TestOwnerJoinTakesOnlyItsShare(t *testing.T) {
	ms := []Member{mem("a", 100), mem("b", 100), mem("c", 100)}
	ks := keys(1000)
	before := owners(t, ms, ks)
	after := owners(t, append(ms, mem("d", 100)), ks)
	moved := 0
	for _, k := range ks {
		if after[k] != before[k] {
			if after[k] != "d" {
				t.Fatalf("adding d moved key %s from %s to %s", k, before[k], after[k])
			}
			moved++
		}
	}
	if moved < 170 || moved > 330 {
		t.Errorf("adding a fourth member moved %d of 1000 keys, want about 250", moved)
	}
}

func TestOwnerFlapReturnsToSameOwner(t *testing.T) {
	ms := []Member{mem("a", 100), mem("b", 200), mem("c", 100)}
	ks := keys(1000)
	before := owners(t, ms, ks)
	for _, change := range []func(*Member){
		func(m *Member) { m.State = StateDead },
		func(m *Member) { m.State = StateLeft },
		func(m *Member) { m.Eligible = false },
	} {
		flapped := append([]Member(nil), ms...)
		change(&flapped[1])
		during := owners(t, flapped, ks)
		changed := 0
		for _, k := range ks {
			if during[k] == "b" {
				t.Fatalf("b owns %s while it does not count", k)
			}
			if during[k] != before[k] {
				changed++
			}
		}
		if changed == 0 {
			t.Fatalf("b owned no key before flapping")
		}
		back := owners(t, ms, ks)
		for _, k := range ks {
			if back[k] != before[k] {
				t.Fatalf("after b came back key %s is on %s, was on %s", k, back[k], before[k])
			}
		}
	}
}

func TestBetterTieBreak(t *testing.T) {
	tests := []struct {
		s    float64
		n    string
		bs   float64
		bn   string
		want bool
	}{
		{2, "z", 1, "a", true},
		{1, "a", 2, "z", false},
		{1, "a", 1, "b", true},
		{1, "b", 1, "a", false},
		{1, "a", 1, "a", false},
	}
	for _, tt := range tests {
		if got := better(tt.s, tt.n, tt.bs, tt.bn); got != tt.want {
			t.Errorf("better(%v,%q,%v,%q) = %v, want %v", tt.s, tt.n, tt.bs, tt.bn, got, tt.want)
		}
	}
}

func TestOwnerTieGoesToSmallerName(t *testing.T) {
	// Real ties need equal hashes; force them with a constant score.
	flat := func(string, int, string) float64 { return 1 }
	ms := []Member{mem("m", 100), mem("b", 100), mem("z", 100), mem("c", 100)}
	inel := mem("a", 100)
	inel.Eligible = false
	ms = append(ms, inel)
	r := rand.New(rand.NewPCG(5, 6))
	for range 20 {
		r.Shuffle(len(ms), func(i, j int) { ms[i], ms[j] = ms[j], ms[i] })
		if o, ok := ownerBy(ms, "k", flat); !ok || o != "b" {
			t.Fatalf("tie among %v went to %q, want b (smallest counting name)", ms, o)
		}
	}
	// And the real score agrees with better() for every key.
	real := []Member{mem("x", 100), mem("y", 100), mem("w", 100)}
	for _, k := range keys(200) {
		o, _ := Owner(real, k)
		for _, m := range real {
			if m.Name != o && better(score(m.Name, m.Priority, k), m.Name, score(o, 100, k), o) {
				t.Fatalf("key %s: owner %s but %s scores better", k, o, m.Name)
			}
		}
	}
}

func TestUnitOpenInterval(t *testing.T) {
	for _, h := range []uint64{0, 1, 1 << 63, ^uint64(0)} {
		u := unit(h)
		if !(u > 0 && u < 1) {
			t.Errorf("unit(%#x) = %v, want in (0,1)", h, u)
		}
	}
}

func TestHashSeparatesNameAndKey(t *testing.T) {
	if hash("ab", "c") == hash("a", "bc") {
		t.Errorf("hash(ab,c) == hash(a,bc)")
	}
}

func TestRoleFor(t *testing.T) {
	ms := []Member{mem("a", 100), mem("b", 100), mem("c", 100)}
	key := "tcp/198.51.100.1:80"
	owner, _ := Owner(ms, key)
	var other string
	for _, m := range ms {
		if m.Name != owner {
			other = m.Name
			break
		}
	}
	inel := append([]Member(nil), ms...)
	for i := range inel {
		if inel[i].Name == other {
			inel[i].Eligible = false
		}
	}
	deadSelf := append([]Member(nil), ms...)
	for i := range deadSelf {
		if deadSelf[i].Name == other {
			deadSelf[i].State = StateLeft
		}
	}
	tests := []struct {
		name    string
		self    string
		members []Member
		mode    string
		want    Role
	}{
		{"active-active owner", owner, ms, ModeActiveActive, RoleOwner},
		{"active-active every member", other, ms, ModeActiveActive, RoleOwner},
		{"active-active ineligible", other, inel, ModeActiveActive, RoleNotOwner},
		{"active-standby owner", owner, ms, ModeActiveStandby, RoleOwner},
		{"active-standby standby", other, ms, ModeActiveStandby, RoleStandby},
		{"active-standby ineligible", other, inel, ModeActiveStandby, RoleNotOwner},
		{"active-standby left", other, deadSelf, ModeActiveStandby, RoleNotOwner},
		{"not a member", "zzz", ms, ModeActiveStandby, RoleNotOwner},
		{"unknown mode", owner, ms, "hot-spare", RoleNotOwner},
		{"alone", "solo", []Member{mem("solo", 1)}, ModeActiveStandby, RoleOwner},
	}
	for _, tt := range tests {
		if got := RoleFor(tt.self, tt.members, key, tt.mode); got != tt.want {
			t.Errorf("%s: RoleFor(%s) = %v, want %v", tt.name, tt.self, got, tt.want)
		}
	}
	// When the owner becomes ineligible a standby takes over.
	gone := append([]Member(nil), ms...)
	for i := range gone {
		if gone[i].Name == owner {
			gone[i].Eligible = false
		}
	}
	next, _ := Owner(gone, key)
	if next == owner || RoleFor(next, gone, key, ModeActiveStandby) != RoleOwner {
		t.Errorf("after %s became ineligible, %s should own %s", owner, next, key)
	}
	if RoleFor(owner, gone, key, ModeActiveStandby) != RoleNotOwner {
		t.Errorf("ineligible former owner keeps a role")
	}
}

func TestHasQuorum(t *testing.T) {
	tests := []struct {
		alive, expected int
		mode            string
		want            bool
	}{
		{1, 3, QuorumNone, true},
		{0, 0, QuorumNone, true},
		{2, 3, QuorumMajority, true},
		{1, 3, QuorumMajority, false},
		{3, 3, QuorumMajority, true},
		{2, 4, QuorumMajority, false},
		{3, 4, QuorumMajority, true},
		{1, 2, QuorumMajority, false},
		{2, 2, QuorumMajority, true},
		{1, 1, QuorumMajority, true},
		{5, 0, QuorumMajority, false},
		{5, 3, "", false},
		{5, 3, "most", false},
	}
	for _, tt := range tests {
		if got := HasQuorum(tt.alive, tt.expected, tt.mode); got != tt.want {
			t.Errorf("HasQuorum(%d, %d, %q) = %v, want %v", tt.alive, tt.expected, tt.mode, got, tt.want)
		}
	}
}

func TestLiveCount(t *testing.T) {
	ms := []Member{mem("a", 1), mem("b", 1), mem("c", 1), mem("d", 1)}
	ms[1].State = StateSuspect
	ms[2].State = StateDead
	ms[3].Eligible = false
	if got := LiveCount(ms); got != 3 {
		t.Errorf("LiveCount = %d, want 3 (alive, suspect, ineligible-but-alive)", got)
	}
}

func BenchmarkOwner(b *testing.B) {
	ms := []Member{mem("a", 100), mem("b", 100), mem("c", 200), mem("d", 100), mem("e", 100)}
	ks := keys(1000)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		Owner(ms, ks[i%len(ks)])
	}
}
