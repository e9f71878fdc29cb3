package helpdoc

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// fakeBinary answers like lvs-director: gendocs writes pages into --man-dir, completion prints
// a script. It records every call.
type fakeBinary struct {
	calls [][]string
	pages map[string]string
	fail  map[string]error // by first argument, or "completion zsh"
}

func (f *fakeBinary) run(args ...string) ([]byte, error) {
	f.calls = append(f.calls, args)
	if err := f.fail[args[0]]; err != nil {
		return nil, err
	}
	switch args[0] {
	case "gendocs":
		dir := args[2]
		for name, text := range f.pages {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
				return nil, err
			}
		}
		return nil, nil
	case "completion":
		if err := f.fail["completion "+args[1]]; err != nil {
			return nil, err
		}
		if args[1] == "empty" {
			return nil, nil
		}
		return []byte("# " + args[1] + " completion for lvs-director\n"), nil
	}
	return nil, errors.New("unknown command " + args[0])
}

func newFake() *fakeBinary {
	return &fakeBinary{pages: map[string]string{
		"lvs-director.8":     ".TH LVS-DIRECTOR 8\n",
		"lvs-director-run.8": ".TH LVS-DIRECTOR-RUN 8\n",
	}, fail: map[string]error{}}
}

func gunzip(t *testing.T, b []byte) (string, *gzip.Header) {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return string(out), &zr.Header
}

func TestGenerate(t *testing.T) {
	f := newFake()
	d, err := Generate(f.run, Options{Version: "1.2.3", Date: "2026-11-24"})
	if err != nil {
		t.Fatal(err)
	}
	if got := f.calls[0]; len(got) != 7 || got[0] != "gendocs" || got[1] != "--man-dir" ||
		!reflect.DeepEqual(got[3:], []string{"--version", "1.2.3", "--date", "2026-11-24"}) {
		t.Errorf("gendocs call = %q", got)
	}
	if _, err := os.Stat(f.calls[0][2]); !os.IsNotExist(err) {
		t.Errorf("the temporary man dir %s is left behind: %v", f.calls[0][2], err)
	}
	if len(d.ManPages) != 2 {
		t.Fatalf("man pages = %d, want 2", len(d.ManPages))
	}
	for name, want := range map[string]string{"lvs-director.8.gz": ".TH LVS-DIRECTOR 8\n", "lvs-director-run.8.gz": ".TH LVS-DIRECTOR-RUN 8\n"} {
		text, hdr := gunzip(t, d.ManPages[name])
		if text != want {
			t.Errorf("%s = %q, want %q", name, text, want)
		}
		if hdr.Name != "" || !hdr.ModTime.IsZero() {
			t.Errorf("%s: gzip header has name %q, time %v (want neither, as gzip -n)", name, hdr.Name, hdr.ModTime)
		}
	}
	for _, sh := range []string{"bash", "zsh", "fish"} {
		if got := string(d.Completions[sh]); got != "# "+sh+" completion for lvs-director\n" {
			t.Errorf("%s completion = %q", sh, got)
		}
	}

	// Without a version or date the binary's own defaults apply: no flags passed.
	f = newFake()
	if _, err := Generate(f.run, Options{}); err != nil {
		t.Fatal(err)
	}
	if len(f.calls[0]) != 3 {
		t.Errorf("gendocs call without options = %q", f.calls[0])
	}
}

func TestGenerateErrors(t *testing.T) {
	boom := errors.New("exit status 2")
	for _, tc := range []struct {
		name string
		set  func(*fakeBinary)
		want string
	}{
		{"gendocs fails", func(f *fakeBinary) { f.fail["gendocs"] = boom }, "man pages: exit status 2"},
		{"no pages", func(f *fakeBinary) { f.pages = nil }, "wrote no *.8 file"},
		{"completion fails", func(f *fakeBinary) { f.fail["completion zsh"] = boom }, "zsh completion: exit status 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			tc.set(f)
			_, err := Generate(f.run, Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want %q", err, tc.want)
			}
			if strings.Contains(tc.want, "exit status") && !errors.Is(err, boom) {
				t.Errorf("error %v does not wrap the binary's", err)
			}
		})
	}
	f := newFake()
	_, err := Generate(func(args ...string) ([]byte, error) {
		if args[0] == "completion" && args[1] == "fish" {
			return []byte("  \n"), nil
		}
		return f.run(args...)
	}, Options{})
	if err == nil || err.Error() != "fish completion: the script is empty" {
		t.Errorf("empty script: error = %v", err)
	}
}

func TestWrite(t *testing.T) {
	d, err := Generate(newFake().run, Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	got, err := d.Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"share/bash-completion/completions/lvs-director",
		"share/fish/vendor_completions.d/lvs-director.fish",
		"share/man/man8/lvs-director-run.8.gz",
		"share/man/man8/lvs-director.8.gz",
		"share/zsh/vendor-completions/_lvs-director",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("wrote %q\nwant  %q", got, want)
	}
	for _, rel := range want {
		st, err := os.Stat(filepath.Join(dir, rel))
		if err != nil || st.Mode().Perm() != 0o644 {
			t.Errorf("%s: %v %v", rel, st, err)
		}
	}
	delete(d.Completions, "fish")
	if _, err := d.Write(t.TempDir()); err == nil || err.Error() != "no fish completion script" {
		t.Errorf("missing script: error = %v", err)
	}
}

func TestBinaryRunner(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "prog")
	script := "#!/bin/sh\nif [ \"$1\" = fail ]; then echo 'it broke' >&2; exit 3; fi\necho \"out $*\"\necho noise >&2\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	run := BinaryRunner(bin)
	out, err := run("completion", "bash")
	if err != nil || string(out) != "out completion bash\n" {
		t.Errorf("run = %q, %v (want stdout only)", out, err)
	}
	_, err = run("fail")
	if err == nil || !strings.Contains(err.Error(), "exit status 3: it broke") {
		t.Errorf("failing run: error = %v", err)
	}
}
