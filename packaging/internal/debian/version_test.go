package debian

import (
	"os/exec"
	"testing"
)

func TestVersion(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{in: "v1.2.3", want: "1.2.3"},
		{in: "1.2.3", want: "1.2.3"},
		{in: "v1.2.3-rc.1", want: "1.2.3~rc.1"},
		{in: "v1.2.3-rc1-2-gabcdef0", want: "1.2.3~rc1.2.gabcdef0"},
		{in: "v1.2.3-4-gabc1234", want: "1.2.3+4.gabc1234"},
		{in: "v1.2.3-4-gabc1234-dirty", want: "1.2.3+4.gabc1234.dirty"},
		{in: "v1.2.3-dirty", want: "1.2.3+0.dirty"},
		{in: "1.2.3+meta", want: "1.2.3+meta"},
		{in: "452df78-dirty", want: "0.0.0~git452df78.dirty"},
		{in: "dev", want: "0.0.0~gitdev"},
		{in: "1234567", want: "0.0.0~git1234567"},
		{in: "", err: "empty version"},
		{in: "v1.2.3_x", err: `version "v1.2.3_x": "1.2.3_x" is not a valid Debian version (only A-Z a-z 0-9 . + ~)`},
		{in: "1.0 beta", err: `version "1.0 beta": "1.0 beta" is not a valid Debian version (only A-Z a-z 0-9 . + ~)`},
	} {
		got, err := Version(tc.in)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("Version(%q) error = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Version(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// The mapping must keep the builds' order in dpkg's own comparison.
func TestVersionOrderWithDpkg(t *testing.T) {
	dpkg, err := exec.LookPath("dpkg")
	if err != nil {
		t.Skip("dpkg not installed: skipping the order check")
	}
	ordered := []string{"452df78-dirty", "v1.2.3-rc.1", "v1.2.3", "v1.2.3-dirty", "v1.2.3-4-gabc1234", "v1.2.3-4-gabc1234-dirty", "v1.2.4"}
	for i := 0; i+1 < len(ordered); i++ {
		a, _ := Version(ordered[i])
		b, _ := Version(ordered[i+1])
		if err := exec.Command(dpkg, "--compare-versions", a, "lt", b).Run(); err != nil {
			t.Errorf("dpkg: %s (%s) is not lower than %s (%s)", a, ordered[i], b, ordered[i+1])
		}
	}
}
