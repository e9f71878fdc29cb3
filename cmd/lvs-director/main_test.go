package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"

	"github.com/lvs-director/lvs-director/daemon"
	"github.com/lvs-director/lvs-director/director"
)

func run(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := Main(context.Background(), args, &out, &errOut)
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
	code, out, _ := run("--help")
	if code != 0 || !strings.Contains(out, "validate") || !strings.Contains(out, "drain") || !strings.Contains(out, "completion") {
		t.Fatalf("help: %d %q", code, out)
	}
	// The commands in the order an operator needs them, not sorted.
	if i, j := strings.Index(out, "\n  run "), strings.Index(out, "\n  validate "); i < 0 || j < i {
		t.Errorf("help lists the commands out of order:\n%s", out)
	}
	if strings.Contains(out, "gendocs") {
		t.Errorf("the packaging command gendocs is not for operators:\n%s", out)
	}
	if code, out, errOut := run(); code != 2 || out != "" || !strings.Contains(errOut, "Available Commands:") {
		t.Fatalf("no arguments: %d %q %q", code, out, errOut)
	}
	if code, _, errOut := run("frobnicate"); code != 2 || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Fatalf("unknown: %d %q", code, errOut)
	}
	for _, c := range newRootCmd(io.Discard, io.Discard).Commands() {
		if c.Hidden {
			continue
		}
		code, out, _ := run(c.Name(), "--help")
		if code != 0 || !strings.Contains(out, "Usage:\n  lvs-director "+c.Name()) {
			t.Errorf("%s --help: %d %q", c.Name(), code, out)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"validate", "--config", "x", "extra"}, "unexpected arguments: extra"},
		{[]string{"version", "now"}, "unexpected arguments: now"},
		{[]string{"drain", "web"}, "want SERVICE REALSERVER"},
		{[]string{"undrain", "web", "a", "b"}, "want SERVICE REALSERVER (address:port), got 3 argument(s)"},
		{[]string{"drain", "web", "10.0.0.1"}, `invalid real server "10.0.0.1": want address:port`},
		{[]string{"validate", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"validate", "--config"}, "flag needs an argument: --config"},
		{[]string{"run", "--log-level", "loud"}, `invalid argument "loud" for "--log-level" flag: want one of debug, info, warn, error`},
		{[]string{"run", "--log-format", "xml"}, `invalid argument "xml" for "--log-format" flag: want one of text, json`},
		{[]string{"status", "--json=maybe"}, `invalid argument "maybe" for "--json" flag`},
	} {
		code, out, errOut := run(tc.args...)
		if code != 2 || out != "" || !strings.Contains(errOut, "lvs-director: "+tc.want) || !strings.Contains(errOut, "--help' for usage.") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 2 and %q", tc.args, code, out, errOut, tc.want)
		}
	}
	if code, out, _ := run("version"); code != 0 || !strings.HasPrefix(out, "lvs-director ") {
		t.Fatalf("version: %d %q", code, out)
	}
	if code, out, _ := run("--version"); code != 0 || !strings.HasPrefix(out, "lvs-director ") {
		t.Fatalf("--version: %d %q", code, out)
	}
}

// TestLogFlags checks the values --log-level and --log-format accept (any case) and the logger
// they make; run itself needs IPVS.
func TestLogFlags(t *testing.T) {
	c := &choice{value: "info", allowed: []string{"debug", "info", "warn", "error"}}
	if err := c.Set("DEBUG"); err != nil || c.String() != "debug" {
		t.Fatalf("Set(DEBUG) = %v, value %q", err, c)
	}
	var b bytes.Buffer
	log, err := newLogger(&b, "warn", "json")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hidden")
	log.Warn("shown", "k", 1)
	if s := b.String(); strings.Contains(s, "hidden") || !strings.Contains(s, `"msg":"shown","k":1`) {
		t.Errorf("json logger at warn wrote %q", s)
	}
}

// TestCompletion asks cobra's completion engine (what the generated shell scripts call) for
// commands, flags and flag values.
func TestCompletion(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string // each must be offered
		not  []string // none may be offered
	}{
		{[]string{""}, []string{"run", "validate", "status", "drain", "undrain", "completion"}, []string{"gendocs"}},
		{[]string{"un"}, []string{"undrain"}, []string{"run"}},
		{[]string{"run", "--"}, []string{"--config", "--log-level", "--log-format"}, []string{"--json"}},
		{[]string{"run", "--log-level", ""}, []string{"debug", "info", "warn", "error"}, nil},
		{[]string{"run", "--log-format", ""}, []string{"text", "json"}, []string{"debug"}},
		{[]string{"status", "--"}, []string{"--json", "--socket"}, nil},
		// No director at this socket: drain offers nothing, and no file names.
		{[]string{"drain", "--socket", "/nonexistent/api.sock", ""}, nil, nil},
	} {
		code, out, errOut := run(append([]string{"__complete"}, tc.args...)...)
		if code != 0 {
			t.Fatalf("__complete %q: exit %d: %s", tc.args, code, errOut)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		directive := lines[len(lines)-1]
		offered := map[string]bool{}
		for _, l := range lines[:len(lines)-1] {
			w, _, _ := strings.Cut(l, "\t")
			offered[w] = true
		}
		for _, w := range tc.want {
			if !offered[w] {
				t.Errorf("completing %q: %q not offered in %q", tc.args, w, lines)
			}
		}
		for _, w := range tc.not {
			if offered[w] {
				t.Errorf("completing %q: %q offered in %q", tc.args, w, lines)
			}
		}
		if len(tc.args) > 0 && tc.args[0] == "drain" && (len(offered) != 0 || directive != ":4") {
			t.Errorf("drain without a director: %q, want nothing and :4 (no file completion)", lines)
		}
	}
	for _, shell := range []string{"bash", "zsh", "fish"} {
		code, out, errOut := run("completion", shell)
		if code != 0 || !strings.Contains(out, "lvs-director") || !strings.Contains(out, "__complete") {
			t.Errorf("completion %s: exit %d, %d bytes, %s", shell, code, len(out), errOut)
		}
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

// TestManPages writes the man pages as packaging does: one per command (completion included,
// the hidden gendocs not), each valid roff that groff renders without a warning.
func TestManPages(t *testing.T) {
	dir := t.TempDir()
	if code, _, errOut := run("gendocs", "--man-dir", dir, "--version", "1.2.3", "--date", "2026-11-24"); code != 0 {
		t.Fatalf("gendocs: %d %s", code, errOut)
	}
	if code, _, errOut := run("gendocs", "--man-dir", dir, "--date", "yesterday"); code != 2 || !strings.Contains(errOut, "--date") {
		t.Fatalf("gendocs with a bad date: %d %s", code, errOut)
	}
	pages, _ := filepath.Glob(filepath.Join(dir, "*.8"))
	var names []string
	for _, p := range pages {
		names = append(names, strings.TrimSuffix(filepath.Base(p), ".8"))
	}
	for _, want := range []string{"lvs-director", "lvs-director-run", "lvs-director-validate", "lvs-director-plan", "lvs-director-cleanup",
		"lvs-director-status", "lvs-director-drain", "lvs-director-undrain", "lvs-director-version", "lvs-director-completion-bash"} {
		if !slices.Contains(names, want) {
			t.Errorf("no man page %s.8 in %q", want, names)
		}
	}
	if slices.Contains(names, "lvs-director-gendocs") {
		t.Errorf("the hidden gendocs has a man page")
	}
	groff, err := exec.LookPath("groff")
	if err != nil {
		if os.Getenv("LVS_REQUIRE_EXTERNAL") == "1" {
			t.Fatal("groff not found and LVS_REQUIRE_EXTERNAL=1")
		}
		t.Skip("groff not installed (Debian package groff-base): not rendering the pages")
	}
	render := func(page string) string {
		cmd := exec.Command(groff, "-man", "-Tutf8", "-ww", "-P-cbou", "-rHY=0", "-rLL=300n")
		cmd.Stdin, _ = os.Open(filepath.Join(dir, page+".8"))
		cmd.Env = []string{"LC_ALL=C", "PATH=/usr/bin:/bin"}
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil || errOut.Len() > 0 {
			t.Errorf("groff %s: %v %s", page, err, errOut.String())
		}
		return strings.Join(strings.Fields(out.String()), " ")
	}
	for _, n := range names {
		render(n)
	}
	for page, wants := range map[string][]string{
		"lvs-director":       {"lvs-director - a Linux LVS (IPVS) director", "SIGHUP reload the configuration", "/etc/lvs-director/director.yaml", "EXIT STATUS", "lvs-director-drain(8)", "lvs-director 1.2.3"},
		"lvs-director-run":   {"lvs-director run --config FILE [flags]", `--log-level="info" log level: debug, info, warn, error`},
		"lvs-director-drain": {"lvs-director drain [flags] SERVICE REALSERVER", "--socket=\"/run/lvs-director/api.sock\""},
	} {
		text := render(page)
		for _, w := range wants {
			if !strings.Contains(text, w) {
				t.Errorf("%s(8) lacks %q:\n%s", page, w, text)
			}
		}
	}
}

// TestDrainAgainstDaemon runs drain, undrain, status and the completion of drain's arguments
// against a director's status API on a unix socket (a fake kernel behind it).
func TestDrainAgainstDaemon(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "api.sock")
	path := filepath.Join(dir, "director.yaml")
	os.WriteFile(path, []byte("api: {socket: "+sock+"}\nservices:\n  - name: web\n    vip: 203.0.113.10\n    port: 80\n"+
		"    real_servers: [{address: 10.0.0.1}, {address: 10.0.0.2}]\n"), 0o644)
	d, err := daemon.New(slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry(), director.NewFakeKernel(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	// The listener is up before the first request: nothing to wait for.
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: d.Handler(false)}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	complete := func(args ...string) []string {
		t.Helper()
		code, out, errOut := run(append([]string{"__complete", "drain", "--socket", sock}, args...)...)
		if code != 0 {
			t.Fatalf("__complete: %d %s", code, errOut)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if lines[len(lines)-1] != ":4" {
			t.Errorf("completion directive %q, want :4 (no file names)", lines[len(lines)-1])
		}
		var words []string
		for _, l := range lines[:len(lines)-1] {
			w, _, _ := strings.Cut(l, "\t")
			words = append(words, w)
		}
		return words
	}
	if got := complete(""); !slices.Equal(got, []string{"web"}) {
		t.Errorf("services offered: %q", got)
	}
	if got := complete("web", ""); !slices.Equal(got, []string{"10.0.0.1:80", "10.0.0.2:80"}) {
		t.Errorf("real servers offered: %q", got)
	}
	if got := complete("web", "10.0.0.1:80", ""); len(got) != 0 {
		t.Errorf("offered after both arguments: %q", got)
	}

	if code, out, errOut := run("drain", "--socket", sock, "web", "10.0.0.1:80"); code != 0 || out != "draining 10.0.0.1:80 of service web\n" {
		t.Fatalf("drain: %d %q %q", code, out, errOut)
	}
	code, out, _ := run("status", "--json", "--socket", sock)
	var rep daemon.Report
	if err := json.Unmarshal([]byte(out), &rep); code != 0 || err != nil {
		t.Fatalf("status --json: %d %v", code, err)
	}
	if r := rep.Services[0].RealServers[0]; r.Address != "10.0.0.1:80" || r.Drain != "operator" {
		t.Errorf("after drain: %+v", r)
	}
	if code, out, _ := run("status", "--socket", sock); code != 0 || !strings.Contains(out, "-> 10.0.0.1:80") || !strings.Contains(out, "operator") {
		t.Errorf("status table: %d\n%s", code, out)
	}
	if code, out, _ := run("undrain", "--socket", sock, "web", "10.0.0.1:80"); code != 0 || out != "undrained 10.0.0.1:80 of service web\n" {
		t.Errorf("undrain: %d %q", code, out)
	}
	if code, _, errOut := run("drain", "--socket", sock, "nope", "10.0.0.1:80"); code != 1 || !strings.HasPrefix(errOut, "lvs-director: ") {
		t.Errorf("drain of an unknown service: %d %q, want exit 1", code, errOut)
	}
}
