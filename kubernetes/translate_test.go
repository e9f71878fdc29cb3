package kubernetes

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/lvs-director/lvs-director/config"
)

func kcfg(mod func(*config.Kubernetes)) *config.Kubernetes {
	c := &config.Kubernetes{Kubeconfig: "/k", Targets: "nodes", VIPAnnotation: "lvs-director.io/vip", Scheduler: "rr"}
	if mod != nil {
		mod(c)
	}
	return c
}

type svcOpt func(*Service)

func lbSvc(ns, name string, opts ...svcOpt) *Service {
	s := &Service{
		ObjectMeta: ObjectMeta{Namespace: ns, Name: name},
		Spec: ServiceSpec{
			Type:  ServiceTypeLoadBalancer,
			Ports: []ServicePort{{Name: "http", Port: 80, Protocol: ProtocolTCP, NodePort: 30080}},
		},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

func withVIP(ip string) svcOpt {
	return func(s *Service) { s.Annotations = map[string]string{"lvs-director.io/vip": ip} }
}
func withLBIP(ip string) svcOpt { return func(s *Service) { s.Spec.LoadBalancerIP = ip } }
func withStatus(ip string) svcOpt {
	return func(s *Service) {
		s.Status.LoadBalancer.Ingress = []LoadBalancerIngress{{IP: ip}}
	}
}
func withPorts(ps ...ServicePort) svcOpt { return func(s *Service) { s.Spec.Ports = ps } }

func node(name, ip string, ready bool, labels ...string) *Node {
	st := "False"
	if ready {
		st = ConditionTrue
	}
	n := &Node{
		ObjectMeta: ObjectMeta{Name: name, Labels: map[string]string{}},
		Status: NodeStatus{
			Conditions: []NodeCondition{{Type: NodeReady, Status: st}},
			Addresses:  []NodeAddress{{Type: "ExternalIP", Address: "192.0.2.99"}, {Type: NodeInternalIP, Address: ip}},
		},
	}
	for _, l := range labels {
		n.Labels[l] = ""
	}
	return n
}

type ep struct {
	ip                          string
	ready, serving, terminating *bool
	node                        string
}

func bp(b bool) *bool { return &b }

func slice(ns, svc, name string, port int32, eps ...ep) *EndpointSlice {
	pn, proto := "http", ProtocolTCP
	es := &EndpointSlice{
		ObjectMeta:  ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{LabelServiceName: svc}},
		AddressType: AddressTypeIPv4,
		Ports:       []EndpointPort{{Name: &pn, Port: &port, Protocol: &proto}},
	}
	for _, e := range eps {
		x := Endpoint{Addresses: []string{e.ip}, Conditions: EndpointConditions{Ready: e.ready, Serving: e.serving, Terminating: e.terminating}}
		if e.node != "" {
			n := e.node
			x.NodeName = &n
		}
		es.Endpoints = append(es.Endpoints, x)
	}
	return es
}

// rs renders real servers as "addr:port/weight" for compact comparisons.
func rs(s config.Service) string {
	var parts []string
	for _, r := range s.RealServers {
		parts = append(parts, fmt.Sprintf("%s/%d", netip.AddrPortFrom(r.Address.Addr, r.Port), r.WeightOr()))
	}
	return strings.Join(parts, " ")
}

// summary renders services as "name key [real servers]".
func summary(out []config.Service) []string {
	var got []string
	for _, s := range out {
		got = append(got, fmt.Sprintf("%s %s [%s]", s.Name, s.Key(), rs(s)))
	}
	return got
}

func TestTranslate(t *testing.T) {
	class := "example.com/lvs"
	nodes := []*Node{node("n2", "10.0.0.2", true), node("n1", "10.0.0.1", true), node("n3", "10.0.0.3", false), node("n4", "10.0.0.4", true, LabelExcludeFromLB)}
	tests := []struct {
		name         string
		cfg          *config.Kubernetes
		services     []*Service
		slices       []*EndpointSlice
		nodes        []*Node
		want         []string
		wantProblems []string
	}{
		{
			name:     "nodes: ready, not excluded nodes at the nodePort",
			cfg:      kcfg(nil),
			services: []*Service{lbSvc("web", "front", withVIP("198.51.100.1"))},
			nodes:    nodes,
			want:     []string{"k8s.web.front.http tcp/198.51.100.1:80 [10.0.0.1:30080/1 10.0.0.2:30080/1]"},
		},
		{
			name: "nodes: externalTrafficPolicy Local keeps nodes with a ready endpoint",
			cfg:  kcfg(nil),
			services: []*Service{lbSvc("web", "front", withVIP("198.51.100.1"), func(s *Service) {
				s.Spec.ExternalTrafficPolicy = ServiceExternalTrafficPolicyLocal
			})},
			slices: []*EndpointSlice{slice("web", "front", "front-a", 8080, ep{ip: "10.1.0.1", node: "n2"}, ep{ip: "10.1.0.9", node: "n1", ready: bp(false)})},
			nodes:  nodes,
			want:   []string{"k8s.web.front.http tcp/198.51.100.1:80 [10.0.0.2:30080/1]"},
		},
		{
			name:         "nodes: a port without nodePort is skipped",
			cfg:          kcfg(nil),
			services:     []*Service{lbSvc("web", "front", withVIP("198.51.100.1"), withPorts(ServicePort{Name: "http", Port: 80}))},
			nodes:        nodes,
			wantProblems: []string{"service web/front port http: no nodePort (targets nodes needs allocateLoadBalancerNodePorts); skipped"},
		},
		{
			name:     "pods: ready, terminating-serving at weight 0, not ready and terminating-not-serving left out",
			cfg:      kcfg(func(c *config.Kubernetes) { c.Targets = "pods" }),
			services: []*Service{lbSvc("web", "front", withVIP("198.51.100.1"))},
			slices: []*EndpointSlice{
				slice("web", "front", "front-a", 8080,
					ep{ip: "10.1.0.1"}, // nil conditions: ready
					ep{ip: "10.1.0.2", ready: bp(true), serving: bp(true), terminating: bp(false)},
					ep{ip: "10.1.0.3", ready: bp(false)},
					ep{ip: "10.1.0.4", ready: bp(false), serving: bp(true), terminating: bp(true)},
					ep{ip: "10.1.0.5", ready: bp(false), serving: bp(false), terminating: bp(true)},
				),
				slice("web", "front", "front-b", 8080, ep{ip: "10.1.0.6"}, ep{ip: "10.1.0.1"}),
				slice("web", "other", "other-a", 8080, ep{ip: "10.9.9.9"}),
			},
			want: []string{"k8s.web.front.http tcp/198.51.100.1:80 [10.1.0.1:8080/1 10.1.0.2:8080/1 10.1.0.4:8080/0 10.1.0.6:8080/1]"},
		},
		{
			name: "pods: one service per port, endpoint port matched by name, protocol kept",
			cfg:  kcfg(func(c *config.Kubernetes) { c.Targets = "pods" }),
			services: []*Service{lbSvc("dns", "coredns", withLBIP("198.51.100.53"), withPorts(
				ServicePort{Name: "dns", Port: 53, Protocol: ProtocolUDP},
				ServicePort{Name: "dns-tcp", Port: 53, Protocol: ProtocolTCP},
			))},
			slices: []*EndpointSlice{func() *EndpointSlice {
				es := slice("dns", "coredns", "coredns-a", 0, ep{ip: "10.2.0.1"})
				n1, n2, p1, p2, udp, tcp := "dns", "dns-tcp", int32(1053), int32(2053), ProtocolUDP, ProtocolTCP
				es.Ports = []EndpointPort{{Name: &n1, Port: &p1, Protocol: &udp}, {Name: &n2, Port: &p2, Protocol: &tcp}}
				return es
			}()},
			want: []string{
				"k8s.dns.coredns.dns udp/198.51.100.53:53 [10.2.0.1:1053/1]",
				"k8s.dns.coredns.dns-tcp tcp/198.51.100.53:53 [10.2.0.1:2053/1]",
			},
		},
		{
			name: "selection: type, class, namespaces",
			cfg: kcfg(func(c *config.Kubernetes) {
				c.LoadBalancerClass = class
				c.Namespaces = []string{"web"}
			}),
			services: []*Service{
				lbSvc("web", "a", withVIP("198.51.100.1"), func(s *Service) { s.Spec.LoadBalancerClass = &class }),
				lbSvc("web", "b", withVIP("198.51.100.2")), // no class
				lbSvc("api", "c", withVIP("198.51.100.3"), func(s *Service) { s.Spec.LoadBalancerClass = &class }),
				lbSvc("web", "d", withVIP("198.51.100.4"), func(s *Service) {
					s.Spec.LoadBalancerClass = &class
					s.Spec.Type = "NodePort"
				}),
			},
			nodes: nodes[:1],
			want:  []string{"k8s.web.a.http tcp/198.51.100.1:80 [10.0.0.2:30080/1]"},
		},
		{
			name: "VIP: annotation over loadBalancerIP, pool: status kept, then lowest free in name order",
			cfg: kcfg(func(c *config.Kubernetes) {
				c.VIPPool = &config.Prefix{Prefix: netip.MustParsePrefix("198.51.100.0/29")}
			}),
			services: []*Service{
				lbSvc("b", "x", withVIP("198.51.100.1"), withLBIP("203.0.113.9")),
				lbSvc("a", "y"),
				lbSvc("c", "z", withStatus("198.51.100.2")),
				lbSvc("a", "w", withStatus("192.0.2.1")), // status outside the pool: allocated
			},
			nodes: nodes[:1],
			want: []string{
				"k8s.a.w.http tcp/198.51.100.3:80 [10.0.0.2:30080/1]",
				"k8s.a.y.http tcp/198.51.100.4:80 [10.0.0.2:30080/1]",
				"k8s.b.x.http tcp/198.51.100.1:80 [10.0.0.2:30080/1]",
				"k8s.c.z.http tcp/198.51.100.2:80 [10.0.0.2:30080/1]",
			},
		},
		{
			name: "VIP: pool exhausted, no pool, bad annotation, duplicate VIP:port",
			cfg: kcfg(func(c *config.Kubernetes) {
				c.VIPPool = &config.Prefix{Prefix: netip.MustParsePrefix("198.51.100.0/30")}
			}),
			services: []*Service{
				lbSvc("a", "a"), lbSvc("a", "b"), lbSvc("a", "c"),
				lbSvc("b", "bad", withVIP("300.1.1.1")),
				lbSvc("c", "one", withVIP("203.0.113.1")),
				lbSvc("c", "two", withLBIP("203.0.113.1")),
			},
			nodes: nodes[:1],
			want: []string{
				"k8s.a.a.http tcp/198.51.100.1:80 [10.0.0.2:30080/1]",
				"k8s.a.b.http tcp/198.51.100.2:80 [10.0.0.2:30080/1]",
				"k8s.c.one.http tcp/203.0.113.1:80 [10.0.0.2:30080/1]",
			},
			wantProblems: []string{
				`service b/bad: annotation lvs-director.io/vip: invalid IP address "300.1.1.1"; skipped`,
				"service a/c: vip_pool 198.51.100.0/30 is exhausted; skipped",
				"service c/two port http: tcp/203.0.113.1:80 is already served by k8s.c.one.http; skipped",
			},
		},
		{
			name:         "VIP: none without a pool",
			cfg:          kcfg(nil),
			services:     []*Service{lbSvc("a", "a")},
			wantProblems: []string{"service a/a: no VIP (set annotation lvs-director.io/vip or spec.loadBalancerIP, or configure vip_pool); skipped"},
		},
		{
			name:         "invalid translated service is skipped with config's message",
			cfg:          kcfg(nil),
			services:     []*Service{lbSvc("a", "lo", withVIP("127.0.0.1"))},
			nodes:        nodes[:1],
			wantProblems: []string{"service a/lo port http: skipped: kubernetes: k8s.a.lo.http.vip: 127.0.0.1 cannot be a VIP (unspecified, multicast or loopback)"},
		},
		{
			name:     "unnamed port uses its number; IPv6 VIP takes IPv6 node addresses only",
			cfg:      kcfg(nil),
			services: []*Service{lbSvc("a", "v6", withVIP("2001:db8::1"), withPorts(ServicePort{Port: 443, NodePort: 30443}))},
			nodes:    []*Node{node("n1", "10.0.0.1", true), node("n6", "fd00::6", true)},
			want:     []string{"k8s.a.v6.443 tcp/[2001:db8::1]:443 [[fd00::6]:30443/1]"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, problems := Translate(tt.cfg, tt.services, tt.slices, tt.nodes)
			if got := summary(out); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("services:\n got %q\nwant %q", got, tt.want)
			}
			if !reflect.DeepEqual(problems, tt.wantProblems) {
				t.Errorf("problems:\n got %q\nwant %q", problems, tt.wantProblems)
			}
			for _, s := range out {
				if s.Source != config.SourceKubernetes || s.Scheduler != "rr" || s.Failover != config.DefaultFailover {
					t.Errorf("%s: source %q scheduler %q failover %q", s.Name, s.Source, s.Scheduler, s.Failover)
				}
			}
			// Pure and deterministic: the reversed input gives the same output.
			rev := append([]*Service(nil), tt.services...)
			for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
				rev[i], rev[j] = rev[j], rev[i]
			}
			out2, _ := Translate(tt.cfg, rev, tt.slices, tt.nodes)
			if !reflect.DeepEqual(summary(out2), summary(out)) {
				t.Errorf("order-dependent: %q vs %q", summary(out2), summary(out))
			}
		})
	}
}

func TestTranslateHealthCheckAndScheduler(t *testing.T) {
	hc := &config.HealthCheck{Type: "http", Path: "/healthz"}
	cfg := kcfg(func(c *config.Kubernetes) { c.Scheduler = "wlc"; c.HealthCheck = hc })
	out, _ := Translate(cfg, []*Service{lbSvc("a", "a", withVIP("198.51.100.1")), lbSvc("a", "b", withVIP("198.51.100.2"))}, nil, []*Node{node("n", "10.0.0.1", true)})
	if len(out) != 2 {
		t.Fatalf("got %d services", len(out))
	}
	if out[0].Scheduler != "wlc" || out[0].HealthCheck == nil || out[0].HealthCheck.Path != "/healthz" {
		t.Errorf("service 0: %+v", out[0])
	}
	if out[0].HealthCheck == hc || out[0].HealthCheck == out[1].HealthCheck {
		t.Errorf("health check is shared between services and config")
	}
}

func TestServiceName(t *testing.T) {
	long := strings.Repeat("n", 63)
	a := ServiceName(long, long, ServicePort{Name: "http"})
	b := ServiceName(long, long, ServicePort{Name: "https"})
	if len(a) != 63 || len(b) != 63 || a == b || !strings.HasPrefix(a, "k8s.nnn") {
		t.Errorf("long names: %q %q", a, b)
	}
	if a != ServiceName(long, long, ServicePort{Name: "http"}) {
		t.Errorf("not stable")
	}
	if got := ServiceName("ns", "svc", ServicePort{Port: 8080}); got != "k8s.ns.svc.8080" {
		t.Errorf("got %q", got)
	}
}

func TestStatusUpdates(t *testing.T) {
	cfg := kcfg(nil)
	svcs := []*Service{
		lbSvc("a", "new", withVIP("198.51.100.1")),
		lbSvc("a", "same", withVIP("198.51.100.2"), withStatus("198.51.100.2")),
		lbSvc("a", "moved", withVIP("198.51.100.3"), withStatus("198.51.100.99")),
		lbSvc("a", "skipped"), // no VIP: not translated, status untouched
	}
	out, _ := Translate(cfg, svcs, nil, []*Node{node("n", "10.0.0.1", true)})
	got := StatusUpdates(cfg, svcs, out)
	want := map[string]netip.Addr{"a/new": netip.MustParseAddr("198.51.100.1"), "a/moved": netip.MustParseAddr("198.51.100.3")}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v want %v", got, want)
	}
}
