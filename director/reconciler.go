package director

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Settings are the reconciler's knobs from the director section of the config.
type Settings struct {
	Interface    string
	Exclude      []netip.Prefix
	DrainTimeout time.Duration
}

// maxLoggedOps is the largest plan whose operations are logged one by one; bigger plans (a
// cold start) are summarised.
const maxLoggedOps = 50

// Reconciler keeps the kernel equal to the desired state.
type Reconciler struct {
	log    *slog.Logger
	kernel Kernel
	now    func() time.Time

	mu       sync.Mutex
	settings Settings
	keep     bool
	drain    DrainState
	last     Status
	// fullNAT is the full-NAT service set last applied; nil until the first sync.
	fullNAT *string
	// fullNATKeys are its services, in key order.
	fullNATKeys []ServiceKey
	// sysctls are the sysctls the last sync set.
	sysctls map[string]bool
	// known is the kernel's IPVS table as the last full read found it, changed since only by
	// this reconciler's own successful operations (see SyncChanged); nil when it is not known.
	known *knownTable
	// wide makes the next sync plan every service even when told which VIPs changed: the
	// settings or KeepUndesired changed, which may concern any service.
	wide bool
	// linkPrep is closed when the interface PrepareLink creates in the background is there.
	linkPrep chan struct{}

	syncDuration prometheus.Histogram
	opsApplied   *prometheus.CounterVec
	syncErrors   prometheus.Counter
	draining     prometheus.Gauge
}

// PrepareLink starts creating the director's interface (EnsureLink) in the background; the
// next sync waits for it before it looks at the interface. The rest of a start (building the
// desired state, the daemon's listeners) runs meanwhile. In the lab VM creating the dummy
// interface takes 5-8 ms (it took 0.14-0.22 s while its lookup made the kernel run modprobe:
// see getLink).
func (r *Reconciler) PrepareLink() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.linkPrep != nil || r.settings.Interface == "" {
		return
	}
	done := make(chan struct{})
	r.linkPrep = done
	name := r.settings.Interface
	go func() {
		defer close(done)
		_ = r.kernel.EnsureLink(name)
	}()
}

// Status is what the last sync did.
type Status struct {
	At       time.Time
	Duration time.Duration
	Ops      int
	Err      string
	Draining int
}

// NewReconciler returns a reconciler over kernel. now may be nil (time.Now).
func NewReconciler(log *slog.Logger, reg prometheus.Registerer, kernel Kernel, s Settings, now func() time.Time) *Reconciler {
	if now == nil {
		now = time.Now
	}
	r := &Reconciler{
		log: log, kernel: kernel, now: now, settings: s, drain: DrainState{},
		syncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "lvs_director_reconcile_duration_seconds",
			Help:    "Time to read the kernel state, plan and apply.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}),
		opsApplied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lvs_director_reconcile_operations_total",
			Help: "Kernel operations applied, by kind and result.",
		}, []string{"kind", "result"}),
		syncErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lvs_director_reconcile_errors_total",
			Help: "Syncs that failed to read or fully apply the kernel state.",
		}),
		draining: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lvs_director_draining_real_servers",
			Help: "Real servers at weight 0 waiting for their connections to end.",
		}),
	}
	if reg != nil {
		reg.MustRegister(r.syncDuration, r.opsApplied, r.syncErrors, r.draining)
	}
	return r
}

// SetSettings replaces the settings (on a config reload).
func (r *Reconciler) SetSettings(s Settings) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !reflect.DeepEqual(r.settings, s) {
		r.wide = true
	}
	r.settings = s
}

// SetKeepUndesired makes syncs leave owned but undesired services in place (while a source of
// services has not reported yet).
func (r *Reconciler) SetKeepUndesired(keep bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.keep != keep {
		r.wide = true
	}
	r.keep = keep
}

// Plan reads the kernel and returns what Sync would do now, changing nothing.
func (r *Reconciler) Plan(desired []VirtualService) (Plan, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.plan(desired)
}

func (r *Reconciler) plan(desired []VirtualService) (Plan, error) {
	p, _, _, err := r.planFull(desired)
	return p, err
}

// planFull reads the whole table and plans against it; it also returns what it read.
func (r *Reconciler) planFull(desired []VirtualService) (Plan, []VirtualService, []netip.Addr, error) {
	observed, err := r.kernel.Services()
	if err != nil {
		return Plan{}, nil, nil, fmt.Errorf("reading IPVS state: %w", err)
	}
	vips, err := r.kernel.Addrs(r.settings.Interface)
	if err != nil {
		return Plan{}, nil, nil, fmt.Errorf("reading addresses of %s: %w", r.settings.Interface, err)
	}
	return MakePlan(r.planInput(desired, observed, vips)), observed, vips, nil
}

func (r *Reconciler) planInput(desired, observed []VirtualService, vips []netip.Addr) PlanInput {
	return PlanInput{
		Desired: desired, Observed: observed, VIPs: vips,
		Exclude: r.settings.Exclude, Drain: r.drain, DrainTimeout: r.settings.DrainTimeout, Now: r.now(),
		KeepUndesired: r.keep,
	}
}

// maxTargetedReads is the most services SyncChanged reads one by one; a change touching more
// reads the whole table (a dump costs about as much as this many single reads).
const maxTargetedReads = 256

// planKnown plans against the known table, after reading again from the kernel the services
// the plan would touch and those draining (their connection counts decide the drain). ok is
// false when it cannot (no known table, a kernel that cannot read single services, too many
// services touched, a failed read): the caller then reads the whole table.
//
// scope, when not nil, are the only VIPs whose services may have changed since the last sync
// (see SyncScoped); the services draining are planned too.
//
// With partial, desired holds the services of the VIPs in scope only, and the plan is made
// against the known services of those VIPs only.
func (r *Reconciler) planKnown(desired []VirtualService, scope map[netip.Addr]bool, partial bool) (p Plan, ok bool, err error) {
	sr, can := r.kernel.(ServiceReader)
	if r.known == nil || !can {
		return Plan{}, false, nil
	}
	// Ownership: the addresses are read afresh, except by a partial sync, which takes them from
	// the known table too (at 10,000 services the interface has 1,000 addresses to dump and
	// parse: a quarter of such a sync in the lab VM); a VIP removed by someone else is put back
	// by the next full sync, as a real server would be.
	vips := r.known.addrs
	if !partial || vips == nil {
		var err error
		if vips, err = r.kernel.Addrs(r.settings.Interface); err != nil {
			return Plan{}, false, fmt.Errorf("reading addresses of %s: %w", r.settings.Interface, err)
		}
		r.known.setAddrs(vips)
	}
	observed := func() []VirtualService {
		if partial {
			return r.known.inScope(scope)
		}
		return r.known.list
	}
	in := r.planInput(desired, observed(), vips)
	in.Scope = scope
	p = MakePlan(in)
	touched := map[ServiceKey]bool{}
	for _, op := range p.Ops {
		if op.Kind != OpAddVIP && op.Kind != OpDelVIP {
			touched[op.Service.Key] = true
		}
	}
	for k := range r.drain {
		touched[k] = true
	}
	if len(touched) == 0 {
		return p, true, nil
	}
	if len(touched) > maxTargetedReads {
		return Plan{}, false, nil
	}
	same := true
	for k := range touched {
		vs, found, err := sr.Service(k)
		if err != nil {
			r.log.Warn("cannot read a virtual service; reading the whole table", "service", k.String(), "err", err)
			r.known = nil
			return Plan{}, false, nil
		}
		if i, ok := r.known.idx[k]; ok != found || found && !sameState(&r.known.list[i], &vs) {
			same = false
			r.known.set(k, vs, found)
		}
	}
	if same {
		return p, true, nil // the kernel has what the plan was made against
	}
	in.Observed = observed()
	return MakePlan(in), true, nil
}

// sameState tells whether two readings of a service agree on everything a plan looks at.
func sameState(a, b *VirtualService) bool {
	if !a.sameAttrs(b) || len(a.Dests) != len(b.Dests) {
		return false
	}
	for _, d := range a.Dests {
		o, ok := b.dest(d.Addr)
		if !ok || o.Weight != d.Weight || o.Fwd&FwdMask != d.Fwd&FwdMask || o.ActiveConns != d.ActiveConns || o.InactiveConns != d.InactiveConns {
			return false
		}
	}
	return true
}

// ErrNeedWhole is the error of a scoped sync given stubs (DesiredCache) where it must plan
// every service: the settings changed, the table is not known, or the change is too large to
// read service by service. It changed nothing; sync again with every service whole.
var ErrNeedWhole = errors.New("the sync needs every desired service whole")

// hasStubs tells whether a service of desired is a stub within scope (nil: anywhere).
func hasStubs(desired []VirtualService, scope map[netip.Addr]bool) bool {
	for i := range desired {
		if desired[i].stub && (scope == nil || scope[desired[i].Key.Addr]) {
			return true
		}
	}
	return false
}

// Sync makes the kernel equal to desired and returns the plan it applied. An operation that
// fails is logged and counted; the others still run, and the next sync retries.
func (r *Reconciler) Sync(desired []VirtualService) (Plan, error) {
	return r.syncLocked(desired, true, nil, false)
}

// SyncChanged is Sync for a change of the desired state (a reload, a health change, a drain):
// instead of reading the whole table it plans against the table the last sync read and applied,
// after reading again only the services it is about to change and those draining. It makes the
// same changes as Sync unless someone else changed other services in the meantime; that drift
// is repaired by the next Sync (every sync_period). Without a known table (the first sync,
// after a failed operation or read, after Cleanup) it is Sync.
func (r *Reconciler) SyncChanged(desired []VirtualService) (Plan, error) {
	return r.syncLocked(desired, false, nil, false)
}

// SyncScoped is SyncChanged for a change that touched only the services of the VIPs in scope
// (and services that left it): it plans those services and VIPs only, and those draining.
// desired is still the whole desired state. A nil scope is SyncChanged.
func (r *Reconciler) SyncScoped(desired []VirtualService, scope map[netip.Addr]bool) (Plan, error) {
	if scope == nil {
		scope = map[netip.Addr]bool{}
	}
	return r.syncLocked(desired, false, scope, false)
}

// SyncPartial is SyncScoped given only part of the desired state: desired holds exactly the
// desired services of the VIPs in scope, which must include the VIPs of the services
// draining (DrainingVIPs). Nothing is read or planned for the other services (a reload of one
// service at 10,000 looks at one VIP's services, not at 10,000). When the sync needs more than
// the scope (new settings, no known table, too many services touched, a draining VIP outside
// scope) it changes nothing and returns ErrNeedWhole: the caller then syncs the whole
// desired state with SyncChanged.
func (r *Reconciler) SyncPartial(desired []VirtualService, scope map[netip.Addr]bool) (Plan, error) {
	if scope == nil {
		scope = map[netip.Addr]bool{}
	}
	return r.syncLocked(desired, false, scope, true)
}

func (r *Reconciler) syncLocked(desired []VirtualService, full bool, scope map[netip.Addr]bool, partial bool) (Plan, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	start := time.Now()
	p, err := r.sync(start, desired, full, scope, partial)
	if errors.Is(err, ErrNeedWhole) {
		return p, err // not a sync: the caller syncs again at once
	}
	r.last = Status{At: start, Duration: time.Since(start), Ops: len(p.Ops), Draining: r.drain.Len()}
	r.syncDuration.Observe(r.last.Duration.Seconds())
	if err != nil {
		r.last.Err = err.Error()
		r.syncErrors.Inc()
	}
	return p, err
}

func (r *Reconciler) sync(start time.Time, desired []VirtualService, full bool, scope map[netip.Addr]bool, partial bool) (Plan, error) {
	if partial {
		if r.wide || r.known == nil || r.fullNAT == nil {
			return Plan{}, ErrNeedWhole // every service must be planned, or read
		}
		for k := range r.drain {
			if !scope[k.Addr] {
				return Plan{}, ErrNeedWhole // (its services are not in desired)
			}
		}
	}
	if r.wide {
		scope = nil
	}
	if scope != nil {
		scope = maps.Clone(scope)
		for k := range r.drain {
			scope[k.Addr] = true // a drain ends by the connection counts read now
		}
	}
	if hasStubs(desired, scope) {
		return Plan{}, ErrNeedWhole
	}
	needLink := false
	for i := range desired {
		if !excluded(desired[i].Key.Addr, r.settings.Exclude) {
			needLink = true
			break
		}
	}
	if r.linkPrep != nil {
		<-r.linkPrep // (its error, if any, comes again from EnsureLink below)
		r.linkPrep = nil
	}
	if needLink {
		if err := r.kernel.EnsureLink(r.settings.Interface); err != nil {
			return Plan{}, fmt.Errorf("interface %s: %w", r.settings.Interface, err)
		}
	}
	var p Plan
	planned := false
	if !full {
		var err error
		if p, planned, err = r.planKnown(desired, scope, partial); err != nil {
			return p, err
		}
	}
	if !planned && partial {
		return Plan{}, ErrNeedWhole // (nothing changed yet)
	}
	if !planned && hasStubs(desired, nil) {
		return Plan{}, ErrNeedWhole // (nothing changed yet)
	}
	if !planned || scope == nil {
		r.wide = false // every service is planned
	}
	if !planned {
		r.known = nil
		var observed []VirtualService
		var vips []netip.Addr
		var err error
		if p, observed, vips, err = r.planFull(desired); err != nil {
			return p, err
		}
		r.known = newKnownTable(observed)
		r.known.setAddrs(vips)
	}
	r.drain = p.Drain // (a scope holds every draining service: the plan has all of them)
	r.draining.Set(float64(r.drain.Len()))
	var errs []error
	var counts [OpDelVIP + 1]int
	verbose := len(p.Ops) <= maxLoggedOps
	planTook := time.Since(start) // reading the kernel and planning
	results := r.applyAll(p.Ops)
	applyTook := time.Since(start) - planTook
	if r.known != nil {
		r.known.reserve(p.Ops, results)
	}
	for i := range p.Ops {
		op := &p.Ops[i] // (not a copy: 300 bytes each, 111,000 at a cold start)
		if err := results[i]; err != nil {
			r.known = nil // the kernel's state is uncertain: read it whole next time
			r.opsApplied.WithLabelValues(op.Kind.String(), "error").Inc()
			r.log.Error("kernel operation failed", "op", op.String(), "err", err)
			errs = append(errs, fmt.Errorf("%s: %w", op, err))
			continue
		}
		counts[op.Kind]++
		if verbose {
			r.log.Info("applied", "op", op.String())
		}
	}
	if len(p.Ops) > 0 {
		// Said as soon as the kernel has the operations: what follows (the known table, the
		// full-NAT rules, the sysctls) took 0.25-0.45 s more of a cold start at 10,000 services
		// in the lab VM, and logs its own failures. Where the time went: reading and
		// planning, the kernel's operations.
		attrs := []any{"ops", len(p.Ops), "failed", len(errs), "took", time.Since(start).Round(time.Microsecond),
			"plan", planTook.Round(time.Microsecond), "apply", applyTook.Round(time.Microsecond)}
		for k, n := range counts {
			if n > 0 {
				r.opsApplied.WithLabelValues(OpKind(k).String(), "ok").Add(float64(n))
				attrs = append(attrs, OpKind(k).String(), n)
			}
		}
		r.log.Info("sync applied", attrs...)
	}
	if r.known != nil { // (every operation succeeded)
		r.known.applyOps(p.Ops)
		r.known.trim()
	}
	if err := r.syncFullNAT(desired, scope, partial); err != nil {
		errs = append(errs, err)
	}
	set := map[string]bool{}
	if partial && r.sysctls != nil {
		set = r.sysctls // a part of the services adds to what the last sync set
	}
	for _, kv := range RequiredSysctls(desired) {
		if set[kv[0]] {
			continue
		}
		if err := r.kernel.SetSysctl(kv[0], kv[1]); err != nil {
			r.log.Error("cannot set sysctl", "name", kv[0], "value", kv[1], "err", err)
			errs = append(errs, fmt.Errorf("sysctl %s: %w", kv[0], err))
			continue
		}
		set[kv[0]] = true
	}
	r.sysctls = set
	return p, errors.Join(errs...)
}

// syncFullNAT puts the full-NAT rules of the desired services in place. With partial, desired
// holds the services of the VIPs in scope only: the others keep the rules they had.
func (r *Reconciler) syncFullNAT(desired []VirtualService, scope map[netip.Addr]bool, partial bool) error {
	var keys []ServiceKey
	if partial {
		for _, k := range r.fullNATKeys {
			if !scope[k.Addr] {
				keys = append(keys, k)
			}
		}
	}
	for _, s := range desired {
		if s.FullNAT && !excluded(s.Key.Addr, r.settings.Exclude) {
			keys = append(keys, s.Key)
		}
	}
	if partial {
		slices.SortFunc(keys, ServiceKey.compare)
	}
	fp := string(FullNATFingerprint(keys))
	if r.fullNAT != nil && *r.fullNAT == fp {
		return nil
	}
	if err := r.kernel.SetFullNAT(keys); err != nil {
		r.log.Error("full-NAT rules failed", "err", err)
		return fmt.Errorf("full-NAT rules: %w", err)
	}
	r.fullNAT, r.fullNATKeys = &fp, keys
	if len(keys) > 0 {
		r.log.Info("full-NAT rules in place", "services", len(keys))
	}
	return nil
}

// applyAll applies ops in order and returns each one's result. IPVS operations between VIP
// operations go to the kernel in batches when it can take them.
func (r *Reconciler) applyAll(ops []Op) []error {
	errs := make([]error, len(ops))
	b, batching := r.kernel.(BatchApplier)
	ab, addrBatching := r.kernel.(AddrBatcher)
	isVIP := func(op Op) bool { return op.Kind == OpAddVIP || op.Kind == OpDelVIP }
	single := func(op Op) bool { return isVIP(op) || op.NewScheduler }
	for i := 0; i < len(ops); {
		if addrBatching && isVIP(ops[i]) {
			j := i
			for j < len(ops) && isVIP(ops[j]) {
				j++
			}
			copy(errs[i:j], ab.ApplyAddrs(r.settings.Interface, ops[i:j]))
			i = j
			continue
		}
		if !batching || single(ops[i]) {
			errs[i] = r.apply(ops[i])
			i++
			continue
		}
		j := i
		for j < len(ops) && !single(ops[j]) {
			j++
		}
		copy(errs[i:j], b.ApplyBatch(ops[i:j]))
		i = j
	}
	return errs
}

func (r *Reconciler) apply(op Op) error {
	k := r.kernel
	switch op.Kind {
	case OpAddVIP:
		return k.AddAddr(r.settings.Interface, op.VIP)
	case OpDelVIP:
		return k.DelAddr(r.settings.Interface, op.VIP)
	case OpAddService:
		return k.AddService(op.Service)
	case OpUpdateService:
		if !op.NewScheduler {
			return k.UpdateService(op.Service)
		}
		if err := k.GuardUnreachable([]netip.Addr{op.Service.Key.Addr}); err != nil {
			r.log.Warn("cannot guard the scheduler change; new connections may be refused for a moment", "err", err)
		}
		err := k.UpdateService(op.Service)
		if gerr := k.GuardUnreachable(nil); gerr != nil {
			r.log.Error("cannot lift the ICMP guard", "err", gerr)
		}
		return err
	case OpDelService:
		return k.DelService(op.Service.Key)
	case OpAddDest:
		return k.AddDest(op.Service.Key, op.Dest)
	case OpUpdateDest:
		return k.UpdateDest(op.Service.Key, op.Dest)
	case OpDelDest:
		return k.DelDest(op.Service.Key, op.Dest.Addr)
	}
	return fmt.Errorf("unknown operation kind %d", op.Kind)
}

// Draining tells whether real servers are draining (the caller then syncs more often).
func (r *Reconciler) Draining() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.drain.Len() > 0
}

// DrainingVIPs returns the VIPs of the services with real servers draining (a scoped sync plans
// them too).
func (r *Reconciler) DrainingVIPs() map[netip.Addr]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[netip.Addr]bool, len(r.drain))
	for k := range r.drain {
		out[k.Addr] = true
	}
	return out
}

// DrainState returns a copy of the drain state.
func (r *Reconciler) DrainState() DrainState {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.drain.Clone()
}

// Last returns the status of the last sync.
func (r *Reconciler) Last() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// Cleanup removes every virtual service the director owns (those on its interface's VIPs,
// outside exclude_cidrs) and the VIPs, at once and without draining. It touches nothing else.
func (r *Reconciler) Cleanup() (Plan, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.drain = DrainState{}
	r.known = nil
	observed, err := r.kernel.Services()
	if err != nil {
		return Plan{}, fmt.Errorf("reading IPVS state: %w", err)
	}
	vips, err := r.kernel.Addrs(r.settings.Interface)
	if err != nil {
		return Plan{}, fmt.Errorf("reading addresses of %s: %w", r.settings.Interface, err)
	}
	p := Plan{Ops: CleanupPlan(observed, vips, r.settings.Exclude)}
	var errs []error
	if err := r.kernel.SetFullNAT(nil); err != nil {
		errs = append(errs, fmt.Errorf("removing full-NAT rules: %w", err))
	}
	r.fullNAT = nil
	for _, op := range p.Ops {
		if err := r.apply(op); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", op, err))
		}
	}
	return p, errors.Join(errs...)
}

// Observe reads the kernel's virtual services (serialised with syncs: one netlink socket).
func (r *Reconciler) Observe() ([]VirtualService, []netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	svcs, err := r.kernel.Services()
	if err != nil {
		return nil, nil, err
	}
	vips, err := r.kernel.Addrs(r.settings.Interface)
	return svcs, vips, err
}

// knownTable is the kernel's IPVS table as the reconciler last knew it, with an index by key.
type knownTable struct {
	list []VirtualService
	idx  map[ServiceKey]int
	// grown are the services whose real servers were appended to since the last trim.
	grown map[int]bool
	// room is how many real servers reserve expects each service still to be added to get.
	room map[ServiceKey]int
	// byVIP are the keys of each VIP's services (for inScope).
	byVIP map[netip.Addr][]ServiceKey
	// addrs are the addresses of the director's interface as last read and changed by the
	// reconciler's own successful operations; nil when not known.
	addrs []netip.Addr
	// last is the service apply found last: at a cold start 100,000 real servers are added,
	// 10 per service, and looking each one's service up in idx was 6% of the start in the lab
	// VM (a map keyed by an address hashes slowly there).
	last struct {
		key ServiceKey
		i   int
		ok  bool
	}
}

func (t *knownTable) setAddrs(vips []netip.Addr) {
	t.addrs = append(make([]netip.Addr, 0, len(vips)), vips...)
}

// inScope returns the known services of the VIPs in scope, in key order.
func (t *knownTable) inScope(scope map[netip.Addr]bool) []VirtualService {
	var out []VirtualService
	for a, in := range scope {
		if !in {
			continue
		}
		for _, k := range t.byVIP[a] {
			out = append(out, t.list[t.idx[k]])
		}
	}
	slices.SortFunc(out, func(a, b VirtualService) int { return a.Key.compare(b.Key) })
	return out
}

// reserve makes room at once for the real servers the successful operations of a plan add, so
// that a cold start's 100,000 additions neither grow each service's slice step by step nor
// copy them again in trim.
func (t *knownTable) reserve(ops []Op, results []error) {
	var adds map[ServiceKey]int
	newServices, newVIPs := 0, 0
	var run struct { // consecutive additions to one service, counted in adds at once
		key ServiceKey
		n   int
	}
	flush := func() {
		if run.n > 0 {
			if adds == nil {
				adds = map[ServiceKey]int{}
			}
			adds[run.key] += run.n
			run.n = 0
		}
	}
	var lastVIP netip.Addr
	for i := range ops {
		if results[i] != nil {
			continue
		}
		switch k := &ops[i].Service.Key; ops[i].Kind {
		case OpAddDest:
			if run.n > 0 && run.key != *k {
				flush()
			}
			run.key = *k
			run.n++
		case OpAddService:
			newServices++
			if k.Addr != lastVIP { // (about the VIPs: a plan adds services in key order)
				newVIPs++
				lastVIP = k.Addr
			}
		}
	}
	flush()
	if newServices > len(t.list) { // a cold start: grow the list and its indexes once
		t.list = slices.Grow(t.list, newServices)
		idx := make(map[ServiceKey]int, len(t.idx)+newServices)
		for k, i := range t.idx {
			idx[k] = i
		}
		t.idx = idx
		byVIP := make(map[netip.Addr][]ServiceKey, len(t.byVIP)+newVIPs)
		for a, keys := range t.byVIP {
			byVIP[a] = keys
		}
		t.byVIP = byVIP
	}
	for k, n := range adds {
		if i, ok := t.idx[k]; ok {
			t.list[i].Dests = slices.Grow(t.list[i].Dests, n)
			delete(adds, k)
		}
	}
	t.room = adds
}

// trim gives the services that gained real servers slices of their exact size (append leaves
// up to half of a slice unused, megabytes after a cold start).
func (t *knownTable) trim() {
	t.room = nil
	for i := range t.grown {
		if i < len(t.list) {
			t.list[i].Dests = slices.Clone(t.list[i].Dests)
		}
	}
	t.grown = nil
}

// newKnownTable makes the table of what a full read found (which it takes over).
func newKnownTable(observed []VirtualService) *knownTable {
	t := &knownTable{list: observed, idx: make(map[ServiceKey]int, len(observed)), byVIP: map[netip.Addr][]ServiceKey{}}
	for i := range observed {
		k := observed[i].Key
		t.idx[k] = i
		t.byVIP[k.Addr] = append(t.byVIP[k.Addr], k)
		dropCounters(&observed[i])
	}
	return t
}

// dropCounters lets the traffic counters of a service's real servers go: a plan does not look at
// them, and the table would keep 4 MB of them alive at 100,000 real servers.
func dropCounters(vs *VirtualService) {
	for j := range vs.Dests {
		vs.Dests[j].Stats = nil
	}
}

// set puts what the kernel has for k (found false: nothing) in the table.
func (t *knownTable) set(k ServiceKey, vs VirtualService, found bool) {
	t.last.ok = false // (a service may move)
	dropCounters(&vs)
	i, ok := t.idx[k]
	switch {
	case found && ok:
		t.list[i] = vs
	case found:
		t.idx[k] = len(t.list)
		t.list = append(t.list, vs)
		t.byVIP[k.Addr] = append(t.byVIP[k.Addr], k)
	case ok: // the last service takes its place
		last := len(t.list) - 1
		if i != last {
			t.list[i] = t.list[last]
			t.idx[t.list[i].Key] = i
			if t.grown[last] {
				t.grown[i] = true
			}
		}
		t.list[last] = VirtualService{}
		t.list = t.list[:last]
		delete(t.idx, k)
		if keys, ok := t.byVIP[k.Addr]; ok {
			keys = slices.DeleteFunc(keys, func(x ServiceKey) bool { return x == k })
			if len(keys) == 0 {
				delete(t.byVIP, k.Addr)
			} else {
				t.byVIP[k.Addr] = keys
			}
		}
	}
}

// applyOps records the successful operations of a plan, in order (apply). A run of real
// servers added to one service (a cold start adds 100,000, ten per service) is appended at
// once: one operation at a time took 0.2-0.5 s of a cold start at 10,000 services in the lab VM.
func (t *knownTable) applyOps(ops []Op) {
	for i := 0; i < len(ops); {
		if ops[i].Kind != OpAddDest {
			t.apply(&ops[i])
			i++
			continue
		}
		k := ops[i].Service.Key
		j := i + 1
		for j < len(ops) && ops[j].Kind == OpAddDest && ops[j].Service.Key == k {
			j++
		}
		t.addDests(k, ops[i:j])
		i = j
	}
}

// addDests records real servers added to service k, at once.
func (t *knownTable) addDests(k ServiceKey, ops []Op) {
	var i int
	var ok bool
	if t.last.ok && t.last.key == k {
		i, ok = t.last.i, true
	} else {
		i, ok = t.idx[k]
	}
	t.last.ok = false
	if !ok {
		return
	}
	s := &t.list[i]
	if len(s.Dests)+len(ops) > cap(s.Dests) { // append reallocates, leaving room unused
		if t.grown == nil {
			t.grown = map[int]bool{}
		}
		t.grown[i] = true
	}
	for j := range ops {
		d := &ops[j].Dest
		s.Dests = append(s.Dests, Dest{Addr: d.Addr, Weight: d.Weight, Fwd: d.Fwd & FwdMask})
	}
	t.last.key, t.last.i, t.last.ok = k, i, true
}

// apply records a successful IPVS operation.
func (t *knownTable) apply(op *Op) {
	if op.Kind == OpAddDest {
		t.addDests(op.Service.Key, []Op{*op})
		return
	}
	k := op.Service.Key
	var i int
	var ok bool
	if t.last.ok && t.last.key == k {
		i, ok = t.last.i, true // (a plan's real servers of one service follow each other)
	} else {
		i, ok = t.idx[k]
	}
	t.last.ok = false // (set may move services around)
	if ok && (op.Kind == OpUpdateDest || op.Kind == OpDelDest) {
		defer func() { t.last.key, t.last.i, t.last.ok = k, i, true }()
	}
	switch op.Kind {
	case OpAddVIP:
		if t.addrs != nil { // (a plan adds only VIPs the interface does not have)
			t.addrs = append(t.addrs, op.VIP)
		}
	case OpDelVIP:
		t.addrs = slices.DeleteFunc(t.addrs, func(a netip.Addr) bool { return a == op.VIP })
	case OpAddService:
		vs := op.Service
		vs.Dests, vs.FullNAT, vs.Stats = nil, false, Stats{}
		if n := t.room[k]; n > 0 {
			vs.Dests = make([]Dest, 0, n)
			delete(t.room, k)
		}
		t.set(k, vs, true)
	case OpUpdateService:
		if ok {
			s := &t.list[i]
			s.Scheduler, s.Flags, s.Timeout, s.Netmask = op.Service.Scheduler, op.Service.Flags, op.Service.Timeout, op.Service.Netmask
		}
	case OpDelService:
		t.set(k, VirtualService{}, false)
	case OpUpdateDest:
		if ok {
			if d, found := t.list[i].dest(op.Dest.Addr); found {
				d.Weight, d.Fwd = op.Dest.Weight, op.Dest.Fwd&FwdMask
			}
		}
	case OpDelDest:
		if ok {
			s := &t.list[i]
			kept := make([]Dest, 0, len(s.Dests))
			for _, d := range s.Dests {
				if d.Addr != op.Dest.Addr {
					kept = append(kept, d)
				}
			}
			s.Dests = kept
		}
	}
}
