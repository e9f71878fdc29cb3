package healthcheck

import (
	"net/netip"

	"github.com/lvs-director/lvs-director/config"
)

// TargetKey is the Key TargetsFor gives the check of real server rs of service s.
func TargetKey(s *config.Service, rs *config.RealServer) string {
	return s.Key() + "/" + netip.AddrPortFrom(rs.Address.Addr, rs.Port).String()
}

// TargetsFor lists the checks of services: one per real server whose service or own
// health_check is set (the real server's replaces the service's). Real servers with neither are
// not listed: they are not checked and count as up. Sorry servers are not checked.
func TargetsFor(services []config.Service) []Target {
	var out []Target
	for i := range services {
		s := &services[i]
		if !s.HasChecks() {
			continue // (known from the parse: not a look at each real server)
		}
		for j := range s.RealServers {
			rs := &s.RealServers[j]
			spec := s.HealthCheck
			if rs.HealthCheck != nil {
				spec = rs.HealthCheck
			}
			if spec == nil {
				continue
			}
			port := rs.Port
			if spec.Port != 0 {
				port = spec.Port
			}
			out = append(out, Target{
				Key:        TargetKey(s, rs),
				Service:    s.Name,
				Address:    netip.AddrPortFrom(rs.Address.Addr, port),
				RealServer: netip.AddrPortFrom(rs.Address.Addr, rs.Port),
				VIP:        netip.AddrPortFrom(s.VIP.Addr, s.Port),
				Spec:       *spec,
			})
		}
	}
	return out
}
