// Package kubetest starts a real etcd and kube-apiserver on loopback for tests: the
// integration tests of package kubernetes, and the lab (labexec runs one on the host for the
// VM's Kubernetes scenario). The binaries come from scripts/kube-binaries.sh (see BinDir).
//
// It does not import client-go: readiness is checked with plain HTTPS, so light programs
// (labexec) can use it.
package kubetest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Version is the Kubernetes version scripts/kube-binaries.sh builds.
const Version = "v1.37.2"

// DefaultToken is the cluster-admin bearer token when Options.Token is empty.
const DefaultToken = "lvs-director-test-token"

// BinDir finds kube-apiserver and etcd: $KUBE_BIN_DIR, else the cache of
// scripts/kube-binaries.sh ($KUBE_CACHE or ~/.cache/lvs-director-kube, then Version). The
// error says how to build them.
func BinDir() (string, error) {
	dir := os.Getenv("KUBE_BIN_DIR")
	if dir == "" {
		root := os.Getenv("KUBE_CACHE")
		if root == "" {
			home, _ := os.UserHomeDir()
			root = filepath.Join(home, ".cache", "lvs-director-kube")
		}
		dir = filepath.Join(root, Version)
	}
	return dir, CheckBinDir(dir)
}

// CheckBinDir tells whether dir holds kube-apiserver and etcd.
func CheckBinDir(dir string) error {
	for _, b := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return fmt.Errorf("%s not found in %s (build it with scripts/kube-binaries.sh, or set KUBE_BIN_DIR)", b, dir)
		}
	}
	return nil
}

// FreePort returns a TCP port that was free on 127.0.0.1 a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Proc is a child process in its own process group with its output in a log file. It is
// killed with SIGKILL if the thread that started it dies (PDEATHSIG).
type Proc struct {
	Name string
	Log  string
	cmd  *exec.Cmd
	done chan struct{}
}

// StartProc starts bin with args, logging to dir/name.log (appended).
func StartProc(dir, name, bin string, args ...string) (*Proc, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &Proc{Name: name, Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	return p, nil
}

// Stop kills the process group (SIGKILL) and waits for the process.
func (p *Proc) Stop() {
	if p == nil || p.Exited() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Exited tells whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Tail returns the last n bytes of the log.
func (p *Proc) Tail(n int) string {
	b, _ := os.ReadFile(p.Log)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// Options configure Start.
type Options struct {
	BinDir  string // kube-apiserver and etcd (see BinDir); required
	Dir     string // data, certificates and logs; required
	APIPort int    // the API server's port on 127.0.0.1; 0 picks a free one
	Token   string // a cluster-admin (system:masters) bearer token; default DefaultToken
}

// Cluster is an etcd and a kube-apiserver on 127.0.0.1.
type Cluster struct {
	Dir     string
	APIPort int
	Token   string
	// Kubeconfig is a kubeconfig file for https://127.0.0.1:APIPort with Token.
	Kubeconfig string

	bin     string
	apiArgs []string

	mu   sync.Mutex
	etcd *Proc
	api  *Proc
}

// Start starts etcd and kube-apiserver (API server flags as in the integration tests:
// token file, RBAC, --endpoint-reconciler-type=none) and waits until /readyz is ok.
// On error everything started is stopped.
func Start(ctx context.Context, o Options) (c *Cluster, err error) {
	if o.BinDir == "" || o.Dir == "" {
		return nil, errors.New("kubetest: BinDir and Dir are required")
	}
	if err := CheckBinDir(o.BinDir); err != nil {
		return nil, err
	}
	c = &Cluster{Dir: o.Dir, APIPort: o.APIPort, Token: o.Token, bin: o.BinDir}
	if c.Token == "" {
		c.Token = DefaultToken
	}
	defer func() {
		if err != nil {
			c.Stop()
			c = nil
		}
	}()
	clientPort, err := FreePort()
	if err != nil {
		return nil, err
	}
	peerPort, err := FreePort()
	if err != nil {
		return nil, err
	}
	if c.APIPort == 0 {
		if c.APIPort, err = FreePort(); err != nil {
			return nil, err
		}
	}
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", clientPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	c.etcd, err = StartProc(c.Dir, "etcd", filepath.Join(c.bin, "etcd"),
		"--name=default", "--data-dir="+filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=default="+peerURL, "--unsafe-no-fsync", "--log-level=error")
	if err != nil {
		return nil, err
	}

	// Service account signing key and a static token for a cluster admin.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	saKey := filepath.Join(c.Dir, "sa.key")
	if err := os.WriteFile(saKey, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	tokens := filepath.Join(c.Dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(c.Token+",admin,admin-uid,system:masters\n"), 0o600); err != nil {
		return nil, err
	}
	c.apiArgs = []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(c.APIPort),
		"--endpoint-reconciler-type=none",
		"--cert-dir=" + filepath.Join(c.Dir, "certs"),
		"--token-auth-file=" + tokens,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + saKey,
		"--service-account-signing-key-file=" + saKey,
		"--service-cluster-ip-range=10.96.0.0/24",
		"--enable-priority-and-fairness=false",
	}
	c.Kubeconfig = filepath.Join(c.Dir, "kubeconfig")
	kc := Kubeconfig(fmt.Sprintf("https://127.0.0.1:%d", c.APIPort), c.Token)
	if err := os.WriteFile(c.Kubeconfig, []byte(kc), 0o600); err != nil {
		return nil, err
	}
	if err := c.StartAPI(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Kubeconfig returns a kubeconfig for server (https://host:port) with a bearer token; it
// skips TLS verification (the API server's certificate is self-signed for loopback).
func Kubeconfig(server, token string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: %s
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    token: %s
contexts:
- name: test
  context: {cluster: test, user: admin}
current-context: test
`, server, token)
}

// StartAPI starts kube-apiserver (if it is not running) and waits up to 90 s (or ctx)
// until its /readyz answers ok.
func (c *Cluster) StartAPI(ctx context.Context) error {
	c.mu.Lock()
	if c.api == nil || c.api.Exited() {
		p, err := StartProc(c.Dir, "kube-apiserver", filepath.Join(c.bin, "kube-apiserver"), c.apiArgs...)
		if err != nil {
			c.mu.Unlock()
			return err
		}
		c.api = p
	}
	api, etcd := c.api, c.etcd
	c.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	var err error
	for {
		if err = c.Ready(ctx); err == nil {
			return nil
		}
		if api.Exited() {
			return fmt.Errorf("kube-apiserver exited:\n%s\netcd:\n%s", api.Tail(4000), etcd.Tail(2000))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kube-apiserver not ready: %v\n%s", err, api.Tail(4000))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// StopAPI kills kube-apiserver (etcd keeps running, so the state survives).
func (c *Cluster) StopAPI() {
	c.mu.Lock()
	api := c.api
	c.mu.Unlock()
	api.Stop()
}

// APIRunning tells whether kube-apiserver runs.
func (c *Cluster) APIRunning() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.api != nil && !c.api.Exited()
}

// Stop kills kube-apiserver and etcd.
func (c *Cluster) Stop() {
	c.mu.Lock()
	api, etcd := c.api, c.etcd
	c.mu.Unlock()
	api.Stop()
	etcd.Stop()
}

// Tail returns the end of the API server's and etcd's logs.
func (c *Cluster) Tail() string {
	c.mu.Lock()
	api, etcd := c.api, c.etcd
	c.mu.Unlock()
	var s string
	if api != nil {
		s += "kube-apiserver:\n" + api.Tail(4000) + "\n"
	}
	if etcd != nil {
		s += "etcd:\n" + etcd.Tail(2000) + "\n"
	}
	return s
}

var insecureClient = &http.Client{Transport: &http.Transport{
	TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
	DisableKeepAlives: true,
}}

// Ready asks the API server's /readyz once.
func (c *Cluster) Ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("https://127.0.0.1:%d/readyz", c.APIPort), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := insecureClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK || !bytes.Equal(bytes.TrimSpace(body), []byte("ok")) {
		return fmt.Errorf("/readyz: %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	return nil
}
