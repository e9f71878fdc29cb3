package config

import (
	"net/netip"
	"strings"
	"testing"
)

// The simple real-server form is read directly; every other spelling is left to yaml.v3.
func TestCutRealServers(t *testing.T) {
	for _, c := range []struct {
		item string
		ok   bool
		n    int
	}{
		{"  - {name: a, vip: 10.0.0.1, port: 80, real_servers: [{address: 10.1.0.1, port: 8080}, {address: 10.1.0.2, weight: 0}]}\n", true, 2},
		{"  - name: a\n    real_servers: [{port: 81, weight: 7, address: 10.1.0.1}]\n    port: 80\n", true, 1},
		{"  - {name: a, real_servers: []}\n", false, 0},
		{"  - {name: a, real_servers: [{address: 2001:db8::1}]}\n", false, 0},                          // IPv6
		{"  - {name: a, real_servers: [{address: \"10.1.0.1\"}]}\n", false, 0},                         // quotes
		{"  - {name: a, real_servers: [{address: 10.1.0.1, port: 080}]}\n", false, 0},                  // leading zero
		{"  - {name: a, real_servers: [{address: 10.1.0.1, port: 65536}]}\n", false, 0},                // too big
		{"  - {name: a, real_servers: [{address: 10.1.0.1, port: 80, port: 81}]}\n", false, 0},         // duplicate key
		{"  - {name: a, real_servers: [{address: 10.1.0.1,port: 80}]}\n", false, 0},                    // spelling
		{"  - {name: a, real_servers: [{address: 10.1.0.1, health_check: {type: none}}]}\n", false, 0}, // other keys
		{"  - {name: a, real_servers: [{port: 80}]}\n", false, 0},                                      // no address
		{"  - {name: a, real_servers: [{address: 10.1.0.1}, ]}\n", false, 0},                           // trailing comma
		{"  - {name: a, real_servers: [{address: 10.1.0.1},\n      {address: 10.1.0.2}]}\n", false, 0}, // two lines
		{"  - {name: a, real_servers: [{address: 10.1.0.1}]} # comment\n", false, 0},
		{"  - {name: a, xreal_servers: [{address: 10.1.0.1}]}\n", false, 0},
		{"  - {name: a, real_servers: [{address: 10.1.0.1}], real_servers: [{address: 10.1.0.2}]}\n", false, 0},
	} {
		rest, rss, ok := cutRealServers([]byte(c.item))
		if ok != c.ok || len(rss) != c.n {
			t.Errorf("%q: ok %v with %d real servers, want %v with %d", c.item, ok, len(rss), c.ok, c.n)
			continue
		}
		if ok && !strings.Contains(string(rest), "real_servers: []") {
			t.Errorf("%q: rest %q", c.item, rest)
		}
	}
}

// Items read with cutRealServers decode to exactly what yaml.v3 gives for the whole file.
func TestParseSplitFastRealServersEqualWhole(t *testing.T) {
	text := "services:\n" +
		"  - {name: a, vip: 10.9.0.1, port: 80, real_servers: [{address: 10.1.0.1, port: 8080}, {address: 10.1.0.2, weight: 0}, {weight: 5, address: 10.1.0.3}]}\n" +
		"  - name: b\n    vip: 10.9.0.1\n    port: 81\n    real_servers: [{address: 10.1.0.1}]\n    scheduler: rr\n" +
		"  - {name: c, vip: 10.9.0.1, port: 82, real_servers: [{address: 10.1.0.1, port: 0}], quorum: 1}\n" +
		"  - {port: 83, name: d_1.x-y, vip: 10.9.0.1, protocol: udp, failover: active-standby, scheduler: sh, real_servers: [{weight: 3, address: 10.1.0.9}]}\n"
	itemCache.set(nil, "")
	want, err := parseWhole("f.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	got, ok := parseSplit("f.yaml", []byte(text))
	if !ok || !sameConfig(got, want) {
		t.Fatalf("ok %v\npiecewise: %+v\nwhole:     %+v", ok, got, want)
	}
	if w := got.Services[0].RealServers[2].Weight; w == nil || *w != 5 {
		t.Errorf("weight %v", w)
	}
}

// Whatever the piecewise decoding accepts, it decodes as the whole-file decoding does.
func FuzzSplitEqualsWhole(f *testing.F) {
	f.Add(benchYAML(3))
	f.Add([]byte("services:\n  - {name: a, vip: 10.9.0.1, port: 80, real_servers: [{address: 10.1.0.1, port: 8080, weight: 2}]}\n"))
	f.Add([]byte("services:\n  - name: b\n    vip: 10.9.0.1\n    port: 81\n    real_servers: [{address: 10.1.0.1}]\n"))
	f.Add([]byte("services:\n  - {port: 80, name: a.b-c_d, vip: 10.200.0.1, protocol: udp, failover: active-standby}\n  - {name: no, vip: 10.200.0.1, port: 81}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		itemCache.set(nil, "")
		want, err := parseWhole("f.yaml", data)
		got, ok := parseSplit("f.yaml", data)
		if !ok {
			return
		}
		if err != nil {
			t.Fatalf("piecewise accepts what the whole decoding refuses: %v", err)
		}
		if !sameConfig(got, want) {
			t.Fatalf("piecewise:\n%+v\nwhole:\n%+v", got, want)
		}
	})
}

// Whatever a reload decodes piecewise after another file (items taken from the last parse,
// items edited in place into the place of the service they replace), it decodes as the
// whole-file decoding of the new file does.
func FuzzReparseEqualsWhole(f *testing.F) {
	oneLine := "services:\n  - {name: a, vip: 10.9.0.1, port: 80, real_servers: [{address: 10.1.0.1, port: 8080}]}\n  - {name: b, vip: 10.9.0.1, port: 81}\n"
	f.Add([]byte("services:\n  - {name: a, vip: 10.9.0.1, port: 80, persistence: 60s, health_check: {type: tcp}, sorry_server: {address: 10.1.0.9}, real_servers: [{address: 10.1.0.1, port: 8080}]}\n  - {name: b, vip: 10.9.0.1, port: 81}\n"), []byte(oneLine))
	f.Add([]byte(oneLine), []byte(strings.Replace(oneLine, "port: 8080}]", "port: 8080, weight: 3}]", 1)))
	f.Add(benchYAML(4), benchYAML(5))
	f.Fuzz(func(t *testing.T, before, after []byte) {
		itemCache.set(nil, "")
		if _, ok := parseSplit("f.yaml", before); !ok {
			return
		}
		got, ok := parseSplit("f.yaml", after)
		if !ok {
			return
		}
		want, err := parseWhole("f.yaml", after)
		if err != nil {
			t.Fatalf("piecewise accepts what the whole decoding refuses: %v", err)
		}
		if !sameConfig(got, want) {
			t.Fatalf("piecewise after another file:\n%+v\nwhole:\n%+v", got, want)
		}
	})
}

// A whole one-line item in the simple form is read without yaml.v3; anything else is not.
func TestFastItem(t *testing.T) {
	for _, c := range []struct {
		item string
		ok   bool
	}{
		{"  - {name: s1, vip: 10.200.0.1, port: 8000, scheduler: wrr, real_servers: [{address: 10.1.0.1, port: 8080}]}\n", true},
		{"  - {port: 80, name: a.b-c_d, vip: 10.200.0.1, protocol: udp, failover: active-standby}\n\n", true},
		{"  - {name: s1, vip: 10.200.0.1, port: 8000, quorum: 1}\n", false}, // other key
		{"  - {name: true, vip: 10.200.0.1, port: 8000}\n", false},          // a boolean
		{"  - {name: 1a, vip: 10.200.0.1, port: 8000}\n", false},            // not a word
		{"  - {name: s1, vip: 2001:db8::1, port: 8000}\n", false},           // IPv6
		{"  - {name: s1, name: s2, vip: 10.200.0.1}\n", false},              // duplicate key
		{"  - {name: s1, vip: 10.200.0.1, port: 8000} # c\n", false},        // comment
		{"  - {name: s1,\n     vip: 10.200.0.1}\n", false},                  // two lines
		{"  - name: s1\n", false}, // block style
		{"  - {name: s1, vip: 10.200.0.1, port: 8000, real_servers: [{port: 1}]}\n", false}, // no address
		{"  - {}\n", false},
		// Nothing but the grammar turns these away (no separate check for the characters):
		{"  - {name: &a s1, vip: 10.200.0.1, port: 8000}\n", false},                                                   // anchor
		{"  - {name: *a, vip: 10.200.0.1, port: 8000}\n", false},                                                      // alias
		{"  - {name: !!str s1, vip: 10.200.0.1, port: 8000}\n", false},                                                // tag
		{"  - {name: \"s1\", vip: 10.200.0.1, port: 8000}\n", false},                                                  // quotes
		{"  - {name: s1,\tvip: 10.200.0.1, port: 8000}\n", false},                                                     // tab
		{"  - {name: s1, vip: 10.200.0.1, port: 8000}\r\n", false},                                                    // carriage return
		{"  - {name: s1\r, vip: 10.200.0.1, port: 8000}\n", false},                                                    // carriage return
		{"  - {name: s1, vip: 10.200.0.1, port: 8000, real_servers: [{address: 10.1.0.1, port: 8080}, *b]}\n", false}, // alias
		{"  - {name: s1, vip: 10.200.0.1, port: 8000, real_servers: [{address: 10.1.0.1, port: 80%0}]}\n", false},
	} {
		var s Service
		if ok := fastItemInto([]byte(c.item), &s); ok != c.ok {
			t.Errorf("%q: ok %v, want %v", c.item, ok, c.ok)
		}
	}
}

// ipv4Token takes exactly what netip.ParseAddr takes as an IPv4 address.
func TestIPv4Token(t *testing.T) {
	for _, s := range []string{"10.0.0.1", "0.0.0.0", "255.255.255.255", "1.2.3.4", "10.0.0.256", "10.0.0", "10.0.0.1.2",
		"010.0.0.1", "10.00.0.1", "10..0.1", ".10.0.0", "10.0.0.", "1.2.3.4a", "", "1234.1.1.1", "10.0.0.0"} {
		got, ok := ipv4Token([]byte(s))
		want, err := netip.ParseAddr(s)
		if ok != (err == nil && want.Is4()) || ok && got != want {
			t.Errorf("%q: got %v %v, netip.ParseAddr %v %v", s, got, ok, want, err)
		}
	}
}

func FuzzIPv4Token(f *testing.F) {
	f.Add("10.0.0.1")
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := ipv4Token([]byte(s))
		want, err := netip.ParseAddr(s)
		if ok != (err == nil && want.Is4()) || ok && got != want {
			t.Fatalf("%q: got %v %v, netip.ParseAddr %v %v", s, got, ok, want, err)
		}
	})
}
