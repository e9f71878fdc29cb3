package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
)

func run(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := Main(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestValidate(t *testing.T) {
	code, out, _ := run("validate", "--config", "../../examples/director.yaml")
	if code != 0 || out != "../../examples/director.yaml: valid (1 services)\n" {
		t.Fatalf("valid: %d %q", code, out)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("services:\n  - name: web\n    vip: 1.2.3\n    port: 80\n"), 0o644)
	code, _, errOut := run("validate", "--config", bad)
	want := "1 error(s):\n" + bad + ":3: services[0].vip: invalid IP address \"1.2.3\"\n"
	if code != 1 || errOut != want {
		t.Fatalf("invalid: %d %q, want %q", code, errOut, want)
	}
}

func TestUsage(t *testing.T) {
	if code, out, _ := run("--help"); code != 0 || !strings.Contains(out, "validate") || !strings.Contains(out, "drain") {
		t.Fatalf("help: %d %q", code, out)
	}
	if code, _, errOut := run("frobnicate"); code != 2 || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Fatalf("unknown: %d %q", code, errOut)
	}
	for _, c := range commands() {
		code, _, errOut := run(c.name, "--help")
		if code != 0 || !strings.Contains(errOut, "Usage: lvs-director "+c.name) {
			t.Errorf("%s --help: %d %q", c.name, code, errOut)
		}
	}
	if code, _, errOut := run("validate", "--config", "x", "extra"); code != 2 || !strings.Contains(errOut, "unexpected arguments: extra") {
		t.Fatalf("extra args: %d %q", code, errOut)
	}
	if code, _, errOut := run("drain", "web"); code != 2 || !strings.Contains(errOut, "want SERVICE REALSERVER") {
		t.Fatalf("drain args: %d %q", code, errOut)
	}
	if code, out, _ := run("version"); code != 0 || !strings.HasPrefix(out, "lvs-director ") {
		t.Fatalf("version: %d %q", code, out)
	}
}

// TestNoIPVS runs where the kernel has no IPVS (the development machines): the error must name
// the module and how to load it.
func TestNoIPVS(t *testing.T) {
	if _, err := netlink.GenlFamilyGet("IPVS"); err == nil {
		t.Skip("this kernel has IPVS")
	}
	code, _, errOut := run("plan", "--config", "../../examples/director.yaml")
	if code != 1 || !strings.Contains(errOut, "IPVS is not available in this kernel") || !strings.Contains(errOut, "modprobe ip_vs") {
		t.Fatalf("plan without IPVS: %d %q", code, errOut)
	}
}

func TestStatusWithoutDaemon(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	code, _, errOut := run("status", "--socket", sock)
	if code != 1 || !strings.Contains(errOut, "cannot reach the director at "+sock) {
		t.Fatalf("status: %d %q", code, errOut)
	}
}
