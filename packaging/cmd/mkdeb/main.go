// Command mkdeb builds dist/lvs-director_<version>_<arch>.deb with nfpm (as a library):
// the binary, the systemd unit, modules-load.d and sysctl.d files, the example config as a
// conffile, a man page and bash completion generated from the binary's --help, the
// copyright file and the maintainer scripts in packaging/deb/.
//
//	mkdeb --repo . --binary bin/lvs-director --version "$(git describe --tags --always --dirty)" --out dist
//
// It prints the path of the package it wrote.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"

	"github.com/lvs-director/lvs-director/packaging/internal/debian"
	"github.com/lvs-director/lvs-director/packaging/internal/helpdoc"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("mkdeb", flag.ContinueOnError)
	repo := fs.String("repo", ".", "repository root (holds systemd/, examples/, packaging/)")
	binary := fs.String("binary", "bin/lvs-director", "the static lvs-director binary to package")
	version := fs.String("version", "", "build version: a tag or `git describe --tags --always --dirty` output (required)")
	arch := fs.String("arch", "amd64", "Debian architecture of the binary")
	out := fs.String("out", "dist", "output directory")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *version == "" || fs.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "mkdeb: --version is required and no arguments are taken")
		return 2
	}
	path, err := build(*repo, *binary, *version, *arch, *out)
	if err != nil {
		fmt.Fprintf(os.Stderr, "mkdeb: %v\n", err)
		return 1
	}
	fmt.Println(path)
	return 0
}

// mtime is SOURCE_DATE_EPOCH when set (reproducible builds), else now.
func mtime() (time.Time, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return time.Now().UTC().Truncate(time.Second), nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: %w", s, err)
	}
	return time.Unix(n, 0).UTC(), nil
}

func build(repo, binary, version, arch, outDir string) (string, error) {
	mt, err := mtime()
	if err != nil {
		return "", err
	}
	debVersion, err := debian.Version(version)
	if err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp("", "mkdeb-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)

	p, err := helpdoc.Collect(helpdoc.BinaryRunner(binary))
	if err != nil {
		return "", err
	}
	man, err := helpdoc.GzipMan(helpdoc.Man(p, helpdoc.ManOptions{Version: debVersion, Date: mt.Format("2006-01-02")}))
	if err != nil {
		return "", fmt.Errorf("gzip man page: %w", err)
	}
	manPath, complPath := filepath.Join(tmp, "lvs-director.8.gz"), filepath.Join(tmp, "lvs-director.bash")
	if err := os.WriteFile(manPath, man, 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(complPath, []byte(helpdoc.Completion(p)), 0o644); err != nil {
		return "", err
	}

	info, err := debian.Info(debian.Options{Version: version, Arch: arch, Binary: binary, Repo: repo,
		ManPage: manPath, Completion: complPath, MTime: mt})
	if err != nil {
		return "", err
	}
	if err := nfpm.PrepareForPackager(info, "deb"); err != nil {
		return "", fmt.Errorf("package contents: %w", err)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(outDir, deb.Default.ConventionalFileName(info))
	f, err := os.Create(path + ".tmp")
	if err != nil {
		return "", err
	}
	defer os.Remove(path + ".tmp")
	if err := deb.Default.Package(info, f); err != nil {
		f.Close()
		return "", fmt.Errorf("deb: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return "", err
	}
	return path, nil
}
