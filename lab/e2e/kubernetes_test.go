//go:build lab

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	kubeclient "k8s.io/client-go/kubernetes"

	"github.com/lvs-director/lvs-director/daemon"
)

// The director reaches the API server through a veth from its namespace to the VM's root
// namespace, where a KubeProxy forwards to the host (see kube.go).
const (
	kubeLinkRoot     = "10.100.250.1"
	kubeLinkDirector = "10.100.250.2"
	kubeProxyPort    = "6443"
	kubeNS           = "lab"
	kubeSvc          = "web"
	kubeSlice        = "web-a"
)

// staleWait is how long the scenario waits for the stale report.
const staleWait = 30 * time.Second

// kubeLab is the NAT topology (client, director, rs1..rs3 serving HTTP on :8080) with a
// director whose services come from the cluster on the host.
type kubeLab struct {
	*directorLab
	kh    *KubeHost
	kc    kubeclient.Interface
	proxy *KubeProxy
}

// kubeEP is one endpoint of the Service's EndpointSlice: real server i (0-based), ready or not.
type kubeEP struct {
	rs    int
	ready bool
}

// setEndpoints creates or replaces the Service's EndpointSlice (the lab has no
// kube-controller-manager: the test plays the EndpointSlice controller).
func (kl *kubeLab) setEndpoints(t *testing.T, eps ...kubeEP) {
	t.Helper()
	name, port, proto := "http", int32(8080), corev1.ProtocolTCP
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: kubeNS, Name: kubeSlice, Labels: map[string]string{discoveryv1.LabelServiceName: kubeSvc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &port, Protocol: &proto}},
	}
	for _, e := range eps {
		ready := e.ready
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{kl.rsAddr[e.rs]},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready, Serving: &ready},
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cur, err := kl.kc.DiscoveryV1().EndpointSlices(kubeNS).Get(ctx, kubeSlice, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = kl.kc.DiscoveryV1().EndpointSlices(kubeNS).Create(ctx, es, metav1.CreateOptions{})
	case err == nil:
		cur.Endpoints, cur.Ports = es.Endpoints, es.Ports
		_, err = kl.kc.DiscoveryV1().EndpointSlices(kubeNS).Update(ctx, cur, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatalf("EndpointSlice %s/%s: %v", kubeNS, kubeSlice, err)
	}
}

// kubeStatus is the "kubernetes" part of the director's status --json.
type kubeStatus struct {
	Synced   bool     `json:"synced"`
	Stale    bool     `json:"stale"`
	Services int      `json:"services"`
	Problems []string `json:"problems"`
}

func (kl *kubeLab) status(t *testing.T) (kubeStatus, daemon.Report) {
	t.Helper()
	r := kl.d.Status()
	var ks kubeStatus
	raw, ok := r.Extensions["kubernetes"]
	if !ok {
		kl.d.Fatalf("status --json has no kubernetes section: %+v", r.Extensions)
	}
	b, _ := json.Marshal(raw)
	if err := json.Unmarshal(b, &ks); err != nil {
		kl.d.Fatalf("status --json kubernetes section %s: %v", b, err)
	}
	return ks, r
}

// waitStatus waits until the director's kubernetes status satisfies cond and returns how long
// that took from since.
func (kl *kubeLab) waitStatus(t *testing.T, since time.Time, timeout time.Duration, what string, cond func(kubeStatus) bool) time.Duration {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ks, _ := kl.status(t)
		if cond(ks) {
			return time.Since(since)
		}
		if time.Now().After(deadline) {
			kl.d.Fatalf("timed out after %v waiting for the kubernetes status: %s; last: %+v", timeout, what, ks)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitWeights waits until the VIP's real servers (address:port -> weight) are want (nil: no
// virtual service) and returns how long that took from since.
func (kl *kubeLab) waitWeights(t *testing.T, since time.Time, timeout time.Duration, what string, want map[string]int) time.Duration {
	t.Helper()
	kl.waitIPVS(t, timeout, what, func(svcs []IPVSService) bool {
		got := weights(svcs, kl.vipPort())
		if want == nil {
			return findSvc(svcs, kl.vipPort()) == nil
		}
		s := findSvc(svcs, kl.vipPort())
		if s == nil || !reflect.DeepEqual(got, want) {
			return false
		}
		for _, d := range s.Dests {
			if d.Forward != "Masq" {
				return false
			}
		}
		return true
	})
	return time.Since(since)
}

func (kl *kubeLab) rsW(w map[int]int) map[string]int {
	out := map[string]int{}
	for i, wt := range w {
		out[kl.rsAddrPort(i)] = wt
	}
	return out
}

func ms(d time.Duration) string { return d.Round(10 * time.Millisecond).String() }

// TestKubernetesLoadBalancer: a LoadBalancer Service of a real kube-apiserver (on the host,
// see LAB_KUBE in lab/README.md) becomes a virtual service in the VM kernel's IPVS table
// (read with ipvsadm) that clients reach; scaling the endpoints adds a real server, a not
// ready endpoint leaves; with the API server stopped the table stays as it was and keeps
// serving; when it is back (and the director may reach it again) a change made meanwhile
// arrives; deleting the Service drains it (weight 0 while a connection lasts) and then
// removes it and its VIP. Every step's time is logged.
func TestKubernetesLoadBalancer(t *testing.T) {
	kh := NeedKube(t)
	NeedLabnode(t)
	NeedDirector(t)
	testStart := time.Now()

	// The cluster starts on the host while the VM builds the topology.
	type started struct {
		msg string
		err error
		d   time.Duration
	}
	startc := make(chan started, 1)
	go func() {
		t0 := time.Now()
		msg, err := kh.Start()
		startc <- started{msg, err, time.Since(t0)}
	}()
	dl := newDirectorLab(t, false, 3)
	topo := time.Since(testStart)
	st := <-startc
	if st.err != nil {
		t.Fatalf("starting the cluster on the host: %v", st.err)
	}
	t.Logf("cluster: %s (asked from the VM: %s; topology built meanwhile in %s)", st.msg, ms(st.d), ms(topo))
	kl := &kubeLab{directorLab: dl, kh: kh, kc: kh.Client()}
	ctx := context.Background()

	// The director's way to the API server.
	dl.lab.Run("ip", "link", "add", "kube0", "type", "veth", "peer", "name", "kube0", "netns", dl.director.Name)
	dl.lab.IPBatch("addr add "+kubeLinkRoot+"/30 dev kube0", "link set kube0 up")
	dl.director.IPBatch("addr add "+kubeLinkDirector+"/30 dev kube0", "link set kube0 up")
	apiHostPort := strings.TrimPrefix(kh.API, "https://")
	kl.proxy = StartKubeProxy(t, net.JoinHostPort(kubeLinkRoot, kubeProxyPort), apiHostPort)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(kh.Kubeconfig("https://"+net.JoinHostPort(kubeLinkRoot, kubeProxyPort))), 0o600); err != nil {
		t.Fatal(err)
	}

	t0 := time.Now()
	if _, err := kl.kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: kubeNS}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating namespace %s through %s: %v", kubeNS, kh.API, err)
	}
	t.Logf("first API call from the VM (create namespace): %s", ms(time.Since(t0)))

	cfg := fmt.Sprintf(directorHead, "60s") + fmt.Sprintf(`kubernetes:
  kubeconfig: %s
  targets: pods
  namespaces: [%s]
  resync: 30s
  scheduler: rr
`, kubeconfig, kubeNS)
	t0 = time.Now()
	kl.d = StartDirector(t, dl.director, cfg)
	dStart := time.Since(t0)
	dSynced := kl.waitStatus(t, t0, 60*time.Second, "synced with the cluster", func(ks kubeStatus) bool { return ks.Synced && !ks.Stale })
	t.Logf("director: status API up in %s, synced with the API server after %s", ms(dStart), ms(dSynced))
	if svcs := dl.director.IPVS(); len(svcs) != 0 {
		kl.d.Fatalf("IPVS before any Service: want empty, got\n%s", FormatServices(svcs))
	}

	// 1. A LoadBalancer Service with two ready endpoints.
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: kubeNS, Name: kubeSvc, Annotations: map[string]string{"lvs-director.io/vip": dl.vip}},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": kubeSvc},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}},
		},
	}
	t0 = time.Now()
	if _, err := kl.kc.CoreV1().Services(kubeNS).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	kl.setEndpoints(t, kubeEP{0, true}, kubeEP{1, true})
	apiCalls := time.Since(t0)
	d := kl.waitWeights(t, t0, 60*time.Second, "the Service's virtual service with rs1 and rs2", kl.rsW(map[int]int{0: 1, 1: 1}))
	svcs := dl.director.IPVS()
	if s := findSvc(svcs, dl.vipPort()); s == nil || s.Proto != "TCP" || s.Scheduler != "rr" {
		kl.d.Fatalf("want TCP %s rr, ipvsadm -Ln shows:\n%s", dl.vipPort(), FormatServices(svcs))
	}
	t.Logf("Service + EndpointSlice created (API calls %s) -> in IPVS: %s\n%s", ms(apiCalls), ms(d), indent(FormatServices(svcs)))
	if out := dl.director.IP("-4", "addr", "show", "dev", "lvs0"); !strings.Contains(out, " "+dl.vip+"/32") {
		kl.d.Fatalf("VIP %s not on lvs0:\n%s", dl.vip, out)
	}
	dl.wantSpread(t, 20, map[string]int{"rs1": 10, "rs2": 10})

	// 2. Scale: a third endpoint.
	t0 = time.Now()
	kl.setEndpoints(t, kubeEP{0, true}, kubeEP{1, true}, kubeEP{2, true})
	d = kl.waitWeights(t, t0, 60*time.Second, "rs3 added", kl.rsW(map[int]int{0: 1, 1: 1, 2: 1}))
	t.Logf("scale to 3 endpoints -> rs3 in IPVS: %s", ms(d))
	dl.wantSpread(t, 30, map[string]int{"rs1": 10, "rs2": 10, "rs3": 10})

	// 3. rs2 not ready: it leaves.
	t0 = time.Now()
	kl.setEndpoints(t, kubeEP{0, true}, kubeEP{1, false}, kubeEP{2, true})
	d = kl.waitWeights(t, t0, 60*time.Second, "rs2 (not ready) removed", kl.rsW(map[int]int{0: 1, 2: 1}))
	t.Logf("rs2 not ready -> gone from IPVS: %s", ms(d))
	dl.wantSpread(t, 20, map[string]int{"rs1": 10, "rs3": 10})

	// 4. The API server stops: the director keeps the table and goes on serving.
	before := tableShape(dl.director.IPVS())
	acc0, failed0 := kl.proxy.Counts()
	t0 = time.Now()
	t.Logf("host: %s", kh.StopAPI())
	// The director notices: its connections get nothing from the API server any more.
	Eventually(t, 60*time.Second, 200*time.Millisecond, "the director's API connections to fail", func() (bool, string) {
		_, failed := kl.proxy.Counts()
		return failed-failed0 >= 3, fmt.Sprintf("%d failed connections", failed-failed0)
	})
	t.Logf("API server stopped -> the director's connections fail: %s", ms(time.Since(t0)))
	// It should also say so (status, lvs_director_kubernetes_stale).
	var staleAfter time.Duration
	for deadline := time.Now().Add(staleWait); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		if now := tableShape(dl.director.IPVS()); now != before {
			kl.d.Fatalf("IPVS changed while the API server was down:\nbefore:\n%s\nnow:\n%s", before, now)
		}
		if ks, _ := kl.status(t); ks.Stale {
			staleAfter = time.Since(t0)
			break
		}
	}
	ks, _ := kl.status(t)
	// Behind anything that accepts the TCP connection and then closes it (here qemu's user
	// networking; in real life HAProxy or a cloud load balancer in front of the API servers),
	// client-go ends in empty watches, which the director must count as failures.
	if staleAfter == 0 {
		kl.d.Fatalf("the director does not report stale %s after the API server stopped (status %+v)", ms(time.Since(t0)), ks)
	}
	t.Logf("API server stopped -> director reports stale: %s", ms(staleAfter))
	if !ks.Synced || ks.Services != 1 {
		kl.d.Fatalf("while the API server is down: want synced with 1 service kept, got %+v", ks)
	}
	outage := 6 * time.Second // three sync periods
	for end := time.Now().Add(outage); time.Now().Before(end); time.Sleep(time.Second) {
		if now := tableShape(dl.director.IPVS()); now != before {
			kl.d.Fatalf("IPVS changed while the API server was down:\nbefore:\n%s\nnow:\n%s", before, now)
		}
	}
	dl.wantSpread(t, 20, map[string]int{"rs1": 10, "rs3": 10})
	acc, failed := kl.proxy.Counts()
	t.Logf("API server down for %s: IPVS unchanged, 20 requests served; the director tried %d connections meanwhile (%d got nothing)",
		ms(time.Since(t0)), acc-acc0, failed-failed0)

	// 5. It comes back while the director is cut off (proxy blocked); rs2 turns ready
	// meanwhile; once the director reaches the API server again it resyncs.
	kl.proxy.Block()
	t0 = time.Now()
	msg, err := kh.Start()
	if err != nil {
		t.Fatalf("restarting kube-apiserver: %v", err)
	}
	t.Logf("host: %s (asked from the VM: %s)", msg, ms(time.Since(t0)))
	kl.setEndpoints(t, kubeEP{0, true}, kubeEP{1, true}, kubeEP{2, true})
	time.Sleep(3 * time.Second)
	if now := tableShape(dl.director.IPVS()); now != before {
		kl.d.Fatalf("IPVS changed while the director could not reach the API server:\nbefore:\n%s\nnow:\n%s", before, now)
	}
	t0 = time.Now()
	kl.proxy.Unblock()
	d = kl.waitWeights(t, t0, 120*time.Second, "rs2 back after the resync", kl.rsW(map[int]int{0: 1, 1: 1, 2: 1}))
	dFresh := kl.waitStatus(t, t0, 120*time.Second, "not stale after the resync", func(ks kubeStatus) bool { return ks.Synced && !ks.Stale })
	t.Logf("director reaches the API server again -> change made meanwhile in IPVS: %s, not stale: %s", ms(d), ms(dFresh))
	dl.wantSpread(t, 30, map[string]int{"rs1": 10, "rs2": 10, "rs3": 10})

	// 6. Delete the Service while a connection lasts: weight 0, then gone with its VIP.
	hold := dl.client.Start("labnode", "client", "--url", dl.url("/hold"), "--timeout", "120s")
	holder := dl.waitHolder(t, 30*time.Second, 3, 0)
	t0 = time.Now()
	if err := kl.kc.CoreV1().Services(kubeNS).Delete(ctx, kubeSvc, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := kl.kc.DiscoveryV1().EndpointSlices(kubeNS).Delete(ctx, kubeSlice, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err) // the garbage collector's job in a real cluster
	}
	var drained []IPVSService
	dl.waitIPVS(t, 60*time.Second, "every real server at weight 0, "+holder+" still there", func(svcs []IPVSService) bool {
		w := weights(svcs, dl.vipPort())
		if _, ok := w[holder]; !ok {
			return false
		}
		for _, wt := range w {
			if wt != 0 {
				return false
			}
		}
		drained = svcs
		return true
	})
	d = time.Since(t0)
	time.Sleep(3 * time.Second) // more than a sync period: still there while the connection lasts
	if w, ok := weights(dl.director.IPVS(), dl.vipPort())[holder]; !ok || w != 0 {
		kl.d.Fatalf("%s removed while its connection was open (present=%v weight=%d)", holder, ok, w)
	}
	t.Logf("Service deleted -> drained (weight 0) in IPVS: %s; %s kept while its connection lasts:\n%s", ms(d), holder, indent(FormatServices(drained)))
	t0 = time.Now()
	hold.Stop()
	d = kl.waitWeights(t, t0, 60*time.Second, "the virtual service removed after the last connection ended", nil)
	Eventually(t, 30*time.Second, 200*time.Millisecond, "the VIP removed from lvs0", func() (bool, string) {
		out := dl.director.IP("-4", "addr", "show", "dev", "lvs0")
		return !strings.Contains(out, " "+dl.vip+"/"), out
	})
	dVIP := time.Since(t0)
	ks = kubeStatus{}
	kl.waitStatus(t, t0, 30*time.Second, "no services from Kubernetes", func(s kubeStatus) bool { ks = s; return s.Synced && s.Services == 0 })
	t.Logf("connection ended -> virtual service removed: %s, VIP removed: %s (status: %+v)", ms(d), ms(dVIP), ks)
	if svcs := dl.director.IPVS(); len(svcs) != 0 {
		kl.d.Fatalf("IPVS after the Service was deleted: want empty, got\n%s", FormatServices(svcs))
	}
	t.Logf("scenario took %s", ms(time.Since(testStart)))
}
