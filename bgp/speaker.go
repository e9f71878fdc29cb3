package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/lvs-director/lvs-director/config"
)

// ErrRestartRequired is returned by Reconfigure when the change cannot be applied to a running
// speaker (asn, router_id, listen_port or listen_address changed).
var ErrRestartRequired = errors.New("bgp: asn, router_id, listen_port or listen_address changed; restart the director to apply")

// Stop waits at most this long for the withdrawals to leave before it closes the sessions.
const withdrawWait = 1500 * time.Millisecond

// NeighborStatus is one session as the status command shows it.
type NeighborStatus struct {
	Address netip.Addr
	ASN     uint32
	// State is the BGP FSM state: idle, connect, active, opensent, openconfirm or established.
	State string
	// Uptime is how long the session has been established (0 when it is not).
	Uptime time.Duration
	// RoutesSent is the number of routes announced to the neighbor.
	RoutesSent uint64
	// RoutesReceived is the number of routes the neighbor sent (they are not used).
	RoutesReceived uint64
}

type metrics struct {
	sessionUp *prometheus.GaugeVec
	announced prometheus.Gauge
	updates   *prometheus.CounterVec
}

// Speaker is the embedded BGP speaker. It is safe for concurrent use.
type Speaker struct {
	log *slog.Logger
	m   metrics

	mu      sync.Mutex
	cfg     *config.BGP
	srv     *server.BgpServer
	running bool
	stopped bool
	cancel  context.CancelFunc // stops the event watch
	// desired is the last Set; announced is what the GoBGP RIB holds, keyed by prefix.
	desired   []Route
	announced map[netip.Prefix]*announcedRoute
	states    map[string]string // neighbor address -> last FSM state seen
}

type announcedRoute struct {
	key  string
	path *api.Path
}

// New makes a speaker for cfg (which must have been validated); Start runs it.
func New(logger *slog.Logger, reg prometheus.Registerer, cfg *config.BGP) (*Speaker, error) {
	if cfg == nil {
		return nil, errors.New("bgp: no configuration")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Speaker{
		log: logger.With("component", "bgp"),
		cfg: cfg,
		m: metrics{
			sessionUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
				Name: "lvs_director_bgp_session_up",
				Help: "1 when the BGP session with the neighbor is established, else 0.",
			}, []string{"neighbor"}),
			announced: prometheus.NewGauge(prometheus.GaugeOpts{
				Name: "lvs_director_bgp_routes_announced",
				Help: "Number of VIP routes the speaker announces.",
			}),
			updates: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "lvs_director_bgp_route_changes_total",
				Help: "Routes announced (op=announce, including attribute changes) and withdrawn (op=withdraw) by the speaker.",
			}, []string{"op"}),
		},
		announced: map[netip.Prefix]*announcedRoute{},
		states:    map[string]string{},
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{s.m.sessionUp, s.m.announced, s.m.updates} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("bgp: registering metrics: %w", err)
			}
		}
	}
	s.m.updates.WithLabelValues("announce")
	s.m.updates.WithLabelValues("withdraw")
	return s, nil
}

// Start runs the GoBGP server and adds the neighbors. It does not wait for any session: a
// neighbor that is down is retried every connect_retry in the background. Routes given to Set
// before Start are announced now.
func (s *Speaker) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running || s.stopped {
		return errors.New("bgp: speaker already started")
	}
	srv := server.NewBgpServer(server.LoggerOption(newSlogLogger(s.log)))
	// Serve never returns: GoBGP v3 has no way to end its main loop, so after Stop one idle
	// goroutine per speaker stays blocked (the director makes one speaker per run).
	go srv.Serve()
	fail := func(err error) error {
		srv.Stop()
		return err
	}
	if err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: globalConfig(s.cfg)}); err != nil {
		return fail(fmt.Errorf("bgp: starting: %w", err))
	}
	wctx, cancel := context.WithCancel(context.Background())
	if err := srv.WatchEvent(wctx, &api.WatchEventRequest{Peer: &api.WatchEventRequest_Peer{}}, s.onEvent); err != nil {
		cancel()
		return fail(fmt.Errorf("bgp: watching sessions: %w", err))
	}
	for i := range s.cfg.Neighbors {
		n := &s.cfg.Neighbors[i]
		if err := srv.AddPeer(ctx, &api.AddPeerRequest{Peer: peerConfig(n)}); err != nil {
			cancel()
			return fail(fmt.Errorf("bgp: adding neighbor %s: %w", n.Address, err))
		}
		s.m.sessionUp.WithLabelValues(n.Address.String()).Set(0)
	}
	s.srv, s.cancel, s.running = srv, cancel, true
	s.log.Info("bgp speaker started", "asn", uint32(s.cfg.ASN), "router_id", s.cfg.RouterID.String(),
		"listen_port", s.cfg.ListenPort, "neighbors", len(s.cfg.Neighbors))
	return s.apply(ctx)
}

// Set makes the announced routes exactly routes: new and changed routes are announced, missing
// ones withdrawn. Setting the same routes again sends nothing. Before Start it only records them.
func (s *Speaker) Set(ctx context.Context, routes []Route) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return errors.New("bgp: speaker stopped")
	}
	seen := map[netip.Prefix]bool{}
	for _, r := range routes {
		if !r.Prefix.IsValid() {
			return fmt.Errorf("bgp: invalid prefix in route %v", r)
		}
		if seen[r.Prefix.Masked()] {
			return fmt.Errorf("bgp: prefix %s given twice", r.Prefix.Masked())
		}
		if r.NextHop.IsValid() && r.NextHop.Unmap().Is4() != r.Prefix.Addr().Unmap().Is4() {
			return fmt.Errorf("bgp: next hop %s of %s is of another family", r.NextHop, r.Prefix)
		}
		if r.ASPathPrepend < 0 || r.ASPathPrepend > config.MaxStandbyPrepend {
			return fmt.Errorf("bgp: AS-path prepend %d of %s out of range 0-%d", r.ASPathPrepend, r.Prefix, config.MaxStandbyPrepend)
		}
		seen[r.Prefix.Masked()] = true
	}
	s.desired = slices.Clone(routes)
	if !s.running {
		return nil
	}
	return s.apply(ctx)
}

// GracefulShutdown is the well-known community GRACEFUL_SHUTDOWN (65535:0, RFC 8326): routers
// that honour it lower the route's preference to the minimum.
const GracefulShutdown uint32 = 0xFFFF0000

// Demote re-announces every route as least preferred, for a graceful stop: the AS path is
// prepended the maximum number of times and the GRACEFUL_SHUTDOWN community is added. Routers
// keep using this director until another director's route arrives, and switch to it the moment
// it does: no gap and no wait for a withdrawal. Stop withdraws the demoted routes later. A
// Set after Demote replaces them with what it is given.
func (s *Speaker) Demote(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return errors.New("bgp: speaker stopped")
	}
	demoted := make([]Route, len(s.desired))
	for i, r := range s.desired {
		r.ASPathPrepend = config.MaxStandbyPrepend
		if !slices.Contains(r.Communities, GracefulShutdown) {
			r.Communities = append(slices.Clone(r.Communities), GracefulShutdown)
			slices.Sort(r.Communities)
		}
		demoted[i] = r
	}
	s.desired = demoted
	if !s.running {
		return nil
	}
	if err := s.apply(ctx); err != nil {
		return err
	}
	s.log.Info("bgp routes demoted for a graceful stop", "routes", len(demoted))
	return nil
}

// apply brings the GoBGP RIB to s.desired. Called with s.mu held and the server running.
func (s *Speaker) apply(ctx context.Context) error {
	want := map[netip.Prefix]Route{}
	for _, r := range s.desired {
		r.Prefix = netip.PrefixFrom(r.Prefix.Addr().Unmap(), r.Prefix.Bits()-unmapBits(r.Prefix)).Masked()
		if !r.NextHop.IsValid() {
			r.NextHop = s.defaultNextHop(r.Prefix.Addr())
		}
		r.NextHop = r.NextHop.Unmap()
		want[r.Prefix] = r
	}
	var errs []error
	for p, a := range s.announced {
		if _, ok := want[p]; ok {
			continue
		}
		if err := s.srv.DeletePath(ctx, &api.DeletePathRequest{Family: a.path.Family, Path: a.path}); err != nil {
			errs = append(errs, fmt.Errorf("withdrawing %s: %w", p, err))
			continue
		}
		delete(s.announced, p)
		s.m.updates.WithLabelValues("withdraw").Inc()
		s.log.Debug("bgp route withdrawn", "prefix", p.String())
	}
	prefixes := make([]netip.Prefix, 0, len(want))
	for p := range want {
		prefixes = append(prefixes, p)
	}
	slices.SortFunc(prefixes, comparePrefix)
	for _, p := range prefixes {
		r := want[p]
		key := r.String()
		if a, ok := s.announced[p]; ok && a.key == key {
			continue
		}
		path, err := s.apiPath(r)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if _, err := s.srv.AddPath(ctx, &api.AddPathRequest{Path: path}); err != nil {
			errs = append(errs, fmt.Errorf("announcing %s: %w", p, err))
			continue
		}
		s.announced[p] = &announcedRoute{key: key, path: path}
		s.m.updates.WithLabelValues("announce").Inc()
		s.log.Debug("bgp route announced", "route", key)
	}
	s.m.announced.Set(float64(len(s.announced)))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bgp: %w", err)
	}
	return nil
}

func unmapBits(p netip.Prefix) int {
	if p.Addr().Is4In6() {
		return 96
	}
	return 0
}

func (s *Speaker) defaultNextHop(a netip.Addr) netip.Addr {
	if a.Is4() {
		if s.cfg.NextHop.IsValid() {
			return s.cfg.NextHop.Addr
		}
		return netip.IPv4Unspecified()
	}
	if s.cfg.NextHopIPv6.IsValid() {
		return s.cfg.NextHopIPv6.Addr
	}
	return netip.IPv6Unspecified()
}

func familyIPv4() *api.Family {
	return &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
}
func familyIPv6() *api.Family {
	return &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
}

// apiPath builds the GoBGP path of a route whose prefix and next hop are resolved.
// An unspecified next hop is "self": GoBGP puts the session's local address there.
func (s *Speaker) apiPath(r Route) (*api.Path, error) {
	nlri, err := anypb.New(&api.IPAddressPrefix{Prefix: r.Prefix.Addr().String(), PrefixLen: uint32(r.Prefix.Bits())})
	if err != nil {
		return nil, err
	}
	attrs := []proto.Message{&api.OriginAttribute{Origin: 0}} // IGP
	family := familyIPv4()
	if r.Prefix.Addr().Is4() {
		attrs = append(attrs, &api.NextHopAttribute{NextHop: r.NextHop.String()})
	} else {
		family = familyIPv6()
		attrs = append(attrs, &api.MpReachNLRIAttribute{Family: familyIPv6(), NextHops: []string{r.NextHop.String()}, Nlris: []*anypb.Any{nlri}})
	}
	if r.ASPathPrepend > 0 {
		asns := make([]uint32, r.ASPathPrepend)
		for i := range asns {
			asns[i] = uint32(s.cfg.ASN)
		}
		attrs = append(attrs, &api.AsPathAttribute{Segments: []*api.AsSegment{{Type: api.AsSegment_AS_SEQUENCE, Numbers: asns}}})
	}
	if r.MED != nil {
		attrs = append(attrs, &api.MultiExitDiscAttribute{Med: *r.MED})
	}
	if r.LocalPref != nil {
		attrs = append(attrs, &api.LocalPrefAttribute{LocalPref: *r.LocalPref})
	}
	if len(r.Communities) > 0 {
		attrs = append(attrs, &api.CommunitiesAttribute{Communities: slices.Clone(r.Communities)})
	}
	if len(r.LargeCommunities) > 0 {
		lc := make([]*api.LargeCommunity, len(r.LargeCommunities))
		for i, c := range r.LargeCommunities {
			lc[i] = &api.LargeCommunity{GlobalAdmin: c.Global, LocalData1: c.Local1, LocalData2: c.Local2}
		}
		attrs = append(attrs, &api.LargeCommunitiesAttribute{Communities: lc})
	}
	pattrs := make([]*anypb.Any, len(attrs))
	for i, a := range attrs {
		if pattrs[i], err = anypb.New(a); err != nil {
			return nil, fmt.Errorf("encoding %s: %w", r.Prefix, err)
		}
	}
	return &api.Path{Family: family, Nlri: nlri, Pattrs: pattrs}, nil
}

// Reconfigure applies a reloaded BGP section: neighbors added, removed or changed (a changed
// neighbor's session is reset) and new default next hops. A change of asn, router_id,
// listen_port or listen_address returns ErrRestartRequired and changes nothing.
func (s *Speaker) Reconfigure(ctx context.Context, cfg *config.BGP) error {
	if cfg == nil {
		return errors.New("bgp: no configuration")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return errors.New("bgp: speaker stopped")
	}
	old := s.cfg
	if cfg.ASN != old.ASN || cfg.RouterID != old.RouterID || cfg.ListenPort != old.ListenPort || cfg.ListenAddress != old.ListenAddress {
		return ErrRestartRequired
	}
	s.cfg = cfg
	if !s.running {
		return nil
	}
	var errs []error
	oldN := map[config.Addr]*config.BGPNeighbor{}
	for i := range old.Neighbors {
		oldN[old.Neighbors[i].Address] = &old.Neighbors[i]
	}
	newN := map[config.Addr]bool{}
	for i := range cfg.Neighbors {
		n := &cfg.Neighbors[i]
		newN[n.Address] = true
		o, had := oldN[n.Address]
		if had && reflect.DeepEqual(o, n) {
			continue
		}
		if had {
			if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: n.Address.String()}); err != nil {
				errs = append(errs, fmt.Errorf("removing changed neighbor %s: %w", n.Address, err))
				continue
			}
		}
		if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: peerConfig(n)}); err != nil {
			errs = append(errs, fmt.Errorf("adding neighbor %s: %w", n.Address, err))
			continue
		}
		s.m.sessionUp.WithLabelValues(n.Address.String()).Set(0)
		s.log.Info("bgp neighbor configured", "neighbor", n.Address.String(), "asn", uint32(n.ASN), "changed", had)
	}
	for a := range oldN {
		if newN[a] {
			continue
		}
		if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: a.String()}); err != nil {
			errs = append(errs, fmt.Errorf("removing neighbor %s: %w", a, err))
			continue
		}
		s.m.sessionUp.DeleteLabelValues(a.String())
		delete(s.states, a.String())
		s.log.Info("bgp neighbor removed", "neighbor", a.String())
	}
	if err := s.apply(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bgp: reconfiguring: %w", err)
	}
	return nil
}

// Stop withdraws every route, waits up to 1.5 s for the withdrawals to be sent, then closes
// the sessions and stops the server. It returns within a few seconds, or when ctx ends.
func (s *Speaker) Stop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil
	}
	s.stopped = true
	if !s.running {
		return nil
	}
	s.running = false
	var errs []error
	if len(s.announced) > 0 {
		if err := s.srv.DeletePath(ctx, &api.DeletePathRequest{}); err != nil { // every local path
			errs = append(errs, fmt.Errorf("withdrawing routes: %w", err))
		} else {
			s.m.updates.WithLabelValues("withdraw").Add(float64(len(s.announced)))
		}
		s.announced = map[netip.Prefix]*announcedRoute{}
		s.m.announced.Set(0)
		s.waitSent(ctx, withdrawWait)
	}
	done := make(chan struct{})
	go func() {
		s.srv.Stop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("stopping: %w", ctx.Err()))
	}
	s.cancel()
	for _, n := range s.cfg.Neighbors {
		s.m.sessionUp.WithLabelValues(n.Address.String()).Set(0)
	}
	s.log.Info("bgp speaker stopped")
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bgp: %w", err)
	}
	return nil
}

// waitSent waits until no established session has queued messages, at most max. The queue is
// GoBGP's outgoing channel: once empty, the withdrawals were handed to the socket, ahead of the
// NOTIFICATION that closes the session.
func (s *Speaker) waitSent(ctx context.Context, max time.Duration) {
	deadline := time.Now().Add(max)
	// Let the peer goroutines pick up the withdrawals before the queues are read.
	time.Sleep(20 * time.Millisecond)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		queued := false
		_ = s.srv.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
			if st := p.GetState(); st.GetSessionState() == api.PeerState_ESTABLISHED && st.GetOutQ() > 0 {
				queued = true
			}
		})
		if !queued {
			time.Sleep(50 * time.Millisecond) // from the queue to the socket
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Neighbors returns the sessions, sorted by address; nil before Start and after Stop.
func (s *Speaker) Neighbors() []NeighborStatus {
	s.mu.Lock()
	srv, running := s.srv, s.running
	s.mu.Unlock()
	if !running {
		return nil
	}
	var out []NeighborStatus
	now := time.Now()
	_ = srv.ListPeer(context.Background(), &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
		st := p.GetState()
		addr, err := netip.ParseAddr(p.GetConf().GetNeighborAddress())
		if err != nil {
			return
		}
		ns := NeighborStatus{Address: addr, ASN: p.GetConf().GetPeerAsn(), State: stateName(st.GetSessionState())}
		if ns.State == "established" {
			if up := p.GetTimers().GetState().GetUptime(); up != nil {
				ns.Uptime = now.Sub(up.AsTime()).Truncate(time.Second)
			}
		}
		for _, af := range p.GetAfiSafis() {
			ns.RoutesSent += af.GetState().GetAdvertised()
			ns.RoutesReceived += af.GetState().GetReceived()
		}
		out = append(out, ns)
	})
	slices.SortFunc(out, func(a, b NeighborStatus) int { return a.Address.Compare(b.Address) })
	return out
}

// Routes returns the routes as last given to Set.
func (s *Speaker) Routes() []Route {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.desired)
}

func stateName(st api.PeerState_SessionState) string {
	return strings.ToLower(st.String())
}

// onEvent logs session state changes and keeps lvs_director_bgp_session_up.
func (s *Speaker) onEvent(ev *api.WatchEventResponse) {
	pe := ev.GetPeer()
	if pe == nil || pe.GetType() != api.WatchEventResponse_PeerEvent_STATE {
		return
	}
	st := pe.GetPeer().GetState()
	addr := st.GetNeighborAddress()
	state := stateName(st.GetSessionState())
	s.mu.Lock()
	configured := false
	for i := range s.cfg.Neighbors {
		if s.cfg.Neighbors[i].Address.String() == addr {
			configured = true
		}
	}
	prev, known := s.states[addr]
	changed := !known || prev != state
	// Events of a neighbor removed by Reconfigure, or after Stop, may arrive late: skip them so
	// that its series stays deleted.
	if !configured || s.stopped || !changed {
		s.mu.Unlock()
		return
	}
	s.states[addr] = state
	up := 0.0
	if state == "established" {
		up = 1
	}
	s.m.sessionUp.WithLabelValues(addr).Set(up)
	s.mu.Unlock()
	switch {
	case state == "established":
		s.log.Info("bgp session established", "neighbor", addr, "asn", st.GetPeerAsn(), "router_id", st.GetRouterId())
	case prev == "established":
		s.log.Warn("bgp session down", "neighbor", addr, "asn", st.GetPeerAsn(), "state", state)
	default:
		s.log.Debug("bgp session state", "neighbor", addr, "from", prev, "to", state)
	}
}

func globalConfig(c *config.BGP) *api.Global {
	g := &api.Global{Asn: uint32(c.ASN), RouterId: c.RouterID.String(), ListenPort: -1}
	if c.ListenPort != 0 {
		g.ListenPort = int32(c.ListenPort)
		if c.ListenAddress.IsValid() {
			g.ListenAddresses = []string{c.ListenAddress.String()}
		}
	}
	return g
}

func peerConfig(n *config.BGPNeighbor) *api.Peer {
	p := &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: n.Address.String(),
			PeerAsn:         uint32(n.ASN),
			AuthPassword:    n.Password,
		},
		Timers: &api.Timers{Config: &api.TimersConfig{
			ConnectRetry:      uint64(n.ConnectRetry.D() / time.Second),
			HoldTime:          uint64(n.HoldTime.D() / time.Second),
			KeepaliveInterval: uint64(n.Keepalive.D() / time.Second),
		}},
		Transport: &api.Transport{
			RemotePort:  uint32(n.Port),
			PassiveMode: n.Passive,
		},
	}
	if n.LocalAddress.IsValid() {
		p.Transport.LocalAddress = n.LocalAddress.String()
	}
	if n.Multihop > 0 {
		p.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: uint32(n.Multihop)}
	}
	for _, f := range n.Families {
		fam := familyIPv4()
		if f == config.FamilyIPv6 {
			fam = familyIPv6()
		}
		p.AfiSafis = append(p.AfiSafis, &api.AfiSafi{Config: &api.AfiSafiConfig{Family: fam, Enabled: true}})
	}
	return p
}
