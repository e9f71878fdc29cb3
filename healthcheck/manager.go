package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lvs-director/lvs-director/config"
)

// Status is what the Manager knows of one target.
type Status struct {
	Service    string
	RealServer netip.AddrPort
	Address    netip.AddrPort
	Type       string
	// Up is the verdict of the rise/fall state machine.
	Up bool
	// Reason is why the target is in this state: the check result that flipped it, or
	// "initial state", "not checked" (type none) or "invalid health check: ...".
	Reason string
	// Since is when the verdict last flipped; zero while in the initial (or carried) state.
	Since time.Time
	// LastReason and LastCheck describe the latest check; LastCheck is zero before the first.
	LastReason string
	LastCheck  time.Time
	// Checks counts the checks run since the target was (re)started.
	Checks uint64
}

// Manager runs the checks of a set of targets and keeps their up/down state. Update sets the
// targets; Run runs the checks until its context ends. On Linux the tcp targets are all checked
// by a checkLoop (non-blocking connects waited for with epoll, one goroutine per CPU, at most
// 4) and the tcp_half_open targets by another (SYNs from a raw socket, one goroutine; without
// it they are checked like tcp targets); every other target, and tcp targets elsewhere, has a
// goroutine of its own running its Prober.
type Manager struct {
	log       *slog.Logger
	met       *metrics
	newProber func(config.HealthCheck) (Prober, error)
	// newLoop starts the checkLoop of Run's tcp targets; nil (or an error) means none: each tcp
	// target then runs its Prober in its own goroutine. A tcp target's Prober only validates
	// its spec when a loop runs it.
	newLoop func() (checkLoop, error)
	// newHalfLoop starts the checkLoop of Run's tcp_half_open targets, when the first one
	// starts; nil (or an error, logged once per Run) means none: they are then checked with a
	// TCP connect, like tcp targets.
	newHalfLoop func() (checkLoop, error)
	// firstDelay picks when in its first interval a new target is first checked.
	firstDelay func(interval time.Duration) time.Duration
	// onResult, when set (by tests), sees every recorded result; it must be safe for
	// concurrent use.
	onResult func(Result)
	changes  chan struct{}

	mu      sync.Mutex
	targets map[string]*checker
	runCtx  context.Context // non-nil while Run runs
	tcp     checkLoop       // the loop of the tcp targets, non-nil while Run runs with one
	half    checkLoop       // the loop of the tcp_half_open targets, once started
	halfErr bool            // newHalfLoop failed in this Run
	wg      sync.WaitGroup
}

// checker is one target and its state.
type checker struct {
	t      Target
	probe  Prober // nil: not checked (type none or invalid spec)
	cancel context.CancelFunc
	upG    prometheus.Gauge

	mu      sync.Mutex
	st      State
	status  Status
	stopped bool // set when Update replaced or removed it: its results are dropped
}

// stop ends c's checks and returns its state as it was last.
func (c *checker) stop() State {
	c.mu.Lock()
	c.stopped = true
	st := c.st
	c.mu.Unlock()
	if c.cancel != nil {
		c.cancel()
	}
	return st
}

// New returns a Manager that logs state changes to logger and registers its metrics with reg
// (nil: metrics are kept but not registered).
func New(logger *slog.Logger, reg prometheus.Registerer) (*Manager, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	met, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Manager{
		log:         logger,
		met:         met,
		newProber:   NewProber,
		newLoop:     newTCPLoop,
		newHalfLoop: newHalfOpenLoop,
		firstDelay: func(interval time.Duration) time.Duration {
			return rand.N(interval)
		},
		changes: make(chan struct{}, 1),
		targets: map[string]*checker{},
	}, nil
}

// Changes fires (coalesced: one pending notification at most) after any target's verdict flips.
func (m *Manager) Changes() <-chan struct{} { return m.changes }

func (m *Manager) notify() {
	select {
	case m.changes <- struct{}{}:
	default:
	}
}

// Update sets the targets. A target whose Key is new starts in its initial_state; one whose Key
// and every other field are unchanged keeps its state and schedule (a reload does not flap); one
// whose Key is kept but whose spec or addresses changed restarts its check, keeping its up/down
// verdict until the new check flips it. Targets no longer listed stop. A Key listed twice keeps
// its first target.
func (m *Manager) Update(targets []Target) {
	m.mu.Lock()
	defer m.mu.Unlock()
	next := make(map[string]*checker, len(targets))
	for _, t := range targets {
		if _, dup := next[t.Key]; dup {
			m.log.Warn("health check target listed twice; keeping the first", "key", t.Key)
			continue
		}
		old := m.targets[t.Key]
		if old != nil && reflect.DeepEqual(old.t, t) {
			next[t.Key] = old
			continue
		}
		c := m.newChecker(t)
		if old != nil {
			st := old.stop()
			if c.probe != nil && old.probe != nil {
				old.mu.Lock()
				c.st = State{Up: st.Up}
				c.status.Up, c.status.Reason, c.status.Since = st.Up, old.status.Reason, old.status.Since
				old.mu.Unlock()
				c.upG.Set(boolFloat(c.st.Up))
			}
		}
		next[t.Key] = c
		if m.runCtx != nil {
			m.start(c)
		}
	}
	for key, old := range m.targets {
		if next[key] == old {
			continue
		}
		old.stop()
		if n := next[key]; n == nil || n.t.Service != old.t.Service || n.t.RealServer != old.t.RealServer {
			m.met.forget(old.t)
		}
	}
	m.targets = next
}

func (m *Manager) newChecker(t Target) *checker {
	c := &checker{
		t:   t,
		upG: m.met.up.WithLabelValues(t.Service, t.RealServer.String()),
		status: Status{
			Service: t.Service, RealServer: t.RealServer, Address: t.Address, Type: t.Spec.Type,
		},
	}
	switch probe, err := m.newProber(t.Spec); {
	case err != nil:
		m.log.Error("invalid health check; the real server counts as down",
			"service", t.Service, "real_server", t.RealServer, "error", err)
		c.status.Reason = "invalid health check: " + err.Error()
	case t.Spec.Type == config.CheckNone:
		c.st.Up, c.status.Up, c.status.Reason = true, true, "not checked"
	default:
		c.probe = probe
		c.st = InitialState(t.Spec.InitialState)
		c.status.Up, c.status.Reason = c.st.Up, "initial state"
	}
	c.upG.Set(boolFloat(c.st.Up))
	return c
}

// Run runs the checks until ctx ends, then stops them and returns once every check goroutine
// has returned. Update may be called before and during Run.
func (m *Manager) Run(ctx context.Context) error {
	m.mu.Lock()
	if m.runCtx != nil {
		m.mu.Unlock()
		return errors.New("health check manager already running")
	}
	runCtx, cancel := context.WithCancel(ctx)
	m.runCtx = runCtx
	if m.newLoop != nil {
		switch loop, err := m.newLoop(); {
		case err == nil:
			m.tcp = loop
		case !errors.Is(err, errors.ErrUnsupported):
			m.log.Warn("tcp health checks run one goroutine per target", "error", err)
		}
	}
	for _, c := range m.targets {
		m.start(c)
	}
	m.mu.Unlock()

	<-ctx.Done()
	m.mu.Lock()
	cancel()
	loop, half := m.tcp, m.half
	m.runCtx, m.tcp, m.half, m.halfErr = nil, nil, nil, false
	m.mu.Unlock()
	if loop != nil {
		loop.close()
	}
	if half != nil {
		half.close()
	}
	m.wg.Wait()
	return nil
}

// start launches c's check loop; m.mu is held.
func (m *Manager) start(c *checker) {
	if c.probe == nil {
		return
	}
	typ := c.t.Spec.Type
	if typ == config.CheckTCPHalfOpen {
		if half := m.halfLoop(); half != nil {
			j := m.newJob(c)
			c.cancel = func() { half.remove(j) }
			half.add(j)
			return
		}
		typ = config.CheckTCP // checked with a connect instead (its Prober connects)
	}
	if m.tcp != nil && (typ == config.CheckTCP || typ == "") {
		j, loop := m.newJob(c), m.tcp
		c.cancel = func() { loop.remove(j) }
		loop.add(j)
		return
	}
	ctx, cancel := context.WithCancel(m.runCtx)
	c.cancel = cancel
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.loop(ctx, c)
	}()
}

// halfLoop returns the loop of the tcp_half_open targets, starting it the first time; nil when
// it cannot run (logged once per Run). m.mu is held.
func (m *Manager) halfLoop() checkLoop {
	if m.half != nil || m.halfErr || m.newHalfLoop == nil {
		return m.half
	}
	loop, err := m.newHalfLoop()
	if err != nil {
		m.halfErr = true
		msg := "tcp_half_open health checks need a raw socket (CAP_NET_RAW); checking with a TCP connect instead"
		if errors.Is(err, errors.ErrUnsupported) {
			msg = "tcp_half_open health checks are not supported on this system; checking with a TCP connect instead"
		}
		m.log.Warn(msg, "error", err)
		return nil
	}
	m.half = loop
	return loop
}

// newJob is c's check for a checkLoop: the same schedule, timeout and records as loop's.
func (m *Manager) newJob(c *checker) *tcpJob {
	spec := &c.t.Spec
	interval, timeout, jitter := timing(spec)
	observer := m.met.duration.WithLabelValues(spec.Type)
	j := &tcpJob{
		addr:          c.t.Address,
		interval:      interval,
		jitter:        jitter,
		timeout:       timeout,
		reasonTimeout: spec.Timeout.D(),
		first:         m.firstDelay(interval),
		report: func(res Result, start, end time.Time) {
			observer.Observe(end.Sub(start).Seconds())
			m.record(c, res, end)
		},
		late: m.met.late.Inc,
	}
	if spec.Source.IsValid() {
		j.source = spec.Source.Addr
	}
	return j
}

// timing returns the interval, the timeout (at most the interval) and the jitter (0..1) of
// spec's checks.
func timing(spec *config.HealthCheck) (interval, timeout time.Duration, jitter float64) {
	interval = spec.Interval.D()
	if interval <= 0 {
		interval = config.DefaultCheckInterval
	}
	return interval, min(spec.Timeout.D(), interval), min(max(spec.JitterOr(), 0), 1)
}

// jittered returns interval scaled by a random factor in [1-j/2, 1+j/2).
func jittered(interval time.Duration, j float64) time.Duration {
	if j <= 0 {
		return interval
	}
	return time.Duration(float64(interval) * (1 - j/2 + j*rand.Float64()))
}

// loop checks c every interval until ctx ends. The first check comes at a random point of the
// first interval, so that many targets started together spread their checks evenly.
func (m *Manager) loop(ctx context.Context, c *checker) {
	spec := &c.t.Spec
	interval, timeout, jitter := timing(spec)
	observer := m.met.duration.WithLabelValues(spec.Type)

	next := time.Now().Add(m.firstDelay(interval))
	timer := time.NewTimer(time.Until(next))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		start := time.Now()
		var late bool
		if next, late = startSlot(start, next, interval); late {
			m.met.late.Inc()
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		res := c.probe(cctx, c.t)
		cancel()
		if ctx.Err() != nil {
			return // stopped during the check: its result means nothing
		}
		end := time.Now()
		observer.Observe(end.Sub(start).Seconds())
		m.record(c, res, end)
		next = next.Add(jittered(interval, jitter))
		timer.Reset(next.Sub(end))
	}
}

// record applies one result to c's state; it logs, counts and notifies when the verdict flips.
func (m *Manager) record(c *checker, res Result, now time.Time) {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return
	}
	if m.onResult != nil {
		m.onResult(res)
	}
	st, flipped := Next(c.st, res.OK, c.t.Spec.Rise, c.t.Spec.Fall)
	c.st = st
	c.status.LastReason, c.status.LastCheck = res.Reason, now
	c.status.Checks++
	if flipped {
		c.status.Up, c.status.Reason, c.status.Since = st.Up, res.Reason, now
	}
	c.mu.Unlock()
	if !flipped {
		return
	}
	to := "down"
	if st.Up {
		to = "up"
	}
	c.upG.Set(boolFloat(st.Up))
	m.met.transitions.WithLabelValues(c.t.Service, c.t.RealServer.String(), to, res.Kind).Inc()
	m.log.Info("real server "+to, "service", c.t.Service, "real_server", c.t.RealServer,
		"check", c.t.Spec.Type, "address", c.t.Address, "reason", res.Reason)
	m.notify()
}

// State returns the verdict for key and why; known is false when key is not a target.
func (m *Manager) State(key string) (up bool, reason string, known bool) {
	m.mu.Lock()
	c := m.targets[key]
	m.mu.Unlock()
	if c == nil {
		return false, "", false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status.Up, c.status.Reason, true
}

// Snapshot returns the status of every target by key.
func (m *Manager) Snapshot() map[string]Status {
	m.mu.Lock()
	cs := make([]*checker, 0, len(m.targets))
	for _, c := range m.targets {
		cs = append(cs, c)
	}
	m.mu.Unlock()
	out := make(map[string]Status, len(cs))
	for _, c := range cs {
		c.mu.Lock()
		out[c.t.Key] = c.status
		c.mu.Unlock()
	}
	return out
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

type metrics struct {
	up          *prometheus.GaugeVec
	duration    *prometheus.HistogramVec
	transitions *prometheus.CounterVec
	late        prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "lvs_director_realserver_up",
			Help: "Whether the health check verdict for a real server is up (1) or down (0).",
		}, []string{"service", "real_server"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "lvs_director_healthcheck_duration_seconds",
			Help:    "Time taken by health checks, by check type.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"type"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lvs_director_healthcheck_transitions_total",
			Help: "Health check verdict changes, by real server, new state and kind of reason.",
		}, []string{"service", "real_server", "to", "reason_kind"}),
		late: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lvs_director_healthcheck_late_total",
			Help: "Health checks that started more than half an interval after their schedule.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.up, m.duration, m.transitions, m.late} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("registering health check metrics: %w", err)
			}
		}
	}
	return m, nil
}

// forget drops the per-real-server series of a removed target.
func (m *metrics) forget(t Target) {
	labels := prometheus.Labels{"service": t.Service, "real_server": t.RealServer.String()}
	m.up.Delete(labels)
	m.transitions.DeletePartialMatch(labels)
}
