package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// BGP configures the embedded BGP speaker that announces the VIPs (issue 6).
//
//	bgp:
//	  asn: 65001
//	  router_id: 192.0.2.10
//	  listen_port: 0            # default: do not listen, only connect out
//	  communities: ["65001:100", no-export]
//	  large_communities: ["65001:1:2"]
//	  med: 10
//	  neighbors:
//	    - address: 192.0.2.1
//	      asn: 65000
//	      password: secret      # TCP MD5 (RFC 2385)
//
// Route attributes set here apply to every announced VIP; a service's own bgp: block adds
// communities and overrides local_pref and med (see ServiceBGP).
type BGP struct {
	// ASN is the local autonomous system number (required).
	ASN ASN `yaml:"asn"`
	// RouterID is the BGP identifier, an IPv4 address (required).
	RouterID Addr `yaml:"router_id"`
	// ListenPort is the TCP port that accepts sessions from neighbors. 0 (the default) does not
	// listen: the director dials its neighbors, which suits an appliance peering with routers and
	// keeps it from opening a port that nothing needs. Passive neighbors need a listen port.
	ListenPort uint16 `yaml:"listen_port"`
	// ListenAddress limits the listener to one address; unset listens on every address.
	ListenAddress Addr `yaml:"listen_address"`

	// Route attributes of every announced VIP.
	Communities      []Community      `yaml:"communities"`
	LargeCommunities []LargeCommunity `yaml:"large_communities"`
	// LocalPref is sent to iBGP neighbors only (eBGP neighbors never see it); unset sends 100.
	LocalPref *uint32 `yaml:"local_pref,omitempty"`
	MED       *uint32 `yaml:"med,omitempty"`
	// NextHop is the next hop of IPv4 VIPs; unset = self (the session's local address).
	NextHop Addr `yaml:"next_hop"`
	// NextHopIPv6 is the next hop of IPv6 VIPs; unset = self. It is required to carry IPv6 VIPs
	// over an IPv4 session, where "self" would be an IPv4 address.
	NextHopIPv6 Addr `yaml:"next_hop_ipv6"`
	// StandbyPrepend is how many times the local ASN is prepended to the AS path of a VIP
	// announced by a standby director (standby_announce); the standby route always also gets a
	// worse MED. Only eBGP neighbors can use it (0-10, default 0).
	StandbyPrepend int `yaml:"standby_prepend"`

	Neighbors []BGPNeighbor `yaml:"neighbors"`
}

// BGPNeighbor is one BGP session.
type BGPNeighbor struct {
	Address Addr `yaml:"address"`
	ASN     ASN  `yaml:"asn"`
	// Port is the neighbor's TCP port (default 179).
	Port uint16 `yaml:"port"`
	// LocalAddress is the source address of the session; unset lets the kernel choose.
	LocalAddress Addr `yaml:"local_address"`
	// Password enables TCP MD5 signatures (RFC 2385), at most 80 characters. A mismatch is
	// silent: the session just never comes up.
	Password string `yaml:"password"`
	// Multihop is the TTL of an eBGP session whose neighbor is not directly connected;
	// 0 (default) = directly connected (TTL 1).
	Multihop uint8 `yaml:"multihop"`
	// HoldTime is proposed in OPEN (default 9s, whole seconds, at least 3s); the session uses the
	// lower of both sides'. A hold time of 0 (no keepalives) is not offered: GoBGP reads 0 as
	// "unset" and would use 90s.
	HoldTime *Duration `yaml:"hold_time,omitempty"`
	// Keepalive defaults to a third of the hold time.
	Keepalive *Duration `yaml:"keepalive,omitempty"`
	// ConnectRetry is the wait between connection attempts (default 5s).
	ConnectRetry Duration `yaml:"connect_retry"`
	// Passive waits for the neighbor to connect (needs listen_port).
	Passive bool `yaml:"passive"`
	// Families lists the address families: ipv4 and/or ipv6 (unicast). Default: the family of
	// the neighbor's address.
	Families []string `yaml:"families"`
}

// ServiceBGP is a service's own route attributes: its communities and large communities are added
// to the global ones, its local_pref and med replace them.
type ServiceBGP struct {
	Communities      []Community      `yaml:"communities"`
	LargeCommunities []LargeCommunity `yaml:"large_communities"`
	LocalPref        *uint32          `yaml:"local_pref,omitempty"`
	MED              *uint32          `yaml:"med,omitempty"`
}

// BGP defaults, filled by setDefaults.
const (
	DefaultBGPPort         = 179
	DefaultBGPHoldTime     = 9 * time.Second
	DefaultBGPConnectRetry = 5 * time.Second
	// MaxBGPPasswordLen is TCP_MD5SIG_MAXKEYLEN (RFC 2385 keys in Linux).
	MaxBGPPasswordLen = 80
	MaxStandbyPrepend = 10
)

// BGP address families.
const (
	FamilyIPv4 = "ipv4"
	FamilyIPv6 = "ipv6"
)

func (b *BGP) setDefaults() {
	for i := range b.Neighbors {
		n := &b.Neighbors[i]
		if n.Port == 0 {
			n.Port = DefaultBGPPort
		}
		if n.HoldTime == nil {
			h := Duration(DefaultBGPHoldTime)
			n.HoldTime = &h
		}
		if n.Keepalive == nil {
			k := *n.HoldTime / 3
			n.Keepalive = &k
		}
		if n.ConnectRetry == 0 {
			n.ConnectRetry = Duration(DefaultBGPConnectRetry)
		}
		for j, f := range n.Families {
			n.Families[j] = strings.ToLower(f)
		}
		if len(n.Families) == 0 && n.Address.IsValid() {
			if n.Address.Is4() {
				n.Families = []string{FamilyIPv4}
			} else {
				n.Families = []string{FamilyIPv6}
			}
		}
	}
}

func (b *BGP) validate(v *validator, p string) {
	if b.ASN == 0 {
		v.errorf(p+".asn", "is required (1-4294967295)")
	}
	if !b.RouterID.IsValid() {
		v.errorf(p+".router_id", "is required (an IPv4 address)")
	} else if !b.RouterID.Is4() || b.RouterID.IsUnspecified() {
		v.errorf(p+".router_id", "must be a non-zero IPv4 address, got %s", b.RouterID)
	}
	if b.ListenAddress.IsValid() && b.ListenPort == 0 {
		v.errorf(p+".listen_address", "needs listen_port")
	}
	if b.NextHop.IsValid() && (!b.NextHop.Is4() || b.NextHop.IsUnspecified() || b.NextHop.IsMulticast()) {
		v.errorf(p+".next_hop", "must be a unicast IPv4 address, got %s", b.NextHop)
	}
	if b.NextHopIPv6.IsValid() && (!b.NextHopIPv6.Is6() || b.NextHopIPv6.IsUnspecified() || b.NextHopIPv6.IsMulticast()) {
		v.errorf(p+".next_hop_ipv6", "must be a unicast IPv6 address, got %s", b.NextHopIPv6)
	}
	if b.StandbyPrepend < 0 || b.StandbyPrepend > MaxStandbyPrepend {
		v.errorf(p+".standby_prepend", "must be 0-%d, got %d", MaxStandbyPrepend, b.StandbyPrepend)
	}
	seen := map[Addr]int{}
	for i := range b.Neighbors {
		np := fmt.Sprintf("%s.neighbors[%d]", p, i)
		n := &b.Neighbors[i]
		n.validate(v, np, b)
		if n.Address.IsValid() {
			if j, dup := seen[n.Address]; dup {
				v.errorf(np+".address", "duplicate neighbor %s (also neighbors[%d])", n.Address, j)
			} else {
				seen[n.Address] = i
			}
		}
	}
}

func (n *BGPNeighbor) validate(v *validator, p string, b *BGP) {
	if !n.Address.IsValid() {
		v.errorf(p+".address", "is required")
	} else if n.Address.IsUnspecified() || n.Address.IsMulticast() {
		v.errorf(p+".address", "%s cannot be a BGP neighbor (unspecified or multicast)", n.Address)
	}
	if n.ASN == 0 {
		v.errorf(p+".asn", "is required (1-4294967295)")
	}
	if n.LocalAddress.IsValid() && n.Address.IsValid() && n.LocalAddress.Is4() != n.Address.Is4() {
		v.errorf(p+".local_address", "%s and the neighbor %s are of different IP families", n.LocalAddress, n.Address)
	}
	if len(n.Password) > MaxBGPPasswordLen {
		v.errorf(p+".password", "is %d characters long; TCP MD5 keys are at most %d", len(n.Password), MaxBGPPasswordLen)
	}
	if n.Multihop > 0 && n.ASN == b.ASN {
		v.errorf(p+".multihop", "applies to eBGP neighbors only (this neighbor is in the local AS %d)", b.ASN)
	}
	if h := n.HoldTime.D(); h < 3*time.Second || h > 65535*time.Second || h%time.Second != 0 {
		v.errorf(p+".hold_time", "must be whole seconds from 3s to 65535s, got %s", n.HoldTime)
	} else if k := n.Keepalive.D(); k < time.Second || k%time.Second != 0 || k >= h {
		v.errorf(p+".keepalive", "must be whole seconds, at least 1s and less than hold_time %s, got %s", n.HoldTime, n.Keepalive)
	}
	if c := n.ConnectRetry.D(); c < time.Second || c%time.Second != 0 {
		v.errorf(p+".connect_retry", "must be whole seconds, at least 1s, got %s", n.ConnectRetry)
	}
	if n.Passive && b.ListenPort == 0 {
		v.errorf(p+".passive", "needs bgp.listen_port: a passive neighbor must connect to the director")
	}
	fams := map[string]bool{}
	for j, f := range n.Families {
		fp := fmt.Sprintf("%s.families[%d]", p, j)
		switch {
		case f != FamilyIPv4 && f != FamilyIPv6:
			v.errorf(fp, "unknown address family %q (ipv4 or ipv6)", f)
		case fams[f]:
			v.errorf(fp, "duplicate address family %q", f)
		case !n.Address.IsValid():
		case f == FamilyIPv6 && n.Address.Is4() && !b.NextHopIPv6.IsValid():
			v.errorf(fp, "ipv6 over the IPv4 session with %s needs bgp.next_hop_ipv6", n.Address)
		case f == FamilyIPv4 && n.Address.Is6() && !b.NextHop.IsValid():
			v.errorf(fp, "ipv4 over the IPv6 session with %s needs bgp.next_hop", n.Address)
		}
		fams[f] = true
	}
}

func (b *ServiceBGP) validate(v *validator, p string) {
	// Communities and large communities are checked as they are read (see Community); local_pref
	// and med take any 32-bit value. The top-level bgp section is what makes them take effect.
}

// Has reports whether the neighbor carries the family (FamilyIPv4 or FamilyIPv6).
func (n *BGPNeighbor) Has(family string) bool {
	return contains(n.Families, family)
}

// ASN is an autonomous system number, written as a plain number (65001) or in asdot notation
// (1.10 = 65546).
type ASN uint32

// UnmarshalYAML parses an AS number.
func (a *ASN) UnmarshalYAML(n *yaml.Node) error {
	v, ok := parseASN(n.Value)
	if n.Kind != yaml.ScalarNode || !ok {
		return typeError(n, "invalid AS number %q (1-4294967295, or asdot such as 1.10)", n.Value)
	}
	*a = ASN(v)
	return nil
}

func parseASN(s string) (uint32, bool) {
	if hi, lo, dot := strings.Cut(s, "."); dot {
		h, err1 := strconv.ParseUint(hi, 10, 16)
		l, err2 := strconv.ParseUint(lo, 10, 16)
		return uint32(h<<16 | l), err1 == nil && err2 == nil
	}
	v, err := strconv.ParseUint(s, 10, 32)
	return uint32(v), err == nil
}

// Community is a standard BGP community (RFC 1997), written "65000:100" or as a well-known name.
type Community uint32

// wellKnownCommunities lists the names a community may be written as, with their values.
func wellKnownCommunities() []struct {
	Name  string
	Value Community
} {
	return []struct {
		Name  string
		Value Community
	}{
		{"graceful-shutdown", 0xFFFF0000}, // RFC 8326
		{"accept-own", 0xFFFF0001},        // RFC 7611
		{"blackhole", 0xFFFF029A},         // RFC 7999
		{"no-export", 0xFFFFFF01},         // RFC 1997
		{"no-advertise", 0xFFFFFF02},
		{"no-export-subconfed", 0xFFFFFF03},
		{"no-peer", 0xFFFFFF04}, // RFC 3765
	}
}

// ParseCommunity parses "ASN:VALUE" (both 0-65535) or a well-known name.
func ParseCommunity(s string) (Community, error) {
	for _, w := range wellKnownCommunities() {
		if strings.EqualFold(w.Name, s) {
			return w.Value, nil
		}
	}
	hi, lo, ok := strings.Cut(s, ":")
	h, err1 := strconv.ParseUint(hi, 10, 16)
	l, err2 := strconv.ParseUint(lo, 10, 16)
	if !ok || err1 != nil || err2 != nil {
		return 0, fmt.Errorf("invalid community %q (ASN:VALUE with both 0-65535, or a well-known name such as no-export)", s)
	}
	return Community(h<<16 | l), nil
}

func (c Community) String() string {
	for _, w := range wellKnownCommunities() {
		if w.Value == c {
			return w.Name
		}
	}
	return fmt.Sprintf("%d:%d", uint32(c)>>16, uint32(c)&0xFFFF)
}

// UnmarshalYAML parses a community.
func (c *Community) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return typeError(n, "expected a community such as 65000:100")
	}
	v, err := ParseCommunity(n.Value)
	if err != nil {
		return typeError(n, "%s", err.Error())
	}
	*c = v
	return nil
}

// MarshalYAML writes the community as a string.
func (c Community) MarshalYAML() (any, error) { return c.String(), nil }

// LargeCommunity is a BGP large community (RFC 8092), written "GLOBAL:LOCAL1:LOCAL2" with each
// part 0-4294967295.
type LargeCommunity struct {
	Global, Local1, Local2 uint32
}

// ParseLargeCommunity parses "GLOBAL:LOCAL1:LOCAL2".
func ParseLargeCommunity(s string) (LargeCommunity, error) {
	parts := strings.Split(s, ":")
	var v [3]uint32
	ok := len(parts) == 3
	for i := 0; ok && i < 3; i++ {
		x, err := strconv.ParseUint(parts[i], 10, 32)
		ok = err == nil
		v[i] = uint32(x)
	}
	if !ok {
		return LargeCommunity{}, fmt.Errorf("invalid large community %q (GLOBAL:LOCAL1:LOCAL2, each 0-4294967295)", s)
	}
	return LargeCommunity{v[0], v[1], v[2]}, nil
}

func (c LargeCommunity) String() string { return fmt.Sprintf("%d:%d:%d", c.Global, c.Local1, c.Local2) }

// UnmarshalYAML parses a large community.
func (c *LargeCommunity) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return typeError(n, "expected a large community such as 65000:1:2")
	}
	v, err := ParseLargeCommunity(n.Value)
	if err != nil {
		return typeError(n, "%s", err.Error())
	}
	*c = v
	return nil
}

// MarshalYAML writes the large community as a string.
func (c LargeCommunity) MarshalYAML() (any, error) { return c.String(), nil }
