//go:build lab

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lvs-director/lvs-director/daemon"
)

// Director is an lvs-director process running in a namespace of the lab.
type Director struct {
	t       testing.TB
	NS      *NS
	Dir     string
	Config  string
	Socket  string
	Proc    *Proc
	started int // number of starts, to tell logs apart
}

// NeedDirector fails the test when the lvs-director binary is not in the VM.
func NeedDirector(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("lvs-director"); err != nil {
		t.Fatalf("lvs-director not on PATH (%v): build it into $LAB_BIN_DIR (make lab-bins)", err)
	}
}

// NewDirector prepares a director in ns with the given config (%SOCK% is replaced by the
// status socket path) without starting it.
func NewDirector(t testing.TB, ns *NS, config string) *Director {
	t.Helper()
	NeedDirector(t)
	dir, err := os.MkdirTemp("", "director-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	d := &Director{t: t, NS: ns, Dir: dir, Config: filepath.Join(dir, "director.yaml"), Socket: filepath.Join(dir, "api.sock")}
	d.WriteConfig(config)
	return d
}

// StartDirector prepares and starts a director and waits until its first sync is done.
func StartDirector(t testing.TB, ns *NS, config string) *Director {
	t.Helper()
	d := NewDirector(t, ns, config)
	d.Start()
	return d
}

// WriteConfig replaces the config file (atomically, as editors and config management do).
func (d *Director) WriteConfig(config string) {
	d.t.Helper()
	config = strings.ReplaceAll(config, "%SOCK%", d.Socket)
	tmp := d.Config + ".tmp"
	if err := os.WriteFile(tmp, []byte(config), 0o644); err != nil {
		d.t.Fatal(err)
	}
	if err := os.Rename(tmp, d.Config); err != nil {
		d.t.Fatal(err)
	}
}

// Start runs `lvs-director run` and waits for its status API to answer.
func (d *Director) Start() {
	d.t.Helper()
	d.started++
	d.Proc = d.NS.Start("lvs-director", "run", "--config", d.Config, "--log-level", "debug")
	Eventually(d.t, 20*time.Second, 50*time.Millisecond, "the director's status API", func() (bool, string) {
		if d.Proc.Exited() {
			d.t.Fatalf("lvs-director exited:\n%s", indent(d.Proc.Output()))
		}
		out, err := d.NS.Exec("lvs-director", "status", "--json", "--socket", d.Socket)
		return err == nil, out
	})
}

// Stop sends SIGTERM and waits for the process to end.
func (d *Director) Stop() {
	d.t.Helper()
	d.Proc.Signal(syscall.SIGTERM)
	if _, err := d.Proc.Wait(15 * time.Second); err != nil && !strings.Contains(err.Error(), "exit status") {
		d.t.Fatalf("stopping the director: %v\n%s", err, indent(d.Proc.Output()))
	}
}

// Reload sends SIGHUP.
func (d *Director) Reload() { d.Proc.Signal(syscall.SIGHUP) }

// Log is the director's output so far.
func (d *Director) Log() string { return d.Proc.Output() }

// Status asks the running director for its report.
func (d *Director) Status() daemon.Report {
	d.t.Helper()
	out := d.NS.MustRun("lvs-director", "status", "--json", "--socket", d.Socket)
	var r daemon.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		d.t.Fatalf("status JSON: %v\n%s", err, out)
	}
	return r
}

// Fatalf fails the test with the director's log attached.
func (d *Director) Fatalf(format string, args ...any) {
	d.t.Helper()
	d.t.Fatalf("%s\n--- director log ---\n%s", fmt.Sprintf(format, args...), indent(d.Log()))
}

// Background is a client sending requests until stopped.
type Background struct {
	t    testing.TB
	proc *Proc
}

// StartClient runs a labnode client in ns against url every interval until Stop.
func StartClient(t testing.TB, ns *NS, url string, interval time.Duration) *Background {
	t.Helper()
	return &Background{t: t, proc: ns.Start("labnode", "client", "--url", url, "--count", "0",
		"--interval", interval.String(), "--timeout", "2s")}
}

// Stop ends the client and returns its summary.
func (b *Background) Stop() ClientSummary {
	b.t.Helper()
	b.proc.Signal(syscall.SIGTERM)
	out, err := b.proc.Wait(10 * time.Second)
	if err != nil {
		b.t.Fatalf("client: %v\n%s", err, out)
	}
	var s ClientSummary
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &s); err != nil {
		b.t.Fatalf("client summary: %v\n%s", err, out)
	}
	return s
}
