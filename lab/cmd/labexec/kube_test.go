package main

import (
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestKubeQemuArgs(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	k := &kubeHost{apiPort: 34567, ctl: ln}
	args := strings.Join(k.qemuArgs("/x/labexec"), " ")
	ctlPort := ln.Addr().(*net.TCPAddr).Port
	for _, want := range []string{
		"restrict=on", "ipv6=off", "net=10.0.2.0/24",
		"guestfwd=tcp:10.0.2.100:6443-cmd:'/x/labexec' --relay 127.0.0.1:34567",
		"guestfwd=tcp:10.0.2.100:80-cmd:'/x/labexec' --relay 127.0.0.1:" + strconv.Itoa(ctlPort),
		"virtio-net-pci,netdev=hostfwd,mac=" + guestMAC,
	} {
		if !strings.Contains(args, want) {
			t.Errorf("qemu args %q lack %q", args, want)
		}
	}
}

// TestRelay: bytes go both ways between the guest's socket (as qemu hands it over) and a TCP
// server, and the relay ends when both sides are done.
func TestRelay(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // echo server, upper case
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		c.Write([]byte(strings.ToUpper(string(b))))
	}()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	guestSide := os.NewFile(uintptr(fds[0]), "guest")
	qemuSide, err := net.FileConn(os.NewFile(uintptr(fds[1]), "qemu"))
	if err != nil {
		t.Fatal(err)
	}
	defer qemuSide.Close()
	done := make(chan int, 1)
	go func() { done <- relayFile(guestSide, ln.Addr().String()); guestSide.Close() }()
	qemuSide.Write([]byte("hello"))
	qemuSide.(*net.UnixConn).CloseWrite()
	qemuSide.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(qemuSide)
	if err != nil || string(got) != "HELLO" {
		t.Fatalf("through the relay: got %q, %v; want HELLO", got, err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("relay did not end")
	}
}

// TestRelayRefused: nothing listens; the guest's connection is closed at once.
func TestRelayRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	guestSide := os.NewFile(uintptr(fds[0]), "guest")
	qemuSide, err := net.FileConn(os.NewFile(uintptr(fds[1]), "qemu"))
	if err != nil {
		t.Fatal(err)
	}
	defer qemuSide.Close()
	if rc := relayFile(guestSide, addr); rc == 0 {
		t.Errorf("relay to a closed port: exit 0, want non-zero")
	}
	guestSide.Close()
	qemuSide.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := qemuSide.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("guest side after a refused relay: read %d, %v; want EOF", n, err)
	}
}
