//go:build lab

package e2e

import (
	"encoding/json"
	"os/exec"
	"testing"
)

// ClientSummary is the JSON line "labnode client" and "labnode udp" print.
type ClientSummary struct {
	OK     int            `json:"ok"`
	Failed int            `json:"failed"`
	ByName map[string]int `json:"by_name"`
	Errors []string       `json:"errors"`
}

// Labnode runs "labnode ARGS" in ns and decodes its JSON summary.
func Labnode(t testing.TB, ns *NS, args ...string) ClientSummary {
	t.Helper()
	out := ns.MustRun(append([]string{"labnode"}, args...)...)
	var s ClientSummary
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("[%s] labnode %v: bad JSON summary: %v\n%s", ns.Name, args, err, out)
	}
	return s
}

// NeedLabnode fails the test if labnode is not on PATH.
func NeedLabnode(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("labnode"); err != nil {
		t.Fatalf("labnode not on PATH (%v): build it into $LAB_BIN_DIR, see lab/README.md", err)
	}
}
