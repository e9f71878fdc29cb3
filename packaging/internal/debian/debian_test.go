package debian

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goreleaser/nfpm/v2/files"
)

// fakeRepo lays out the files Info packages, each holding its own name.
func fakeRepo(t *testing.T) (Options, string) {
	t.Helper()
	dir := t.TempDir()
	for _, p := range []string{
		"bin/lvs-director", "systemd/lvs-director.service", "systemd/modules-load.d/lvs-director.conf",
		"systemd/sysctl.d/60-lvs-director.conf", "examples/director.yaml", "packaging/copyright",
		"packaging/deb/postinst", "packaging/deb/prerm", "packaging/deb/postrm",
		"docs/share/man/man8/lvs-director.8.gz", "docs/share/man/man8/lvs-director-run.8.gz",
		"docs/share/bash-completion/completions/lvs-director", "docs/share/zsh/vendor-completions/_lvs-director",
	} {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return Options{Version: "v1.2.3-4-gabc1234", Arch: "amd64", Binary: filepath.Join(dir, "bin/lvs-director"), Repo: dir,
		Docs: filepath.Join(dir, "docs"), MTime: time.Unix(1700000000, 0)}, dir
}

func TestInfo(t *testing.T) {
	o, dir := fakeRepo(t)
	info, err := Info(o)
	if err != nil {
		t.Fatal(err)
	}
	if info.Version != "1.2.3+4.gabc1234" || info.Name != "lvs-director" || info.Arch != "amd64" {
		t.Errorf("name/version/arch = %s %s %s", info.Name, info.Version, info.Arch)
	}
	if len(info.Depends) != 0 || strings.Join(info.Recommends, ",") != "ipvsadm,iproute2,kmod" {
		t.Errorf("depends %q recommends %q: want no depends, ipvsadm, iproute2 and kmod recommended", info.Depends, info.Recommends)
	}
	type entry struct {
		src, typ string
		mode     os.FileMode
	}
	want := map[string]entry{
		"/usr/sbin/lvs-director":                              {"bin/lvs-director", files.TypeFile, 0o755},
		"/lib/systemd/system/lvs-director.service":            {"systemd/lvs-director.service", files.TypeFile, 0o644},
		"/usr/lib/modules-load.d/lvs-director.conf":           {"systemd/modules-load.d/lvs-director.conf", files.TypeFile, 0o644},
		"/usr/lib/sysctl.d/60-lvs-director.conf":              {"systemd/sysctl.d/60-lvs-director.conf", files.TypeFile, 0o644},
		"/usr/share/man/man8/lvs-director.8.gz":               {"docs/share/man/man8/lvs-director.8.gz", files.TypeFile, 0o644},
		"/usr/share/man/man8/lvs-director-run.8.gz":           {"docs/share/man/man8/lvs-director-run.8.gz", files.TypeFile, 0o644},
		"/usr/share/bash-completion/completions/lvs-director": {"docs/share/bash-completion/completions/lvs-director", files.TypeFile, 0o644},
		"/usr/share/zsh/vendor-completions/_lvs-director":     {"docs/share/zsh/vendor-completions/_lvs-director", files.TypeFile, 0o644},
		"/usr/share/doc/lvs-director/copyright":               {"packaging/copyright", files.TypeFile, 0o644},
		"/etc/lvs-director/director.yaml":                     {"examples/director.yaml", files.TypeConfig, 0o640},
	}
	if len(info.Contents) != len(want) {
		t.Errorf("%d contents, want %d", len(info.Contents), len(want))
	}
	for _, c := range info.Contents {
		w, ok := want[c.Destination]
		if !ok {
			t.Errorf("unexpected content %s", c.Destination)
			continue
		}
		if c.Source != filepath.Join(dir, w.src) || c.Type != w.typ || c.FileInfo.Mode != w.mode || c.FileInfo.Owner != "root" {
			t.Errorf("%s = %s %s %o %s, want %s %s %o root", c.Destination, c.Source, c.Type, c.FileInfo.Mode, c.FileInfo.Owner,
				w.src, w.typ, w.mode)
		}
	}
	if info.Scripts.PostInstall != filepath.Join(dir, "packaging/deb/postinst") || info.Scripts.PreRemove == "" || info.Scripts.PostRemove == "" ||
		info.Scripts.PreInstall != "" {
		t.Errorf("scripts = %+v", info.Scripts)
	}
}

func TestInfoErrors(t *testing.T) {
	o, dir := fakeRepo(t)
	if err := os.Remove(filepath.Join(dir, "examples/director.yaml")); err != nil {
		t.Fatal(err)
	}
	_, err := Info(o)
	if err == nil || !strings.HasPrefix(err.Error(), "package content /etc/lvs-director/director.yaml: stat ") {
		t.Errorf("error = %v, want one naming the missing conffile", err)
	}
	o, dir = fakeRepo(t)
	if err := os.Remove(filepath.Join(dir, "docs/share/man/man8/lvs-director.8.gz")); err != nil {
		t.Fatal(err)
	}
	if _, err := Info(o); err == nil || !strings.HasPrefix(err.Error(), "package content /usr/share/man/man8/lvs-director.8.gz: stat ") {
		t.Errorf("error = %v, want one naming the missing man page", err)
	}
	o.Docs = ""
	if _, err := Info(o); err == nil || err.Error() != "no docs directory (man pages, completion)" {
		t.Errorf("error = %v, want no docs directory", err)
	}
	o, _ = fakeRepo(t)
	o.Version = "1.0 beta"
	if _, err := Info(o); err == nil || !strings.Contains(err.Error(), "not a valid Debian version") {
		t.Errorf("error = %v, want an invalid version", err)
	}
}
