package kubernetes

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lvs-director/lvs-director/config"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startSource runs a Source against the fake API until the test ends.
func startSource(t *testing.T, api *fakeAPI, reg prometheus.Registerer, cfg *config.Kubernetes) *Source {
	t.Helper()
	src, err := NewWithClient(quietLogger(), reg, cfg, api.client())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = src.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return src
}

func TestSourceWithFakeAPI(t *testing.T) {
	api := newFakeAPI(t)
	front := lbSvc("web", "front", withVIP("198.51.100.1"))
	front.Annotations["kubectl.kubernetes.io/last-applied-configuration"] = strings.Repeat("x", 1000)
	api.put("services", front)
	api.put("nodes", node("n1", "10.0.0.1", true))
	cfg := kcfg(func(c *config.Kubernetes) { c.UpdateStatus = true; c.Resync = config.Duration(time.Minute) })
	reg := prometheus.NewPedanticRegistry()
	src, err := NewWithClient(quietLogger(), reg, cfg, api.client())
	if err != nil {
		t.Fatal(err)
	}
	if src.Synced() || src.Services() != nil {
		t.Fatalf("synced before Run")
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = src.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()

	eventually(t, 10*time.Second, "first sync", src.Synced)
	if got := summary(src.Services()); !reflect.DeepEqual(got, []string{"k8s.web.front.http tcp/198.51.100.1:80 [10.0.0.1:30080/1]"}) {
		t.Fatalf("services = %q", got)
	}
	select {
	case <-src.Changes():
	case <-time.After(5 * time.Second):
		t.Fatal("no change signalled after the first sync")
	}
	if v := testutil.ToFloat64(src.servicesGauge); v != 1 {
		t.Errorf("services gauge = %v", v)
	}
	if _, stale := src.Stale(); stale {
		t.Errorf("stale with a working API")
	}
	// Only the annotation Translate reads is kept.
	if svcs := listAll(src.svcRefl); len(svcs) != 1 || !reflect.DeepEqual(svcs[0].Annotations, map[string]string{"lvs-director.io/vip": "198.51.100.1"}) || svcs[0].Labels != nil {
		t.Errorf("kept services: %+v", svcs)
	}

	// Status write-back, by a merge patch of the status subresource.
	eventually(t, 10*time.Second, "status write-back", func() bool {
		s := api.get("services", "web/front")
		st, _ := s["status"].(map[string]any)
		lb, _ := st["loadBalancer"].(map[string]any)
		in, _ := lb["ingress"].([]any)
		return len(in) == 1 && reflect.DeepEqual(in[0], map[string]any{"ip": "198.51.100.1"})
	})
	var patches []fakeRequest
	for _, r := range api.requests() {
		if r.Method == "PATCH" {
			patches = append(patches, r)
		}
	}
	if len(patches) != 1 || patches[0].String() != "PATCH /api/v1/namespaces/web/services/front/status?fieldManager=lvs-director" ||
		patches[0].Body != `{"status":{"loadBalancer":{"ingress":[{"ip":"198.51.100.1"}]}}}` {
		t.Errorf("status patches: %+v", patches)
	}

	// A new node joins the real servers; the deleted service leaves.
	api.put("nodes", node("n2", "10.0.0.2", true))
	eventually(t, 10*time.Second, "second node", func() bool {
		s := src.Services()
		return len(s) == 1 && len(s[0].RealServers) == 2
	})
	api.del("services", "web/front")
	eventually(t, 10*time.Second, "service removed", func() bool { return src.Synced() && len(src.Services()) == 0 })
	if src.Services() == nil {
		t.Errorf("an empty set after sync must be empty, not nil")
	}

	n, err := testutil.GatherAndCount(reg, "lvs_director_kubernetes_last_sync_timestamp_seconds", "lvs_director_kubernetes_stale", "lvs_director_kubernetes_services",
		"lvs_director_kubernetes_status_updates_total")
	if err != nil || n != 4 {
		t.Errorf("metrics: %d %v", n, err)
	}
	if v := testutil.ToFloat64(src.statusUpdates.WithLabelValues("ok")); v != 1 {
		t.Errorf("status updates ok = %v", v)
	}
}

// The Source lists and watches what it did with client-go's informers: Services with the
// label selector and EndpointSlices of a Service per namespace (or all), Nodes with targets
// nodes, as JSON, with the kubeconfig's credentials.
func TestSourceRequests(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  func(*config.Kubernetes)
		want []string
	}{
		{"all namespaces, nodes", func(c *config.Kubernetes) { c.LabelSelector = "tier=front" }, []string{
			"GET /api/v1/services?labelSelector=tier=front&limit=500",
			"GET /api/v1/services?allowWatchBookmarks=true&labelSelector=tier=front&resourceVersion=102&timeoutSeconds=300&watch=true",
			"GET /apis/discovery.k8s.io/v1/endpointslices?labelSelector=kubernetes.io/service-name&limit=500",
			"GET /apis/discovery.k8s.io/v1/endpointslices?allowWatchBookmarks=true&labelSelector=kubernetes.io/service-name&resourceVersion=102&timeoutSeconds=300&watch=true",
			"GET /api/v1/nodes?limit=500",
			"GET /api/v1/nodes?allowWatchBookmarks=true&resourceVersion=102&timeoutSeconds=300&watch=true",
		}},
		{"namespaces, pods", func(c *config.Kubernetes) { c.Namespaces = []string{"web", "api"}; c.Targets = "pods" }, []string{
			"GET /api/v1/namespaces/web/services?limit=500",
			"GET /api/v1/namespaces/web/services?allowWatchBookmarks=true&resourceVersion=102&timeoutSeconds=300&watch=true",
			"GET /apis/discovery.k8s.io/v1/namespaces/web/endpointslices?labelSelector=kubernetes.io/service-name&limit=500",
			"GET /apis/discovery.k8s.io/v1/namespaces/web/endpointslices?allowWatchBookmarks=true&labelSelector=kubernetes.io/service-name&resourceVersion=102&timeoutSeconds=300&watch=true",
			"GET /api/v1/namespaces/api/services?limit=500",
			"GET /api/v1/namespaces/api/services?allowWatchBookmarks=true&resourceVersion=102&timeoutSeconds=300&watch=true",
			"GET /apis/discovery.k8s.io/v1/namespaces/api/endpointslices?labelSelector=kubernetes.io/service-name&limit=500",
			"GET /apis/discovery.k8s.io/v1/namespaces/api/endpointslices?allowWatchBookmarks=true&labelSelector=kubernetes.io/service-name&resourceVersion=102&timeoutSeconds=300&watch=true",
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			api := newFakeAPI(t)
			api.put("services", lbSvc("web", "front", withVIP("198.51.100.1")))
			api.put("nodes", node("n1", "10.0.0.1", true))
			src, err := NewWithClient(quietLogger(), prometheus.NewRegistry(), kcfg(tt.cfg), api.client())
			if err != nil {
				t.Fatal(err)
			}
			src.watchTimeout = func() time.Duration { return 5 * time.Minute }
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			wg.Go(func() { _ = src.Run(ctx) })
			defer func() { cancel(); wg.Wait() }()
			eventually(t, 10*time.Second, "watches", func() bool { return src.Synced() && api.watchCount() == len(tt.want)/2 })

			got := map[string]bool{}
			for _, r := range api.requests() {
				got[r.String()] = true
				if r.Header.Get("Accept") != "application/json" || r.Header.Get("User-Agent") != "lvs-director-test" ||
					r.Header.Get("Authorization") != "Bearer t0ken" {
					t.Errorf("%s: headers %v", r, r.Header)
				}
			}
			for _, w := range tt.want {
				if !got[w] {
					t.Errorf("no request %s", w)
				}
			}
			if len(got) != len(tt.want) {
				t.Errorf("%d distinct requests, want %d: %v", len(got), len(tt.want), got)
			}
		})
	}
}

func TestSourceLabelSelectorIsSentToTheAPI(t *testing.T) {
	api := newFakeAPI(t)
	api.put("services", lbSvc("web", "front", withVIP("198.51.100.1"), func(s *Service) { s.Labels = map[string]string{"tier": "front"} }))
	api.put("services", lbSvc("web", "back", withVIP("198.51.100.2")))
	api.put("nodes", node("n1", "10.0.0.1", true))
	cfg := kcfg(func(c *config.Kubernetes) { c.LabelSelector = "tier=front"; c.Resync = config.Duration(time.Minute) })
	src := startSource(t, api, prometheus.NewRegistry(), cfg)
	eventually(t, 10*time.Second, "first sync", src.Synced)
	if got := names(src.Services()); !reflect.DeepEqual(got, []string{"k8s.web.front.http"}) {
		t.Errorf("services = %q", got)
	}
}

// With the API server down, the last state stays and turns stale; when it is back, the Source
// lists again, is not stale, and follows changes again.
func TestSourceAPIDownKeepsState(t *testing.T) {
	api := newFakeAPI(t)
	api.put("services", lbSvc("web", "front", withVIP("198.51.100.1")))
	api.put("nodes", node("n1", "10.0.0.1", true))
	reg := prometheus.NewRegistry()
	src := startSource(t, api, reg, kcfg(nil))
	eventually(t, 10*time.Second, "first sync", src.Synced)
	want := summary(src.Services())

	api.setDown(true)
	eventually(t, 10*time.Second, "stale", func() bool { _, s := src.Stale(); return s })
	if got := summary(src.Services()); !reflect.DeepEqual(got, want) || !src.Synced() {
		t.Fatalf("services while down: %q", got)
	}
	// (The watches ended at once first: a failure too. Then the lists fail.)
	eventually(t, 10*time.Second, "the list's error", func() bool {
		return src.LastError()["services"] == "list services: the fake API server is down"
	})
	if v := testutil.ToFloat64(src.apiErrors.WithLabelValues("services")); v < 1 {
		t.Errorf("api errors = %v", v)
	}

	api.setDown(false)
	api.put("nodes", node("n2", "10.0.0.2", true))
	eventually(t, 15*time.Second, "back and current", func() bool {
		_, stale := src.Stale()
		s := src.Services()
		return !stale && len(s) == 1 && len(s[0].RealServers) == 2
	})
}

func TestStaleness(t *testing.T) {
	api := newFakeAPI(t)
	src, err := NewWithClient(quietLogger(), prometheus.NewRegistry(), kcfg(nil), api.client())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	src.now = func() time.Time { return now }

	src.recordOK("services")
	src.recordOK("nodes")
	if _, stale := src.Stale(); stale {
		t.Fatal("stale after success")
	}
	now = now.Add(time.Second)
	failedAt := now
	src.recordFailure("services", errors.New("connection refused"))
	now = now.Add(time.Second)
	src.recordFailure("services", errors.New("connection refused again"))
	since, stale := src.Stale()
	if !stale || !since.Equal(failedAt) {
		t.Fatalf("Stale() = %v %v, want %v true", since, stale, failedAt)
	}
	if got := src.LastError(); !strings.Contains(got["services"], "again") || len(got) != 1 {
		t.Errorf("LastError = %v", got)
	}
	if v := testutil.ToFloat64(src.staleGauge); v != 1 {
		t.Errorf("stale gauge = %v", v)
	}
	// Another resource succeeding does not clear the failing one.
	src.recordOK("nodes")
	if _, stale := src.Stale(); !stale {
		t.Fatal("not stale while services fail")
	}
	src.recordOK("services")
	if _, stale := src.Stale(); stale {
		t.Fatal("stale after recovery")
	}
	if v := testutil.ToFloat64(src.staleGauge); v != 0 {
		t.Errorf("stale gauge = %v", v)
	}
	// Silence: no sign of life for StaleAfter.
	now = now.Add(StaleAfter + time.Second)
	if since, stale := src.Stale(); !stale || !since.Equal(now.Add(-time.Second)) {
		t.Errorf("silence: Stale() = %v %v", since, stale)
	}
}

func TestNewBadKubeconfig(t *testing.T) {
	_, err := New(quietLogger(), prometheus.NewRegistry(), kcfg(func(c *config.Kubernetes) { c.Kubeconfig = t.TempDir() + "/missing" }))
	if err == nil || !strings.Contains(err.Error(), "loading kubeconfig") {
		t.Errorf("err = %v", err)
	}
}

func TestRunTwice(t *testing.T) {
	api := newFakeAPI(t)
	src, err := NewWithClient(quietLogger(), prometheus.NewRegistry(), kcfg(nil), api.client())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := src.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if err := src.Run(ctx); err == nil {
		t.Error("second Run: no error")
	}
}
