package debian

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/files"
)

// ConfigFile is the package's only conffile.
const ConfigFile = "/etc/lvs-director/director.yaml"

// Options names what goes into the package. Paths are on the build host.
type Options struct {
	Version string // build version, e.g. `git describe` output; see Version
	Arch    string // Debian architecture, e.g. amd64
	Binary  string // the static lvs-director binary
	Repo    string // repository root: systemd/, examples/, packaging/
	// Docs is a directory laid out as under /usr (helpdoc.Docs.Write): share/man/man8/*.8.gz
	// and the shell completion scripts. Every file in it is packaged; lvs-director.8.gz and the
	// bash completion must be there.
	Docs  string
	MTime time.Time
}

// Info returns the nfpm description of the .deb.
func Info(o Options) (*nfpm.Info, error) {
	v, err := Version(o.Version)
	if err != nil {
		return nil, err
	}
	if o.Arch == "" {
		return nil, fmt.Errorf("no architecture")
	}
	src := func(p ...string) string { return filepath.Join(append([]string{o.Repo}, p...)...) }
	file := func(from, to string, mode os.FileMode) *files.Content {
		return &files.Content{Source: from, Destination: to, Type: files.TypeFile,
			FileInfo: &files.ContentFileInfo{Owner: "root", Group: "root", Mode: mode, MTime: o.MTime}}
	}
	contents := files.Contents{
		file(o.Binary, "/usr/sbin/lvs-director", 0o755),
		file(src("systemd", "lvs-director.service"), "/lib/systemd/system/lvs-director.service", 0o644),
		file(src("systemd", "modules-load.d", "lvs-director.conf"), "/usr/lib/modules-load.d/lvs-director.conf", 0o644),
		file(src("systemd", "sysctl.d", "60-lvs-director.conf"), "/usr/lib/sysctl.d/60-lvs-director.conf", 0o644),
		// Named here so that a docs directory without them fails below.
		file(filepath.Join(o.Docs, "share/man/man8/lvs-director.8.gz"), "/usr/share/man/man8/lvs-director.8.gz", 0o644),
		file(filepath.Join(o.Docs, "share/bash-completion/completions/lvs-director"), "/usr/share/bash-completion/completions/lvs-director", 0o644),
		file(src("packaging", "copyright"), "/usr/share/doc/lvs-director/copyright", 0o644),
		// 0640: the file may hold BGP passwords.
		{Source: src("examples", "director.yaml"), Destination: ConfigFile, Type: files.TypeConfig,
			FileInfo: &files.ContentFileInfo{Owner: "root", Group: "root", Mode: 0o640, MTime: o.MTime}},
	}
	if o.Docs == "" {
		return nil, fmt.Errorf("no docs directory (man pages, completion)")
	}
	named := map[string]bool{}
	for _, c := range contents {
		named[c.Source] = true
	}
	err = filepath.WalkDir(o.Docs, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || named[p] {
			return err
		}
		rel, err := filepath.Rel(o.Docs, p)
		if err != nil {
			return err
		}
		contents = append(contents, file(p, path.Join("/usr", filepath.ToSlash(rel)), 0o644))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("docs: %w", err)
	}
	for _, c := range contents {
		if _, err := os.Stat(c.Source); err != nil {
			return nil, fmt.Errorf("package content %s: %w", c.Destination, err)
		}
	}
	info := &nfpm.Info{
		Name:          "lvs-director",
		Arch:          o.Arch,
		Platform:      "linux",
		Version:       v,
		VersionSchema: "none",
		Section:       "net",
		Priority:      "optional",
		Maintainer:    "lvs-director maintainers <lvs-director@localhost>",
		Homepage:      "https://github.com/lvs-director/lvs-director",
		License:       "UNDECIDED",
		Description: "Linux LVS (IPVS) director with health checks and BGP\n" +
			"lvs-director keeps the kernel's IPVS NAT virtual servers equal to a YAML\n" +
			"file, health-checks the real servers, announces the virtual IPs over BGP\n" +
			"from an embedded speaker and fails over between directors.\n" +
			"The service is installed but neither enabled nor started.",
		MTime: o.MTime,
		Overridables: nfpm.Overridables{
			Recommends: []string{"ipvsadm", "iproute2", "kmod"},
			Suggests:   []string{"nftables"},
			Contents:   contents,
			Umask:      0o022,
			Scripts: nfpm.Scripts{
				PostInstall: src("packaging", "deb", "postinst"),
				PreRemove:   src("packaging", "deb", "prerm"),
				PostRemove:  src("packaging", "deb", "postrm"),
			},
		},
	}
	return nfpm.WithDefaults(info), nil
}
