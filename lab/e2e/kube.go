//go:build lab

package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	kubeclient "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/lvs-director/lvs-director/kubernetes/kubetest"
)

// KubeHost is the host side of labexec's LAB_KUBE seen from the VM: an etcd and a
// kube-apiserver on the host's loopback, reached through the VM's only NIC (qemu user
// networking with restrict=on: it reaches nothing but the two forwarded ports), and a control
// endpoint that starts and stops them. See lab/README.md.
type KubeHost struct {
	t       testing.TB
	API     string // https://10.0.2.100:6443, reachable from the VM's root namespace
	Token   string // a cluster-admin bearer token
	control string
	http    *http.Client
}

// NeedKube returns the host side of LAB_KUBE. Without it (labexec run without LAB_KUBE) the
// test skips, or fails under LVS_REQUIRE_EXTERNAL=1; outside the VM it skips as New does.
func NeedKube(t testing.TB) *KubeHost {
	t.Helper()
	if !InLab() {
		t.Skip("lab test: run inside the lab VM (go test -tags lab -exec labexec), see lab/README.md")
	}
	api, token, ctl := os.Getenv("LAB_KUBE_API"), os.Getenv("LAB_KUBE_TOKEN"), os.Getenv("LAB_KUBE_CONTROL")
	if api == "" || token == "" || ctl == "" {
		msg := "no kube-apiserver for the VM: run labexec with LAB_KUBE=1 (kube-apiserver and etcd from scripts/kube-binaries.sh), as make test-lab does"
		if os.Getenv("LVS_REQUIRE_EXTERNAL") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return &KubeHost{t: t, API: api, Token: token, control: ctl, http: &http.Client{}}
}

// control posts to the host's control endpoint and returns its answer.
func (k *KubeHost) post(path string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, k.control+path, nil)
	if err != nil {
		return "", err
	}
	resp, err := k.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	msg := strings.TrimSpace(string(b))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("POST %s: %s: %s", path, resp.Status, msg)
	}
	return msg, nil
}

// Start starts etcd and kube-apiserver on the host (or only kube-apiserver after StopAPI)
// and returns when its /readyz is ok, with the host's report ("... ready on the host in 3.2s").
// It is safe to call from another goroutine (it does not fail the test).
func (k *KubeHost) Start() (string, error) { return k.post("/start", 3*time.Minute) }

// StopAPI kills kube-apiserver on the host; etcd, and so the cluster's state, stays.
func (k *KubeHost) StopAPI() string {
	k.t.Helper()
	out, err := k.post("/stop-api", 30*time.Second)
	if err != nil {
		k.t.Fatal(err)
	}
	return out
}

// RESTConfig is a client config for the API server from the VM's root namespace.
func (k *KubeHost) RESTConfig() *rest.Config {
	return &rest.Config{
		Host:            k.API,
		BearerToken:     k.Token,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true}, // self-signed for loopback
		Timeout:         20 * time.Second,
		UserAgent:       "lvs-director-lab",
	}
}

// Client is a clientset for the API server from the VM's root namespace.
func (k *KubeHost) Client() kubeclient.Interface {
	k.t.Helper()
	c, err := kubeclient.NewForConfig(k.RESTConfig())
	if err != nil {
		k.t.Fatal(err)
	}
	return c
}

// Kubeconfig is a kubeconfig for the API server at server (https://host:port) with the
// host's token.
func (k *KubeHost) Kubeconfig(server string) string { return kubetest.Kubeconfig(server, k.Token) }

// KubeProxy is a TCP forwarder in the VM's root namespace from a lab address (on a veth to
// the director's namespace) to the API server: the director's only way to the cluster. Block
// cuts the director off while the test still reaches the API server.
type KubeProxy struct {
	t      testing.TB
	ln     net.Listener
	target string

	mu      sync.Mutex
	blocked bool
	conns   map[net.Conn]bool
	wg      sync.WaitGroup
	events  []string // the last connections' story, logged if the test failed
	seq     int      // connections accepted
	failed  int      // connections that got nothing from the API server
}

// Counts returns how many connections the proxy accepted and how many of them got nothing
// from the API server (refused, or closed at once: the API server is down).
func (p *KubeProxy) Counts() (accepted, failed int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seq, p.failed
}

// event records what happened to connection n.
func (p *KubeProxy) event(n int, format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, fmt.Sprintf("%s #%d %s", time.Now().Format("15:04:05.000"), n, fmt.Sprintf(format, args...)))
	if len(p.events) > 200 {
		p.events = p.events[len(p.events)-200:]
	}
}

// StartKubeProxy listens on listen (host:port in the root namespace) and forwards to target;
// it stops at cleanup.
func StartKubeProxy(t testing.TB, listen, target string) *KubeProxy {
	t.Helper()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatalf("kube proxy: %v", err)
	}
	p := &KubeProxy{t: t, ln: ln, target: target, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		p.close()
		if t.Failed() {
			t.Logf("kube proxy %s -> %s, last connections:\n%s", listen, target, indent(p.Events()))
		}
	})
	return p
}

func (p *KubeProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		blocked := p.blocked
		if !blocked {
			p.conns[c] = true
		}
		p.seq++
		n := p.seq
		p.mu.Unlock()
		if blocked {
			p.event(n, "from %s refused (blocked)", c.RemoteAddr())
			c.Close()
			continue
		}
		p.event(n, "from %s", c.RemoteAddr())
		p.wg.Add(1)
		go p.forward(n, c)
	}
}

func (p *KubeProxy) forward(n int, c net.Conn) {
	defer p.wg.Done()
	defer func() {
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
		c.Close()
	}()
	u, err := net.DialTimeout("tcp", p.target, 10*time.Second)
	if err != nil {
		p.event(n, "dial %s: %v", p.target, err)
		p.mu.Lock()
		p.failed++
		p.mu.Unlock()
		return
	}
	p.mu.Lock()
	if p.blocked {
		p.mu.Unlock()
		u.Close()
		return
	}
	p.conns[u] = true
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.conns, u)
		p.mu.Unlock()
		u.Close()
	}()
	var fromAPI int64
	done := make(chan struct{}, 2)
	pipe := func(dir string, dst, src net.Conn, count *int64) {
		n2, err := io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		if count != nil {
			*count = n2
		}
		p.event(n, "%s: %d bytes, ended: %v", dir, n2, err)
		done <- struct{}{}
	}
	go pipe("to the API server", u, c, nil)
	go pipe("from the API server", c, u, &fromAPI)
	<-done
	<-done
	if fromAPI == 0 {
		p.mu.Lock()
		p.failed++
		p.mu.Unlock()
	}
}

// Events returns the story of the last connections.
func (p *KubeProxy) Events() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.events, "\n")
}

// Block closes every forwarded connection and refuses new ones (accepted and closed at once)
// until Unblock.
func (p *KubeProxy) Block() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blocked = true
	for c := range p.conns {
		c.Close()
	}
}

// Unblock forwards new connections again.
func (p *KubeProxy) Unblock() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blocked = false
}

func (p *KubeProxy) close() {
	p.Block()
	if err := p.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		p.t.Logf("kube proxy: %v", err)
	}
	p.wg.Wait()
}
