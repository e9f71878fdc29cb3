package daemon

import (
	"net/netip"

	"github.com/lvs-director/lvs-director/config"
	"github.com/lvs-director/lvs-director/healthcheck"
)

// checkerHealth adapts a healthcheck.Manager to the Health the daemon uses.
type checkerHealth struct{ m *healthcheck.Manager }

// HealthFromChecker returns the daemon's view of a health-check manager.
func HealthFromChecker(m *healthcheck.Manager) Health { return checkerHealth{m} }

// Update starts the checks of new real servers in the state "up" when they are already serving
// in the kernel (a restart adopts them: innocent until `fall` failures), else in their
// initial_state.
func (h checkerHealth) Update(services []config.Service, serving func(service string, rs netip.AddrPort) bool) {
	targets := healthcheck.TargetsFor(services)
	for i := range targets {
		t := &targets[i]
		if _, _, known := h.m.State(t.Key); !known && serving != nil && serving(t.Service, t.RealServer) {
			t.Spec.InitialState = "up"
		}
	}
	h.m.Update(targets)
}

func (h checkerHealth) RealServer(s *config.Service, a netip.AddrPort) (bool, string, bool) {
	if s == nil {
		return true, "", false
	}
	rs := config.RealServer{Address: config.Addr{Addr: a.Addr()}, Port: a.Port()}
	up, reason, known := h.m.State(healthcheck.TargetKey(s, &rs))
	if !known {
		return true, "", false
	}
	return up, reason, true
}

func (h checkerHealth) Changes() <-chan struct{} { return h.m.Changes() }
