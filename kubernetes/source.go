// Package kubernetes is a second source of services: the Services of type LoadBalancer of a
// remote Kubernetes cluster, listed and watched with a small client of its own (client.go,
// reflector.go; no client-go) and translated into config services (see Translate), next to
// the services of the config file (see Merge).
//
// The Source keeps the last known state when the API server goes away: it never turns an
// unreachable API into an empty set of services. It reports staleness instead (Stale, the
// lvs_director_kubernetes_stale metric) so the operator sees it.
//
// RBAC: the director needs get, list and watch on services, endpoints slices
// (discovery.k8s.io) and nodes, and, with update_status, patch on services/status. See
// README.md in this folder for a ClusterRole.
package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lvs-director/lvs-director/config"
)

// StaleAfter is how long the Source may go without any sign of life from the API server
// (a successful list or watch, an event or a bookmark) before its state counts as stale. A
// healthy watch is renewed at least every 10 minutes, so silence past this means a hung
// connection.
const StaleAfter = 11 * time.Minute

// statusTimeout bounds one status write-back.
const statusTimeout = 10 * time.Second

// Source watches a Kubernetes cluster and keeps the translated services.
type Source struct {
	log    *slog.Logger
	cfg    *config.Kubernetes
	client *Client
	now    func() time.Time

	changes chan struct{}
	dirty   chan struct{}

	mu        sync.Mutex
	services  []config.Service
	problems  []string
	synced    bool
	api       map[string]*apiState // per resource
	lastAlive time.Time
	wasStale  bool

	lastSync      prometheus.Gauge
	staleGauge    prometheus.Gauge
	servicesGauge prometheus.Gauge
	apiErrors     *prometheus.CounterVec
	statusUpdates *prometheus.CounterVec
	// patched is, per service (namespace/name), the VIP last written to its status and the
	// resource version it had then: until the patch's own event brings a newer version, the
	// status still looks unwritten, and is not written again.
	patched map[string]patchedStatus

	started   bool
	svcRefl   []*reflector[Service, *Service]
	sliceRefl []*reflector[EndpointSlice, *EndpointSlice]
	nodeRefl  *reflector[Node, *Node] // nil unless targets: nodes
	// watchTimeout, when set, replaces the reflectors' random watch timeouts (tests).
	watchTimeout func() time.Duration
}

// apiState is what the Source knows of the connection for one resource.
type apiState struct {
	failing   bool
	failSince time.Time
	lastErr   string
}

// New connects to the cluster named by cfg's kubeconfig (and context). It does not contact
// the API server: Run does.
func New(logger *slog.Logger, reg prometheus.Registerer, cfg *config.Kubernetes) (*Source, error) {
	rc, err := LoadKubeconfig(cfg.Kubeconfig, cfg.Context)
	if err != nil {
		return nil, fmt.Errorf("kubernetes: loading kubeconfig %s: %w", cfg.Kubeconfig, err)
	}
	rc.UserAgent = "lvs-director"
	client, err := NewClient(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes: client for %s: %w", rc.Host, err)
	}
	return NewWithClient(logger, reg, cfg, client)
}

// NewWithClient is New with a given client (of a fake API server in tests).
func NewWithClient(logger *slog.Logger, reg prometheus.Registerer, cfg *config.Kubernetes, client *Client) (*Source, error) {
	if cfg == nil || client == nil {
		return nil, errors.New("kubernetes: nil config or client")
	}
	s := &Source{
		log:     logger.With("source", "kubernetes"),
		cfg:     cfg,
		client:  client,
		now:     time.Now,
		changes: make(chan struct{}, 1),
		dirty:   make(chan struct{}, 1),
		api:     map[string]*apiState{},
		lastSync: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lvs_director_kubernetes_last_sync_timestamp_seconds",
			Help: "Time of the last sign of life of the Kubernetes API server (successful list or watch, event or bookmark).",
		}),
		staleGauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lvs_director_kubernetes_stale",
			Help: "Whether the services from Kubernetes are stale (1): the API server cannot be reached and the last known state is kept.",
		}),
		servicesGauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lvs_director_kubernetes_services",
			Help: "Virtual services translated from Kubernetes Services.",
		}),
		apiErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lvs_director_kubernetes_api_errors_total",
			Help: "Failed list or watch calls to the Kubernetes API server, by resource.",
		}, []string{"resource"}),
		statusUpdates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lvs_director_kubernetes_status_updates_total",
			Help: "Service status write-backs, by result.",
		}, []string{"result"}),
	}
	for _, c := range []prometheus.Collector{s.lastSync, s.staleGauge, s.servicesGauge, s.apiErrors, s.statusUpdates} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("kubernetes: registering metrics: %w", err)
		}
	}
	return s, nil
}

// Services returns the last translated services; nil until the first full sync (see
// Synced). The slice is the caller's; the services in it must not be modified.
func (s *Source) Services() []config.Service {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.services)
}

// Problems returns why Services were left out at the last translation.
func (s *Source) Problems() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.problems)
}

// Synced tells whether every resource was listed once and the services were
// translated once. Before that, Services is nil and means "not known yet", not "none".
func (s *Source) Synced() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.synced
}

// Changes fires (coalesced) after Services, Synced or Stale changed.
func (s *Source) Changes() <-chan struct{} { return s.changes }

// Stale tells whether the state is stale and since when: a list or watch call failed and
// none succeeded since, or the API server was silent for StaleAfter.
func (s *Source) Stale() (since time.Time, stale bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.staleLocked()
}

func (s *Source) staleLocked() (time.Time, bool) {
	var since time.Time
	for _, st := range s.api {
		if st.failing && (since.IsZero() || st.failSince.Before(since)) {
			since = st.failSince
		}
	}
	if !since.IsZero() {
		return since, true
	}
	if !s.lastAlive.IsZero() && s.now().Sub(s.lastAlive) > StaleAfter {
		return s.lastAlive.Add(StaleAfter), true
	}
	return time.Time{}, false
}

// LastError returns the last failure of the API per resource, while it is failing.
func (s *Source) LastError() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]string{}
	for r, st := range s.api {
		if st.failing {
			out[r] = st.lastErr
		}
	}
	return out
}

// recordOK notes a successful list or watch call, event or bookmark.
func (s *Source) recordOK(resource string) {
	s.mu.Lock()
	t := s.now()
	s.lastAlive = t
	st := s.api[resource]
	if st == nil {
		st = &apiState{}
		s.api[resource] = st
	}
	recovered := st.failing
	st.failing = false
	s.mu.Unlock()
	s.lastSync.Set(float64(t.UnixNano()) / 1e9)
	if recovered {
		s.log.Info("kubernetes API reachable again", "resource", resource)
	}
	s.updateStale()
}

// recordFailure notes a failed list or watch call.
func (s *Source) recordFailure(resource string, err error) {
	s.apiErrors.WithLabelValues(resource).Inc()
	s.mu.Lock()
	st := s.api[resource]
	if st == nil {
		st = &apiState{}
		s.api[resource] = st
	}
	first := !st.failing
	if first {
		st.failing = true
		st.failSince = s.now()
	}
	st.lastErr = err.Error()
	s.mu.Unlock()
	if first {
		s.log.Warn("kubernetes API call failed; keeping the last known services", "resource", resource, "err", err)
	} else {
		s.log.Debug("kubernetes API call failed again", "resource", resource, "err", err)
	}
	s.updateStale()
}

// updateStale refreshes the stale gauge and signals a change of staleness.
func (s *Source) updateStale() {
	s.mu.Lock()
	_, stale := s.staleLocked()
	changed := stale != s.wasStale
	s.wasStale = stale
	s.mu.Unlock()
	if stale {
		s.staleGauge.Set(1)
	} else {
		s.staleGauge.Set(0)
	}
	if changed {
		s.signal()
	}
}

func (s *Source) signal() {
	select {
	case s.changes <- struct{}{}:
	default:
	}
}

func (s *Source) markDirty() {
	select {
	case s.dirty <- struct{}{}:
	default:
	}
}

// hooks are a reflector's ties to the Source's health accounting and change signal.
func (s *Source) hooks(ctx context.Context, resource string) reflectorHooks {
	return reflectorHooks{
		alive: func() { s.recordOK(resource) },
		failure: func(err error) {
			if ctx.Err() == nil {
				s.recordFailure(resource, err)
			}
		},
		changed: s.markDirty,
	}
}

// The trims keep of an object's labels and annotations only those Translate reads: the
// others (kubectl's last-applied-configuration, Helm's, cloud providers') can be most of an
// object's size, for every Service, slice and node of the cluster.
func (s *Source) trimService(o *Service) {
	o.Labels = nil
	o.Annotations = only(o.Annotations, s.cfg.VIPAnnotation)
}

func trimSlice(o *EndpointSlice) {
	o.Labels = only(o.Labels, LabelServiceName)
	o.Annotations = nil
}

func trimNode(o *Node) {
	o.Labels = only(o.Labels, LabelExcludeFromLB)
	o.Annotations = nil
}

// only returns m with just key k, nil when m has no k.
func only(m map[string]string, k string) map[string]string {
	v, ok := m[k]
	if !ok {
		return nil
	}
	return map[string]string{k: v}
}

// buildReflectors makes a reflector per resource and namespace: Services (with the label
// selector) and EndpointSlices (those of a Service) of each configured namespace, or of all,
// and Nodes with targets nodes.
func (s *Source) buildReflectors(ctx context.Context) {
	namespaces := s.cfg.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{""} // all
	}
	for _, ns := range namespaces {
		s.svcRefl = append(s.svcRefl, withTimeout(s, newReflector(s.log, s.client, resServices, ns, s.cfg.LabelSelector,
			s.trimService, s.hooks(ctx, resServices.name))))
		s.sliceRefl = append(s.sliceRefl, withTimeout(s, newReflector(s.log, s.client, resEndpointSlices, ns, LabelServiceName,
			trimSlice, s.hooks(ctx, resEndpointSlices.name))))
	}
	if s.cfg.Targets == config.KubeTargetsNodes {
		s.nodeRefl = withTimeout(s, newReflector(s.log, s.client, resNodes, "", "", trimNode, s.hooks(ctx, resNodes.name)))
	}
}

// withTimeout gives r the Source's watch timeout when a test set one.
func withTimeout[T any, PT interface {
	*T
	object
}](s *Source, r *reflector[T, PT]) *reflector[T, PT] {
	if s.watchTimeout != nil {
		r.watchTimeout = s.watchTimeout
	}
	return r
}

// runners returns every reflector's run and hasSynced.
func (s *Source) runners() (runs []func(context.Context), synced []func() bool) {
	for _, r := range s.svcRefl {
		runs, synced = append(runs, r.run), append(synced, r.hasSynced)
	}
	for _, r := range s.sliceRefl {
		runs, synced = append(runs, r.run), append(synced, r.hasSynced)
	}
	if s.nodeRefl != nil {
		runs, synced = append(runs, s.nodeRefl.run), append(synced, s.nodeRefl.hasSynced)
	}
	return runs, synced
}

// Run watches the cluster until ctx ends. The reflectors list and watch again by themselves
// (with back-off) after errors; meanwhile the last known services are kept. Call it once.
func (s *Source) Run(ctx context.Context) error {
	if s.started {
		return errors.New("kubernetes: Source.Run called twice")
	}
	s.started = true
	s.buildReflectors(ctx)
	runs, _ := s.runners()
	var wg sync.WaitGroup
	for _, run := range runs {
		wg.Go(func() { run(ctx) })
	}
	defer wg.Wait()
	s.log.Info("watching kubernetes services", "server", s.client.Host(), "namespaces", s.cfg.Namespaces,
		"label_selector", s.cfg.LabelSelector, "load_balancer_class", s.cfg.LoadBalancerClass, "targets", s.cfg.Targets)

	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	// The resync period: translate (and write the status) again even without events, as
	// the informers' resync did, so a failed status write-back is retried.
	var resyncC <-chan time.Time
	if d := s.cfg.Resync.D(); d > 0 { // config makes it at least a second
		resync := time.NewTicker(d)
		defer resync.Stop()
		resyncC = resync.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			s.updateStale() // silence-based staleness
		case <-resyncC:
			s.markDirty()
		case <-s.dirty:
			s.recompute(ctx)
		}
	}
}

func (s *Source) hasSynced() bool {
	_, synced := s.runners()
	for _, ok := range synced {
		if !ok() {
			return false
		}
	}
	return true
}

func listAll[T any, PT interface {
	*T
	object
}](rs []*reflector[T, PT]) []PT {
	var out []PT
	for _, r := range rs {
		out = append(out, r.list()...)
	}
	return out
}

// recompute translates the reflectors' objects and publishes the result when it changed.
func (s *Source) recompute(ctx context.Context) {
	if !s.hasSynced() {
		// Each reflector marks dirty again when its first list arrives.
		return
	}
	svcs := listAll(s.svcRefl)
	eps := listAll(s.sliceRefl)
	var nodes []*Node
	if s.nodeRefl != nil {
		nodes = s.nodeRefl.list()
	}
	out, problems := Translate(s.cfg, svcs, eps, nodes)
	if out == nil {
		out = []config.Service{}
	}

	s.mu.Lock()
	changed := !s.synced || !reflect.DeepEqual(out, s.services)
	newProblems := !slices.Equal(problems, s.problems)
	if changed {
		s.services = out
	}
	s.problems = problems
	first := !s.synced
	s.synced = true
	s.mu.Unlock()

	if newProblems {
		for _, p := range problems {
			s.log.Warn("kubernetes service skipped", "problem", p)
		}
	}
	if changed {
		s.servicesGauge.Set(float64(len(out)))
		s.log.Info("kubernetes services changed", "services", len(out), "first_sync", first)
		s.signal()
	}
	if s.cfg.UpdateStatus {
		s.writeStatus(ctx, svcs, out)
	}
}

// StatusUpdates returns, for each selected Service whose ports were translated, the VIP
// its status should show when it does not yet: the status write-back decision, pure.
func StatusUpdates(cfg *config.Kubernetes, services []*Service, translated []config.Service) map[string]netip.Addr {
	vipOf := map[string]netip.Addr{}
	for i := range translated {
		vipOf[translated[i].Name] = translated[i].VIP.Addr
	}
	out := map[string]netip.Addr{}
	for _, svc := range services {
		if !Selected(cfg, svc) {
			continue
		}
		for _, p := range svc.Spec.Ports {
			vip, ok := vipOf[ServiceName(svc.Namespace, svc.Name, p)]
			if !ok {
				continue
			}
			in := svc.Status.LoadBalancer.Ingress
			if len(in) != 1 || in[0].IP != vip.String() || in[0].Hostname != "" {
				out[nsName(svc)] = vip
			}
			break
		}
	}
	return out
}

func (s *Source) writeStatus(ctx context.Context, svcs []*Service, out []config.Service) {
	if _, stale := s.Stale(); stale {
		return
	}
	updates := StatusUpdates(s.cfg, svcs, out)
	if len(updates) == 0 {
		return
	}
	byName := map[string]*Service{}
	for _, svc := range svcs {
		byName[nsName(svc)] = svc
	}
	keys := make([]string, 0, len(updates))
	for k := range updates {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if s.patched == nil {
		s.patched = map[string]patchedStatus{}
	}
	for _, k := range keys {
		vip := updates[k]
		svc := byName[k]
		if p, ok := s.patched[k]; ok && p.vip == vip && p.resourceVersion == svc.ResourceVersion {
			continue // written already; its event has not come yet
		}
		cctx, cancel := context.WithTimeout(ctx, statusTimeout)
		err := s.client.patchServiceStatus(cctx, svc.Namespace, svc.Name, vip.String())
		cancel()
		if err != nil {
			s.statusUpdates.WithLabelValues("error").Inc()
			s.log.Warn("cannot write the service status; retrying at the next change or resync", "service", k, "vip", vip, "err", err)
			continue
		}
		s.statusUpdates.WithLabelValues("ok").Inc()
		s.patched[k] = patchedStatus{vip: vip, resourceVersion: svc.ResourceVersion}
		s.log.Info("service status written", "service", k, "vip", vip)
	}
}

type patchedStatus struct {
	vip             netip.Addr
	resourceVersion string
}
