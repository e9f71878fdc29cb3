package config

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// The piecewise decoding must give exactly what the whole-file decoding gives.
func TestParseSplitEqualsWhole(t *testing.T) {
	files := map[string]string{
		"bench": string(benchYAML(200)),
		"block": `# a comment
director:
  interface: lvs1
services:
  # first
  - name: web
    vip: 203.0.113.10
    port: 80
    scheduler: WRR
    real_servers:
      - address: 10.0.1.11
        port: 8080
        weight: 3
      - {address: 10.0.1.12}

  - name: dns
    vip: 2001:db8::53
    port: 53
    protocol: udp
    health_check: {type: tcp, interval: 5s}
    real_servers: [{address: "2001:db8::1"}]
api: {socket: /run/x.sock}
`,
		"compact sequence, document start, no final newline": "---\nservices:\n- name: a\n  vip: 10.9.9.9\n  port: 80\n- {name: b, vip: 10.9.9.9, port: 81}\ndirector: {drain_timeout: 5s}",
	}
	for _, f := range []string{"../examples/director.yaml", "../examples/full.yaml"} {
		if b, err := os.ReadFile(f); err == nil {
			files[f] = string(b)
		}
	}
	for name, text := range files {
		t.Run(name, func(t *testing.T) {
			itemCache.set(nil, "")
			want, err := parseWhole("f.yaml", []byte(text))
			if err != nil {
				t.Fatal(err)
			}
			got, ok := parseSplit("f.yaml", []byte(text))
			if !ok {
				t.Fatal("the piecewise decoding refused a plain file")
			}
			if !sameConfig(got, want) {
				t.Errorf("piecewise:\n%+v\nwhole:\n%+v", got, want)
			}
			// Again, from the cache: the other sections too (shared, not decoded again).
			again, ok := parseSplit("f.yaml", []byte(text))
			if !ok || !sameConfig(again, want) {
				t.Errorf("from the cache: ok %v\n%+v", ok, again)
			}
			if again.BGP != got.BGP || again.Cluster != got.Cluster || again.Kubernetes != got.Kubernetes {
				t.Error("from the cache: the other sections were decoded again")
			}
		})
	}
}

// Files the piecewise decoding does not handle are decoded whole, with the same result.
func TestParseSplitFallsBack(t *testing.T) {
	for name, text := range map[string]string{
		"alias across items": "services:\n  - &a {name: a, vip: 10.0.0.1, port: 80}\n  - {name: b, vip: 10.0.0.1, port: 81, real_servers: []}\n" +
			"  - name: c\n    vip: 10.0.0.1\n    port: 82\n    real_servers: &rs [{address: 10.1.1.1}]\n  - {name: d, vip: 10.0.0.1, port: 83, real_servers: *rs}\n",
		"flow top level":       "{services: [{name: a, vip: 10.0.0.1, port: 80}]}\n",
		"flow services":        "services: [{name: a, vip: 10.0.0.1, port: 80}]\n",
		"two documents":        "services:\n  - {name: a, vip: 10.0.0.1, port: 80}\n---\nservices: []\n",
		"empty document first": "---\n---\nservices:\n  - {name: a, vip: 10.0.0.1, port: 80}\n",
		"no services key":      "director: {interface: lvs0}\n",
		"carriage returns":     "services:\r\n  - {name: a, vip: 10.0.0.1, port: 80}\r\n",
		"carriage return in a comment between items": "services:\n  - {name: a, vip: 10.0.0.1, port: 80}\n# x\r\n  - {name: b, vip: 10.0.0.1, port: 81}\n",
		"carriage return in the head":                "director: {interface: lvs0}\r\nservices:\n  - {name: a, vip: 10.0.0.1, port: 80}\n",
	} {
		t.Run(name, func(t *testing.T) {
			itemCache.set(nil, "")
			if _, ok := parseSplit("f.yaml", []byte(text)); ok && name != "no services key" {
				if name == "alias across items" {
					t.Fatal("items with anchors or aliases were decoded piecewise")
				}
			}
			want, werr := parseWhole("f.yaml", []byte(text))
			got, gerr := Parse("f.yaml", []byte(text))
			if !sameConfig(got, want) || (werr == nil) != (gerr == nil) {
				t.Errorf("Parse: %+v, %v\nwhole: %+v, %v", got, gerr, want, werr)
			}
		})
	}
}

// A file with an error falls back to the whole decoding, which reports it with its line.
func TestParseSplitErrorsAsBefore(t *testing.T) {
	itemCache.set(nil, "")
	text := strings.Replace(string(benchYAML(20)), "{name: s7, vip: 10.200.0.1, port: 8007,", "{name: s7, vip: 10.200.0.1, port: 8007, sheduler: rr,", 1)
	_, err := Parse("f.yaml", []byte(text))
	if err == nil || !strings.Contains(err.Error(), `f.yaml:14: services[7].sheduler: unknown field "sheduler"`) {
		t.Errorf("got %v", err)
	}
	// An item valid alone but a duplicate of another.
	dup := string(benchYAML(3)) + "  - {name: s0, vip: 10.200.0.9, port: 80}\n"
	if _, err := Parse("f.yaml", []byte(dup)); err == nil || !strings.Contains(err.Error(), `f.yaml:10: services[3].name: duplicate service name "s0"`) {
		t.Errorf("got %v", err)
	}
}

// A reload decodes only the items that changed; the others are the earlier parse's.
func TestParseReusesUnchangedItems(t *testing.T) {
	itemCache.set(nil, "")
	data := benchYAML(100)
	first, err := Parse("f.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	changed := []byte(strings.Replace(string(data), "port: 8080}]}", "port: 8080}, {address: 10.250.0.1, port: 8080}]}", 1))
	second, err := Parse("f.yaml", changed)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := parseWhole("f.yaml", changed)
	if !sameConfig(second, want) {
		t.Fatal("a reload decoded from the cache differs from a whole decoding")
	}
	if len(second.Services[0].RealServers) != 11 || &second.Services[0].RealServers[0] == &first.Services[0].RealServers[0] {
		t.Error("the changed item was not decoded again")
	}
	if &second.Services[1].RealServers[0] != &first.Services[1].RealServers[0] {
		t.Error("an unchanged item was decoded again")
	}
}

// A reused item skips its own checks only while exclude_cidrs is what it was checked with: a
// reload that excludes a reused service's VIP is refused like a fresh parse.
func TestParseReusedItemsRecheckedOnNewExclude(t *testing.T) {
	itemCache.set(nil, "")
	data := benchYAML(20)
	if _, err := Parse("f.yaml", data); err != nil {
		t.Fatal(err)
	}
	if _, err := Parse("f.yaml", data); err != nil {
		t.Fatalf("the same file again: %v", err)
	}
	excluded := strings.Replace(string(data), "director:\n", "director:\n  exclude_cidrs: [10.200.0.2/32]\n", 1)
	if excluded == string(data) {
		t.Fatal("the test file has no director section")
	}
	_, err := Parse("f.yaml", []byte(excluded))
	if err == nil || !strings.Contains(err.Error(), "services[10].vip: 10.200.0.2 is inside exclude_cidrs 10.200.0.2/32") {
		t.Errorf("got %v", err)
	}
	fresh, _ := parseWhole("f.yaml", []byte(excluded))
	if fresh != nil {
		t.Error("the whole decoding accepts the excluded VIP")
	}
}

// sameConfig compares two configs but for the services' revisions (parseWhole gives none).
func sameConfig(a, b *Config) bool {
	return reflect.DeepEqual(withoutRevisions(a), withoutRevisions(b))
}

// withoutRevisions is c without what tells parses apart: the services' revisions and the
// config's own numbers (Edits).
func withoutRevisions(c *Config) *Config {
	if c == nil {
		return nil
	}
	out := *c
	out.id, out.base, out.edited = 0, 0, nil
	out.Services = make([]Service, len(c.Services))
	for i := range c.Services {
		out.Services[i] = c.Services[i].WithoutRevision()
	}
	return &out
}

// TestServiceBGPNeedsTheSection: a service's route attributes need the top-level bgp section,
// also when the service is taken unchanged from the last parse and the section is gone, and
// when a new service brings them to a file that never had the section.
func TestServiceBGPNeedsTheSection(t *testing.T) {
	itemCache.set(nil, "")
	section := "bgp: {asn: 65001, router_id: 192.0.2.1, neighbors: [{address: 192.0.2.254, asn: 65000}]}\n"
	items := "services:\n  - {name: a, vip: 10.9.0.1, port: 80, real_servers: [{address: 10.1.0.1}]}\n" +
		"  - {name: b, vip: 10.9.0.1, port: 81, bgp: {local_pref: 200}, real_servers: [{address: 10.1.0.2}]}\n"
	want := "f.yaml:3: services[1].bgp: route attributes need the top-level bgp section"
	for _, step := range []struct {
		what, text, err string
	}{
		{"with the section", section + items, ""},
		{"the section removed, the service unchanged", items, want},
		{"without any route attributes", "services:\n  - {name: a, vip: 10.9.0.1, port: 80, real_servers: [{address: 10.1.0.1}]}\n  - {name: b, vip: 10.9.0.1, port: 81, real_servers: [{address: 10.1.0.2}]}\n", ""},
		{"a service brings them", items, want},
	} {
		_, err := Parse("f.yaml", []byte(step.text))
		if got := fmt.Sprint(err); step.err == "" && err != nil || step.err != "" && got != step.err {
			t.Fatalf("%s: error %v, want %q", step.what, err, step.err)
		}
	}
}

// TestEdits: a reload that changed services in place names them (and only them) relative to
// the config parsed just before; anything else is "cannot tell".
func TestEdits(t *testing.T) {
	itemCache.set(nil, "")
	data := string(benchYAML(6))
	parse := func(text string) *Config {
		t.Helper()
		c, err := Parse("f.yaml", []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	first := parse(data)
	if _, ok := first.Edits(nil); ok {
		t.Error("Edits(nil) tells")
	}
	if _, ok := first.Edits(first); ok {
		t.Error("a first parse tells its edits")
	}
	// Services 1 and 4 changed in place.
	lines := strings.SplitAfter(data, "\n")
	edit := func(ls []string, i int) {
		for k, l := range ls {
			if strings.Contains(l, fmt.Sprintf("name: s%d,", i)) {
				ls[k] = strings.Replace(l, "port: 8080}]}", "port: 8080}, {address: 10.250.0.1, port: 8080}]}", 1)
				return
			}
		}
		t.Fatalf("no service s%d", i)
	}
	edit(lines, 1)
	edit(lines, 4)
	second := parse(strings.Join(lines, ""))
	edited, ok := second.Edits(first)
	if !ok || !slices.Equal(edited, []int{1, 4}) {
		t.Fatalf("Edits: %v %v, want [1 4] true", edited, ok)
	}
	for i := range second.Services {
		if same := second.Services[i].Revision() == first.Services[i].Revision(); same == slices.Contains(edited, i) {
			t.Errorf("service %d: same revision %v, edited %v", i, same, slices.Contains(edited, i))
		}
	}
	if _, ok := second.Edits(second); ok {
		t.Error("Edits of itself tells")
	}
	// The same file again: nothing edited.
	third := parse(strings.Join(lines, ""))
	if edited, ok := third.Edits(second); !ok || len(edited) != 0 {
		t.Errorf("unchanged reload: %v %v", edited, ok)
	}
	if _, ok := third.Edits(first); ok {
		t.Error("Edits tells against a config older than the last")
	}
	// A service inserted: the others moved, no telling.
	fourth := parse(strings.Replace(strings.Join(lines, ""), "services:\n", "services:\n  - {name: first, vip: 10.200.9.9, port: 1}\n", 1))
	if _, ok := fourth.Edits(third); ok {
		t.Error("Edits tells after an insertion")
	}
	// A file decoded whole tells nothing.
	whole := parse("services:\n  - {name: a, vip: 10.0.0.1, port: 80, real_servers: &rs [{address: 10.1.1.1}]}\n  - {name: b, vip: 10.0.0.1, port: 81, real_servers: *rs}\n")
	if _, ok := whole.Edits(fourth); ok {
		t.Error("a whole decoding tells its edits")
	}
}

// Revisions: every parsed service has one; a reload keeps those of unchanged items and gives
// changed ones new ones; a file decoded whole gets new ones each time.
func TestServiceRevisions(t *testing.T) {
	itemCache.set(nil, "")
	data := benchYAML(5)
	first, err := Parse("f.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]bool{}
	for _, s := range first.Services {
		if s.Revision() == 0 || seen[s.Revision()] {
			t.Fatalf("revision %d of %s: zero or not unique", s.Revision(), s.Name)
		}
		seen[s.Revision()] = true
	}
	changed := []byte(strings.Replace(string(data), "port: 8080}]}", "port: 8080}, {address: 10.250.0.1, port: 8080}]}", 1))
	second, err := Parse("f.yaml", changed)
	if err != nil {
		t.Fatal(err)
	}
	if r := second.Services[0].Revision(); r == 0 || seen[r] {
		t.Errorf("changed item: revision %d, want a new one", r)
	}
	for i := 1; i < 5; i++ {
		if second.Services[i].Revision() != first.Services[i].Revision() {
			t.Errorf("unchanged item %d: revision %d, was %d", i, second.Services[i].Revision(), first.Services[i].Revision())
		}
	}
	// Items that moved (a service inserted before them) are found by their text.
	moved := []byte(strings.Replace(string(changed), "services:\n", "services:\n  - {name: first, vip: 10.200.9.9, port: 1}\n", 1))
	third, err := Parse("f.yaml", moved)
	if err != nil {
		t.Fatal(err)
	}
	if r := third.Services[0].Revision(); r == 0 || seen[r] || r == second.Services[0].Revision() {
		t.Errorf("inserted item: revision %d, want a new one", r)
	}
	for i := 0; i < 5; i++ {
		if third.Services[i+1].Revision() != second.Services[i].Revision() || &third.Services[i+1].RealServers[0] != &second.Services[i].RealServers[0] {
			t.Errorf("moved item %d: revision %d, was %d (or decoded again)", i, third.Services[i+1].Revision(), second.Services[i].Revision())
		}
	}
	// An alias makes the file decode whole: new revisions every time.
	aliased := "services:\n  - {name: a, vip: 10.0.0.1, port: 80, real_servers: &rs [{address: 10.1.1.1}]}\n  - {name: b, vip: 10.0.0.1, port: 81, real_servers: *rs}\n"
	w1, err1 := Parse("f.yaml", []byte(aliased))
	w2, err2 := Parse("f.yaml", []byte(aliased))
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if a, b := w1.Services[0].Revision(), w2.Services[0].Revision(); a == 0 || a == b {
		t.Errorf("whole decodings: revisions %d and %d, want two different non-zero ones", a, b)
	}
	none, stripped := Service{}, first.Services[0].WithoutRevision()
	if none.Revision() != 0 || stripped.Revision() != 0 {
		t.Error("a service not from Parse has a revision")
	}
}

// A reload checks only its new items for clashes with the others (and that no unchanged item is
// there twice); every clash is still reported as the whole decoding reports it.
func TestReloadUniqueness(t *testing.T) {
	base := string(benchYAML(30))
	for name, c := range map[string]struct{ edit, want string }{
		"new item, name of an unchanged one": {
			strings.Replace(base, "{name: s3, vip: 10.200.0.1, port: 8003,", "{name: s9, vip: 10.200.0.1, port: 8103,", 1),
			`f.yaml:16: services[9].name: duplicate service name "s9" (also services[3])`},
		"new item, virtual service of an unchanged one": {
			strings.Replace(base, "{name: s3, vip: 10.200.0.1, port: 8003,", "{name: s3, vip: 10.200.0.1, port: 8007,", 1),
			`f.yaml:14: services[7]: duplicate virtual service tcp/10.200.0.1:8007 (also services[3])`},
		"an unchanged item twice": {
			base + base[strings.Index(base, "  - {name: s4,"):strings.Index(base, "  - {name: s5,")],
			`f.yaml:37: services[30].name: duplicate service name "s4" (also services[4])`},
		"an unchanged item twice, one moved": {
			strings.Replace(base, "services:\n", "services:\n"+base[strings.Index(base, "  - {name: s4,"):strings.Index(base, "  - {name: s5,")], 1),
			`f.yaml:12: services[5].name: duplicate service name "s4" (also services[0])`},
	} {
		t.Run(name, func(t *testing.T) {
			itemCache.set(nil, "")
			if _, err := Parse("f.yaml", []byte(base)); err != nil {
				t.Fatal(err)
			}
			_, err := Parse("f.yaml", []byte(c.edit))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v\nwant %s", err, c.want)
			}
			// The running parse is still the cache's: a valid edit after it is read as usual.
			ok := strings.Replace(base, "port: 8080}]}", "port: 8080}, {address: 10.250.0.1, port: 8080}]}", 1)
			if cfg, err := Parse("f.yaml", []byte(ok)); err != nil || len(cfg.Services) != 30 {
				t.Errorf("valid reload after it: %v", err)
			}
		})
	}
}

// TestScanLine: the line ends scanLine finds are bytes.IndexByte's, for lines of every length
// around the word size and at the end of the data with and without a newline; a line hashes
// alike wherever it starts, and unlike when any byte differs.
func TestScanLine(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 2000 {
		n := r.IntN(80)
		b := make([]byte, n)
		for i := range b {
			b[i] = "ab\n "[r.IntN(4)]
		}
		for off := 0; off <= len(b); {
			end, sum := scanLine(b, off)
			want := bytes.IndexByte(b[off:], '\n')
			if want < 0 {
				want = len(b)
			} else {
				want += off
			}
			if end != want {
				t.Fatalf("%q from %d: end %d, want %d", b, off, end, want)
			}
			// The same line elsewhere (shifted by 1-8 bytes) hashes alike.
			stop := min(end+1, len(b))
			shift := 1 + r.IntN(8)
			moved := append(bytes.Repeat([]byte("x"), shift), b[off:stop]...)
			if _, sum2 := scanLine(moved, shift); sum2 != sum {
				t.Fatalf("%q hashes differently at another offset", b[off:stop])
			}
			// One byte changed: another hash.
			if stop > off {
				changed := bytes.Clone(b[off:stop])
				k := r.IntN(len(changed))
				if changed[k] != '\n' {
					changed[k] ^= 0x40
					if _, sum3 := scanLine(changed, 0); sum3 == sum {
						t.Fatalf("%q and %q hash alike", b[off:stop], changed)
					}
				}
			}
			if end == len(b) {
				break
			}
			off = end + 1
		}
	}
}

// TestSplitHashes: the hashes splitServices takes in its pass are hashItem of each item, items
// alike hash alike wherever they are, and every distinct item of a file hashes differently.
func TestSplitHashes(t *testing.T) {
	block := "director:\n  interface: lvs0\nservices:\n" +
		"  - name: a\n    vip: 10.0.0.1\n    port: 80\n\n    # a comment inside\n    real_servers:\n      - {address: 10.1.0.1, port: 8080}\n" +
		"  - name: b\n    vip: 10.0.0.2\n    port: 80\n" +
		"  - name: a\n    vip: 10.0.0.1\n    port: 80\n\n    # a comment inside\n    real_servers:\n      - {address: 10.1.0.1, port: 8080}\n" +
		"api: {socket: /x}\n"
	for _, data := range [][]byte{[]byte(block), benchYAML(300), bytes.TrimSuffix(benchYAML(20), []byte("\n"))} {
		_, items, hashes, ok := splitServices(data, 0)
		if !ok || len(items) != len(hashes) || len(items) == 0 {
			t.Fatalf("split: ok %v, %d items, %d hashes", ok, len(items), len(hashes))
		}
		seen := map[itemHash]string{}
		for i, it := range items {
			if h := hashItem(it); h != hashes[i] {
				t.Fatalf("item %d %q: split's hash %x, hashItem %x", i, it, hashes[i], h)
			}
			if o, dup := seen[hashes[i]]; dup && o != string(it) {
				t.Fatalf("%q and %q hash alike", o, it)
			}
			seen[hashes[i]] = string(it)
		}
		if bytes.Equal(data, []byte(block)) && hashes[0] != hashes[2] {
			t.Fatal("two items alike hash differently")
		}
	}
}

// hashItem is the hash splitServices gives an item of text b, computed on its own.
func hashItem(b []byte) itemHash {
	var h itemHasher
	for off := 0; off < len(b); {
		end, sum := scanLine(b, off)
		h.add(sum)
		off = end + 1
	}
	return h.sum(len(b))
}

// An item edited in place is read into the place of the service it replaces: nothing of that
// service may stay (here its persistence, health check and sorry server, which the new
// one-line item does not have).
func TestInPlaceEditLeavesNothingOfTheOldService(t *testing.T) {
	itemCache.set(nil, "")
	old := "services:\n" +
		"  - {name: a, vip: 10.9.0.1, port: 80, persistence: 60s, health_check: {type: tcp}, sorry_server: {address: 10.1.0.9}, real_servers: [{address: 10.1.0.1, port: 8080}]}\n" +
		"  - {name: b, vip: 10.9.0.1, port: 81, real_servers: [{address: 10.1.0.2, port: 8080}]}\n"
	edited := "services:\n" +
		"  - {name: a, vip: 10.9.0.1, port: 80, real_servers: [{address: 10.1.0.1, port: 8080}]}\n" +
		"  - {name: b, vip: 10.9.0.1, port: 81, real_servers: [{address: 10.1.0.2, port: 8080}]}\n"
	first, err := Parse("f.yaml", []byte(old))
	if err != nil || first.Services[0].HealthCheck == nil || first.Services[0].SorryServer == nil {
		t.Fatalf("the first file: %v", err)
	}
	got, err := Parse("f.yaml", []byte(edited))
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := got.Edits(first); !ok || len(e) != 1 || e[0] != 0 {
		t.Fatalf("not read as an edit in place of service 0: %v %v", e, ok)
	}
	want, err := parseWhole("f.yaml", []byte(edited))
	if err != nil {
		t.Fatal(err)
	}
	numberServices(want.Services)
	if !sameConfig(got, want) {
		t.Fatalf("edited in place:\n%+v\nwhole:\n%+v", got.Services[0], want.Services[0])
	}
}
