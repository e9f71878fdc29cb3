package director

import (
	"net/netip"
	"slices"

	"github.com/lvs-director/lvs-director/config"
)

// DesiredCache builds the desired state as Desired does, but builds again only the services
// that may have changed since its last Build, and says which VIPs' services did change: the
// scope of the next plan (Reconciler.SyncScoped). At 10,000 services a reload that changed one
// real server builds one service and plans one VIP.
//
// A service is taken from the last build when it has the same non-zero config revision
// (config.Service.Revision: the same parse of the same text), the drain generation did not
// change, and it has no health checks or the health generation did not change either. The
// caller bumps a generation whenever the answers of its health or drained function may have
// changed. A DesiredCache is not safe for concurrent use.
type DesiredCache struct {
	last   []cachedService
	byName map[string]int // index in last; built when a service is not where it was
	out    []VirtualService
}

type cachedService struct {
	name      string
	rev       uint64
	checked   bool   // the service has health checks: its state depends on the health generation
	healthGen uint64 // when checked
	drainGen  uint64
	vs        VirtualService
	h         ServiceHealth
}

// Build returns the desired state and the services' health (as Desired), and the VIPs whose
// desired services differ from the last Build's, those of services that came or went included.
// changed is nil when it cannot tell (the first Build, duplicate service names): then anything
// may have changed.
//
// The desired slice it returns is only valid until the next Build (its array is reused).
func (c *DesiredCache) Build(services []config.Service, health HealthFunc, healthGen uint64, drained DrainedFunc, drainGen uint64) (desired []VirtualService, hs []ServiceHealth, changed map[netip.Addr]bool) {
	// Entries are updated in place when every service is where it was (the usual reload);
	// otherwise they go to a new array.
	next := c.last
	inPlace := len(services) == len(c.last)
	for i := 0; inPlace && i < len(services); i++ {
		inPlace = c.last[i].name == services[i].Name
	}
	if !inPlace {
		next = make([]cachedService, len(services))
	}
	used := make([]bool, len(c.last))
	first := c.last == nil
	if !first {
		changed = map[netip.Addr]bool{}
	}
	var fresh []Dest // one array for the real servers of the services built now
	for i := range services {
		s := &services[i]
		j := i
		if !inPlace {
			j = c.find(i, s.Name)
		}
		var old *VirtualService
		if j >= 0 && !used[j] {
			used[j] = true
			o := &c.last[j]
			if o.rev != 0 && o.rev == s.Revision() && o.drainGen == drainGen && (!o.checked || o.healthGen == healthGen) {
				if !inPlace {
					next[i] = *o
				}
				continue
			}
			ov := o.vs
			old = &ov
		} else if j >= 0 {
			changed = nil // two services of one name: no telling what went where
			first = true
		}
		if fresh == nil {
			n := 0
			for k := i; k < len(services); k++ {
				n += len(services[k].RealServers) + 1
			}
			if !first {
				n = min(n, 64) // a few changed services; more get arrays of their own
			}
			fresh = make([]Dest, 0, n)
		}
		room := len(s.RealServers) + 1
		if cap(fresh)-len(fresh) < room {
			fresh = make([]Dest, 0, max(room, 64))
		}
		vs, h := desiredService(s, health, drained, fresh[len(fresh):len(fresh):len(fresh)+room])
		fresh = fresh[:len(fresh)+room]
		next[i] = cachedService{name: s.Name, rev: s.Revision(), checked: hasChecks(s), healthGen: healthGen, drainGen: drainGen, vs: vs, h: h}
		if changed != nil && (old == nil || !sameDesired(old, &vs)) { // (rebuilt alike: no change)
			changed[vs.Key.Addr] = true
			if old != nil {
				changed[old.Key.Addr] = true // (it may have moved)
			}
		}
	}
	if changed != nil {
		for j := range c.last {
			if !used[j] {
				changed[c.last[j].vs.Key.Addr] = true // gone
			}
		}
	}
	c.last, c.byName = next, nil
	if cap(c.out) < len(next) {
		c.out = make([]VirtualService, len(next))
	}
	desired = c.out[:len(next)]
	hs = make([]ServiceHealth, len(next))
	for i := range next {
		desired[i], hs[i] = next[i].vs, next[i].h
	}
	clear(c.out[len(next):cap(c.out)]) // (no stale real servers kept alive)
	byKey := func(a, b VirtualService) int { return a.Key.compare(b.Key) }
	if !slices.IsSortedFunc(desired, byKey) {
		slices.SortStableFunc(desired, byKey)
	}
	return desired, hs, changed
}

// find returns the index in the last build of the service called name, -1 if none; i is where
// it was when nothing moved.
func (c *DesiredCache) find(i int, name string) int {
	if i < len(c.last) && c.last[i].name == name {
		return i
	}
	if c.byName == nil {
		c.byName = make(map[string]int, len(c.last))
		for j := range c.last {
			c.byName[c.last[j].name] = j
		}
	}
	if j, ok := c.byName[name]; ok {
		return j
	}
	return -1
}

func hasChecks(s *config.Service) bool {
	if s.HealthCheck != nil {
		return true
	}
	for i := range s.RealServers {
		if s.RealServers[i].HealthCheck != nil {
			return true
		}
	}
	return false
}

// sameDesired tells whether two desired services would plan alike.
func sameDesired(a, b *VirtualService) bool {
	if a.Key != b.Key || !a.sameAttrs(b) || a.FullNAT != b.FullNAT || len(a.Dests) != len(b.Dests) {
		return false
	}
	for i := range a.Dests {
		x, y := &a.Dests[i], &b.Dests[i]
		if x.Addr != y.Addr || x.Weight != y.Weight || x.Fwd != y.Fwd || x.Absent != y.Absent {
			return false
		}
	}
	return true
}
