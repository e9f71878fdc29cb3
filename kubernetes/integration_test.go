package kubernetes

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubeclient "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/lvs-director/lvs-director/config"
	"github.com/lvs-director/lvs-director/kubernetes/kubetest"
)

// cluster is an etcd and a kube-apiserver on loopback (package kubetest) and a client.
type cluster struct {
	*kubetest.Cluster
	t      *testing.T
	client kubeclient.Interface
}

// startCluster starts the cluster, stopped at cleanup. Without the binaries of
// scripts/kube-binaries.sh the test skips, or fails under LVS_REQUIRE_EXTERNAL=1.
func startCluster(t *testing.T) *cluster {
	t.Helper()
	bin, err := kubetest.BinDir()
	if err != nil {
		if os.Getenv("LVS_REQUIRE_EXTERNAL") == "1" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	kc, err := kubetest.Start(context.Background(), kubetest.Options{BinDir: bin, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Stop)
	c := &cluster{Cluster: kc, t: t}
	rc, err := clientcmd.BuildConfigFromFlags("", kc.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if c.client, err = kubeclient.NewForConfig(rc); err != nil {
		t.Fatal(err)
	}
	return c
}

// startAPI starts kube-apiserver again and waits until /readyz is ok.
func (c *cluster) startAPI() {
	c.t.Helper()
	if err := c.StartAPI(context.Background()); err != nil {
		c.t.Fatal(err)
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// toAPI turns one of our objects into k8s.io/api's type T, through JSON (as the API server
// would read it).
func toAPI[T any](t *testing.T, in any) *T {
	t.Helper()
	out := new(T)
	roundTrip(t, in, out)
	return out
}

func runSource(t *testing.T, cfg *config.Kubernetes) *Source {
	t.Helper()
	src, err := New(quietLogger(), prometheus.NewRegistry(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = src.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return src
}

func TestIntegrationRealAPIServer(t *testing.T) {
	start := time.Now()
	c := startCluster(t)
	t.Logf("etcd and kube-apiserver ready in %s", time.Since(start).Round(time.Millisecond))
	ctx := context.Background()
	kc := c.client
	if v, err := kc.Discovery().ServerVersion(); err != nil || v.GitVersion != kubetest.Version {
		t.Errorf("kube-apiserver version = %v, %v; want %s (scripts/kube-binaries.sh sets it)", v, err, kubetest.Version)
	}

	if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "web"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, ours := range []*Node{node("n1", "10.0.0.1", true), node("n2", "10.0.0.2", true), node("n3", "10.0.0.3", false)} {
		n := toAPI[corev1.Node](t, ours)
		created, err := kc.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		created.Status = n.Status
		if _, err := kc.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ours := lbSvc("web", "front", withVIP("198.51.100.10"))
	ours.Spec.Ports[0].NodePort = 0 // allocated by the API server
	svc := toAPI[corev1.Service](t, ours)
	svc.Spec.Selector = map[string]string{"app": "front"}
	svc, err := kc.CoreV1().Services("web").Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nodePort := svc.Spec.Ports[0].NodePort
	es := toAPI[discoveryv1.EndpointSlice](t, slice("web", "front", "front-a", 8080, ep{ip: "10.1.0.1"}, ep{ip: "10.1.0.2"}))
	if _, err = kc.DiscoveryV1().EndpointSlices("web").Create(ctx, es, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	pods := runSource(t, &config.Kubernetes{Kubeconfig: c.Kubeconfig, Targets: "pods", VIPAnnotation: "lvs-director.io/vip",
		Scheduler: "rr", Resync: config.Duration(time.Minute), UpdateStatus: true})
	// The second Source verifies the API server's certificate (kube-apiserver's self-signed
	// one and its CA, in one file) and reads its token from a file, both named relative to
	// its kubeconfig, in a context that is not the current one.
	if err := os.WriteFile(filepath.Join(c.Dir, "token"), []byte(c.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	verified := filepath.Join(c.Dir, "verified.kubeconfig")
	if err := os.WriteFile(verified, fmt.Appendf(nil, `clusters:
- name: local
  cluster: {server: "https://127.0.0.1:%d", certificate-authority: certs/apiserver.crt}
users:
- name: file
  user: {tokenFile: token}
contexts:
- {name: other, context: {cluster: nowhere}}
- {name: verified, context: {cluster: local, user: file}}
current-context: other
`, c.APIPort), 0o600); err != nil {
		t.Fatal(err)
	}
	nodes := runSource(t, &config.Kubernetes{Kubeconfig: verified, Context: "verified", Targets: "nodes", VIPAnnotation: "lvs-director.io/vip",
		Scheduler: "rr", Resync: config.Duration(time.Minute)})

	expect := func(src *Source, what string, want ...string) {
		t.Helper()
		waitFor(t, 45*time.Second, what, func() bool { return src.Synced() && reflect.DeepEqual(summary(src.Services()), want) })
	}
	const key = "k8s.web.front.http tcp/198.51.100.10:80"
	expect(pods, "pod real servers", key+" [10.1.0.1:8080/1 10.1.0.2:8080/1]")
	expect(nodes, "node real servers", fmt.Sprintf("%s [10.0.0.1:%d/1 10.0.0.2:%d/1]", key, nodePort, nodePort))

	// update_status writes the VIP to the Service's status.
	waitFor(t, 20*time.Second, "status.loadBalancer.ingress", func() bool {
		s, err := kc.CoreV1().Services("web").Get(ctx, "front", metav1.GetOptions{})
		return err == nil && len(s.Status.LoadBalancer.Ingress) == 1 && s.Status.LoadBalancer.Ingress[0].IP == "198.51.100.10"
	})
	// By a merge patch of the status subresource, under our field manager; the spec is intact.
	got, err := kc.CoreV1().Services("web").Get(ctx, "front", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	manager := false
	for _, m := range got.ManagedFields {
		manager = manager || m.Manager == "lvs-director" && m.Subresource == "status" && m.Operation == metav1.ManagedFieldsOperationUpdate
	}
	if !manager || !reflect.DeepEqual(got.Spec.Selector, map[string]string{"app": "front"}) || got.Spec.Ports[0].NodePort != nodePort {
		t.Errorf("after the status patch: managed fields %+v, spec %+v", got.ManagedFields, got.Spec)
	}

	updateSlice := func(eps ...ep) {
		t.Helper()
		cur, err := kc.DiscoveryV1().EndpointSlices("web").Get(ctx, "front-a", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cur.Endpoints = toAPI[discoveryv1.EndpointSlice](t, slice("web", "front", "front-a", 8080, eps...)).Endpoints
		if _, err := kc.DiscoveryV1().EndpointSlices("web").Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Scale up.
	updateSlice(ep{ip: "10.1.0.1"}, ep{ip: "10.1.0.2"}, ep{ip: "10.1.0.3"})
	expect(pods, "scale up", key+" [10.1.0.1:8080/1 10.1.0.2:8080/1 10.1.0.3:8080/1]")
	// One not ready leaves; one terminating but serving drains at weight 0.
	updateSlice(ep{ip: "10.1.0.1"}, ep{ip: "10.1.0.2", ready: bp(false), serving: bp(false)},
		ep{ip: "10.1.0.3", ready: bp(false), serving: bp(true), terminating: bp(true)})
	expect(pods, "not ready and terminating", key+" [10.1.0.1:8080/1 10.1.0.3:8080/0]")

	// The API server goes away: the last state stays, and turns stale.
	last := summary(pods.Services())
	downAt := time.Now()
	c.StopAPI()
	waitFor(t, 30*time.Second, "stale after the API server stopped", func() bool { _, s := pods.Stale(); return s })
	since, _ := pods.Stale()
	if since.Before(downAt) {
		t.Errorf("stale since %v, before the API server stopped at %v", since, downAt)
	}
	if got := summary(pods.Services()); !reflect.DeepEqual(got, last) || !pods.Synced() {
		t.Fatalf("services changed while the API server was down: %q", got)
	}

	// It comes back: resync, not stale, and new changes arrive.
	c.startAPI()
	updateSlice(ep{ip: "10.1.0.1"}, ep{ip: "10.1.0.4"})
	expect(pods, "resync after the API server came back", key+" [10.1.0.1:8080/1 10.1.0.4:8080/1]")
	waitFor(t, 40*time.Second, "not stale", func() bool { _, s := pods.Stale(); return !s })

	// Delete the Service: it leaves the set (an empty set, not "not synced").
	if err := kc.CoreV1().Services("web").Delete(ctx, "front", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	expect(pods, "service deleted")
	expect(nodes, "service deleted (nodes)")
	if pods.Services() == nil {
		t.Error("deleted: Services() is nil, want empty")
	}
	t.Logf("integration test body took %s", time.Since(start).Round(time.Millisecond))
}
