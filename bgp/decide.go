// Package bgp announces the director's VIPs over BGP from an embedded GoBGP speaker.
//
// Decide is the pure part: healthy VIPs x cluster ownership -> routes. Speaker is the thin side
// effect: it holds the sessions and announces exactly the routes it was last given.
package bgp

import (
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/lvs-director/lvs-director/config"
)

// LargeCommunity is a BGP large community (RFC 8092).
type LargeCommunity struct {
	Global, Local1, Local2 uint32
}

// Route is one announced prefix with its attributes.
type Route struct {
	Prefix netip.Prefix
	// NextHop is the next hop; the zero value means the configured default next hop of the
	// prefix's family (bgp.next_hop / next_hop_ipv6), else self.
	NextHop          netip.Addr
	Communities      []uint32 // sorted, no duplicates (as Decide makes them)
	LargeCommunities []LargeCommunity
	LocalPref        *uint32 // nil = the speaker's default (100 on iBGP)
	MED              *uint32 // nil = no MED
	// ASPathPrepend is how many extra times the local ASN is put in the AS path.
	ASPathPrepend int
}

// Role is this director's part in a VIP, decided by the cluster.
type Role int

const (
	// NotOwner: another director serves the VIP; it is not announced here.
	NotOwner Role = iota
	// Owner: this director serves the VIP.
	Owner
	// Standby: another director owns the VIP; with standby_announce this one announces it
	// with a worse route so that the routers fail over without waiting for the cluster.
	Standby
)

func (r Role) String() string {
	switch r {
	case Owner:
		return "owner"
	case Standby:
		return "standby"
	default:
		return "not-owner"
	}
}

// StandbyMEDPenalty is added to the MED of a route announced by a standby director.
const StandbyMEDPenalty = 100

// Attributes are the route attributes a service asks for.
type Attributes struct {
	Communities      []uint32
	LargeCommunities []LargeCommunity
	LocalPref        *uint32
	MED              *uint32
	// StandbyPrepend is the AS-path prepend used when the VIP is announced as standby.
	StandbyPrepend int
}

// ServiceAnnounce is the input of Decide for one virtual service.
type ServiceAnnounce struct {
	VIP             netip.Addr
	Healthy         bool
	Role            Role
	StandbyAnnounce bool
	Attrs           Attributes
}

// Decide returns the routes to announce, sorted by prefix. A VIP is announced as a host route
// (/32 or /128):
//   - as owner when at least one of its services is healthy and owned here;
//   - else as standby when at least one of its services is healthy, standby and has
//     standby_announce: its MED is the service's MED (0 when unset) + StandbyMEDPenalty, and its
//     AS path gets StandbyPrepend extra copies of the local ASN;
//   - else not at all.
//
// Several services on one VIP: the VIP stays announced while any of them is healthy (as
// MetalLB does), because withdrawing it would also cut the healthy services off. The routes
// of the services that qualify are merged: communities and large communities are the union,
// local_pref the highest, MED the lowest, standby prepend the lowest.
func Decide(in []ServiceAnnounce) []Route {
	type group struct {
		owner, standby []*Attributes
	}
	groups := map[netip.Addr]*group{}
	for i := range in {
		s := &in[i]
		if !s.VIP.IsValid() {
			continue
		}
		vip := s.VIP.Unmap()
		g := groups[vip]
		if g == nil {
			g = &group{}
			groups[vip] = g
		}
		if !s.Healthy {
			continue
		}
		switch {
		case s.Role == Owner:
			g.owner = append(g.owner, &s.Attrs)
		case s.Role == Standby && s.StandbyAnnounce:
			g.standby = append(g.standby, &s.Attrs)
		}
	}
	var out []Route
	for vip, g := range groups {
		r := Route{Prefix: netip.PrefixFrom(vip, vip.BitLen())}
		switch {
		case len(g.owner) > 0:
			merge(&r, g.owner)
		case len(g.standby) > 0:
			merge(&r, g.standby)
			med := uint64(StandbyMEDPenalty)
			if r.MED != nil {
				med += uint64(*r.MED)
			}
			r.MED = ptr(uint32(min(med, math.MaxUint32)))
			r.ASPathPrepend = g.standby[0].StandbyPrepend
			for _, a := range g.standby {
				r.ASPathPrepend = min(r.ASPathPrepend, a.StandbyPrepend)
			}
		default:
			continue
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Route) int { return comparePrefix(a.Prefix, b.Prefix) })
	return out
}

func merge(r *Route, attrs []*Attributes) {
	for _, a := range attrs {
		r.Communities = append(r.Communities, a.Communities...)
		r.LargeCommunities = append(r.LargeCommunities, a.LargeCommunities...)
		if a.LocalPref != nil && (r.LocalPref == nil || *a.LocalPref > *r.LocalPref) {
			r.LocalPref = ptr(*a.LocalPref)
		}
		if a.MED != nil && (r.MED == nil || *a.MED < *r.MED) {
			r.MED = ptr(*a.MED)
		}
	}
	slices.Sort(r.Communities)
	r.Communities = slices.Compact(r.Communities)
	slices.SortFunc(r.LargeCommunities, compareLarge)
	r.LargeCommunities = slices.Compact(r.LargeCommunities)
}

func compareLarge(a, b LargeCommunity) int {
	switch {
	case a.Global != b.Global:
		return cmpU32(a.Global, b.Global)
	case a.Local1 != b.Local1:
		return cmpU32(a.Local1, b.Local1)
	default:
		return cmpU32(a.Local2, b.Local2)
	}
}

func cmpU32(a, b uint32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

func ptr[T any](v T) *T { return &v }

// ServiceAttributes merges the global route attributes with a service's own (which may be nil):
// the service's communities are added to the global ones, its local_pref and med replace them.
func ServiceAttributes(global *config.BGP, svc *config.ServiceBGP) Attributes {
	var a Attributes
	if global == nil {
		return a
	}
	add := func(cs []config.Community, ls []config.LargeCommunity) {
		for _, c := range cs {
			a.Communities = append(a.Communities, uint32(c))
		}
		for _, l := range ls {
			a.LargeCommunities = append(a.LargeCommunities, LargeCommunity(l))
		}
	}
	add(global.Communities, global.LargeCommunities)
	a.LocalPref, a.MED = copyPtr(global.LocalPref), copyPtr(global.MED)
	a.StandbyPrepend = global.StandbyPrepend
	if svc != nil {
		add(svc.Communities, svc.LargeCommunities)
		if svc.LocalPref != nil {
			a.LocalPref = copyPtr(svc.LocalPref)
		}
		if svc.MED != nil {
			a.MED = copyPtr(svc.MED)
		}
	}
	return a
}

func copyPtr(p *uint32) *uint32 {
	if p == nil {
		return nil
	}
	return ptr(*p)
}

// String is a short, stable description of the route, used to compare routes and in logs.
func (r Route) String() string {
	var b strings.Builder
	b.WriteString(r.Prefix.String())
	if r.NextHop.IsValid() {
		b.WriteString(" nh=" + r.NextHop.String())
	}
	for i, c := range r.Communities {
		if i == 0 {
			b.WriteString(" comm=")
		} else {
			b.WriteString(",")
		}
		b.WriteString(config.Community(c).String())
	}
	for i, l := range r.LargeCommunities {
		if i == 0 {
			b.WriteString(" large=")
		} else {
			b.WriteString(",")
		}
		b.WriteString(config.LargeCommunity(l).String())
	}
	if r.LocalPref != nil {
		b.WriteString(" lp=" + strconv.FormatUint(uint64(*r.LocalPref), 10))
	}
	if r.MED != nil {
		b.WriteString(" med=" + strconv.FormatUint(uint64(*r.MED), 10))
	}
	if r.ASPathPrepend > 0 {
		b.WriteString(" prepend=" + strconv.Itoa(r.ASPathPrepend))
	}
	return b.String()
}
