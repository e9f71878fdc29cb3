package config

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Cluster configures director membership and VIP failover (issue 7).
//
// Directors find each other with memberlist (SWIM gossip). Every director computes, on its own
// and from the same member list, which director owns each active-standby VIP (weighted
// rendezvous hashing over node names and priorities), so no leader election is needed.
type Cluster struct {
	// NodeName is this director's unique name in the cluster. Empty means the host name,
	// resolved when the cluster starts (not here, so that parsing stays deterministic).
	NodeName string `yaml:"node_name"`
	// BindAddress is the IP the gossip listeners (UDP and TCP) bind to.
	BindAddress Addr `yaml:"bind_address"`
	// BindPort is the gossip port, UDP and TCP. 0 in the file means the default.
	BindPort uint16 `yaml:"bind_port"`
	// AdvertiseAddress is the IP peers should use to reach this director; empty means
	// bind_address, or, when that is unspecified, an address picked from the interfaces.
	AdvertiseAddress Addr `yaml:"advertise_address"`
	// Join lists peers as host:port (IP or DNS name). Listing every director, this one
	// included, on every director is fine. A peer that is down never blocks start: joining
	// is retried in the background.
	Join []string `yaml:"join"`
	// SecretKeyFile holds the gossip encryption key: base64 (standard encoding) of 16, 24 or
	// 32 bytes (AES-128/192/256), e.g. the output of `openssl rand -base64 32`. It is read at
	// start; without it gossip is unencrypted and unauthenticated, which is logged loudly.
	SecretKeyFile string `yaml:"secret_key_file"`

	// Failure detection. The defaults detect a dead director in about a second on a LAN.
	ProbeInterval    Duration `yaml:"probe_interval"`
	ProbeTimeout     Duration `yaml:"probe_timeout"`
	SuspicionMult    int      `yaml:"suspicion_mult"`
	GossipInterval   Duration `yaml:"gossip_interval"`
	GossipNodes      int      `yaml:"gossip_nodes"`
	RetransmitMult   int      `yaml:"retransmit_mult"`
	PushPullInterval Duration `yaml:"push_pull_interval"`
	TCPTimeout       Duration `yaml:"tcp_timeout"`
	// RejoinInterval is how often the director retries the join list while it is alone or
	// some member is dead (this heals partitions); the first retries are faster.
	RejoinInterval Duration `yaml:"rejoin_interval"`

	// Priority weights this director in the ownership hash (1-1000): a director with twice
	// the priority of another owns about twice as many active-standby VIPs.
	Priority *int `yaml:"priority,omitempty"`
	// Quorum is "none" (a director announces what it owns whatever it sees) or "majority"
	// (a director that sees at most half of expected_members alive withdraws everything).
	Quorum string `yaml:"quorum"`
	// ExpectedMembers is the number of directors in the cluster; required for quorum: majority.
	ExpectedMembers int `yaml:"expected_members"`
}

// Cluster defaults.
const (
	DefaultClusterBindPort         = 7946
	DefaultClusterProbeInterval    = 200 * time.Millisecond
	DefaultClusterProbeTimeout     = 100 * time.Millisecond
	DefaultClusterSuspicionMult    = 2
	DefaultClusterGossipInterval   = 100 * time.Millisecond
	DefaultClusterGossipNodes      = 3
	DefaultClusterRetransmitMult   = 4
	DefaultClusterPushPullInterval = 15 * time.Second
	DefaultClusterTCPTimeout       = 2 * time.Second
	DefaultClusterRejoinInterval   = 10 * time.Second
	DefaultClusterPriority         = 100
	DefaultClusterQuorum           = "none"

	MaxClusterPriority = 1000
)

// PriorityOr returns the configured priority, or the default when unset.
func (c *Cluster) PriorityOr() int {
	if c.Priority == nil {
		return DefaultClusterPriority
	}
	return *c.Priority
}

func (c *Cluster) setDefaults() {
	if !c.BindAddress.IsValid() {
		c.BindAddress = Addr{netip.IPv4Unspecified()}
	}
	if c.BindPort == 0 {
		c.BindPort = DefaultClusterBindPort
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = Duration(DefaultClusterProbeInterval)
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = Duration(DefaultClusterProbeTimeout)
	}
	if c.SuspicionMult == 0 {
		c.SuspicionMult = DefaultClusterSuspicionMult
	}
	if c.GossipInterval == 0 {
		c.GossipInterval = Duration(DefaultClusterGossipInterval)
	}
	if c.GossipNodes == 0 {
		c.GossipNodes = DefaultClusterGossipNodes
	}
	if c.RetransmitMult == 0 {
		c.RetransmitMult = DefaultClusterRetransmitMult
	}
	if c.PushPullInterval == 0 {
		c.PushPullInterval = Duration(DefaultClusterPushPullInterval)
	}
	if c.TCPTimeout == 0 {
		c.TCPTimeout = Duration(DefaultClusterTCPTimeout)
	}
	if c.RejoinInterval == 0 {
		c.RejoinInterval = Duration(DefaultClusterRejoinInterval)
	}
	if c.Priority == nil {
		p := DefaultClusterPriority
		c.Priority = &p
	}
	c.Quorum = strings.ToLower(c.Quorum)
	if c.Quorum == "" {
		c.Quorum = DefaultClusterQuorum
	}
}

func (c *Cluster) validate(v *validator, p string) {
	if c.NodeName != "" && !validName(c.NodeName) {
		v.errorf(p+".node_name", "invalid name %q (letters, digits, '-', '_' and '.' only, at most 63)", c.NodeName)
	}
	if c.BindAddress.IsMulticast() {
		v.errorf(p+".bind_address", "%s cannot be bound (multicast)", c.BindAddress)
	}
	if a := c.AdvertiseAddress; a.IsValid() && (a.IsUnspecified() || a.IsMulticast()) {
		v.errorf(p+".advertise_address", "%s cannot be advertised (unspecified or multicast)", a)
	}
	for i, j := range c.Join {
		if err := validHostPort(j); err != "" {
			v.errorf(p+".join["+strconv.Itoa(i)+"]", "invalid peer %q: %s", j, err)
		}
	}
	if c.SecretKeyFile != "" && !strings.HasPrefix(c.SecretKeyFile, "/") {
		v.errorf(p+".secret_key_file", "must be an absolute path, got %q", c.SecretKeyFile)
	}
	positive := func(field string, d Duration) bool {
		if d <= 0 {
			v.errorf(p+"."+field, "must be positive, got %s", d)
			return false
		}
		return true
	}
	if positive("probe_interval", c.ProbeInterval) && positive("probe_timeout", c.ProbeTimeout) &&
		c.ProbeTimeout >= c.ProbeInterval {
		v.errorf(p+".probe_timeout", "%s must be shorter than probe_interval %s", c.ProbeTimeout, c.ProbeInterval)
	}
	positive("gossip_interval", c.GossipInterval)
	positive("push_pull_interval", c.PushPullInterval)
	positive("tcp_timeout", c.TCPTimeout)
	positive("rejoin_interval", c.RejoinInterval)
	if c.SuspicionMult < 1 || c.SuspicionMult > 100 {
		v.errorf(p+".suspicion_mult", "must be 1-100, got %d", c.SuspicionMult)
	}
	if c.GossipNodes < 1 || c.GossipNodes > 100 {
		v.errorf(p+".gossip_nodes", "must be 1-100, got %d", c.GossipNodes)
	}
	if c.RetransmitMult < 1 || c.RetransmitMult > 100 {
		v.errorf(p+".retransmit_mult", "must be 1-100, got %d", c.RetransmitMult)
	}
	if pr := c.PriorityOr(); pr < 1 || pr > MaxClusterPriority {
		v.errorf(p+".priority", "must be 1-%d, got %d", MaxClusterPriority, pr)
	}
	switch {
	case c.ExpectedMembers < 0:
		v.errorf(p+".expected_members", "must not be negative, got %d", c.ExpectedMembers)
	case c.ExpectedMembers == 0 && c.Quorum == "majority":
		v.errorf(p+".quorum", "majority needs expected_members (the number of directors)")
	}
	if c.Quorum != "none" && c.Quorum != "majority" {
		v.errorf(p+".quorum", "unknown quorum mode %q (none or majority)", c.Quorum)
	}
}

// validHostPort checks a host:port peer; it returns "" when it is fine, else the problem.
func validHostPort(s string) string {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "want host:port"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "port must be 1-65535"
	}
	if host == "" {
		return "host is empty"
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.IsUnspecified() || a.IsMulticast() {
			return "unspecified or multicast address"
		}
		return ""
	}
	if !validDNSName(host) {
		return "host is neither an IP address nor a DNS name"
	}
	return ""
}

func validDNSName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}
