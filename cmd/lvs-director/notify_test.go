package main

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fakeNotifySocket is a unix datagram socket standing in for systemd's notify socket.
func fakeNotifySocket(t *testing.T) (*net.UnixConn, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatalf("listen %s: %v", path, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, path
}

// receive reads datagrams until none arrives within wait.
func receive(t *testing.T, conn *net.UnixConn, wait time.Duration) []string {
	t.Helper()
	var got []string
	buf := make([]byte, 4096)
	for {
		if err := conn.SetReadDeadline(time.Now().Add(wait)); err != nil {
			t.Fatal(err)
		}
		n, err := conn.Read(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return got
			}
			t.Fatalf("read: %v", err)
		}
		got = append(got, string(buf[:n]))
	}
}

func TestSystemdNotifierSendsStatesInOrder(t *testing.T) {
	conn, path := fakeNotifySocket(t)
	t.Setenv("NOTIFY_SOCKET", path)
	var logs bytes.Buffer
	notify := systemdNotifier(slog.New(slog.NewTextHandler(&logs, nil)))

	want := []string{"READY=1", "WATCHDOG=1", "RELOADING=1", "READY=1", "WATCHDOG=1", "STOPPING=1"}
	for _, s := range want {
		notify(s)
	}
	// Unix datagrams are queued when sent, so all are already there.
	got := receive(t, conn, 100*time.Millisecond)
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("received %q, want %q", got, want)
	}
	if logs.Len() != 0 {
		t.Errorf("unexpected log output: %s", logs.String())
	}
}

func TestSystemdNotifierNoopWithoutNotifySocket(t *testing.T) {
	conn, path := fakeNotifySocket(t)
	t.Setenv("NOTIFY_SOCKET", "")
	var logs bytes.Buffer
	notify := systemdNotifier(slog.New(slog.NewTextHandler(&logs, nil)))
	// The decision is taken when the notifier is made: a socket appearing later is not used.
	t.Setenv("NOTIFY_SOCKET", path)
	notify("READY=1")
	if got := receive(t, conn, 100*time.Millisecond); len(got) != 0 {
		t.Errorf("no-op notifier sent %q", got)
	}
	if logs.Len() != 0 {
		t.Errorf("unexpected log output: %s", logs.String())
	}
}

func TestSystemdNotifierLogsFailedSend(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "gone.sock")
	t.Setenv("NOTIFY_SOCKET", missing)
	var logs bytes.Buffer
	notify := systemdNotifier(slog.New(slog.NewTextHandler(&logs, nil)))
	notify("READY=1")
	out := logs.String()
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, `msg="cannot notify the service manager"`) ||
		!strings.Contains(out, `state="READY=1"`) || !strings.Contains(out, "gone.sock") {
		t.Errorf("log = %q, want a warning naming the state and the socket", out)
	}
}

func TestWatchdogInterval(t *testing.T) {
	self := strconv.Itoa(os.Getpid())
	for _, tc := range []struct {
		name, usec, pid string
		want            time.Duration
	}{
		{"no watchdog", "", "", 0},
		{"30s for this pid", "30000000", self, 15 * time.Second},
		{"30s without WATCHDOG_PID", "30000000", "", 15 * time.Second},
		{"another pid's watchdog", "30000000", strconv.Itoa(os.Getpid() + 1), 0},
		{"malformed usec", "thirty", self, watchdogFallbackPing},
		{"negative usec", "-5", self, watchdogFallbackPing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("WATCHDOG_USEC", tc.usec)
			t.Setenv("WATCHDOG_PID", tc.pid)
			if got := watchdogInterval(); got != tc.want {
				t.Errorf("watchdogInterval() with WATCHDOG_USEC=%q WATCHDOG_PID=%q = %v, want %v", tc.usec, tc.pid, got, tc.want)
			}
		})
	}
}
