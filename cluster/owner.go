// Package cluster keeps the directors of one site in a memberlist (SWIM gossip) cluster and
// decides, as pure functions of the member list, which director owns which VIP.
//
// There is no leader: every director sees the same members (name, priority, eligibility, state)
// through gossip and computes ownership on its own with weighted rendezvous hashing. While the
// views agree, so do the owners; while they briefly disagree (during failure detection or a
// partition), two directors may both announce a VIP, which BGP resolves as ECMP or by
// attributes, or none does until detection completes.
//
// Use: c, err := New(logger, reg, cfg.Cluster); c.Start(ctx); after the first good IPVS apply
// c.SetEligible(true) (false while programming fails or no service is up); on every value from
// c.Changes() (and after each reconcile) take members := c.Members() once and decide every VIP
// from that one snapshot with HasQuorum(LiveCount(members), ...) and RoleFor(c.Name(), members,
// service.Key(), service.Failover); on stop c.Leave(timeout) then c.Shutdown().
package cluster

import (
	"hash/fnv"
	"math"
	"net/netip"
)

// State is a member's liveness as gossip reports it.
type State int

// Member states.
const (
	StateAlive   State = iota
	StateSuspect       // missed probes; may still refute. Counted as live.
	StateDead          // declared failed by the cluster
	StateLeft          // left gracefully
)

func (s State) String() string {
	switch s {
	case StateAlive:
		return "alive"
	case StateSuspect:
		return "suspect"
	case StateDead:
		return "dead"
	case StateLeft:
		return "left"
	}
	return "unknown"
}

// Live reports whether the member still counts: alive, or suspect (a suspect member is still
// in the cluster until it is declared dead, and counting it avoids moving VIPs on every missed
// probe).
func (s State) Live() bool { return s == StateAlive || s == StateSuspect }

// Member is one director as seen through gossip.
type Member struct {
	Name     string
	Addr     netip.AddrPort
	Priority int
	// Eligible is the director's own health flag: false while its IPVS programming fails or
	// while none of its services is up. An ineligible director owns nothing.
	Eligible bool
	State    State
}

// Counts reports whether m takes part in ownership: live, eligible and of positive priority.
func (m Member) Counts() bool { return m.State.Live() && m.Eligible && m.Priority > 0 }

// Role is what a director does for one key (VIP).
type Role int

// Roles.
// (Same order as bgp.Role; map them by name all the same.)
const (
	RoleNotOwner Role = iota // announce nothing for this key
	RoleOwner                // announce
	RoleStandby              // active-standby, not the owner but ready: announce only with standby_announce
)

func (r Role) String() string {
	switch r {
	case RoleNotOwner:
		return "not-owner"
	case RoleStandby:
		return "standby"
	case RoleOwner:
		return "owner"
	}
	return "unknown"
}

// Failover modes, as in config.Service.Failover.
const (
	ModeActiveActive  = "active-active"
	ModeActiveStandby = "active-standby"
)

// Quorum modes, as in config.Cluster.Quorum.
const (
	QuorumNone     = "none"
	QuorumMajority = "majority"
)

// Owner returns the member that owns key: among the members that count (live, eligible,
// priority > 0), the one with the highest weighted rendezvous score
//
//	score(m, key) = priority(m) / -ln(u),  u = hash(m.Name, key) mapped into (0, 1)
//
// (Schindelhauer and Schomaker's weighted rendezvous hashing): each member wins a share of the
// keys proportional to its priority, removing a member moves only the keys it owned, and a member
// coming back takes back exactly the keys it had. Equal scores, which need equal hashes and are
// practically impossible, go to the smaller name so every director picks the same owner.
// ok is false when no member counts.
//
// The hash (FNV-1a 64 finished with the splitmix64 mixer) is part of the protocol between
// directors: changing it moves keys and directors running different functions disagree.
func Owner(members []Member, key string) (name string, ok bool) {
	return ownerBy(members, key, score)
}

func ownerBy(members []Member, key string, score func(name string, priority int, key string) float64) (name string, ok bool) {
	best := -1.0
	for _, m := range members {
		if !m.Counts() {
			continue
		}
		s := score(m.Name, m.Priority, key)
		if !ok || better(s, m.Name, best, name) {
			best, name, ok = s, m.Name, true
		}
	}
	return name, ok
}

// better orders candidates: higher score first, then the smaller name.
func better(score float64, name string, bestScore float64, bestName string) bool {
	if score != bestScore {
		return score > bestScore
	}
	return name < bestName
}

func score(name string, priority int, key string) float64 {
	u := unit(hash(name, key))
	return float64(priority) / -math.Log(u)
}

// hash mixes a member name and a key; the zero byte separates them so ("ab","c") != ("a","bc").
func hash(name, key string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	h.Write([]byte{0})
	h.Write([]byte(key))
	return mix64(h.Sum64())
}

// mix64 is the splitmix64 finalizer; FNV alone spreads similar strings poorly.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// unit maps a hash into the open interval (0, 1): the top 52 bits, offset by half a step
// (with 53 bits the largest value would round up to exactly 1).
func unit(h uint64) float64 {
	return (float64(h>>12) + 0.5) / (1 << 52)
}

// RoleFor returns self's role for key. In active-active every member that counts owns every key.
// In active-standby the Owner owns it and every other member that counts is a standby. A member
// that does not count (not in the list, not live, ineligible) is never more than RoleNotOwner,
// and an unknown mode yields RoleNotOwner.
func RoleFor(self string, members []Member, key, mode string) Role {
	me, found := find(members, self)
	if !found || !me.Counts() {
		return RoleNotOwner
	}
	switch mode {
	case ModeActiveActive:
		return RoleOwner
	case ModeActiveStandby:
		if owner, ok := Owner(members, key); ok && owner == self {
			return RoleOwner
		}
		return RoleStandby
	}
	return RoleNotOwner
}

func find(members []Member, name string) (Member, bool) {
	for _, m := range members {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

// HasQuorum reports whether a director that sees alive live members (itself included) may act.
// QuorumNone always may; QuorumMajority needs more than half of expected. An unknown mode, or
// majority with expected < 1, has no quorum (fail closed).
func HasQuorum(alive, expected int, mode string) bool {
	switch mode {
	case QuorumNone:
		return true
	case QuorumMajority:
		return expected >= 1 && 2*alive > expected
	}
	return false
}

// LiveCount counts the live members (alive or suspect), eligible or not.
func LiveCount(members []Member) int {
	n := 0
	for _, m := range members {
		if m.State.Live() {
			n++
		}
	}
	return n
}
