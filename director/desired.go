package director

import (
	"net/netip"
	"slices"

	"github.com/lvs-director/lvs-director/config"
)

// HealthFunc tells whether a real server of a service passes its health check.
// Real servers of services without a health check are not asked: they are up.
type HealthFunc func(service string, rs netip.AddrPort) bool

// DrainedFunc tells whether an operator drained a real server of a service (`lvs-director
// drain`); such a real server is left out of the desired state, so the plan drains it.
type DrainedFunc func(service string, rs netip.AddrPort) bool

// ServiceHealth is the health of one virtual service, the input of the announce decision.
type ServiceHealth struct {
	Name    string
	Key     ServiceKey
	Up      int // real servers passing their check
	Total   int
	Quorum  int  // real servers needed (at least 1)
	Healthy bool // Up >= Quorum
	Sorry   bool // quorum lost and the sorry server is in use
}

// Desired builds the kernel model of the configured services given the health of their real
// servers. An unhealthy real server is marked Absent (deleted at once) or, with
// inhibit_on_failure, kept at weight 0. While a service has fewer healthy real servers than its
// quorum (at least 1), its sorry server, if any, takes all new connections.
func Desired(services []config.Service, health HealthFunc, drained DrainedFunc) ([]VirtualService, []ServiceHealth) {
	out := make([]VirtualService, 0, len(services))
	hs := make([]ServiceHealth, 0, len(services))
	// All services' real servers share one array (one allocation instead of one per service;
	// each service's part has room for its sorry server and no more).
	n := 0
	for i := range services {
		n += len(services[i].RealServers) + 1
	}
	dests := make([]Dest, n)
	for i := range services {
		s := &services[i]
		c := len(s.RealServers) + 1
		vs, h := desiredService(s, health, drained, dests[:0:c])
		dests = dests[c:]
		out = append(out, vs)
		hs = append(hs, h)
	}
	byKey := func(a, b VirtualService) int { return a.Key.compare(b.Key) }
	if !slices.IsSortedFunc(out, byKey) { // files list services in order more often than not
		slices.SortStableFunc(out, byKey)
	}
	return out, hs
}

// ServiceKeyOf returns the kernel key of a configured service.
func ServiceKeyOf(s *config.Service) ServiceKey {
	p, _ := ProtocolNumber(s.Protocol)
	return ServiceKey{Protocol: p, Addr: s.VIP.Addr, Port: s.Port}
}

// desiredService builds one service; its real servers go to buf (appended to, so with room
// for len(s.RealServers)+1 there is no allocation).
func desiredService(s *config.Service, health HealthFunc, drained DrainedFunc, buf []Dest) (VirtualService, ServiceHealth) {
	vs := VirtualService{Key: ServiceKeyOf(s), Scheduler: s.Scheduler, FullNAT: s.FullNAT}
	if s.VIP.Is4() {
		vs.Netmask = 0xffffffff
	} else {
		vs.Netmask = 128
	}
	if s.Persistence > 0 {
		vs.Flags = FlagPersistent
		vs.Timeout = uint32(s.Persistence.D().Seconds())
		if s.PersistenceNetmask != nil {
			n := *s.PersistenceNetmask
			if s.VIP.Is4() {
				vs.Netmask = ^uint32(0) << (32 - n)
			} else {
				vs.Netmask = uint32(n)
			}
		}
	}
	checked := func(rs *config.RealServer) bool { return s.HealthCheck != nil || rs.HealthCheck != nil }
	h := ServiceHealth{Name: s.Name, Key: vs.Key, Quorum: max(s.Quorum, 1)}
	h.Total = len(s.RealServers)
	vs.Dests = buf
	for i := range s.RealServers {
		rs := &s.RealServers[i]
		ap := netip.AddrPortFrom(rs.Address.Addr, rs.Port)
		if drained != nil && drained(s.Name, ap) {
			continue
		}
		up := !checked(rs) || (health != nil && health(s.Name, ap))
		d := Dest{Addr: ap, Weight: int32(rs.WeightOr()), Fwd: FwdMasq}
		if up {
			h.Up++
		} else if s.InhibitOnFailure {
			d.Weight = 0
		} else {
			d.Absent = true
		}
		vs.Dests = append(vs.Dests, d)
	}
	h.Healthy = h.Up >= h.Quorum
	if !h.Healthy && s.SorryServer != nil {
		h.Sorry = true
		for i := range vs.Dests {
			if !vs.Dests[i].Absent {
				vs.Dests[i].Weight = 0
			}
		}
		ss := s.SorryServer
		vs.Dests = append(vs.Dests, Dest{Addr: netip.AddrPortFrom(ss.Address.Addr, ss.Port), Weight: int32(max(ss.WeightOr(), 1)), Fwd: FwdMasq})
	}
	vs.sortDests()
	return vs, h
}
