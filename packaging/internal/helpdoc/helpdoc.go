// Package helpdoc gets lvs-director's man pages and shell completion scripts from the binary
// being packaged. The binary's CLI is built with cobra, whose generators write both (the hidden
// `lvs-director gendocs --man-dir DIR` and `lvs-director completion SHELL`), so they follow the
// commands and flags of that very binary; nothing here parses help text.
package helpdoc

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// Options are what the man pages show that the binary cannot know.
type Options struct {
	Version string // "1.2.3", shown in the footer; empty: the binary's own version
	Date    string // "2026-11-24", shown in the footer; empty: $SOURCE_DATE_EPOCH or today
}

// Shell is a shell whose completion script is packaged, and where the script goes under a
// prefix (/usr for the .deb, /usr/local for install.sh): the directories the shells load
// completions from by default on Debian.
type Shell struct {
	Name string // as `lvs-director completion NAME` takes it
	Path string // relative to the prefix
}

// Shells lists the packaged completions.
var Shells = []Shell{
	{"bash", "share/bash-completion/completions/lvs-director"},
	{"zsh", "share/zsh/vendor-completions/_lvs-director"},
	{"fish", "share/fish/vendor_completions.d/lvs-director.fish"},
}

// ManDir is where man pages go, relative to the prefix.
const ManDir = "share/man/man8"

// Docs are the generated files.
type Docs struct {
	// ManPages maps a file name ("lvs-director-run.8.gz") to the gzip'd page.
	ManPages map[string][]byte
	// Completions maps a shell name to its completion script.
	Completions map[string][]byte
}

// Runner runs the binary with args and returns its standard output; the error carries its
// standard error.
type Runner func(args ...string) ([]byte, error)

// BinaryRunner runs the program at path with a minimal environment (stable output).
func BinaryRunner(path string) Runner {
	return func(args ...string) ([]byte, error) {
		cmd := exec.Command(path, args...)
		cmd.Env = []string{"LC_ALL=C", "PATH=/usr/bin:/bin"}
		if s, ok := os.LookupEnv("SOURCE_DATE_EPOCH"); ok {
			cmd.Env = append(cmd.Env, "SOURCE_DATE_EPOCH="+s)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return out, fmt.Errorf("%s %s: %w: %s", path, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
		}
		return out, nil
	}
}

// Generate asks the binary for its man pages and completion scripts.
func Generate(run Runner, o Options) (Docs, error) {
	tmp, err := os.MkdirTemp("", "helpdoc-")
	if err != nil {
		return Docs{}, err
	}
	defer os.RemoveAll(tmp)
	args := []string{"gendocs", "--man-dir", tmp}
	if o.Version != "" {
		args = append(args, "--version", o.Version)
	}
	if o.Date != "" {
		args = append(args, "--date", o.Date)
	}
	if _, err := run(args...); err != nil {
		return Docs{}, fmt.Errorf("man pages: %w", err)
	}
	pages, err := filepath.Glob(filepath.Join(tmp, "*.8"))
	if err != nil {
		return Docs{}, err
	}
	if len(pages) == 0 {
		return Docs{}, fmt.Errorf("man pages: %s wrote no *.8 file", strings.Join(args, " "))
	}
	d := Docs{ManPages: map[string][]byte{}, Completions: map[string][]byte{}}
	for _, p := range pages {
		page, err := os.ReadFile(p)
		if err != nil {
			return Docs{}, err
		}
		gz, err := GzipMan(page)
		if err != nil {
			return Docs{}, fmt.Errorf("gzip %s: %w", filepath.Base(p), err)
		}
		d.ManPages[filepath.Base(p)+".gz"] = gz
	}
	for _, sh := range Shells {
		script, err := run("completion", sh.Name)
		if err != nil {
			return Docs{}, fmt.Errorf("%s completion: %w", sh.Name, err)
		}
		if len(bytes.TrimSpace(script)) == 0 {
			return Docs{}, fmt.Errorf("%s completion: the script is empty", sh.Name)
		}
		d.Completions[sh.Name] = script
	}
	return d, nil
}

// Write puts the files under dir as they go under a prefix: share/man/man8/*.8.gz and each
// shell's completion path. It returns what it wrote, by path relative to dir, sorted.
func (d Docs) Write(dir string) ([]string, error) {
	var written []string
	put := func(rel string, data []byte) error {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return err
		}
		written = append(written, rel)
		return nil
	}
	for name, data := range d.ManPages {
		if err := put(filepath.Join(ManDir, name), data); err != nil {
			return nil, err
		}
	}
	for _, sh := range Shells {
		script, ok := d.Completions[sh.Name]
		if !ok {
			return nil, fmt.Errorf("no %s completion script", sh.Name)
		}
		if err := put(sh.Path, script); err != nil {
			return nil, err
		}
	}
	sort.Strings(written)
	return written, nil
}

// GzipMan compresses a man page as `gzip -9n` does: no file name, no time stamp.
func GzipMan(page []byte) ([]byte, error) {
	var b bytes.Buffer
	zw, err := gzip.NewWriterLevel(&b, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(page); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
