// Package kubernetes is a second source of services: the Services of type LoadBalancer of a
// remote Kubernetes cluster, read with client-go informers and translated into config
// services (see Translate), next to the services of the config file (see Merge).
//
// The Source keeps the last known state when the API server goes away: it never turns an
// unreachable API into an empty set of services. It reports staleness instead (Stale, the
// lvs_director_kubernetes_stale metric) so the operator sees it.
//
// RBAC: the director needs get, list and watch on services, endpoints slices
// (discovery.k8s.io) and nodes, and, with update_status, update on services/status. See
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
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

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
	client Client
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

	svcInformers   []cache.SharedIndexInformer
	sliceInformers []cache.SharedIndexInformer
	nodeInformer   cache.SharedIndexInformer
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
	rules := &clientcmd.ClientConfigLoadingRules{ExplicitPath: cfg.Kubeconfig}
	overrides := &clientcmd.ConfigOverrides{CurrentContext: cfg.Context}
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides).ClientConfig()
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

// NewWithClient is New with a given client (a fake one in tests).
func NewWithClient(logger *slog.Logger, reg prometheus.Registerer, cfg *config.Kubernetes, client Client) (*Source, error) {
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

// Synced tells whether the informers completed their first list and the services were
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

// listWatch wraps list and watch calls to record the health of the connection.
func (s *Source) listWatch(resource string,
	list func(context.Context, metav1.ListOptions) (runtime.Object, error),
	watchFn func(context.Context, metav1.ListOptions) (watch.Interface, error)) cache.ListerWatcher {
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			obj, err := list(ctx, o)
			if err != nil {
				if ctx.Err() == nil {
					s.recordFailure(resource, err)
				}
				return nil, err
			}
			s.recordOK(resource)
			return obj, nil
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			w, err := watchFn(ctx, o)
			if err != nil {
				if ctx.Err() == nil {
					s.recordFailure(resource, err)
				}
				return nil, err
			}
			// An open watch is no sign of life by itself: behind a load balancer or proxy whose
			// backends are down, client-go's retries end in an empty watch without an error.
			// Events are signs of life; a watch that ends at once without any is a failure.
			return newRecordingWatch(w, func() { s.recordOK(resource) }, func() {
				if ctx.Err() == nil {
					s.recordFailure(resource, errEmptyWatch)
				}
			}), nil
		},
	}
	// Keep client-go's knowledge of whether the client supports watch-list (fakes do not).
	return cache.ToListWatcherWithWatchListSemantics(lw, s.client)
}

// errEmptyWatch is recorded when a watch ends within emptyWatchWindow without any event.
var errEmptyWatch = errors.New("watch ended at once without any event (API server unreachable behind a proxy?)")

// emptyWatchWindow: a watch that ends this soon without an event is counted as a failure. The
// API server keeps a healthy watch open for minutes.
const emptyWatchWindow = 2 * time.Second

// recordingWatch passes events through, noting each as a sign of life.
type recordingWatch struct {
	inner watch.Interface
	ch    chan watch.Event
	stop  chan struct{}
	once  sync.Once
}

func newRecordingWatch(inner watch.Interface, alive, empty func()) *recordingWatch {
	w := &recordingWatch{inner: inner, ch: make(chan watch.Event), stop: make(chan struct{})}
	opened := time.Now()
	go func() {
		defer close(w.ch)
		in := inner.ResultChan()
		events := 0
		for {
			select {
			case ev, ok := <-in:
				if !ok {
					if events == 0 && time.Since(opened) < emptyWatchWindow {
						select {
						case <-w.stop:
						default:
							empty()
						}
					}
					return
				}
				if ev.Type != watch.Error {
					events++
					alive()
				}
				select {
				case w.ch <- ev:
				case <-w.stop:
					return
				}
			case <-w.stop:
				return
			}
		}
	}()
	return w
}

func (w *recordingWatch) ResultChan() <-chan watch.Event { return w.ch }

func (w *recordingWatch) Stop() {
	w.once.Do(func() {
		close(w.stop)
		w.inner.Stop()
	})
}

func (s *Source) newInformer(resource string, lw cache.ListerWatcher, obj runtime.Object) (cache.SharedIndexInformer, error) {
	inf := cache.NewSharedIndexInformerWithOptions(lw, obj, cache.SharedIndexInformerOptions{ResyncPeriod: s.cfg.Resync.D()})
	// Route watch errors to our log instead of klog; failures are recorded by listWatch.
	if err := inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		s.log.Debug("kubernetes watch ended", "resource", resource, "err", err)
	}); err != nil {
		return nil, fmt.Errorf("kubernetes: %s informer: %w", resource, err)
	}
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { s.markDirty() },
		UpdateFunc: func(any, any) { s.markDirty() },
		DeleteFunc: func(any) { s.markDirty() },
	}
	if _, err := inf.AddEventHandler(h); err != nil {
		return nil, fmt.Errorf("kubernetes: %s informer: %w", resource, err)
	}
	return inf, nil
}

func (s *Source) buildInformers() error {
	namespaces := s.cfg.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	svcSel := s.cfg.LabelSelector
	for _, ns := range namespaces {
		svcs := s.client.Services(ns)
		inf, err := s.newInformer("services", s.listWatch("services",
			func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				o.LabelSelector = svcSel
				return svcs.List(ctx, o)
			},
			func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				o.LabelSelector = svcSel
				return svcs.Watch(ctx, o)
			}), &corev1.Service{})
		if err != nil {
			return err
		}
		s.svcInformers = append(s.svcInformers, inf)

		eps := s.client.EndpointSlices(ns)
		inf, err = s.newInformer("endpointslices", s.listWatch("endpointslices",
			func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				o.LabelSelector = LabelServiceName
				return eps.List(ctx, o)
			},
			func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				o.LabelSelector = LabelServiceName
				return eps.Watch(ctx, o)
			}), &discoveryv1.EndpointSlice{})
		if err != nil {
			return err
		}
		s.sliceInformers = append(s.sliceInformers, inf)
	}
	if s.cfg.Targets == config.KubeTargetsNodes {
		nodes := s.client.Nodes()
		inf, err := s.newInformer("nodes", s.listWatch("nodes",
			func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return nodes.List(ctx, o) },
			func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) { return nodes.Watch(ctx, o) },
		), &corev1.Node{})
		if err != nil {
			return err
		}
		s.nodeInformer = inf
	}
	return nil
}

func (s *Source) informers() []cache.SharedIndexInformer {
	all := append(append([]cache.SharedIndexInformer{}, s.svcInformers...), s.sliceInformers...)
	if s.nodeInformer != nil {
		all = append(all, s.nodeInformer)
	}
	return all
}

// Run watches the cluster until ctx ends. The informers list and watch again by themselves
// (with back-off) after errors; meanwhile the last known services are kept. Call it once.
func (s *Source) Run(ctx context.Context) error {
	if len(s.svcInformers) > 0 {
		return errors.New("kubernetes: Source.Run called twice")
	}
	if err := s.buildInformers(); err != nil {
		return err
	}
	var wg sync.WaitGroup
	for _, inf := range s.informers() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			inf.RunWithContext(ctx)
		}()
	}
	defer wg.Wait()
	s.log.Info("watching kubernetes services", "namespaces", s.cfg.Namespaces, "label_selector", s.cfg.LabelSelector,
		"load_balancer_class", s.cfg.LoadBalancerClass, "targets", s.cfg.Targets)

	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	s.markDirty()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			s.updateStale() // silence-based staleness
		case <-s.dirty:
			s.recompute(ctx)
		}
	}
}

func (s *Source) hasSynced() bool {
	for _, inf := range s.informers() {
		if !inf.HasSynced() {
			return false
		}
	}
	return true
}

func listOf[T any](infs []cache.SharedIndexInformer) []*T {
	var out []*T
	for _, inf := range infs {
		for _, o := range inf.GetStore().List() {
			if t, ok := o.(*T); ok {
				out = append(out, t)
			}
		}
	}
	return out
}

// recompute translates the informers' stores and publishes the result when it changed.
func (s *Source) recompute(ctx context.Context) {
	if !s.hasSynced() {
		// The informers mark dirty again when their first list arrives.
		go func() {
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
				s.markDirty()
			}
		}()
		return
	}
	svcs := listOf[corev1.Service](s.svcInformers)
	eps := listOf[discoveryv1.EndpointSlice](s.sliceInformers)
	var nodes []*corev1.Node
	if s.nodeInformer != nil {
		nodes = listOf[corev1.Node]([]cache.SharedIndexInformer{s.nodeInformer})
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
func StatusUpdates(cfg *config.Kubernetes, services []*corev1.Service, translated []config.Service) map[string]netip.Addr {
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

func (s *Source) writeStatus(ctx context.Context, svcs []*corev1.Service, out []config.Service) {
	if _, stale := s.Stale(); stale {
		return
	}
	updates := StatusUpdates(s.cfg, svcs, out)
	if len(updates) == 0 {
		return
	}
	byName := map[string]*corev1.Service{}
	for _, svc := range svcs {
		byName[nsName(svc)] = svc
	}
	keys := make([]string, 0, len(updates))
	for k := range updates {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		vip := updates[k]
		svc := byName[k].DeepCopy()
		svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: vip.String()}}
		cctx, cancel := context.WithTimeout(ctx, statusTimeout)
		_, err := s.client.Services(svc.Namespace).UpdateStatus(cctx, svc, metav1.UpdateOptions{FieldManager: "lvs-director"})
		cancel()
		if err != nil {
			s.statusUpdates.WithLabelValues("error").Inc()
			s.log.Warn("cannot write the service status; retrying at the next change or resync", "service", k, "vip", vip, "err", err)
			continue
		}
		s.statusUpdates.WithLabelValues("ok").Inc()
		s.log.Info("service status written", "service", k, "vip", vip)
	}
}
