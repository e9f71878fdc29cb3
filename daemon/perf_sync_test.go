package daemon

import (
	"strings"
	"testing"
)

// A reload's sync reads only the service it changes; the periodic one reads the whole table
// and repairs drift.
func TestReloadSyncReadsOnlyTheChange(t *testing.T) {
	f := newFixture(t, baseConfig)
	if err := f.d.Sync(); err != nil {
		t.Fatal(err)
	}
	write(t, f.path, strings.ReplaceAll(strings.Replace(baseConfig, "      - {address: 10.0.1.12, port: 8080}\n",
		"      - {address: 10.0.1.12, port: 8080}\n      - {address: 10.0.1.13, port: 8080}\n", 1), "%SOCK%", f.dir+"/api.sock"))
	if err := f.d.Reload(); err != nil {
		t.Fatal(err)
	}
	f.k.ResetCalls()
	dumps0, reads0 := f.k.ReadCounts()
	if err := f.d.sync(false); err != nil {
		t.Fatal(err)
	}
	if dumps, reads := f.k.ReadCounts(); f.k.CallCount() != 1 || dumps != dumps0 || reads != reads0+1 {
		t.Errorf("calls %v, %d dumps, %d service reads", f.k.Calls, dumps-dumps0, reads-reads0)
	}
	f.k.Flush()
	if err := f.d.sync(false); err != nil || f.k.CallCount() != 1 {
		t.Errorf("a change-only sync looked for drift: %v %v", f.k.Calls, err)
	}
	if err := f.d.sync(true); err != nil || len(kernelDests(t, f.k)) != 3 {
		t.Errorf("the full sync did not repair the flush: %v %v", kernelDests(t, f.k), err)
	}
}
