package director

import (
	"encoding/binary"
	"hash/maphash"
	"net/netip"
	"slices"

	"github.com/lvs-director/lvs-director/config"
)

// DesiredCache builds the desired state as Desired does, but builds again only the services
// that may have changed since its last Build, and says which VIPs' services did change: the
// scope of the next plan (Reconciler.SyncScoped). At 10,000 services a reload that changed one
// real server builds the services of one VIP and plans one VIP.
//
// A service is taken from the last build when it has the same non-zero config revision
// (config.Service.Revision: the same parse of the same text), the drain generation did not
// change, and it has no health checks or the health generation did not change either. The
// caller bumps a generation whenever the answers of its health or drained function may have
// changed. A service built again that comes out as before (by a 128-bit digest of its key,
// attributes and real servers) is no change.
//
// The cache keeps no real servers (at 10,000 services x 10 they would be 11 MB, as much as
// the kernel's table the reconciler knows): a service taken from it comes without them, a
// stub, unless its VIP changed or is among need. A plan scoped to the changed VIPs and need
// looks at no other service's real servers. A DesiredCache is not safe for concurrent use.
type DesiredCache struct {
	last    []cachedService
	byName  map[string]int // index in last; built when a service is not where it was
	scratch []byte
	// sorted: the services of the last build are in the order of their keys.
	sorted bool
	health []ServiceHealth // Health's answer; nil when a build changed it
	// healthGen and drainGen are those of the last build, checked how many of its services
	// have health checks (BuildScopeEdited).
	healthGen, drainGen uint64
	checked             int
	quick               int // builds that looked at the edited services only (for tests)
}

type cachedService struct {
	name      string
	rev       uint64
	checked   bool   // the service has health checks: its state depends on the health generation
	healthGen uint64 // when checked
	drainGen  uint64
	vs        VirtualService // without its real servers
	sum       [2]uint64      // digest of the whole desired service (desiredSum)
	h         ServiceHealth
}

// Build returns the desired state and the services' health (as Desired), and the VIPs whose
// desired services differ from the last Build's, those of services that came or went included.
// changed is nil when it cannot tell (the first Build, duplicate service names): then anything
// may have changed and every service is whole. With full, every service is whole too.
// Otherwise the services of the VIPs in changed or need are whole, the others are stubs
// (Stub).
func (c *DesiredCache) Build(services []config.Service, health HealthFunc, healthGen uint64, drained DrainedFunc, drainGen uint64, need map[netip.Addr]bool, full bool) (desired []VirtualService, hs []ServiceHealth, changed map[netip.Addr]bool) {
	desired, changed, _ = c.build(services, nil, health, healthGen, drained, drainGen, need, full, false)
	return desired, c.Health(), changed
}

// BuildScope is Build for a sync of the changed services only (Reconciler.SyncPartial): when
// it can tell what changed (partial), desired holds only the services of the VIPs in changed or
// need, whole and in key order, and nothing is built or copied for the others (at 10,000
// services the whole list is 1.5 MB to allocate and fill on every reload). Otherwise (the first
// build, duplicate names, full) it returns what Build does.
func (c *DesiredCache) BuildScope(services []config.Service, health HealthFunc, healthGen uint64, drained DrainedFunc, drainGen uint64, need map[netip.Addr]bool, full bool) (desired []VirtualService, changed map[netip.Addr]bool, partial bool) {
	return c.build(services, nil, health, healthGen, drained, drainGen, need, full, true)
}

// BuildScopeEdited is BuildScope when the caller knows that services are those of the last
// build (the same services, in the same order, with their revisions) except at the indices in
// edited, in increasing order (config.Config.Edits). When neither the drains nor the health of
// a checked service may have changed since, only those are looked at, and the services of the
// changed VIPs are found by key: at 10,000 services a reload is spared three passes over the
// services and the cache (in the lab's emulated VM, 4-7 ms). Otherwise it is BuildScope.
func (c *DesiredCache) BuildScopeEdited(services []config.Service, edited []int, health HealthFunc, healthGen uint64, drained DrainedFunc, drainGen uint64, need map[netip.Addr]bool, full bool) (desired []VirtualService, changed map[netip.Addr]bool, partial bool) {
	if edited == nil {
		edited = []int{} // (nil is "cannot tell" below)
	}
	return c.build(services, edited, health, healthGen, drained, drainGen, need, full, true)
}

// Health returns the services' health of the last build (as Desired), in the order of its
// services. The slice is shared until the next build changes a service: do not modify it.
func (c *DesiredCache) Health() []ServiceHealth {
	if c.health == nil || len(c.health) != len(c.last) {
		hs := make([]ServiceHealth, len(c.last))
		for i := range c.last {
			hs[i] = c.last[i].h
		}
		c.health = hs
	}
	return c.health
}

// rebuilt is a service the update built again (whole).
type rebuilt struct {
	i  int
	vs VirtualService
}

func (c *DesiredCache) build(services []config.Service, edited []int, health HealthFunc, healthGen uint64, drained DrainedFunc, drainGen uint64, need map[netip.Addr]bool, full, scoped bool) (desired []VirtualService, changed map[netip.Addr]bool, partial bool) {
	var built []rebuilt
	quick := edited != nil && !full && scoped && c.canTakeEdits(services, edited, healthGen, drainGen)
	if quick {
		c.quick++
		built, changed = c.updateEdited(services, edited, health, healthGen, drained, drainGen)
	} else {
		built, changed = c.update(services, health, healthGen, drained, drainGen)
	}
	whole := func(i int) VirtualService {
		vs, _ := desiredService(&services[i], health, drained, make([]Dest, 0, len(services[i].RealServers)+1))
		return vs
	}
	if scoped && !full && changed != nil {
		// Only the scope's services, in the order of the last build (key order when sorted).
		// (The scope is a few VIPs, compared directly: two map lookups for each of 10,000
		// services were a good part of a reload's sync where hashing is slow.)
		scope := make([]netip.Addr, 0, len(changed)+len(need))
		for a := range changed {
			scope = append(scope, a)
		}
		for a := range need {
			if !changed[a] {
				scope = append(scope, a)
			}
		}
		inScope := func(a netip.Addr) bool { return slices.Contains(scope, a) }
		if len(scope) > 8 {
			inScope = func(a netip.Addr) bool { return changed[a] || need[a] }
		}
		k := 0
		add := func(i int) {
			for k < len(built) && built[k].i < i {
				k++
			}
			if k < len(built) && built[k].i == i {
				desired = append(desired, built[k].vs)
			} else {
				desired = append(desired, whole(i))
			}
		}
		if quick && c.sorted {
			// The services of a VIP are next to each other in key order: found by bisection.
			slices.SortFunc(scope, netip.Addr.Compare)
			for _, a := range scope {
				i, _ := slices.BinarySearchFunc(c.last, a, func(s cachedService, a netip.Addr) int { return s.vs.Key.Addr.Compare(a) })
				for ; i < len(c.last) && c.last[i].vs.Key.Addr == a; i++ {
					add(i)
				}
			}
			return desired, changed, true
		}
		for i := range c.last {
			if inScope(c.last[i].vs.Key.Addr) {
				add(i)
			}
		}
		if !c.sorted {
			slices.SortStableFunc(desired, func(a, b VirtualService) int { return a.Key.compare(b.Key) })
		}
		return desired, changed, true
	}
	desired = make([]VirtualService, len(services)) // (not kept: whole services are big)
	k := 0
	for i := range c.last {
		if k < len(built) && built[k].i == i {
			desired[i] = built[k].vs
			k++
			continue
		}
		if a := c.last[i].vs.Key.Addr; full || changed == nil || changed[a] || need[a] {
			desired[i] = whole(i) // the stubs that must be whole get their real servers
		} else {
			desired[i] = c.last[i].vs
		}
	}
	if !c.sorted {
		slices.SortStableFunc(desired, func(a, b VirtualService) int { return a.Key.compare(b.Key) })
	}
	return desired, changed, false
}

// update brings the cache to services: it builds again the services that may have changed
// (returned whole, in index order) and says which VIPs' services did change (nil: cannot tell).
func (c *DesiredCache) update(services []config.Service, health HealthFunc, healthGen uint64, drained DrainedFunc, drainGen uint64) (built []rebuilt, changed map[netip.Addr]bool) {
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
	if c.last != nil {
		changed = map[netip.Addr]bool{}
	}
	moved := !inPlace // a key may be elsewhere than in the last build
	checked := 0      // services with health checks
	for i := range services {
		s := &services[i]
		j := i
		if !inPlace {
			j = c.find(i, s.Name)
		}
		had := false // the last build had it: with oldKey and oldSum
		var oldKey ServiceKey
		var oldSum [2]uint64
		if j >= 0 && !used[j] {
			used[j] = true
			o := &c.last[j]
			if o.rev != 0 && o.rev == s.Revision() && o.drainGen == drainGen && (!o.checked || o.healthGen == healthGen) {
				if !inPlace {
					next[i] = *o
				}
				if o.checked {
					checked++
				}
				continue
			}
			had, oldKey, oldSum = true, o.vs.Key, o.sum // (next[i] may be o: read before it is replaced)
		} else if j >= 0 {
			changed = nil // two services of one name: no telling what went where
		}
		vs, h := desiredService(s, health, drained, make([]Dest, 0, len(s.RealServers)+1))
		var sum [2]uint64
		sum, c.scratch = desiredSum(&vs, c.scratch)
		stub := vs
		stub.Dests, stub.stub = nil, true
		next[i] = cachedService{name: s.Name, rev: s.Revision(), checked: s.HasChecks(), healthGen: healthGen, drainGen: drainGen, vs: stub, sum: sum, h: h}
		if next[i].checked {
			checked++
		}
		built = append(built, rebuilt{i, vs})
		c.health = nil
		if !had || oldKey != vs.Key {
			moved = true
		}
		if changed != nil && (!had || oldSum != sum) { // (built again alike: no change)
			changed[vs.Key.Addr] = true
			if had {
				changed[oldKey.Addr] = true // (it may have moved)
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
	if !inPlace {
		c.health = nil
	}
	c.last, c.byName = next, nil
	if moved || !c.sorted {
		c.sorted = slices.IsSortedFunc(c.last, func(a, b cachedService) int { return a.vs.Key.compare(b.vs.Key) })
	}
	c.healthGen, c.drainGen, c.checked = healthGen, drainGen, checked
	return built, changed
}

// canTakeEdits tells whether a build of services known to be the last build's but at the
// indices in edited can look at those only: every other cached service is then still current
// (the last build left each current for its generations, and they did not change for it). An
// edited service must keep its name (a renamed one may be another's, moved: update finds it).
func (c *DesiredCache) canTakeEdits(services []config.Service, edited []int, healthGen, drainGen uint64) bool {
	if c.last == nil || len(services) != len(c.last) || drainGen != c.drainGen || healthGen != c.healthGen && c.checked > 0 {
		return false
	}
	for _, i := range edited {
		if i < 0 || i >= len(services) || services[i].Name != c.last[i].name {
			return false
		}
	}
	return true
}

// updateEdited is update for a build where only the services at the indices in edited may
// differ from the last build's (canTakeEdits): it looks at those only.
func (c *DesiredCache) updateEdited(services []config.Service, edited []int, health HealthFunc, healthGen uint64, drained DrainedFunc, drainGen uint64) (built []rebuilt, changed map[netip.Addr]bool) {
	changed = map[netip.Addr]bool{}
	moved := false
	for _, i := range edited {
		s, o := &services[i], &c.last[i] // (of the same name: canTakeEdits)
		if o.rev != 0 && o.rev == s.Revision() && o.drainGen == drainGen && (!o.checked || o.healthGen == healthGen) {
			continue
		}
		vs, h := desiredService(s, health, drained, make([]Dest, 0, len(s.RealServers)+1))
		var sum [2]uint64
		sum, c.scratch = desiredSum(&vs, c.scratch)
		if o.sum != sum { // (built again alike: no change)
			changed[vs.Key.Addr], changed[o.vs.Key.Addr] = true, true // (it may have moved)
		}
		if o.vs.Key != vs.Key {
			moved = true
		}
		if o.checked {
			c.checked--
		}
		stub := vs
		stub.Dests, stub.stub = nil, true
		*o = cachedService{name: s.Name, rev: s.Revision(), checked: s.HasChecks(), healthGen: healthGen, drainGen: drainGen, vs: stub, sum: sum, h: h}
		if o.checked {
			c.checked++
		}
		built = append(built, rebuilt{i, vs})
		c.health = nil
	}
	if moved && c.sorted {
		for _, i := range edited { // (sorted before: sorted still if each edited one fits in)
			if i > 0 && c.last[i-1].vs.Key.compare(c.last[i].vs.Key) > 0 || i+1 < len(c.last) && c.last[i].vs.Key.compare(c.last[i+1].vs.Key) > 0 {
				c.sorted = false
				break
			}
		}
	}
	c.healthGen, c.drainGen = healthGen, drainGen
	return built, changed
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

var sumSeeds = [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}

// desiredSum digests what a plan looks at in a desired service: its key, attributes and real
// servers (two independent 64-bit hashes).
func desiredSum(vs *VirtualService, b []byte) ([2]uint64, []byte) {
	b = b[:0]
	b = append(b, byte(vs.Key.Protocol), byte(vs.Key.Protocol>>8))
	b = appendAddr(b, vs.Key.Addr)
	b = binary.LittleEndian.AppendUint16(b, vs.Key.Port)
	b = append(b, vs.Scheduler...)
	b = append(b, 0)
	b = binary.LittleEndian.AppendUint32(b, vs.Flags&^flagHashed)
	b = binary.LittleEndian.AppendUint32(b, vs.Timeout)
	b = binary.LittleEndian.AppendUint32(b, vs.Netmask)
	if vs.FullNAT {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	for _, d := range vs.Dests {
		b = appendAddr(b, d.Addr.Addr())
		b = binary.LittleEndian.AppendUint16(b, d.Addr.Port())
		b = binary.LittleEndian.AppendUint64(b, uint64(d.Weight))
		b = binary.LittleEndian.AppendUint32(b, d.Fwd)
		if d.Absent {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
	}
	return [2]uint64{maphash.Bytes(sumSeeds[0], b), maphash.Bytes(sumSeeds[1], b)}, b
}

func appendAddr(b []byte, a netip.Addr) []byte {
	x := a.As16()
	return append(append(b, byte(a.BitLen())), x[:]...)
}
