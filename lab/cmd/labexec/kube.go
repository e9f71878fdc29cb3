package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/lvs-director/lvs-director/kubernetes/kubetest"
)

// The VM's view of the host forward (LAB_KUBE): a user-mode NIC (qemu's slirp with
// restrict=on, so the guest reaches nothing but the forwarded ports) whose guestfwd rules
// run "labexec --relay" per connection, which connects to the host's loopback.
const (
	guestNet    = "10.0.2.0/24"
	guestAddr   = "10.0.2.15/24"
	guestFwdIP  = "10.0.2.100"
	guestAPI    = guestFwdIP + ":6443" // -> kube-apiserver on 127.0.0.1
	guestCtl    = guestFwdIP + ":80"   // -> the control endpoint below
	guestMAC    = "52:54:00:6b:75:62"
	guestNICDev = "hostfwd0"
)

// kubeHost is the host side of the lab's Kubernetes scenario: an etcd and a kube-apiserver
// on 127.0.0.1 (package kubetest), started on demand by the test in the VM through a small
// HTTP control endpoint, so lab runs that do not need them do not pay for them:
//
//	POST /start      start etcd and kube-apiserver, or only kube-apiserver after /stop-api;
//	                 answers when /readyz is ok
//	POST /stop-api   kill kube-apiserver (etcd and so the cluster's state stay)
//	GET  /status     "running" or "stopped"
//
// Everything is stopped when labexec ends.
type kubeHost struct {
	binDir, dir string
	apiPort     int
	token       string
	ctl         net.Listener
	srv         *http.Server

	mu      sync.Mutex
	cluster *kubetest.Cluster
}

// newKubeHost prepares the host side; binDir holds kube-apiserver and etcd ("1" or "auto":
// kubetest.BinDir()).
func newKubeHost(binDir, tmp string) (*kubeHost, error) {
	var err error
	if binDir == "1" || binDir == "auto" {
		binDir, err = kubetest.BinDir()
	} else {
		err = kubetest.CheckBinDir(binDir)
	}
	if err != nil {
		return nil, fmt.Errorf("LAB_KUBE: %v", err)
	}
	k := &kubeHost{binDir: binDir, dir: filepath.Join(tmp, "kube")}
	if err := os.MkdirAll(k.dir, 0o700); err != nil {
		return nil, err
	}
	if k.apiPort, err = kubetest.FreePort(); err != nil {
		return nil, err
	}
	var tok [16]byte
	rand.Read(tok[:])
	k.token = hex.EncodeToString(tok[:])
	if k.ctl, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /start", k.handleStart)
	mux.HandleFunc("POST /stop-api", k.handleStopAPI)
	mux.HandleFunc("GET /status", k.handleStatus)
	k.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = k.srv.Serve(k.ctl) }()
	return k, nil
}

func (k *kubeHost) handleStart(w http.ResponseWriter, r *http.Request) {
	k.mu.Lock()
	defer k.mu.Unlock()
	start := time.Now()
	var err error
	what := "kube-apiserver"
	if k.cluster == nil {
		what = "etcd and kube-apiserver"
		k.cluster, err = kubetest.Start(r.Context(), kubetest.Options{BinDir: k.binDir, Dir: k.dir, APIPort: k.apiPort, Token: k.token})
	} else {
		err = k.cluster.StartAPI(r.Context())
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "labexec: LAB_KUBE: starting %s: %v\n", what, err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	fmt.Fprintf(w, "%s ready on the host in %v\n", what, time.Since(start).Round(time.Millisecond))
}

func (k *kubeHost) handleStopAPI(w http.ResponseWriter, r *http.Request) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cluster == nil {
		http.Error(w, "not started", http.StatusConflict)
		return
	}
	start := time.Now()
	k.cluster.StopAPI()
	fmt.Fprintf(w, "kube-apiserver stopped in %v\n", time.Since(start).Round(time.Millisecond))
}

func (k *kubeHost) handleStatus(w http.ResponseWriter, r *http.Request) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cluster != nil && k.cluster.APIRunning() {
		fmt.Fprintln(w, "running")
		return
	}
	fmt.Fprintln(w, "stopped")
}

// qemuArgs is the NIC with the two forwards; self is labexec's own path (the relay).
func (k *kubeHost) qemuArgs(self string) []string {
	relay := func(guest string, port int) string {
		host, gport, _ := strings.Cut(guest, ":")
		return fmt.Sprintf("guestfwd=tcp:%s:%s-cmd:%s --relay 127.0.0.1:%d", host, gport, shq(self), port)
	}
	netdev := strings.Join([]string{"user", "id=hostfwd", "restrict=on", "ipv6=off", "net=" + guestNet,
		relay(guestAPI, k.apiPort), relay(guestCtl, k.ctl.Addr().(*net.TCPAddr).Port)}, ",")
	return []string{"-netdev", netdev, "-device", "virtio-net-pci,netdev=hostfwd,mac=" + guestMAC}
}

// vmEnv are the variables the test in the VM gets.
func (k *kubeHost) vmEnv() map[string]string {
	return map[string]string{
		"LAB_KUBE_API":     "https://" + guestAPI,
		"LAB_KUBE_TOKEN":   k.token,
		"LAB_KUBE_CONTROL": "http://" + guestCtl,
	}
}

// vmSetup is the run script's part that configures the NIC (found by its MAC address).
func (k *kubeHost) vmSetup() string {
	return fmt.Sprintf(`n=
for d in /sys/class/net/*; do [ "$(cat "$d/address" 2>/dev/null)" = %[1]s ] && n=${d##*/}; done
if [ -n "$n" ] && /usr/sbin/ip link set "$n" name %[2]s && /usr/sbin/ip addr add %[3]s dev %[2]s && /usr/sbin/ip link set %[2]s up; then :
else echo "labexec: LAB_KUBE: cannot configure the host forward NIC (module virtio_net loaded? see lab/setup.sh)"; fi
`, guestMAC, guestNICDev, guestAddr)
}

// close stops the control endpoint, kube-apiserver and etcd.
func (k *kubeHost) close() {
	_ = k.srv.Close()
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cluster != nil {
		k.cluster.Stop()
	}
}

// relay is "labexec --relay ADDR": qemu's slirp runs it for each guest connection to a
// guestfwd address with the connection on stdin, stdout and stderr (so it never prints).
// It copies both ways between that and a TCP connection to ADDR, with half-closes, and ends
// when both directions are done (or either fails). If ADDR refuses, the guest's connection is
// closed at once.
func relay(addr string) int { return relayFile(os.Stdin, addr) }

// relayFile is relay with the guest's connection in f.
func relayFile(f *os.File, addr string) int {
	guest, err := net.FileConn(f)
	if err != nil {
		return 1
	}
	defer guest.Close()
	host, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 1
	}
	defer host.Close()
	type halfCloser interface{ CloseWrite() error }
	errc := make(chan error, 2)
	pipe := func(dst, src net.Conn) {
		_, err := io.Copy(dst, src)
		if hc, ok := dst.(halfCloser); ok && err == nil {
			err = hc.CloseWrite()
		}
		errc <- err
	}
	go pipe(host, guest)
	go pipe(guest, host)
	for i := 0; i < 2; i++ {
		if err := <-errc; err != nil && !errors.Is(err, net.ErrClosed) {
			return 0
		}
	}
	return 0
}

// startKubeHost is run's LAB_KUBE part; nil, nil without LAB_KUBE.
func startKubeHost(tmp string) (*kubeHost, error) {
	v := os.Getenv("LAB_KUBE")
	if v == "" || v == "0" {
		return nil, nil
	}
	return newKubeHost(v, tmp)
}
