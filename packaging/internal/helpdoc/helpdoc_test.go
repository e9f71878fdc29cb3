package helpdoc

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// testdata/*.txt is lvs-director's real help output (main.txt: --help; NAME.txt: NAME --help).
func fixture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".txt"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func fixtureRunner(t *testing.T) Runner {
	return func(args ...string) (string, error) {
		if len(args) == 1 && args[0] == "--help" {
			return fixture(t, "main"), nil
		}
		if len(args) == 2 && args[1] == "--help" {
			return fixture(t, args[0]), nil
		}
		t.Fatalf("unexpected run %q", args)
		return "", nil
	}
}

func TestParseMain(t *testing.T) {
	p, err := ParseMain(fixture(t, "main"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "lvs-director" || p.Summary != "a Linux LVS (IPVS) director" {
		t.Errorf("name, summary = %q, %q", p.Name, p.Summary)
	}
	var names []string
	for _, c := range p.Commands {
		names = append(names, c.Name)
	}
	want := []string{"run", "validate", "plan", "cleanup", "status", "drain", "undrain", "version"}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("commands = %q, want %q", names, want)
	}
	if p.Commands[0].Summary != "run the director: keep the kernel's IPVS table equal to the config" {
		t.Errorf("run summary = %q", p.Commands[0].Summary)
	}
}

func TestParseMainErrors(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"no name", "just words\n", `main help: first line "just words" is not "NAME: summary"`},
		{"no commands", "x: y\n\nUsage:\n  x\n", `main help: no "Commands:" section`},
		{"bad command line", "x: y\nCommands:\n  Run it\n", `main help: cannot parse command line "  Run it"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseMain(tc.text)
			if err == nil || err.Error() != tc.want {
				t.Errorf("error = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestParseCommand(t *testing.T) {
	for _, tc := range []struct {
		name string
		text string
		want Command
	}{
		{"run", fixture(t, "run"), Command{
			Usage: "lvs-director run --config FILE",
			Help:  "run the director: keep the kernel's IPVS table equal to the config",
			Flags: []Flag{
				{Name: "config", Type: "string", Usage: "config file", Default: "/etc/lvs-director/director.yaml"},
				{Name: "log-format", Type: "string", Usage: "log format: text or json", Default: "text"},
				{Name: "log-level", Type: "string", Usage: "log level: debug, info, warn, error", Default: "info"},
			},
		}},
		{"status: boolean flag", fixture(t, "status"), Command{
			Usage: "lvs-director status [--json] [--socket PATH]",
			Help:  "show the running director's view: kernel table, health, drains, announcements",
			Flags: []Flag{
				{Name: "json", Usage: "print the raw JSON report"},
				{Name: "socket", Type: "string", Usage: "status API socket of the running director", Default: "/run/lvs-director/api.sock"},
			},
		}},
		{"version: no flags", fixture(t, "version"), Command{Usage: "lvs-director version", Help: "print the version"}},
		{"one-letter flag and multi-line usage", "Usage: x y\n\nhelp\n\nFlags:\n  -v\tverbose\n  -timeout duration\n    \tgive up after\n    \tthis long (default 5s)\n",
			Command{Usage: "x y", Help: "help", Flags: []Flag{
				{Name: "v", Usage: "verbose"},
				{Name: "timeout", Type: "duration", Usage: "give up after this long", Default: "5s"},
			}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseCommand(tc.text)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestParseCommandErrors(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"no usage", "run it\n", `first line "run it" does not start with "Usage: "`},
		{"stray line", "Usage: x\n\nFlags:\nsomething\n", `cannot parse flag line "something"`},
		{"continuation first", "Usage: x\n\nFlags:\n    \torphan\n", `cannot parse flag line "    \torphan"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseCommand(tc.text)
			if err == nil || err.Error() != tc.want {
				t.Errorf("error = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestCollect(t *testing.T) {
	p, err := Collect(fixtureRunner(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Commands) != 8 {
		t.Fatalf("%d commands", len(p.Commands))
	}
	drain := p.Commands[5]
	if drain.Name != "drain" || drain.Summary != "take a real server out of rotation (weight 0, then removal) until undrain" ||
		drain.Usage != "lvs-director drain [--socket PATH] SERVICE REALSERVER" || len(drain.Flags) != 1 || drain.Flags[0].Name != "socket" {
		t.Errorf("drain = %+v", drain)
	}

	boom := errors.New("exit status 2")
	_, err = Collect(func(args ...string) (string, error) {
		if args[0] == "plan" {
			return "", boom
		}
		return fixtureRunner(t)(args...)
	})
	if !errors.Is(err, boom) || err.Error() != "plan --help: exit status 2" {
		t.Errorf("error = %v, want plan --help: exit status 2", err)
	}
}

func TestFlagChoicesAndPaths(t *testing.T) {
	for _, tc := range []struct {
		f       Flag
		choices []string
		path    bool
	}{
		{Flag{Name: "log-level", Type: "string", Usage: "log level: debug, info, warn, error"}, []string{"debug", "info", "warn", "error"}, false},
		{Flag{Name: "log-format", Type: "string", Usage: "log format: text or json"}, []string{"text", "json"}, false},
		{Flag{Name: "config", Type: "string", Usage: "config file"}, nil, true},
		{Flag{Name: "socket", Type: "string", Usage: "status API socket of the running director"}, nil, true},
		{Flag{Name: "out", Type: "string", Usage: "where", Default: "/var/x"}, nil, true},
		{Flag{Name: "json", Usage: "print: raw, json"}, nil, false},                        // boolean: no value
		{Flag{Name: "note", Type: "string", Usage: "note: Free Text here"}, nil, false},    // not a list of words
		{Flag{Name: "peer", Type: "string", Usage: "peer address: host:port"}, nil, false}, // one word is no choice
		{Flag{Name: "period", Type: "duration", Usage: "how long between syncs"}, nil, false},
	} {
		if got := tc.f.Choices(); !reflect.DeepEqual(got, tc.choices) {
			t.Errorf("%s Choices() = %q, want %q", tc.f.Name, got, tc.choices)
		}
		if got := tc.f.TakesPath(); got != tc.path {
			t.Errorf("%s TakesPath() = %v, want %v", tc.f.Name, got, tc.path)
		}
	}
}

func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("LVS_REQUIRE_EXTERNAL") == "1" {
			t.Fatalf("%s not found and LVS_REQUIRE_EXTERNAL=1", name)
		}
		t.Skipf("%s not installed (Debian package groff-base / bash): skipping", name)
	}
	return p
}

func TestManIsValidRoff(t *testing.T) {
	groff := needTool(t, "groff")
	p, err := Collect(fixtureRunner(t))
	if err != nil {
		t.Fatal(err)
	}
	page := Man(p, ManOptions{Version: "1.2.3", Date: "2026-11-24"})
	cmd := exec.Command(groff, "-man", "-Tutf8", "-ww", "-P-cbou")
	cmd.Stdin = strings.NewReader(page)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil || errOut.Len() > 0 {
		t.Fatalf("groff: %v\n%s\npage:\n%s", err, errOut.String(), page)
	}
	text := out.String()
	for _, want := range []string{
		"lvs-director - a Linux LVS (IPVS) director",
		"lvs-director drain [--socket PATH] SERVICE REALSERVER",
		"--log-level string",
		"log level: debug, info, warn, error (default: info)",
		"--json",
		"/etc/lvs-director/director.yaml",
		"lvs-director 1.2.3",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("rendered man page lacks %q:\n%s", want, text)
		}
	}
}

func TestCompletion(t *testing.T) {
	bash := needTool(t, "bash")
	p, err := Collect(fixtureRunner(t))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "lvs-director")
	if err := os.WriteFile(script, []byte(Completion(p)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "director.yaml"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		words []string // the command line; the last word is being completed
		want  string
	}{
		{[]string{"lvs-director", ""}, "run validate plan cleanup status drain undrain version help --help"},
		{[]string{"lvs-director", "un"}, "undrain"},
		{[]string{"lvs-director", "run", "--"}, "--config --log-format --log-level --help"},
		{[]string{"lvs-director", "run", "--log-level", ""}, "debug info warn error"},
		{[]string{"lvs-director", "run", "-log-format", "j"}, "json"},
		{[]string{"lvs-director", "validate", "--config", dir + "/dir"}, dir + "/director.yaml"},
		{[]string{"lvs-director", "status", "--"}, "--json --socket --help"},
		{[]string{"lvs-director", "bogus", "--"}, ""},
	} {
		var words []string
		for _, w := range tc.words {
			words = append(words, "'"+w+"'")
		}
		prog := ". " + script + "\nCOMP_WORDS=(" + strings.Join(words, " ") + ")\nCOMP_CWORD=" +
			strconv.Itoa(len(tc.words)-1) + "\n_lvs_director\necho \"${COMPREPLY[*]}\"\n"
		out, err := exec.Command(bash, "--norc", "-c", prog).CombinedOutput()
		if err != nil {
			t.Fatalf("%q: %v\n%s", tc.words, err, out)
		}
		if got := strings.TrimSpace(string(out)); got != tc.want {
			t.Errorf("completing %q = %q, want %q", tc.words, got, tc.want)
		}
	}
}
