// Package debian describes the lvs-director .deb: its version and contents.
package debian

import (
	"fmt"
	"regexp"
	"strings"
)

var (
	versionCore = regexp.MustCompile(`^[0-9][0-9.]*`)
	bareHash    = regexp.MustCompile(`^[0-9a-f]{7,40}(-dirty)?$`)
	gitCount    = regexp.MustCompile(`^[0-9]+$`)
	gitHash     = regexp.MustCompile(`^g[0-9a-f]{4,40}$`)
	debUpstream = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`)
)

// Version turns a build version (a tag or `git describe --tags --always --dirty` output)
// into a Debian upstream version that sorts as the builds do:
//
//	v1.2.3                  1.2.3
//	v1.2.3-rc.1             1.2.3~rc.1              (before 1.2.3)
//	v1.2.3-4-gabc1234       1.2.3+4.gabc1234        (after 1.2.3)
//	v1.2.3-dirty            1.2.3+0.dirty
//	v1.2.3-4-gabc1234-dirty 1.2.3+4.gabc1234.dirty
//	452df78-dirty           0.0.0~git452df78.dirty  (no tag yet: before any release)
//
// It never contains a hyphen, which dpkg would read as a Debian revision.
func Version(build string) (string, error) {
	v := strings.TrimPrefix(strings.TrimSpace(build), "v")
	if v == "" {
		return "", fmt.Errorf("empty version")
	}
	core := versionCore.FindString(v)
	if bareHash.MatchString(v) {
		core = "" // `git describe --always` without a tag: a commit hash, not a version
	}
	var out string
	switch rest := v[len(core):]; {
	case core == "":
		out = "0.0.0~git" + strings.ReplaceAll(v, "-", ".")
	case rest == "":
		out = core
	case strings.HasPrefix(rest, "-"):
		parts := strings.Split(rest[1:], "-")
		switch {
		case len(parts) >= 2 && gitCount.MatchString(parts[0]) && gitHash.MatchString(parts[1]):
			out = core + "+" + strings.Join(parts, ".")
		case len(parts) == 1 && parts[0] == "dirty":
			out = core + "+0.dirty" // sorts before the next commit's 1.2.3+1.g...
		default:
			out = core + "~" + strings.Join(parts, ".")
		}
	default:
		out = core + strings.ReplaceAll(rest, "-", ".")
	}
	out = strings.TrimSuffix(out, ".")
	if !debUpstream.MatchString(out) {
		return "", fmt.Errorf("version %q: %q is not a valid Debian version (only A-Z a-z 0-9 . + ~)", build, out)
	}
	return out, nil
}
