package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lvs-director/lvs-director/config"
)

// Option changes how New builds a Cluster.
type Option func(*options)

type options struct {
	hostname  func() (string, error)
	eligible  bool
	configure func(*memberlist.Config)
}

// WithHostname replaces os.Hostname, used for the node name when config.Cluster.NodeName is empty.
func WithHostname(f func() (string, error)) Option { return func(o *options) { o.hostname = f } }

// WithEligible sets the eligibility the director starts with (default false: a director owns
// nothing until it calls SetEligible(true), typically after its first successful IPVS apply).
func WithEligible(eligible bool) Option { return func(o *options) { o.eligible = eligible } }

// withMemberlistConfig lets tests adjust the memberlist configuration just before Create.
func withMemberlistConfig(f func(*memberlist.Config)) Option {
	return func(o *options) { o.configure = f }
}

// Cluster is this director's membership in the director cluster.
type Cluster struct {
	logger   *slog.Logger
	mlLogger *slog.Logger // for memberlist's own lines
	cfg      config.Cluster
	name     string
	key      []byte
	opts     options

	changes chan struct{}
	metrics *metrics

	// life guards the memberlist's lifecycle: Start, Leave, Shutdown.
	life     sync.Mutex
	ml       *memberlist.Memberlist
	mlConfig *memberlist.Config
	cancel   context.CancelFunc
	done     chan struct{}
	shutdown bool
	left     bool // memberlist ignores this node's own updates after Leave

	// mu guards the member view and the local meta.
	mu       sync.Mutex
	eligible bool
	leaving  bool
	priority int
	members  map[string]*Member
	departed map[string]time.Time // when a member was last seen dead or left, for pruning
	// leavingPeers holds peers that sent a leaving notice, until when the notice counts:
	// they are ineligible at once, before gossip brings their leaving meta and leave.
	leavingPeers map[string]time.Time
}

// leavingNoticeTTL bounds how long a leaving notice makes a live peer ineligible: a peer that
// really leaves is reported left by memberlist well before that.
const leavingNoticeTTL = 10 * time.Second

// departedRetention is how long a dead or left member stays in Members().
const departedRetention = time.Hour

// New prepares a cluster member from cfg (as filled in by config.Parse). It resolves the node
// name (the host name when cfg.NodeName is empty) and reads the gossip key file, so bad keys
// fail here, before anything listens. reg may be nil (no metrics are registered).
func New(logger *slog.Logger, reg prometheus.Registerer, cfg *config.Cluster, opts ...Option) (*Cluster, error) {
	if cfg == nil {
		return nil, errors.New("cluster: no configuration")
	}
	o := options{hostname: os.Hostname}
	for _, f := range opts {
		f(&o)
	}
	name := cfg.NodeName
	if name == "" {
		h, err := o.hostname()
		if err != nil {
			return nil, fmt.Errorf("cluster: node_name is not set and the host name is unknown: %w", err)
		}
		if h == "" {
			return nil, errors.New("cluster: node_name is not set and the host name is empty")
		}
		name = h
	}
	c := &Cluster{
		logger:   logger.With("component", "cluster", "node", name),
		mlLogger: logger.With("component", "memberlist", "node", name),
		cfg:      *cfg,
		name:     name,
		opts:     o,
		changes:  make(chan struct{}, 1),
		eligible: o.eligible,
		priority: cfg.PriorityOr(),
		members:  map[string]*Member{},
		departed: map[string]time.Time{},

		leavingPeers: map[string]time.Time{},
	}
	if cfg.SecretKeyFile != "" {
		key, insecure, err := LoadSecretKey(cfg.SecretKeyFile)
		if err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
		if insecure {
			c.logger.Warn("gossip key file is readable by group or others; chmod 600 it", "file", cfg.SecretKeyFile)
		}
		c.key = key
	}
	m, err := newMetrics(reg, c)
	if err != nil {
		return nil, fmt.Errorf("cluster: registering metrics: %w", err)
	}
	c.metrics = m
	return c, nil
}

// Name is this director's node name.
func (c *Cluster) Name() string { return c.name }

// Port is the bound gossip port (useful when the configured port was 0); 0 before Start.
func (c *Cluster) Port() int {
	c.life.Lock()
	defer c.life.Unlock()
	if c.mlConfig == nil {
		return 0
	}
	return c.mlConfig.BindPort
}

// Start creates the memberlist (binding the gossip port) and joins the configured peers in the
// background, retrying until at least one answers and, afterwards, whenever this director is
// alone or a member is dead (to heal partitions). A peer that is down never blocks Start. ctx
// bounds the background work; Shutdown ends it too.
func (c *Cluster) Start(ctx context.Context) error {
	c.life.Lock()
	defer c.life.Unlock()
	if c.ml != nil || c.shutdown {
		return errors.New("cluster: already started")
	}
	mc := c.memberlistConfig()
	if c.opts.configure != nil {
		c.opts.configure(mc)
	}
	if c.key == nil {
		c.logger.Warn("gossip encryption is OFF: cluster.secret_key_file is not set, so anyone who reaches the gossip port can join the cluster and take VIPs",
			"bind", net.JoinHostPort(mc.BindAddr, fmt.Sprint(mc.BindPort)))
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return fmt.Errorf("cluster: starting memberlist on %s: %w", net.JoinHostPort(mc.BindAddr, fmt.Sprint(mc.BindPort)), err)
	}
	c.ml, c.mlConfig = ml, mc
	ctx, c.cancel = context.WithCancel(ctx)
	c.done = make(chan struct{})
	// The local node's address is read here, under the life lock that every UpdateNode (which
	// rewrites it) holds too.
	ln := ml.LocalNode()
	self := net.JoinHostPort(ln.Addr.String(), strconv.Itoa(int(ln.Port)))
	go c.joinLoop(ctx, ml, self)
	c.logger.Info("cluster started", "bind", net.JoinHostPort(mc.BindAddr, fmt.Sprint(mc.BindPort)),
		"join", c.cfg.Join, "encrypted", c.key != nil, "priority", c.priority)
	return nil
}

func (c *Cluster) memberlistConfig() *memberlist.Config {
	mc := memberlist.DefaultLANConfig()
	cfg := &c.cfg
	mc.Name = c.name
	mc.BindAddr = cfg.BindAddress.String()
	if !cfg.BindAddress.IsValid() {
		mc.BindAddr = "0.0.0.0"
	}
	mc.BindPort = int(cfg.BindPort)
	mc.AdvertisePort = int(cfg.BindPort)
	if cfg.AdvertiseAddress.IsValid() {
		mc.AdvertiseAddr = cfg.AdvertiseAddress.String()
	}
	mc.ProbeInterval = cfg.ProbeInterval.D()
	mc.ProbeTimeout = cfg.ProbeTimeout.D()
	mc.SuspicionMult = cfg.SuspicionMult
	mc.GossipInterval = cfg.GossipInterval.D()
	mc.GossipNodes = cfg.GossipNodes
	mc.RetransmitMult = cfg.RetransmitMult
	mc.PushPullInterval = cfg.PushPullInterval.D()
	mc.TCPTimeout = cfg.TCPTimeout.D()
	mc.SecretKey = c.key
	mc.Logger = newMemberlistLogger(c.mlLogger)
	mc.Delegate = &delegate{c: c}
	mc.Events = &events{c: c}
	mc.Conflict = &conflicts{c: c}
	return mc
}

// joinLoop joins the configured peers until this director sees another member, backing off from
// 250ms to RejoinInterval; then every RejoinInterval it rejoins when it is alone or when some
// member is dead (not left): the join list and the dead members' addresses.
func (c *Cluster) joinLoop(ctx context.Context, ml *memberlist.Memberlist, self string) {
	defer close(c.done)
	rejoin := c.cfg.RejoinInterval.D()
	if rejoin <= 0 {
		rejoin = config.DefaultClusterRejoinInterval
	}
	delay := min(250*time.Millisecond, rejoin)
	joined := false
	for {
		if targets := withoutSelf(c.joinTargets(joined), self); len(targets) > 0 {
			_, err := ml.Join(targets)
			switch {
			case c.othersLive():
				if !joined {
					c.logger.Info("joined the cluster", "members", c.liveNames())
				}
				joined = true
			case !joined:
				c.logger.Warn("cannot join any cluster peer yet; running alone and retrying", "peers", targets, "retry_in", delay, "err", err)
			default:
				c.logger.Debug("rejoin found no peer", "peers", targets, "err", err)
			}
		}
		c.checkMeta()
		wait := rejoin
		if !joined {
			wait = delay
			delay = min(2*delay, rejoin)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// withoutSelf drops this director's own address from a join list (a shared list of every
// director is the usual config).
func withoutSelf(targets []string, self string) []string {
	out := targets[:0]
	for _, t := range targets {
		if t != self {
			out = append(out, t)
		}
	}
	return out
}

// joinTargets returns whom to contact: before the first join, the join list; afterwards the join
// list when alone, plus the addresses of dead members; nothing when all is well.
func (c *Cluster) joinTargets(joined bool) []string {
	if !joined || !c.othersLive() {
		return append([]string(nil), c.cfg.Join...)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var targets []string
	for _, m := range c.members {
		if m.State == StateDead && m.Addr.IsValid() {
			targets = append(targets, m.Addr.String())
		}
	}
	sort.Strings(targets)
	return targets
}

func (c *Cluster) othersLive() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.members {
		if m.Name != c.name && m.State.Live() {
			return true
		}
	}
	return false
}

func (c *Cluster) liveNames() []string {
	var names []string
	for _, m := range c.Members() {
		if m.State.Live() {
			names = append(names, m.Name)
		}
	}
	return names
}

// SetEligible publishes this director's health flag to the cluster. It does not block: the
// update is queued and gossip carries it to the peers within a gossip interval or two. Before
// Start it only records the flag.
func (c *Cluster) SetEligible(eligible bool) error {
	c.mu.Lock()
	changed := c.eligible != eligible
	c.eligible = eligible
	if self, ok := c.members[c.name]; ok {
		self.Eligible = eligible && !c.leaving
	}
	c.mu.Unlock()
	if !changed {
		return nil
	}
	c.logger.Info("eligibility changed", "eligible", eligible)
	c.notify()
	c.life.Lock()
	defer c.life.Unlock()
	if c.ml == nil || c.shutdown {
		return nil
	}
	// UpdateNode queues the new alive message (with the meta read now) before it waits for
	// the broadcast to finish all its retransmissions; there is no need to wait for that. The
	// life lock serialises updates, so the last one always carries the latest flag.
	c.publishMetaLocked(time.Millisecond)
	return nil
}

// metaAttempts bounds how often publishMetaLocked repeats an update memberlist dropped.
const metaAttempts = 5

// publishMetaLocked gossips this director's meta and checks that memberlist took it.
// memberlist v0.7.0 silently drops an UpdateNode whose incarnation number was drawn just before
// a refute raised the node's incarnation: exactly what happens when a restarted director
// refutes its old death (learnt in the join's push/pull) while it becomes eligible. The update
// is then sent again until the local node carries the meta. It reports whether it did. Call
// with c.life held, after Start.
func (c *Cluster) publishMetaLocked(timeout time.Duration) bool {
	if c.left {
		return false
	}
	for attempt := 1; attempt <= metaAttempts; attempt++ {
		if err := c.ml.UpdateNode(timeout); err != nil {
			c.logger.Debug("node meta update queued, not yet fully gossiped", "err", err)
		}
		// No other writer changes the local node's meta while c.life is held.
		if bytes.Equal(c.ml.LocalNode().Meta, c.localMeta()) {
			return true
		}
		c.logger.Info("node meta update was overtaken by a refute; sending it again", "attempt", attempt)
	}
	c.logger.Error("node meta update not taken by memberlist; peers may see a stale eligibility until the next check",
		"attempts", metaAttempts)
	return false
}

// checkMeta repairs a local meta that memberlist does not carry (see publishMetaLocked); the
// join loop calls it every round. It skips the round when Shutdown or an update holds the lock.
func (c *Cluster) checkMeta() {
	if !c.life.TryLock() {
		return
	}
	defer c.life.Unlock()
	if c.ml == nil || c.shutdown || c.left || bytes.Equal(c.ml.LocalNode().Meta, c.localMeta()) {
		return
	}
	c.logger.Warn("node meta gossiped by memberlist is stale; publishing it again")
	c.publishMetaLocked(time.Millisecond)
}

// localMeta encodes what this director says about itself now.
func (c *Cluster) localMeta() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return encodeMeta(meta{Eligible: c.eligible, Leaving: c.leaving, Priority: c.priority})
}

// Eligible returns the flag last set with SetEligible.
func (c *Cluster) Eligible() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.eligible
}

// Members returns a snapshot of the members this director knows, itself included, sorted by
// name: live ones, and dead or left ones for up to an hour. States are alive, dead or left:
// memberlist v0.7.0 has no race-free way to see suspicion, and suspect members count as live
// anyway. Before Start it is empty.
func (c *Cluster) Members() []Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	c.pruneLocked(now)
	out := make([]Member, 0, len(c.members))
	for _, m := range c.members {
		mm := *m
		if until, ok := c.leavingPeers[m.Name]; ok {
			if now.Before(until) {
				mm.Eligible = false
			} else {
				delete(c.leavingPeers, m.Name)
			}
		}
		out = append(out, mm)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (c *Cluster) pruneLocked(now time.Time) {
	for name, t := range c.departed {
		if now.Sub(t) > departedRetention {
			delete(c.departed, name)
			delete(c.members, name)
		}
	}
}

// Changes delivers a value after any membership or meta change (coalesced: one pending value at
// most); on receiving it, read Members again.
func (c *Cluster) Changes() <-chan struct{} { return c.changes }

func (c *Cluster) notify() {
	select {
	case c.changes <- struct{}{}:
	default:
	}
}

// HasQuorum applies the configured quorum mode to the current live member count.
func (c *Cluster) HasQuorum() bool {
	return HasQuorum(LiveCount(c.Members()), c.cfg.ExpectedMembers, c.cfg.Quorum)
}

// Role is this director's role for key under the given failover mode, taking quorum into
// account: without quorum it is RoleNotOwner for everything.
func (c *Cluster) Role(key, mode string) Role {
	members := c.Members()
	if !HasQuorum(LiveCount(members), c.cfg.ExpectedMembers, c.cfg.Quorum) {
		return RoleNotOwner
	}
	return RoleFor(c.name, members, key, mode)
}

// Leave tells the cluster this director is going away and waits up to timeout for the message to
// reach a peer, so the others take over at once instead of after failure detection. Call
// Shutdown afterwards. Leave before Start or after Shutdown does nothing.
func (c *Cluster) Leave(timeout time.Duration) error {
	c.life.Lock()
	defer c.life.Unlock()
	if c.ml == nil || c.shutdown {
		return nil
	}
	// First say "leaving" in the meta, so peers record this as a leave, not a failure, and stop
	// counting this director at once; then the memberlist leave (a dead message about itself).
	c.mu.Lock()
	c.leaving = true
	c.mu.Unlock()
	// Tell every peer directly (one packet each) so the new owner takes over now, not after the
	// next gossip round; gossip still carries the same news to whoever misses the packet.
	msg := encodeNotice(notice{Kind: noticeLeaving, Name: c.name})
	for _, n := range c.ml.Members() {
		if n.Name == c.name {
			continue
		}
		if err := c.ml.SendBestEffort(n, msg); err != nil {
			c.logger.Debug("leaving notice not sent", "peer", n.Name, "err", err)
		}
	}
	c.publishMetaLocked(timeout / 2)
	c.left = true
	if err := c.ml.Leave(timeout); err != nil {
		return fmt.Errorf("cluster: leave: %w", err)
	}
	c.logger.Info("left the cluster")
	return nil
}

// Shutdown stops gossip and the background join loop. Without a Leave before it, the others see
// this director fail only after failure detection. It is safe to call more than once.
func (c *Cluster) Shutdown() error {
	c.life.Lock()
	defer c.life.Unlock()
	if c.shutdown {
		return nil
	}
	c.shutdown = true
	if c.ml == nil {
		return nil
	}
	c.cancel()
	<-c.done
	if err := c.ml.Shutdown(); err != nil {
		return fmt.Errorf("cluster: shutdown: %w", err)
	}
	return nil
}

// --- memberlist delegates. Event callbacks run with memberlist's node lock held: they must not
// call back into memberlist.

type delegate struct{ c *Cluster }

func (d *delegate) NodeMeta(limit int) []byte {
	b := d.c.localMeta()
	if len(b) > limit {
		// Cannot happen with 4 bytes against memberlist's 512; never send a truncated meta.
		d.c.logger.Error("node meta too large", "size", len(b), "limit", limit)
		return nil
	}
	return b
}

func (d *delegate) NotifyMsg(b []byte)                  { d.c.receiveNotice(b, time.Now()) }
func (d *delegate) GetBroadcasts(int, int) [][]byte     { return nil }
func (d *delegate) LocalState(bool) []byte              { return nil }
func (d *delegate) MergeRemoteState(buf []byte, _ bool) {}

type events struct{ c *Cluster }

func (e *events) NotifyJoin(n *memberlist.Node)   { e.c.observe(n, "join") }
func (e *events) NotifyUpdate(n *memberlist.Node) { e.c.observe(n, "update") }
func (e *events) NotifyLeave(n *memberlist.Node)  { e.c.observe(n, "leave") }

type conflicts struct{ c *Cluster }

func (cd *conflicts) NotifyConflict(existing, other *memberlist.Node) {
	cd.c.logger.Error("two directors use the same node name; give each a unique cluster.node_name",
		"name", existing.Name, "existing", existing.Address(), "other", other.Address())
}

// receiveNotice handles a peer's direct message. It runs on memberlist's packet handler: it
// must not block or call back into memberlist.
func (c *Cluster) receiveNotice(b []byte, now time.Time) {
	n, err := decodeNotice(b)
	if err != nil {
		c.metrics.metaErrors.Inc()
		c.logger.Error("bad notice from a peer; ignored", "err", err)
		return
	}
	c.mu.Lock()
	m, known := c.members[n.Name]
	live := known && m.State.Live() && n.Name != c.name
	if live {
		c.leavingPeers[n.Name] = now.Add(leavingNoticeTTL)
	}
	c.mu.Unlock()
	if !live {
		c.logger.Debug("leaving notice about a director that is not a live peer; ignored", "member", n.Name)
		return
	}
	c.logger.Info("cluster member is leaving", "member", n.Name)
	// Recompute ownership now, and once more when the notice expires.
	c.notify()
	time.AfterFunc(leavingNoticeTTL, c.notify)
}

// observe records a memberlist node event.
func (c *Cluster) observe(n *memberlist.Node, event string) {
	// memberlist v0.7.0 leaves Node.State at its zero value in events (the real state is in a
	// private field), so the state comes from the event, and left versus dead from the meta.
	m := Member{Name: n.Name, State: StateAlive}
	if a, ok := netip.AddrFromSlice(n.Addr); ok {
		m.Addr = netip.AddrPortFrom(a.Unmap(), n.Port)
	}
	leaving := false
	c.mu.Lock()
	if n.Name == c.name {
		m.Eligible, m.Priority, leaving = c.eligible && !c.leaving, c.priority, c.leaving
	} else if md, err := decodeMeta(n.Meta); err != nil {
		c.metrics.metaErrors.Inc()
		c.logger.Error("bad node meta from peer; treating it as ineligible", "peer", n.Name, "addr", m.Addr, "err", err)
	} else {
		m.Eligible, m.Priority, leaving = md.Eligible && !md.Leaving, md.Priority, md.Leaving
	}
	if event == "leave" {
		m.State = StateDead
		if leaving {
			m.State = StateLeft
		}
	}
	prev, known := c.members[n.Name]
	if event == "join" {
		delete(c.leavingPeers, n.Name) // back after a restart: an old notice no longer counts
	}
	c.members[n.Name] = &m
	if m.State.Live() {
		delete(c.departed, n.Name)
	} else {
		c.departed[n.Name] = time.Now()
	}
	c.mu.Unlock()

	c.metrics.changes.Inc()
	attrs := []any{"member", m.Name, "addr", m.Addr, "state", m.State, "eligible", m.Eligible, "priority", m.Priority}
	switch {
	case event == "leave" || !known || prev.State != m.State:
		c.logger.Info("cluster member "+event, attrs...)
	default:
		c.logger.Debug("cluster member "+event, attrs...)
	}
	c.notify()
}
