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
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"

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

func TestSourceWithFakeClient(t *testing.T) {
	client := fake.NewClientset(
		lbSvc("web", "front", withVIP("198.51.100.1")),
		node("n1", "10.0.0.1", true),
	)
	cfg := kcfg(func(c *config.Kubernetes) { c.UpdateStatus = true; c.Resync = config.Duration(time.Minute) })
	reg := prometheus.NewPedanticRegistry()
	src, err := NewWithClient(quietLogger(), reg, cfg, fakeClient(client))
	if err != nil {
		t.Fatal(err)
	}
	if src.Synced() || src.Services() != nil {
		t.Fatalf("synced before Run")
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = src.Run(ctx) }()
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
		t.Errorf("stale with a working client")
	}

	// Status write-back.
	eventually(t, 10*time.Second, "status write-back", func() bool {
		s, err := client.CoreV1().Services("web").Get(context.Background(), "front", metav1.GetOptions{})
		return err == nil && len(s.Status.LoadBalancer.Ingress) == 1 && s.Status.LoadBalancer.Ingress[0].IP == "198.51.100.1"
	})

	// A new node joins the real servers; the deleted service leaves.
	if _, err := client.CoreV1().Nodes().Create(context.Background(), node("n2", "10.0.0.2", true), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "second node", func() bool {
		s := src.Services()
		return len(s) == 1 && len(s[0].RealServers) == 2
	})
	if err := client.CoreV1().Services("web").Delete(context.Background(), "front", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "service removed", func() bool { return src.Synced() && len(src.Services()) == 0 })
	if src.Services() == nil {
		t.Errorf("an empty set after sync must be empty, not nil")
	}

	n, err := testutil.GatherAndCount(reg, "lvs_director_kubernetes_last_sync_timestamp_seconds", "lvs_director_kubernetes_stale", "lvs_director_kubernetes_services")
	if err != nil || n != 3 {
		t.Errorf("metrics: %d %v", n, err)
	}
}

func TestSourceLabelSelectorIsSentToTheAPI(t *testing.T) {
	client := fake.NewClientset(
		lbSvc("web", "front", withVIP("198.51.100.1"), func(s *corev1.Service) { s.Labels = map[string]string{"tier": "front"} }),
		lbSvc("web", "back", withVIP("198.51.100.2")),
		node("n1", "10.0.0.1", true),
	)
	cfg := kcfg(func(c *config.Kubernetes) { c.LabelSelector = "tier=front"; c.Resync = config.Duration(time.Minute) })
	src, err := NewWithClient(quietLogger(), prometheus.NewRegistry(), cfg, fakeClient(client))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = src.Run(ctx) }()
	defer func() { cancel(); <-done }()
	eventually(t, 10*time.Second, "first sync", src.Synced)
	if got := names(src.Services()); !reflect.DeepEqual(got, []string{"k8s.web.front.http"}) {
		t.Errorf("services = %q", got)
	}
}

func TestStaleness(t *testing.T) {
	src, err := NewWithClient(quietLogger(), prometheus.NewRegistry(), kcfg(nil), fakeClient(fake.NewClientset()))
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

// A watch that ends at once without any event (what client-go returns after its retries when a
// proxy in front of a dead API server accepts and closes connections) is a failure, not a
// sign of life; events are signs of life; a watch stopped by its consumer is neither.
func TestRecordingWatchEmptyIsAFailure(t *testing.T) {
	run := func(act func(fw *watch.FakeWatcher, w *recordingWatch)) (alive, empty int) {
		fw := watch.NewFake()
		var mu sync.Mutex
		w := newRecordingWatch(fw, func() { mu.Lock(); alive++; mu.Unlock() }, func() { mu.Lock(); empty++; mu.Unlock() })
		act(fw, w)
		for range w.ResultChan() {
		}
		mu.Lock()
		defer mu.Unlock()
		return alive, empty
	}
	if a, e := run(func(fw *watch.FakeWatcher, _ *recordingWatch) { fw.Stop() }); a != 0 || e != 1 {
		t.Errorf("empty watch: alive %d, empty %d; want 0, 1", a, e)
	}
	if a, e := run(func(fw *watch.FakeWatcher, w *recordingWatch) {
		go func() { fw.Add(&corev1.Service{}); fw.Stop() }()
		<-w.ResultChan()
	}); a != 1 || e != 0 {
		t.Errorf("watch with an event: alive %d, empty %d; want 1, 0", a, e)
	}
	if a, e := run(func(_ *watch.FakeWatcher, w *recordingWatch) { w.Stop() }); a != 0 || e != 0 {
		t.Errorf("watch stopped by its consumer: alive %d, empty %d; want 0, 0", a, e)
	}
}
