package director

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/lvs-director/lvs-director/config"
)

// cacheModel is a config file of services that a test edits at random, and the health and
// operator drains of its real servers.
type cacheModel struct {
	r         *rand.Rand
	svcs      []modelService
	down      map[string]bool // "service rs" whose check fails
	drained   map[string]bool // "service rs" drained by the operator
	healthGen uint64
	drainGen  uint64
	serial    int
	inOrder   bool // the file lists the services in the order of their keys
}

type modelService struct {
	name    string
	vip     int
	port    int
	checked bool
	sorry   bool
	rss     []int // last octets of the real servers, with their weights
	weights []int
}

func (m *cacheModel) newService() modelService {
	m.serial++
	s := modelService{name: fmt.Sprintf("s%d", m.serial), vip: m.r.IntN(5), port: 1000 + m.serial, checked: m.r.IntN(2) == 0, sorry: m.r.IntN(4) == 0}
	for k := range 1 + m.r.IntN(3) {
		s.rss = append(s.rss, 10*k+m.r.IntN(10))
		s.weights = append(s.weights, 1+m.r.IntN(3))
	}
	return s
}

func (m *cacheModel) yaml() []byte {
	var b strings.Builder
	b.WriteString("director:\n  interface: lvs0\nservices:\n")
	svcs := m.svcs
	if m.inOrder {
		svcs = slices.Clone(svcs)
		slices.SortFunc(svcs, func(a, b modelService) int { return (a.vip-b.vip)*100000 + a.port - b.port })
	}
	for _, s := range svcs {
		fmt.Fprintf(&b, "  - {name: %s, vip: 203.0.113.%d, port: %d, real_servers: [", s.name, 10+s.vip, s.port)
		for i, rs := range s.rss {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "{address: 10.0.%d.%d, port: 80, weight: %d}", i, rs, s.weights[i])
		}
		b.WriteString("]")
		if s.checked {
			b.WriteString(", health_check: {type: tcp}")
		}
		if s.sorry {
			b.WriteString(", sorry_server: {address: 10.9.9.9, port: 80}")
		}
		b.WriteString("}\n")
	}
	return []byte(b.String())
}

// edit changes the file, the health or the drains at random, and bumps the generations the
// way the daemon does.
func (m *cacheModel) edit() string {
	pick := func() *modelService { return &m.svcs[m.r.IntN(len(m.svcs))] }
	anyRS := func() string {
		s := pick()
		i := m.r.IntN(len(s.rss))
		return fmt.Sprintf("%s 10.0.%d.%d:80", s.name, i, s.rss[i])
	}
	switch m.r.IntN(9) {
	case 0:
		s := pick()
		s.weights[0] = 1 + m.r.IntN(3)
		return "weight"
	case 1:
		s := pick()
		s.rss = append(s.rss, 10*len(s.rss)+m.r.IntN(10))
		s.weights = append(s.weights, 1)
		return "add rs"
	case 2:
		if len(m.svcs) > 1 {
			i := m.r.IntN(len(m.svcs))
			m.svcs = slices.Delete(m.svcs, i, i+1)
		}
		return "remove service"
	case 3:
		i := m.r.IntN(len(m.svcs) + 1)
		m.svcs = slices.Insert(m.svcs, i, m.newService())
		return "insert service"
	case 4:
		pick().vip = m.r.IntN(5)
		return "move service"
	case 5:
		s := pick()
		m.serial++
		s.name = fmt.Sprintf("s%d", m.serial)
		return "rename"
	case 6:
		k := anyRS()
		m.down[k] = !m.down[k]
		m.healthGen++
		return "health"
	case 7:
		k := anyRS()
		m.drained[k] = !m.drained[k]
		m.drainGen++
		return "drain"
	}
	return "nothing"
}

func (m *cacheModel) health(s string, a netip.AddrPort) bool { return !m.down[s+" "+a.String()] }
func (m *cacheModel) isDrained(s string, a netip.AddrPort) bool {
	return m.drained[s+" "+a.String()]
}

// byVIP groups a desired state by VIP.
func byVIP(ds []VirtualService) map[netip.Addr]string {
	out := map[netip.Addr]string{}
	for _, d := range ds {
		out[d.Key.Addr] += fmt.Sprintf("%+v;", d)
	}
	return out
}

// TestDesiredCache: after random edits of the file, the health and the drains, Build returns
// what Desired returns: every service of a VIP that changed or is needed, or of every VIP with
// full, whole and equal; the others whole or stubs with the same key and attributes. It names every VIP
// whose services changed (none when nothing did).
func TestDesiredCache(t *testing.T) {
	t.Run("any order", func(t *testing.T) { testDesiredCache(t, false) })
	t.Run("in order", func(t *testing.T) { testDesiredCache(t, true) })
}

func testDesiredCache(t *testing.T, inOrder bool) {
	m := &cacheModel{r: rand.New(rand.NewPCG(3, 4)), down: map[string]bool{}, drained: map[string]bool{}, inOrder: inOrder}
	for range 30 {
		m.svcs = append(m.svcs, m.newService())
	}
	var c, cs, ce DesiredCache // cs: the same builds with BuildScope; ce: with BuildScopeEdited when the config tells its edits
	var prev []VirtualService
	var prevCfg *config.Config
	reused, stubs, partials, told := 0, 0, 0, 0
	for step := range 1500 {
		what := "start"
		if step > 0 {
			what = m.edit()
		}
		cfg, err := config.Parse("t.yaml", m.yaml())
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		need := map[netip.Addr]bool{}
		if m.r.IntN(3) == 0 {
			need[netip.AddrFrom4([4]byte{203, 0, 113, byte(10 + m.r.IntN(5))})] = true
		}
		full := m.r.IntN(10) == 0
		want, wantH := Desired(cfg.Services, m.health, m.isDrained)
		got, gotH, changed := c.Build(cfg.Services, m.health, m.healthGen, m.isDrained, m.drainGen, need, full)
		if !reflect.DeepEqual(gotH, wantH) || len(got) != len(want) {
			t.Fatalf("step %d (%s): health\n%+v\nwant\n%+v", step, what, gotH, wantH)
		}
		// BuildScope: the same, or (partial) exactly the whole services of changed and need.
		part, changedS, partial := cs.BuildScope(cfg.Services, m.health, m.healthGen, m.isDrained, m.drainGen, need, full)
		if !reflect.DeepEqual(changedS, changed) || !reflect.DeepEqual(cs.Health(), wantH) {
			t.Fatalf("step %d (%s): BuildScope changed %v, Build %v", step, what, changedS, changed)
		}
		if partial != (!full && changed != nil) {
			t.Fatalf("step %d (%s): partial %v with full %v, changed %v", step, what, partial, full, changed)
		}
		wantPart := got
		if partial {
			partials++
			wantPart = nil
			for _, vs := range want {
				if changed[vs.Key.Addr] || need[vs.Key.Addr] {
					wantPart = append(wantPart, vs)
				}
			}
		}
		if !reflect.DeepEqual(part, wantPart) {
			t.Fatalf("step %d (%s): BuildScope (partial %v)\n%+v\nwant\n%+v", step, what, partial, part, wantPart)
		}
		// BuildScopeEdited: exactly what BuildScope returns.
		var partE []VirtualService
		var changedE map[netip.Addr]bool
		var partialE bool
		if edited, ok := cfg.Edits(prevCfg); ok {
			told++
			partE, changedE, partialE = ce.BuildScopeEdited(cfg.Services, edited, m.health, m.healthGen, m.isDrained, m.drainGen, need, full)
		} else {
			partE, changedE, partialE = ce.BuildScope(cfg.Services, m.health, m.healthGen, m.isDrained, m.drainGen, need, full)
		}
		if !reflect.DeepEqual(partE, part) || !reflect.DeepEqual(changedE, changedS) || partialE != partial || !reflect.DeepEqual(ce.Health(), wantH) {
			t.Fatalf("step %d (%s): BuildScopeEdited (partial %v) changed %v\n%+v\nwant (partial %v) changed %v\n%+v", step, what, partialE, changedE, partE, partial, changedS, part)
		}
		prevCfg = cfg
		for i := range got {
			a := want[i].Key.Addr
			if full || changed == nil || changed[a] || need[a] {
				if !reflect.DeepEqual(got[i], want[i]) {
					t.Fatalf("step %d (%s): service %d\n%+v\nwant\n%+v", step, what, i, got[i], want[i])
				}
				continue
			}
			stub := want[i]
			stub.Dests, stub.stub = nil, true
			if reflect.DeepEqual(got[i], want[i]) {
				continue // (built again: whole)
			}
			if !reflect.DeepEqual(got[i], stub) {
				t.Fatalf("step %d (%s): service %d\n%+v\nwant the stub\n%+v", step, what, i, got[i], stub)
			}
			stubs++
		}
		if step == 0 {
			if changed != nil {
				t.Fatalf("first build: changed %v, want nil (unknown)", changed)
			}
			prev = want
			continue
		}
		if changed == nil {
			t.Fatalf("step %d (%s): changed unknown", step, what)
		}
		before, after := byVIP(prev), byVIP(want)
		for a := range before {
			after[a] += ""
		}
		for a, s := range after {
			if s != before[a] && !changed[a] {
				t.Fatalf("step %d (%s): VIP %s changed and is not in %v", step, what, a, changed)
			}
		}
		// (A renamed service is new to the cache: its VIP counts as changed.)
		if reflect.DeepEqual(prev, want) && len(changed) > 0 && what != "rename" {
			t.Fatalf("step %d (%s): nothing changed, yet changed = %v", step, what, changed)
		}
		if len(changed) < len(after) {
			reused++
		}
		prev = want
	}
	if reused < 1000 || stubs < 10000 || partials < 1000 || told < 500 || ce.quick < 300 {
		t.Fatalf("only %d of 1500 builds left a VIP out of the change, %d stubs, %d partial builds, %d configs told their edits, %d quick builds", reused, stubs, partials, told, ce.quick)
	}
}

// TestBuildScopeEditedOrder: an edit in place that moves a service out of key order is seen
// (the next edited build must not look services up by key as if they were in order).
func TestBuildScopeEditedOrder(t *testing.T) {
	svc := func(name, vip string, port int, rs string) string {
		return fmt.Sprintf("  - {name: %s, vip: %s, port: %d, real_servers: [{address: %s, port: 80}]}\n", name, vip, port, rs)
	}
	files := []string{
		// in key order
		svc("a", "10.0.0.1", 80, "10.1.0.1") + svc("b", "10.0.0.2", 80, "10.1.0.2") + svc("c", "10.0.0.3", 80, "10.1.0.3") + svc("d", "10.0.0.4", 80, "10.1.0.4"),
		// a moves to the end of the key order, in place
		svc("a", "10.0.0.9", 80, "10.1.0.1") + svc("b", "10.0.0.2", 80, "10.1.0.2") + svc("c", "10.0.0.3", 80, "10.1.0.3") + svc("d", "10.0.0.4", 80, "10.1.0.4"),
		// then d gets another real server: its VIP must be found though the order is broken
		svc("a", "10.0.0.9", 80, "10.1.0.1") + svc("b", "10.0.0.2", 80, "10.1.0.2") + svc("c", "10.0.0.3", 80, "10.1.0.3") + svc("d", "10.0.0.4", 80, "10.1.0.5"),
		// and a again
		svc("a", "10.0.0.9", 80, "10.1.0.7") + svc("b", "10.0.0.2", 80, "10.1.0.2") + svc("c", "10.0.0.3", 80, "10.1.0.3") + svc("d", "10.0.0.4", 80, "10.1.0.5"),
	}
	up := func(string, netip.AddrPort) bool { return true }
	no := func(string, netip.AddrPort) bool { return false }
	var cs, ce DesiredCache
	var prev *config.Config
	for step, f := range files {
		cfg, err := config.Parse("t.yaml", []byte("services:\n"+f))
		if err != nil {
			t.Fatal(err)
		}
		want, wantChanged, wantPartial := cs.BuildScope(cfg.Services, up, 0, no, 0, nil, false)
		edited, ok := cfg.Edits(prev)
		if step > 0 && !ok {
			t.Fatalf("step %d: the config does not tell its edits", step)
		}
		got, changed, partial := ce.BuildScopeEdited(cfg.Services, edited, up, 0, no, 0, nil, false)
		if step > 0 && (!partial || len(got) == 0) {
			t.Fatalf("step %d: partial %v, %d services", step, partial, len(got))
		}
		if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(changed, wantChanged) || partial != wantPartial {
			t.Fatalf("step %d: BuildScopeEdited %v %v\n%+v\nwant %v %v\n%+v", step, partial, changed, got, wantPartial, wantChanged, want)
		}
		prev = cfg
	}
	if ce.quick != len(files)-1 {
		t.Fatalf("%d quick builds, want %d", ce.quick, len(files)-1)
	}
}
