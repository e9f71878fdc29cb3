// Package daemon runs lvs-director: it loads the config, keeps the kernel in sync with it,
// reloads on SIGHUP or a change of the file, and stops without touching the kernel.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net/netip"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lvs-director/lvs-director/bgp"
	"github.com/lvs-director/lvs-director/config"
	"github.com/lvs-director/lvs-director/director"
)

// Notifier receives the service manager notifications (sd_notify): "READY=1", "RELOADING=1",
// "STOPPING=1", "WATCHDOG=1", "STATUS=...". It may be nil.
type Notifier func(state string)

// Daemon is one running director.
type Daemon struct {
	log    *slog.Logger
	path   string
	kernel director.Kernel
	rec    *director.Reconciler
	notify Notifier

	startHold func() // a collector hold taken before New, released by Run (SetStartGCHold)
	// unmap removes the mapping of the file the last reload read (config.LoadDeferred): after
	// the sync that follows it (afterSync), not within the reload's time.
	unmap atomic.Pointer[func()]

	mu        sync.Mutex
	cfg       *config.Config
	reload    ReloadStatus
	svcHealth []director.ServiceHealth
	syncReq   chan struct{}
	lastSync  time.Time
	lastFull  time.Time // of the last sync that read the whole kernel table
	// parsed is set by a config load and cleared by the next sync, which then releases the
	// load's memory.
	parsed atomic.Bool
	// memUsed is memoryInUse after the last load's memory was released (holdGC).
	memUsed atomic.Int64
	drained map[string]map[netip.AddrPort]bool
	// desired builds the desired state of a sync again only for the services that changed;
	// healthGen and drainGen tell it when the health or the operator drains may have changed
	// (bumped on each health notification and reload, and on each drain).
	desired   director.DesiredCache
	builtFrom *config.Config // the config whose services desired was last built from (nil: merged ones)
	syncMu    sync.Mutex     // one sync at a time (desired is not safe for concurrent use)
	healthGen atomic.Uint64
	drainGen  atomic.Uint64

	health     Health
	speaker    Speaker
	members    Membership
	announced  map[netip.Addr]bgp.Role
	extensions []func() (string, any)
	onReload   []func(*config.Config)
	watchdog   time.Duration
	source     ServiceSource
	// lastConflicts are the file/source conflicts last logged.
	lastConflicts string

	reloadOK   prometheus.Gauge
	reloadTime prometheus.Gauge
	reloads    *prometheus.CounterVec
}

// PrepareKernel starts, in the background, what the first sync needs from the kernel and
// takes long while needing nothing else: the director's dummy interface
// (director.Reconciler.PrepareLink). Call it right after New when the daemon is to run (not for
// a plan, which must change nothing); the first sync waits for it.
func (d *Daemon) PrepareKernel() {
	if len(d.Config().Services) > 0 {
		d.rec.PrepareLink()
	}
}

// Health is the health checker as the daemon uses it.
type Health interface {
	// Update starts, keeps or stops the checks of the configured services. serving tells
	// whether a real server is in the kernel with a weight above 0 now.
	Update(services []config.Service, serving func(service string, rs netip.AddrPort) bool)
	// RealServer returns the health of a real server of a service; checked is false when the
	// real server has no check.
	RealServer(service *config.Service, rs netip.AddrPort) (up bool, reason string, checked bool)
	// Changes fires after any real server changed state.
	Changes() <-chan struct{}
}

// ReloadStatus is the result of the last config load.
type ReloadStatus struct {
	At     time.Time
	OK     bool
	Errors []string
}

// New loads the config at path. An invalid config is an error listing every problem.
func New(log *slog.Logger, reg prometheus.Registerer, kernel director.Kernel, path string, notify Notifier) (*Daemon, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	if notify == nil {
		notify = func(string) {}
	}
	d := &Daemon{
		log: log, path: path, kernel: kernel, cfg: cfg, notify: notify,
		syncReq: make(chan struct{}, 1),
		drained: map[string]map[netip.AddrPort]bool{},
		reload:  ReloadStatus{At: time.Now(), OK: true},
		reloadOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lvs_director_config_last_reload_successful",
			Help: "Whether the last configuration load succeeded (1) or failed (0).",
		}),
		reloadTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lvs_director_config_last_reload_success_timestamp_seconds",
			Help: "Time of the last successful configuration load.",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lvs_director_config_reloads_total",
			Help: "Configuration loads by result.",
		}, []string{"result"}),
	}
	reg.MustRegister(d.reloadOK, d.reloadTime, d.reloads)
	d.reloadOK.Set(1)
	d.reloadTime.SetToCurrentTime()
	d.parsed.Store(true)
	d.rec = director.NewReconciler(log, reg, kernel, settingsOf(cfg), nil)
	reg.MustRegister(newIPVSCollector(d))
	d.loadDrains()
	return d, nil
}

// releaseParseMemory collects the garbage of a config load and of the sync that followed it at
// once, after the kernel has been changed. When the sync was large (a cold start's plan alone is
// 30 MB at 10,000 services) it also hands the freed memory back to the system, instead of the
// runtime keeping it resident for minutes. After a small change it keeps the memory for now
// (later true): a reload that follows soon (an editor saving twice, a deployment pushing several
// changes) reuses it instead of faulting it in again; Run hands it back once reloads have been
// quiet for releaseQuiet, so that the resident memory does not grow with reloads (at 10,000
// services a reload leaves about 3 MB; faulting that in again costs a later reload about 10 ms
// in the lab VM).
func releaseParseMemory(ops int) (later bool) {
	if ops >= releaseOps {
		debug.FreeOSMemory()
		return false
	}
	runtime.GC()
	return true
}

// releaseQuiet is how long after a small reload Run hands its memory back (releaseParseMemory).
const releaseQuiet = 2 * time.Second

// releaseOps is the size of a plan after which releaseParseMemory hands memory back.
const releaseOps = 5000

// holdGC keeps the garbage collector from starting a cycle while a reload and the sync after
// it run, unless the process grows by more than room (holdGCRoom) meanwhile; release undoes it. Run
// collects the reload's garbage right after the sync (afterSync). At 10,000 services a
// collection of the 30 MB heap takes longer than the reload and its sync in the lab VM, and
// the few MB a reload allocates were enough to start one (the pacer starts early on a slow
// CPU): it shares the CPU with the reload and doubled its time.
//
// used is the process's memory (memoryInUse), read when the daemon was idle: in the lab VM the
// read, just after a collection had handed memory back, once took 11 ms of the reload.
func holdGC(used, room int64) (release func()) {
	if used <= 0 {
		used = memoryInUse()
	}
	oldLimit := debug.SetMemoryLimit(min(used+room, debug.SetMemoryLimit(-1)))
	// (Not -1: that would wait for a collection under way to end first.)
	oldPercent := debug.SetGCPercent(math.MaxInt32)
	return func() {
		debug.SetGCPercent(oldPercent)
		debug.SetMemoryLimit(oldLimit)
	}
}

// memoryInUse is the memory the Go runtime holds from the system and has not handed back.
func memoryInUse() int64 {
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 || s[1].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(s[0].Value.Uint64() - s[1].Value.Uint64())
}

// HoldGCForStart holds the collector from now until the first sync of the Daemon it is handed
// to (SetStartGCHold) has ended, as Run does for the first sync alone: `run` takes it before
// New, so that loading the config is not collected either. At 10,000 services the load grows
// the heap from nothing to 8 MB: that set off three collections, 50-85 ms each in the lab VM,
// while the load ran on the same vCPU. Release it (call the returned func) if it is not handed
// to a Daemon.
func HoldGCForStart() (release func()) { return holdGC(0, startGCRoom) }

// SetStartGCHold hands Run a hold from HoldGCForStart: Run releases it after its first sync
// instead of taking its own hold. Call before Run.
func (d *Daemon) SetStartGCHold(release func()) { d.startHold = release }

// holdGCRoom is how much a reload may grow the process before the collector runs anyway.
const holdGCRoom = 64 << 20

// startGCRoom is how much the first sync may grow the process before the collector runs
// anyway. Run holds the collector during the first sync too: it only builds up what it keeps
// (the desired state, the known kernel table) plus the plan, and at 10,000 services x 10 the
// collections the growing heap set off (the last one marking 50 MB while the sync ran with
// write barriers) cost the lab VM's cold start 0.1-0.3 s. Without them the process reaches
// about 80 MB, handed back right after the sync (releaseParseMemory).
const startGCRoom = 192 << 20

// SetHealth attaches the health checker; call before Run.
func (d *Daemon) SetHealth(h Health) {
	d.health = h
	h.Update(d.services(), d.servingNow(d.services()))
}

// servingNow tells which real servers of the services have a weight in the kernel. It reads
// the kernel only when first asked (only new health-checked real servers are asked about).
func (d *Daemon) servingNow(services []config.Service) func(service string, rs netip.AddrPort) bool {
	var once sync.Once
	var serving map[director.ServiceKey]map[netip.AddrPort]bool
	var keyOf map[string]director.ServiceKey
	return func(service string, rs netip.AddrPort) bool {
		once.Do(func() {
			keyOf = make(map[string]director.ServiceKey, len(services))
			for i := range services {
				keyOf[services[i].Name] = director.ServiceKeyOf(&services[i])
			}
			observed, _, err := d.rec.Observe()
			if err != nil {
				d.log.Warn("cannot read the kernel to adopt real servers", "err", err)
				return
			}
			serving = map[director.ServiceKey]map[netip.AddrPort]bool{}
			for _, s := range observed {
				m := map[netip.AddrPort]bool{}
				for _, dst := range s.Dests {
					if dst.Weight > 0 {
						m[dst.Addr] = true
					}
				}
				serving[s.Key] = m
			}
		})
		return serving[keyOf[service]][rs]
	}
}

// SetWatchdog makes Run send "WATCHDOG=1" at least this often from its loop (a stuck sync stops
// the pings, so systemd restarts a frozen daemon); 0 turns it off.
func (d *Daemon) SetWatchdog(every time.Duration) { d.watchdog = every }

// OnReload registers a function called with each newly loaded config (under the daemon's lock:
// it must not call back into the daemon).
func (d *Daemon) OnReload(f func(*config.Config)) { d.onReload = append(d.onReload, f) }

// AddStatusExtension adds a named section to the status report (BGP, cluster).
func (d *Daemon) AddStatusExtension(f func() (string, any)) { d.extensions = append(d.extensions, f) }

func (d *Daemon) healthOf(s *config.Service, a netip.AddrPort) (up bool, reason string, checked bool) {
	if d.health == nil {
		return true, "", false
	}
	return d.health.RealServer(s, a)
}

func settingsOf(c *config.Config) director.Settings {
	ex := make([]netip.Prefix, len(c.Director.ExcludeCIDRs))
	for i, p := range c.Director.ExcludeCIDRs {
		ex[i] = p.Prefix
	}
	return director.Settings{Interface: c.Director.Interface, Exclude: ex, DrainTimeout: c.Director.DrainTimeout.D()}
}

// Config returns the config in force.
func (d *Daemon) Config() *config.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg
}

// Reload reads the config file again. A bad file keeps the running config and is reported.
func (d *Daemon) Reload() error {
	d.notify("RELOADING=1")
	defer d.notify("READY=1")
	start := time.Now()
	cfg, unmap, err := config.LoadDeferred(d.path)
	loaded := time.Since(start)
	if err != nil {
		unmap()
	} else if old := d.unmap.Swap(&unmap); old != nil {
		(*old)() // (a reload whose sync has not run yet: its file is long parsed)
	}
	d.parsed.Store(true)
	var serving func(string, netip.AddrPort) bool
	if err == nil && d.health != nil {
		serving = d.servingNow(cfg.Services)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.reload = ReloadStatus{At: time.Now(), OK: err == nil}
	if err != nil {
		var es config.Errors
		if errors.As(err, &es) {
			for _, e := range es {
				d.reload.Errors = append(d.reload.Errors, e.Error())
				d.log.Error("config reload failed, keeping the running config", "error", e.Error())
			}
		} else {
			d.reload.Errors = []string{err.Error()}
			d.log.Error("config reload failed, keeping the running config", "error", err)
		}
		d.reloadOK.Set(0)
		d.reloads.WithLabelValues("error").Inc()
		return err
	}
	d.cfg = cfg
	d.rec.SetSettings(settingsOf(cfg))
	if d.health != nil {
		d.health.Update(d.servicesFor(cfg), serving)
		d.healthGen.Add(1) // checks may have started, stopped or changed
	}
	for _, f := range d.onReload {
		f(cfg)
	}
	d.reloadOK.Set(1)
	d.reloadTime.SetToCurrentTime()
	d.reloads.WithLabelValues("ok").Inc()
	d.log.Info("config reloaded", "services", len(cfg.Services), "load", loaded.Round(time.Microsecond), "took", time.Since(start).Round(time.Microsecond))
	d.requestSync()
	return nil
}

// LastReload returns the result of the last config load.
func (d *Daemon) LastReload() ReloadStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.reload
}

func (d *Daemon) requestSync() {
	select {
	case d.syncReq <- struct{}{}:
	default:
	}
}

// Desired returns the desired kernel state for the running config and the current health.
func (d *Daemon) Desired() ([]director.VirtualService, []director.ServiceHealth) {
	services := d.services()
	return director.Desired(services, d.healthFunc(services), d.isDrained)
}

// healthFunc answers for the real servers of services whether they are up; its index of the
// services by name is built on the first question (only checked real servers are asked).
func (d *Daemon) healthFunc(services []config.Service) director.HealthFunc {
	var byName map[string]*config.Service
	return func(service string, a netip.AddrPort) bool {
		if byName == nil {
			byName = make(map[string]*config.Service, len(services))
			for i := range services {
				byName[services[i].Name] = &services[i]
			}
		}
		up, _, _ := d.healthOf(byName[service], a)
		return up
	}
}

// Sync plans and applies once, reading the whole kernel table.
func (d *Daemon) Sync() error { return d.sync(true) }

// sync plans and applies once; unless full, it reads from the kernel only what the change
// touches, and plans only the VIPs whose services changed (director.Reconciler.SyncScoped).
func (d *Daemon) sync(full bool) error {
	d.syncMu.Lock()
	defer d.syncMu.Unlock()
	cfg := d.Config()
	services, _ := d.mergedFor(cfg)
	healthOf := d.healthFunc(services)
	need := d.rec.DrainingVIPs()
	var desired []director.VirtualService
	var changed map[netip.Addr]bool
	var partial bool
	fromFile := len(services) == len(cfg.Services) && (len(services) == 0 || &services[0] == &cfg.Services[0])
	if edited, ok := cfg.Edits(d.builtFrom); ok && fromFile {
		// (a reload of the file in place: only the edited services are looked at)
		desired, changed, partial = d.desired.BuildScopeEdited(services, edited, healthOf, d.healthGen.Load(), d.isDrained, d.drainGen.Load(), need, full)
	} else {
		desired, changed, partial = d.desired.BuildScope(services, healthOf, d.healthGen.Load(), d.isDrained, d.drainGen.Load(), need, full)
	}
	d.builtFrom = nil
	if fromFile {
		d.builtFrom = cfg
	}
	d.mu.Lock()
	d.lastSync = time.Now()
	if full {
		d.lastFull = d.lastSync
	}
	d.mu.Unlock()
	d.rec.SetKeepUndesired(!d.sourceComplete())
	var err error
	switch {
	case full:
		_, err = d.rec.Sync(desired)
	case !partial: // (the cache cannot tell what changed)
		_, err = d.rec.SyncChanged(desired)
	default:
		// Only the services of the VIPs that changed (and of those draining) were built.
		scope := maps.Clone(changed)
		for a := range need {
			scope[a] = true
		}
		_, err = d.rec.SyncPartial(desired, scope)
		if errors.Is(err, director.ErrNeedWhole) { // (a settings change, an unknown table)
			desired, _, _ = d.desired.Build(services, healthOf, d.healthGen.Load(), d.isDrained, d.drainGen.Load(), nil, true)
			_, err = d.rec.SyncChanged(desired)
		}
	}
	if d.speaker != nil || d.members != nil { // (only announcing looks at it)
		health := d.desired.Health()
		d.mu.Lock()
		d.svcHealth = health
		d.mu.Unlock()
	}
	return err
}

// afterSync releases the memory of a config load once the sync that followed it is done (Run
// calls it after each sync, when the kernel has been changed already), and the mapping of the
// file it read.
// It tells whether memory is to be handed back later (releaseParseMemory).
func (d *Daemon) afterSync() (releaseLater bool) {
	if unmap := d.unmap.Swap(nil); unmap != nil {
		(*unmap)()
	}
	if d.parsed.Swap(false) {
		releaseLater = releaseParseMemory(d.rec.Last().Ops)
		d.memUsed.Store(memoryInUse()) // (for the next holdGC)
	}
	return releaseLater
}

// Plan returns what a sync would do now.
func (d *Daemon) Plan() (director.Plan, error) {
	desired, _ := d.Desired()
	return d.rec.Plan(desired)
}

// Run syncs until ctx ends: on reload requests, on changes of the config file, every
// sync_period, and every second while real servers drain; never more often than
// min_sync_period. It notifies READY=1 after the first sync and leaves the kernel as it is.
// The first sync and the one every sync_period read the whole kernel table (and so repair any
// drift); the others read only what they change (director.Reconciler.SyncChanged).
func (d *Daemon) Run(ctx context.Context, reload <-chan struct{}) error {
	// Watch first: a change of the file during the first sync (long with a large config) is
	// then not missed.
	fileEvents, stopWatch := d.watchFile()
	defer stopWatch()
	held := d.startHold
	d.startHold = nil
	if held == nil {
		held = holdGC(0, startGCRoom)
	}
	if err := d.Sync(); err != nil {
		d.log.Error("first sync incomplete", "err", err)
	}
	held()
	d.afterSync()
	d.announce(ctx)
	d.notify("READY=1")
	d.log.Info("running", "config", d.path, "services", len(d.Config().Services))

	var healthChanges, memberChanges, sourceChanges <-chan struct{}
	if d.source != nil {
		sourceChanges = d.source.Changes()
	}
	if d.health != nil {
		healthChanges = d.health.Changes()
	}
	if d.members != nil {
		memberChanges = d.members.Changes()
	}

	var debounce <-chan time.Time
	var watchdog <-chan time.Time
	var release func()         // undoes holdGC after the sync that follows a reload
	var quiet <-chan time.Time // hands a reload's memory back (releaseParseMemory)
	if d.watchdog > 0 {
		t := time.NewTicker(d.watchdog)
		defer t.Stop()
		watchdog = t.C
	}
	for {
		cfg := d.Config()
		minGap := cfg.Director.MinSyncPeriod.D()
		next := cfg.Director.SyncPeriod.D()
		if d.rec.Draining() && next > time.Second {
			next = time.Second
		}
		timer := time.NewTimer(next)
		full := false // the sync below reads the whole table
		select {
		case <-ctx.Done():
			timer.Stop()
			d.notify("STOPPING=1")
			d.log.Info("stopping; the kernel state stays in place")
			return nil
		case <-reload:
			release = holdGC(d.memUsed.Load(), holdGCRoom)
			_ = d.Reload()
		case <-fileEvents:
			debounce = time.After(200 * time.Millisecond)
		case <-debounce:
			debounce = nil
			release = holdGC(d.memUsed.Load(), holdGCRoom)
			_ = d.Reload()
		case <-watchdog:
			timer.Stop()
			d.notify("WATCHDOG=1")
			continue
		case <-quiet:
			quiet = nil
			timer.Stop()
			debug.FreeOSMemory()
			continue
		case <-d.syncReq:
		case <-sourceChanges:
			d.reportConflicts()
			if d.health != nil {
				d.health.Update(d.services(), d.servingNow(d.services()))
			}
		case <-healthChanges:
			d.healthGen.Add(1)
		case <-memberChanges:
			// Ownership moved: announce at once; the kernel needs no sync for that.
			timer.Stop()
			d.announce(ctx)
			continue
		case <-timer.C:
			// Every sync_period a full read; while draining, the one-second ticks read only
			// the draining services, and a full read happens once sync_period has passed.
			full = next == cfg.Director.SyncPeriod.D() || time.Since(d.lastFullSync()) >= cfg.Director.SyncPeriod.D()
		}
		timer.Stop()
		d.mu.Lock()
		wait := minGap - time.Since(d.lastSync)
		d.mu.Unlock()
		if wait > 0 {
			select {
			case <-ctx.Done():
				continue
			case <-time.After(wait):
			}
		}
		select {
		case <-d.syncReq: // (met by this sync: a reload asks for one, and Run syncs after it anyway)
		default:
		}
		if err := d.sync(full); err != nil {
			d.log.Error("sync incomplete", "err", err)
		}
		if release != nil {
			release()
			release = nil
		}
		if d.afterSync() {
			quiet = time.After(releaseQuiet)
		}
		d.announce(ctx)
		d.notify("WATCHDOG=1")
	}
}

func (d *Daemon) lastFullSync() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lastFull
}

// watchFile watches the config file's directory (editors replace files) for changes.
func (d *Daemon) watchFile() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	w, err := fsnotify.NewWatcher()
	if err != nil {
		d.log.Warn("cannot watch the config file; reload with SIGHUP", "err", err)
		return ch, func() {}
	}
	abs, _ := filepath.Abs(d.path)
	if err := w.Add(filepath.Dir(abs)); err != nil {
		d.log.Warn("cannot watch the config file; reload with SIGHUP", "err", err)
		w.Close()
		return ch, func() {}
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if filepath.Clean(ev.Name) == abs && ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename) != 0 {
					select {
					case ch <- struct{}{}:
					default:
					}
				}
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				d.log.Warn("config watch error", "err", err)
			}
		}
	}()
	return ch, func() { close(done); w.Close() }
}

// Describe formats config errors for the terminal.
func Describe(err error) string {
	var es config.Errors
	if errors.As(err, &es) {
		return fmt.Sprintf("%d error(s):\n%s", len(es), es.Error())
	}
	return err.Error()
}

// Cleanup removes what the director owns from the kernel, at once.
func (d *Daemon) Cleanup() (director.Plan, error) { return d.rec.Cleanup() }
