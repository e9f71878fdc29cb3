package daemon

import (
	"context"
	"net/netip"
	"time"

	"github.com/lvs-director/lvs-director/bgp"
	"github.com/lvs-director/lvs-director/cluster"
	"github.com/lvs-director/lvs-director/config"
	"github.com/lvs-director/lvs-director/director"
)

// Speaker is the BGP speaker as the daemon uses it.
type Speaker interface {
	Set(ctx context.Context, routes []bgp.Route) error
	Neighbors() []bgp.NeighborStatus
	Routes() []bgp.Route
}

// Membership is the director cluster as the daemon uses it.
type Membership interface {
	Name() string
	Members() []cluster.Member
	Role(key, mode string) cluster.Role
	HasQuorum() bool
	SetEligible(bool) error
	Changes() <-chan struct{}
}

// SetSpeaker attaches the BGP speaker; call before Run.
func (d *Daemon) SetSpeaker(s Speaker) {
	d.speaker = s
	d.AddStatusExtension(func() (string, any) {
		return "bgp", map[string]any{"neighbors": s.Neighbors(), "routes": routeStrings(s.Routes())}
	})
}

// SetMembership attaches the cluster; call before Run.
func (d *Daemon) SetMembership(m Membership) {
	d.members = m
	d.AddStatusExtension(func() (string, any) {
		type member struct {
			Name     string `json:"name"`
			Addr     string `json:"address"`
			State    string `json:"state"`
			Priority int    `json:"priority"`
			Eligible bool   `json:"eligible"`
		}
		var ms []member
		for _, x := range m.Members() {
			ms = append(ms, member{x.Name, x.Addr.String(), x.State.String(), x.Priority, x.Eligible})
		}
		return "cluster", map[string]any{"self": m.Name(), "quorum": m.HasQuorum(), "members": ms}
	})
}

func routeStrings(rs []bgp.Route) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.String()
	}
	return out
}

// OwnershipKey is what cluster ownership is decided on: the VIP, so that every service on
// one VIP (one /32 or /128 route) moves together.
func OwnershipKey(vip netip.Addr) string { return vip.String() }

// AnnounceInputs joins the health of each service with the director's role for its VIP into
// the inputs of the BGP decision. role is nil without a cluster (this director owns every VIP);
// without quorum the director owns nothing. It is a pure function.
func AnnounceInputs(services []config.Service, global *config.BGP, health []director.ServiceHealth, role func(key, mode string) cluster.Role, quorum bool) []bgp.ServiceAnnounce {
	healthy := map[string]bool{}
	for _, h := range health {
		healthy[h.Name] = h.Healthy
	}
	out := make([]bgp.ServiceAnnounce, 0, len(services))
	for i := range services {
		s := &services[i]
		r := bgp.Owner
		if role != nil {
			switch {
			case !quorum:
				r = bgp.NotOwner
			default:
				switch role(OwnershipKey(s.VIP.Addr), s.Failover) {
				case cluster.RoleOwner:
					r = bgp.Owner
				case cluster.RoleStandby:
					r = bgp.Standby
				default:
					r = bgp.NotOwner
				}
			}
		}
		out = append(out, bgp.ServiceAnnounce{
			VIP: s.VIP.Addr, Healthy: healthy[s.Name], Role: r, StandbyAnnounce: s.StandbyAnnounce,
			Attrs: bgp.ServiceAttributes(global, s.BGP),
		})
	}
	return out
}

// Eligible tells whether this director should claim VIPs: its last sync applied cleanly and at
// least one service is healthy (or it has no services).
func Eligible(syncErr string, health []director.ServiceHealth) bool {
	if syncErr != "" {
		return false
	}
	if len(health) == 0 {
		return true
	}
	for _, h := range health {
		if h.Healthy {
			return true
		}
	}
	return false
}

// announce updates the cluster eligibility and hands the BGP speaker the routes to announce.
func (d *Daemon) announce(ctx context.Context) {
	if d.speaker == nil && d.members == nil {
		return // nothing to announce to, and no state to report (announceState)
	}
	d.mu.Lock()
	health := d.svcHealth
	cfg := d.cfg
	d.mu.Unlock()
	var role func(key, mode string) cluster.Role
	quorum := true
	if d.members != nil {
		if err := d.members.SetEligible(Eligible(d.rec.Last().Err, health)); err != nil {
			d.log.Warn("cannot publish eligibility to the cluster", "err", err)
		}
		self, snap := d.members.Name(), d.members.Members()
		role = func(key, mode string) cluster.Role { return cluster.RoleFor(self, snap, key, mode) }
		quorum = d.members.HasQuorum()
	}
	in := AnnounceInputs(d.services(), cfg.BGP, health, role, quorum)
	d.mu.Lock()
	d.announced = map[netip.Addr]bgp.Role{}
	for _, a := range in {
		if a.Healthy && (a.Role == bgp.Owner || a.Role == bgp.Standby && a.StandbyAnnounce) {
			d.announced[a.VIP] = a.Role
		}
	}
	d.mu.Unlock()
	if d.speaker == nil {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := d.speaker.Set(sctx, bgp.Decide(in)); err != nil {
		d.log.Error("BGP announce failed", "err", err)
	}
}

// announceState describes the announcement of a VIP for the status report.
func (d *Daemon) announceState(vip netip.Addr) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.speaker == nil && d.members == nil {
		return ""
	}
	r, ok := d.announced[vip]
	switch {
	case !ok:
		return "not announced"
	case r == bgp.Standby:
		return "announced as standby"
	}
	return "announced"
}
