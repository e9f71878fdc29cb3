package director

import (
	"bytes"
	"fmt"
	"net/netip"
	"time"
)

// OpKind is the kind of one kernel operation.
type OpKind int

// The operations, in the order a plan applies them: addresses and services first (a new
// service with its real servers right after it), new real servers before old ones are drained,
// deletions last.
const (
	OpAddVIP OpKind = iota
	OpAddService
	OpUpdateService
	OpAddDest
	OpUpdateDest
	OpDelDest
	OpDelService
	OpDelVIP
)

var opNames = [...]string{"add-vip", "add-service", "update-service", "add-dest", "update-dest", "del-dest", "del-service", "del-vip"}

func (k OpKind) String() string {
	if int(k) < len(opNames) {
		return opNames[k]
	}
	return fmt.Sprintf("op%d", int(k))
}

// Op is one change to the kernel.
type Op struct {
	Kind    OpKind
	Service VirtualService // the service (for service ops its attributes, for dest ops its key)
	Dest    Dest           // for dest ops
	VIP     netip.Addr     // for VIP ops
	Reason  string         // why, for logs and `plan`
	// NewScheduler marks an update-service that replaces the scheduler: the kernel refuses
	// new connections for a moment while it does, so the reconciler guards it.
	NewScheduler bool
}

func (o Op) String() string {
	var s string
	switch o.Kind {
	case OpAddVIP, OpDelVIP:
		s = fmt.Sprintf("%s %s", o.Kind, o.VIP)
	case OpAddService, OpUpdateService:
		s = fmt.Sprintf("%s %s", o.Kind, o.Service.String())
	case OpDelService:
		s = fmt.Sprintf("%s %s", o.Kind, o.Service.Key)
	case OpDelDest:
		s = fmt.Sprintf("%s %s -> %s", o.Kind, o.Service.Key, o.Dest.Addr)
	default:
		s = fmt.Sprintf("%s %s -> %s %s weight %d", o.Kind, o.Service.Key, o.Dest.Addr, fwdName(o.Dest.Fwd), o.Dest.Weight)
	}
	if o.Reason != "" {
		s += " (" + o.Reason + ")"
	}
	return s
}

// DrainState remembers since when each draining real server has been draining.
type DrainState map[ServiceKey]map[DestKey]time.Time

// Clone returns a deep copy.
func (d DrainState) Clone() DrainState {
	out := make(DrainState, len(d))
	for k, m := range d {
		c := make(map[DestKey]time.Time, len(m))
		for dk, t := range m {
			c[dk] = t
		}
		out[k] = c
	}
	return out
}

// Len is the number of draining real servers.
func (d DrainState) Len() int {
	n := 0
	for _, m := range d {
		n += len(m)
	}
	return n
}

func (d DrainState) since(k ServiceKey, dk DestKey, now time.Time) time.Time {
	m := d[k]
	if m == nil {
		m = map[DestKey]time.Time{}
		d[k] = m
	}
	t, ok := m[dk]
	if !ok {
		t = now
		m[dk] = t
	}
	return t
}

// PlanInput is everything the plan depends on.
type PlanInput struct {
	Desired  []VirtualService
	Observed []VirtualService
	// VIPs are the addresses on the director's own interface. A virtual service whose VIP is
	// there belongs to the director (this is how ownership survives a restart); so does every
	// desired one. Everything else is foreign and never touched.
	VIPs    []netip.Addr
	Exclude []netip.Prefix
	// Drain is the drain state of the previous plan (not modified).
	Drain        DrainState
	DrainTimeout time.Duration
	Now          time.Time
	// KeepUndesired leaves owned services that are not desired (and their VIPs) alone: a
	// source of services has not reported yet, so their absence means nothing.
	KeepUndesired bool
	// Scope, when not nil, limits the plan to the services of these VIPs and to these VIPs:
	// the plan is then exactly the part of the whole plan about them (every decision about a
	// service or a VIP depends only on the services of its VIP), and its Drain covers only
	// their services. A caller that knows which VIPs a change touched plans only those.
	Scope map[netip.Addr]bool
}

// scopeSet is a plan's scope as MakePlan looks it up (for every service of the table): a
// scope of a few VIPs, the usual one, is compared with directly instead of hashed (hashing is
// the slow part of a map lookup where the CPU has no AES instructions, as in the lab's
// emulated VM).
type scopeSet struct {
	all  bool
	few  []netip.Addr
	many map[netip.Addr]bool
}

func newScopeSet(m map[netip.Addr]bool) scopeSet {
	if m == nil {
		return scopeSet{all: true}
	}
	if len(m) > 8 {
		return scopeSet{many: m}
	}
	s := scopeSet{few: make([]netip.Addr, 0, len(m))}
	for a, in := range m {
		if in {
			s.few = append(s.few, a)
		}
	}
	return s
}

func (s *scopeSet) has(a netip.Addr) bool {
	switch {
	case s.all:
		return true
	case s.many != nil:
		return s.many[a]
	}
	for _, x := range s.few {
		if x == a {
			return true
		}
	}
	return false
}

// Plan is the result: the operations to apply and the drain state after them.
type Plan struct {
	Ops   []Op
	Drain DrainState
}

// Count returns the number of operations of each kind.
func (p *Plan) Count() map[OpKind]int {
	m := map[OpKind]int{}
	for _, o := range p.Ops {
		m[o.Kind]++
	}
	return m
}

func excluded(a netip.Addr, ex []netip.Prefix) bool {
	for _, p := range ex {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// MakePlan diffs the desired state against the observed kernel state. It is a pure function.
func MakePlan(in PlanInput) Plan {
	drain := DrainState{}
	prev := in.Drain
	var b opBuckets
	scope := newScopeSet(in.Scope)
	onIf := map[netip.Addr]bool{} // (only in the scope: nothing else looks)
	for _, a := range in.VIPs {
		if scope.has(a) {
			onIf[a] = true
		}
	}
	nObserved, nDesired := len(in.Observed), len(in.Desired)
	if in.Scope != nil {
		nObserved, nDesired = 0, 0
	}
	observed := make(map[ServiceKey]*VirtualService, nObserved)
	for i := range in.Observed {
		if scope.has(in.Observed[i].Key.Addr) {
			observed[in.Observed[i].Key] = &in.Observed[i]
		}
	}
	desired := make(map[ServiceKey]bool, nDesired)
	keepVIP := map[netip.Addr]bool{}
	var whole []Op
	if in.Scope == nil {
		whole = b.presize(in, observed)
	}

	for i := range in.Desired {
		d := &in.Desired[i]
		if !scope.has(d.Key.Addr) || excluded(d.Key.Addr, in.Exclude) {
			continue // config validation refuses excluded ones; never touch them anyway
		}
		desired[d.Key] = true
		keepVIP[d.Key.Addr] = true
		if !onIf[d.Key.Addr] {
			onIf[d.Key.Addr] = true
			b.add(Op{Kind: OpAddVIP, VIP: d.Key.Addr})
		}
		o, ok := observed[d.Key]
		if !ok {
			// The real servers follow their service at once: the kernel keeps the services
			// of a hash bucket newest first, so each addition finds its service at the head of
			// the chain (at 10,000 services a bucket holds about 40).
			b.add(Op{Kind: OpAddService, Service: attrsOnly(d)})
			for _, dd := range d.Dests {
				if !dd.Absent {
					b.addAs(OpAddService, Op{Kind: OpAddDest, Service: keyOnly(d.Key), Dest: dd})
				}
			}
			continue
		}
		if !d.sameAttrs(o) {
			b.add(Op{Kind: OpUpdateService, Service: attrsOnly(d), Reason: "was " + o.String(), NewScheduler: d.Scheduler != o.Scheduler})
		}
		b.destOps(d, o, in, prev, drain)
	}

	// Services that are no longer desired: drain, then delete. Only the director's own.
	for i := range in.Observed {
		o := &in.Observed[i]
		if !scope.has(o.Key.Addr) || desired[o.Key] || !onIf[o.Key.Addr] || excluded(o.Key.Addr, in.Exclude) {
			continue
		}
		if in.KeepUndesired {
			keepVIP[o.Key.Addr] = true
			continue
		}
		empty := VirtualService{Key: o.Key}
		deleted := len(b[OpDelDest])
		b.destOps(&empty, o, in, prev, drain)
		if len(b[OpDelDest])-deleted == len(o.Dests) {
			b.add(Op{Kind: OpDelService, Service: keyOnly(o.Key), Reason: "removed from config"})
		} else {
			keepVIP[o.Key.Addr] = true
		}
	}

	for _, a := range in.VIPs {
		if scope.has(a) && !keepVIP[a] && !excluded(a, in.Exclude) {
			b.add(Op{Kind: OpDelVIP, VIP: a, Reason: "no service uses it"})
		}
	}
	return Plan{Ops: b.flattenOver(whole), Drain: drain}
}

// opBuckets keeps operations by kind, so a plan lists them in the order of the kinds.
type opBuckets [OpDelVIP + 1][]Op

func (b *opBuckets) add(o Op) { b.addAs(o.Kind, o) }

// addAs adds o to the bucket of kind k (the real servers of a new service go with it).
func (b *opBuckets) addAs(k OpKind, o Op) { b[k] = append(b[k], o) }

// presize makes room for the VIPs, and for the services that are desired and not in the kernel
// with their real servers, in one array where the buckets follow each other in the order of
// their kinds. When nothing else is planned (a cold start), the plan is that array as it is:
// its 110,000 operations of 300 bytes are neither copied as the buckets grow nor again to
// flatten them.
func (b *opBuckets) presize(in PlanInput, observed map[ServiceKey]*VirtualService) []Op {
	if len(in.Desired)-len(in.Observed) < 64 {
		return nil // few new services (a reload, a resync): not worth a pass
	}
	var vips, svcs, dests int
	vipSeen := make(map[netip.Addr]bool, len(in.VIPs))
	for _, a := range in.VIPs {
		vipSeen[a] = true
	}
	for i := range in.Desired {
		d := &in.Desired[i]
		if excluded(d.Key.Addr, in.Exclude) {
			continue
		}
		if !vipSeen[d.Key.Addr] {
			vipSeen[d.Key.Addr] = true
			vips++
		}
		if _, ok := observed[d.Key]; !ok {
			svcs++
			for _, dd := range d.Dests {
				if !dd.Absent {
					dests++
				}
			}
		}
	}
	if vips+svcs < 64 {
		return nil
	}
	whole := make([]Op, vips+svcs+dests)
	b[OpAddVIP] = whole[:0:vips]
	b[OpAddService] = whole[vips:vips] // (the new services and their real servers)
	return whole
}

func (b *opBuckets) flatten() []Op {
	n := 0
	for _, ops := range b {
		n += len(ops)
	}
	if n == 0 {
		return nil
	}
	out := make([]Op, 0, n)
	for _, ops := range b {
		out = append(out, ops...)
	}
	return out
}

// flattenOver is flatten, without a copy when the buckets lie one after the other at the start
// of whole (see presize).
func (b *opBuckets) flattenOver(whole []Op) []Op {
	off := 0
	for _, ops := range b {
		if len(ops) == 0 {
			continue
		}
		if off >= len(whole) || &ops[0] != &whole[off] {
			return b.flatten()
		}
		off += len(ops)
	}
	if off == 0 {
		return nil
	}
	return whole[:off:off]
}

func attrsOnly(s *VirtualService) VirtualService {
	c := *s
	c.Dests = nil
	return c
}

func keyOnly(k ServiceKey) VirtualService { return VirtualService{Key: k} }

// destOps adds the real-server operations that turn o's destinations into d's.
func (b *opBuckets) destOps(d, o *VirtualService, in PlanInput, prev, drain DrainState) {
	key := keyOnly(d.Key)
	for _, dd := range d.Dests {
		od, ok := o.dest(dd.Addr)
		switch {
		case dd.Absent && ok:
			b.add(Op{Kind: OpDelDest, Service: key, Dest: Dest{Addr: dd.Addr}, Reason: "unhealthy"})
		case dd.Absent:
		case !ok:
			b.add(Op{Kind: OpAddDest, Service: key, Dest: dd})
		case od.Weight != dd.Weight || od.Fwd&FwdMask != dd.Fwd&FwdMask:
			b.add(Op{Kind: OpUpdateDest, Service: key, Dest: dd,
				Reason: fmt.Sprintf("was %s weight %d", fwdName(od.Fwd), od.Weight)})
		}
	}
	for _, od := range o.Dests {
		if _, ok := d.dest(od.Addr); ok {
			continue
		}
		// Not desired: drain at weight 0, delete when idle or after the drain timeout.
		started, ok := prev[o.Key][od.Addr]
		if !ok {
			started = in.Now
		}
		conns := od.ActiveConns
		if o.Key.Protocol == ProtoUDP {
			conns += od.InactiveConns
		}
		switch {
		case conns == 0:
			b.add(Op{Kind: OpDelDest, Service: key, Dest: Dest{Addr: od.Addr}, Reason: "drained: no connections"})
		case in.Now.Sub(started) >= in.DrainTimeout:
			b.add(Op{Kind: OpDelDest, Service: key, Dest: Dest{Addr: od.Addr},
				Reason: fmt.Sprintf("drain timeout with %d connections", conns)})
		default:
			drain.since(o.Key, od.Addr, started)
			if od.Weight != 0 {
				b.add(Op{Kind: OpUpdateDest, Service: key, Dest: Dest{Addr: od.Addr, Weight: 0, Fwd: od.Fwd},
					Reason: fmt.Sprintf("draining %d connections", conns)})
			}
		}
	}
}

// CleanupPlan deletes every owned virtual service (its VIP is on the director's interface and
// outside the excluded CIDRs) and then the VIPs, without draining. It is a pure function.
func CleanupPlan(observed []VirtualService, vips []netip.Addr, exclude []netip.Prefix) []Op {
	onIf := map[netip.Addr]bool{}
	for _, a := range vips {
		onIf[a] = true
	}
	var b opBuckets
	for _, o := range observed {
		if onIf[o.Key.Addr] && !excluded(o.Key.Addr, exclude) {
			b.add(Op{Kind: OpDelService, Service: keyOnly(o.Key), Reason: "cleanup"})
		}
	}
	for _, a := range vips {
		if !excluded(a, exclude) {
			b.add(Op{Kind: OpDelVIP, VIP: a, Reason: "cleanup"})
		}
	}
	return b.flatten()
}

// FullNATFingerprint identifies a full-NAT rule set (stored with the rules, compared on sync).
func FullNATFingerprint(keys []ServiceKey) []byte {
	var b bytes.Buffer
	b.WriteString("lvs-director/1")
	for _, k := range keys {
		b.WriteByte(' ')
		b.WriteString(k.String())
	}
	return b.Bytes()
}

// RequiredSysctls lists, in a stable order, the sysctls NAT forwarding needs for the desired
// services: forwarding for each address family in use, and IPVS conntrack for full NAT.
func RequiredSysctls(desired []VirtualService) [][2]string {
	var v4, v6, fullNAT bool
	for _, s := range desired {
		v4 = v4 || s.Key.Addr.Is4()
		v6 = v6 || s.Key.Addr.Is6()
		fullNAT = fullNAT || s.FullNAT
	}
	var out [][2]string
	if v4 {
		out = append(out, [2]string{"net.ipv4.ip_forward", "1"})
	}
	if v6 {
		out = append(out, [2]string{"net.ipv6.conf.all.forwarding", "1"})
	}
	if fullNAT {
		out = append(out, [2]string{"net.ipv4.vs.conntrack", "1"})
	}
	return out
}
