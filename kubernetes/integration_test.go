package kubernetes

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubeclient "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/lvs-director/lvs-director/config"
)

// kubeVersion is the version scripts/kube-binaries.sh builds.
const kubeVersion = "v1.37.2"

// kubeBinDir finds kube-apiserver and etcd: $KUBE_BIN_DIR, else the cache of
// scripts/kube-binaries.sh. Without them the test skips, or fails under LVS_REQUIRE_EXTERNAL=1.
func kubeBinDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("KUBE_BIN_DIR")
	if dir == "" {
		root := os.Getenv("KUBE_CACHE")
		if root == "" {
			home, _ := os.UserHomeDir()
			root = filepath.Join(home, ".cache", "lvs-director-kube")
		}
		dir = filepath.Join(root, kubeVersion)
	}
	for _, b := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			msg := fmt.Sprintf("%s not found in %s (build it with scripts/kube-binaries.sh, or set KUBE_BIN_DIR)", b, dir)
			if os.Getenv("LVS_REQUIRE_EXTERNAL") == "1" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	return dir
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// proc is a child process in its own process group, killed at cleanup.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func startProc(t *testing.T, dir, name, bin string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("starting %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	t.Cleanup(p.stop)
	return p
}

func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

func (p *proc) tail(n int) string {
	b, _ := os.ReadFile(p.log)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// cluster is an etcd and a kube-apiserver on loopback.
type cluster struct {
	t          *testing.T
	bin, dir   string
	apiPort    int
	apiArgs    []string
	api        *proc
	etcd       *proc
	kubeconfig string
	client     kubeclient.Interface
}

func startCluster(t *testing.T) *cluster {
	bin := kubeBinDir(t)
	dir := t.TempDir()
	c := &cluster{t: t, bin: bin, dir: dir}

	clientPort, peerPort := freePort(t), freePort(t)
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", clientPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	c.etcd = startProc(t, dir, "etcd", filepath.Join(bin, "etcd"),
		"--name=default", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=default="+peerURL, "--unsafe-no-fsync", "--log-level=error")

	// Service account signing key and a static token for a cluster admin.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	saKey := filepath.Join(dir, "sa.key")
	if err := os.WriteFile(saKey, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	token := "lvs-director-test-token"
	tokens := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(token+",admin,admin-uid,system:masters\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	c.apiPort = freePort(t)
	c.apiArgs = []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(c.apiPort),
		"--endpoint-reconciler-type=none",
		"--cert-dir=" + filepath.Join(dir, "certs"),
		"--token-auth-file=" + tokens,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + saKey,
		"--service-account-signing-key-file=" + saKey,
		"--service-cluster-ip-range=10.96.0.0/24",
		"--enable-priority-and-fairness=false",
	}

	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: https://127.0.0.1:%d
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    token: %s
contexts:
- name: test
  context: {cluster: test, user: admin}
current-context: test
`, c.apiPort, token)
	c.kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(c.kubeconfig, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", c.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if c.client, err = kubeclient.NewForConfig(rc); err != nil {
		t.Fatal(err)
	}
	c.startAPI()
	return c
}

// startAPI starts kube-apiserver and waits until /readyz is ok.
func (c *cluster) startAPI() {
	t := c.t
	t.Helper()
	c.api = startProc(t, c.dir, "kube-apiserver", filepath.Join(c.bin, "kube-apiserver"), c.apiArgs...)
	deadline := time.Now().Add(90 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		body, err := c.client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		cancel()
		if err == nil && bytes.Equal(bytes.TrimSpace(body), []byte("ok")) {
			return
		}
		select {
		case <-c.api.done:
			t.Fatalf("kube-apiserver exited:\n%s\netcd:\n%s", c.api.tail(4000), c.etcd.tail(2000))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("kube-apiserver not ready: %v\n%s", err, c.api.tail(4000))
		}
		time.Sleep(200 * time.Millisecond)
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
	if v, err := kc.Discovery().ServerVersion(); err != nil || v.GitVersion != kubeVersion {
		t.Errorf("kube-apiserver version = %v, %v; want %s (scripts/kube-binaries.sh sets it)", v, err, kubeVersion)
	}

	if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "web"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*corev1.Node{node("n1", "10.0.0.1", true), node("n2", "10.0.0.2", true), node("n3", "10.0.0.3", false)} {
		created, err := kc.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		created.Status = n.Status
		if _, err := kc.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	svc := lbSvc("web", "front", withVIP("198.51.100.10"))
	svc.Spec.Ports[0].NodePort = 0 // allocated by the API server
	svc.Spec.Selector = map[string]string{"app": "front"}
	svc, err := kc.CoreV1().Services("web").Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nodePort := svc.Spec.Ports[0].NodePort
	es := slice("web", "front", "front-a", 8080, ep{ip: "10.1.0.1"}, ep{ip: "10.1.0.2"})
	if es, err = kc.DiscoveryV1().EndpointSlices("web").Create(ctx, es, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	pods := runSource(t, &config.Kubernetes{Kubeconfig: c.kubeconfig, Targets: "pods", VIPAnnotation: "lvs-director.io/vip",
		Scheduler: "rr", Resync: config.Duration(time.Minute), UpdateStatus: true})
	nodes := runSource(t, &config.Kubernetes{Kubeconfig: c.kubeconfig, Targets: "nodes", VIPAnnotation: "lvs-director.io/vip",
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

	updateSlice := func(eps ...ep) {
		t.Helper()
		cur, err := kc.DiscoveryV1().EndpointSlices("web").Get(ctx, "front-a", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cur.Endpoints = slice("web", "front", "front-a", 8080, eps...).Endpoints
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
	c.api.stop()
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
