package kubernetes

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/lvs-director/lvs-director/config"
)

// maxNameLen is config's limit on service names.
const maxNameLen = 63

// ServiceName returns the config.Service name of one port of a Kubernetes Service:
// k8s.<namespace>.<name>.<port name or number>. Names longer than config allows are cut and
// end in a hash of the whole name, so they stay unique and stable.
func ServiceName(namespace, name string, port ServicePort) string {
	p := port.Name
	if p == "" {
		p = strconv.Itoa(int(port.Port))
	}
	n := "k8s." + namespace + "." + name + "." + p
	if len(n) <= maxNameLen {
		return n
	}
	sum := sha256.Sum256([]byte(n))
	h := hex.EncodeToString(sum[:])[:10]
	return n[:maxNameLen-len(h)-1] + "." + h
}

// Translate turns the Services of type LoadBalancer selected by cfg into config services, one
// per Service port, using the EndpointSlices (targets: pods) or Nodes (targets: nodes) given.
// It is pure: the same objects give the same services, in the same order (by name), so
// several directors reading the same cluster agree. problems lists what was skipped and why.
//
// The VIP of a Service is, in order: the value of the vip_annotation, spec.loadBalancerIP, or
// an address of vip_pool. Pool addresses are allocated deterministically: a Service whose
// status already shows an ingress IP inside the pool keeps it (first in namespace/name order
// on a clash), then the others take the lowest free address in namespace/name order. A pool
// address named explicitly by any Service is never allocated.
//
// Real servers: with targets nodes, every Ready node's InternalIP of the VIP's family at the
// port's nodePort (nodes labelled node.kubernetes.io/exclude-from-external-load-balancers or
// being deleted are left out; cordoned nodes stay, as kube-proxy still forwards there); with
// externalTrafficPolicy Local only the nodes that host a ready endpoint. With targets pods,
// the endpoints that are ready and serving (unset conditions count as ready, serving follows
// ready) at the endpoint port of the Service port; a terminating endpoint that still serves is
// kept at weight 0 so its connections drain.
func Translate(cfg *config.Kubernetes, services []*Service, slices []*EndpointSlice, nodes []*Node) (out []config.Service, problems []string) {
	selected := make([]*Service, 0, len(services))
	for _, s := range services {
		if s != nil && Selected(cfg, s) {
			selected = append(selected, s)
		}
	}
	sort.Slice(selected, func(i, j int) bool { return nsName(selected[i]) < nsName(selected[j]) })

	vips, vipProblems := assignVIPs(cfg, selected)
	problems = append(problems, vipProblems...)

	slicesOf := map[string][]*EndpointSlice{}
	for _, es := range slices {
		if es == nil {
			continue
		}
		if svc := es.Labels[LabelServiceName]; svc != "" {
			k := es.Namespace + "/" + svc
			slicesOf[k] = append(slicesOf[k], es)
		}
	}
	sortedNodes := make([]*Node, 0, len(nodes))
	for _, n := range nodes {
		if n != nil {
			sortedNodes = append(sortedNodes, n)
		}
	}
	sort.Slice(sortedNodes, func(i, j int) bool { return sortedNodes[i].Name < sortedNodes[j].Name })

	keys := map[string]string{}
	for _, svc := range selected {
		vip, ok := vips[nsName(svc)]
		if !ok {
			continue
		}
		svcSlices := slicesOf[nsName(svc)]
		sort.Slice(svcSlices, func(i, j int) bool { return svcSlices[i].Name < svcSlices[j].Name })
		for _, port := range svc.Spec.Ports {
			s := config.Service{
				Name:     ServiceName(svc.Namespace, svc.Name, port),
				VIP:      config.Addr{Addr: vip},
				Port:     uint16(port.Port),
				Protocol: strings.ToLower(protocolOf(port)),
				Source:   config.SourceKubernetes,
			}
			s.Scheduler = cfg.Scheduler
			if cfg.HealthCheck != nil {
				hc := *cfg.HealthCheck
				s.HealthCheck = &hc
			}
			var rsProblems []string
			if cfg.Targets == config.KubeTargetsPods {
				s.RealServers = podTargets(vip, port, svcSlices)
			} else {
				s.RealServers, rsProblems = nodeTargets(svc, vip, port, svcSlices, sortedNodes)
			}
			if len(rsProblems) > 0 {
				problems = append(problems, rsProblems...)
				continue
			}
			if err := config.ValidateService(&s, nil); err != nil {
				problems = append(problems, fmt.Sprintf("service %s/%s port %s: skipped: %v", svc.Namespace, svc.Name, portID(port), strings.ReplaceAll(err.Error(), "\n", "; ")))
				continue
			}
			if other, dup := keys[s.Key()]; dup {
				problems = append(problems, fmt.Sprintf("service %s/%s port %s: %s is already served by %s; skipped", svc.Namespace, svc.Name, portID(port), s.Key(), other))
				continue
			}
			keys[s.Key()] = s.Name
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, problems
}

// Selected tells whether a Service is one cfg serves: type LoadBalancer, of the configured
// load balancer class (none when unset) and in the configured namespaces. The label selector
// is applied by the API server when listing.
func Selected(cfg *config.Kubernetes, s *Service) bool {
	if s.Spec.Type != ServiceTypeLoadBalancer {
		return false
	}
	class := ""
	if s.Spec.LoadBalancerClass != nil {
		class = *s.Spec.LoadBalancerClass
	}
	if class != cfg.LoadBalancerClass {
		return false
	}
	if len(cfg.Namespaces) > 0 {
		for _, ns := range cfg.Namespaces {
			if ns == s.Namespace {
				return true
			}
		}
		return false
	}
	return true
}

// protocolOf returns the protocol of a Service port; the API server defaults it to TCP.
func protocolOf(p ServicePort) string {
	if p.Protocol == "" {
		return ProtocolTCP
	}
	return p.Protocol
}

func nsName(s *Service) string { return s.Namespace + "/" + s.Name }

func portID(p ServicePort) string {
	if p.Name != "" {
		return p.Name
	}
	return strconv.Itoa(int(p.Port))
}

// requestedVIP returns the VIP a Service names, if any.
func requestedVIP(cfg *config.Kubernetes, s *Service) (netip.Addr, string, error) {
	if v, ok := s.Annotations[cfg.VIPAnnotation]; ok && v != "" {
		a, err := netip.ParseAddr(strings.TrimSpace(v))
		if err != nil || a.Zone() != "" {
			return netip.Addr{}, "", fmt.Errorf("annotation %s: invalid IP address %q", cfg.VIPAnnotation, v)
		}
		return a.Unmap(), "annotation", nil
	}
	if v := s.Spec.LoadBalancerIP; v != "" {
		a, err := netip.ParseAddr(v)
		if err != nil || a.Zone() != "" {
			return netip.Addr{}, "", fmt.Errorf("spec.loadBalancerIP: invalid IP address %q", v)
		}
		return a.Unmap(), "loadBalancerIP", nil
	}
	return netip.Addr{}, "", nil
}

// assignVIPs gives each selected Service its VIP (see Translate). services is sorted.
func assignVIPs(cfg *config.Kubernetes, services []*Service) (map[string]netip.Addr, []string) {
	var problems []string
	vips := map[string]netip.Addr{}
	used := map[netip.Addr]bool{}
	var needPool []*Service
	for _, s := range services {
		a, _, err := requestedVIP(cfg, s)
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("service %s: %v; skipped", nsName(s), err))
		case a.IsValid():
			vips[nsName(s)] = a
			used[a] = true
		default:
			needPool = append(needPool, s)
		}
	}
	if len(needPool) == 0 {
		return vips, problems
	}
	if cfg.VIPPool == nil {
		for _, s := range needPool {
			problems = append(problems, fmt.Sprintf("service %s: no VIP (set annotation %s or spec.loadBalancerIP, or configure vip_pool); skipped", nsName(s), cfg.VIPAnnotation))
		}
		return vips, problems
	}
	pool := cfg.VIPPool.Prefix
	// First, keep the pool addresses Services already show in their status.
	var rest []*Service
	for _, s := range needPool {
		kept := false
		for _, in := range s.Status.LoadBalancer.Ingress {
			a, err := netip.ParseAddr(in.IP)
			if err != nil {
				continue
			}
			a = a.Unmap()
			if pool.Contains(a) && usable(pool, a) && !used[a] {
				vips[nsName(s)] = a
				used[a] = true
				kept = true
				break
			}
		}
		if !kept {
			rest = append(rest, s)
		}
	}
	// Then the lowest free address, in namespace/name order.
	next := pool.Addr()
	for _, s := range rest {
		for next.IsValid() && pool.Contains(next) && (used[next] || !usable(pool, next)) {
			next = next.Next()
		}
		if !next.IsValid() || !pool.Contains(next) {
			problems = append(problems, fmt.Sprintf("service %s: vip_pool %s is exhausted; skipped", nsName(s), pool))
			continue
		}
		vips[nsName(s)] = next
		used[next] = true
	}
	return vips, problems
}

// usable tells whether a pool address can be a VIP: not the network address, nor the IPv4
// broadcast address, of pools larger than /31 (/127).
func usable(pool netip.Prefix, a netip.Addr) bool {
	if pool.Bits() >= pool.Addr().BitLen()-1 {
		return true
	}
	if a == pool.Addr() {
		return false
	}
	if a.Is4() {
		last := lastAddr(pool)
		return a != last
	}
	return true
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	bits := p.Bits()
	for i := range b {
		for j := 0; j < 8; j++ {
			if i*8+j >= bits {
				b[i] |= 0x80 >> j
			}
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func familyOf(a netip.Addr) string {
	if a.Is4() {
		return AddressTypeIPv4
	}
	return AddressTypeIPv6
}

// endpointState classifies an endpoint: in (ready and serving), draining (terminating but
// serving: weight 0) or out.
func endpointState(c EndpointConditions) (in, draining bool) {
	ready := c.Ready == nil || *c.Ready
	serving := ready
	if c.Serving != nil {
		serving = *c.Serving
	}
	terminating := c.Terminating != nil && *c.Terminating
	switch {
	case terminating && serving:
		return false, true
	case ready && serving && !terminating:
		return true, false
	}
	return false, false
}

// slicePort finds the port of a slice that matches a Service port (same name and protocol).
func slicePort(es *EndpointSlice, port ServicePort) (uint16, bool) {
	for _, p := range es.Ports {
		name := ""
		if p.Name != nil {
			name = *p.Name
		}
		proto := ProtocolTCP
		if p.Protocol != nil {
			proto = *p.Protocol
		}
		if name == port.Name && proto == protocolOf(port) && p.Port != nil && *p.Port > 0 && *p.Port < 65536 {
			return uint16(*p.Port), true
		}
	}
	return 0, false
}

func podTargets(vip netip.Addr, port ServicePort, slices []*EndpointSlice) []config.RealServer {
	weights := map[netip.AddrPort]int{}
	for _, es := range slices {
		if es.AddressType != familyOf(vip) {
			continue
		}
		p, ok := slicePort(es, port)
		if !ok {
			continue
		}
		for _, ep := range es.Endpoints {
			in, draining := endpointState(ep.Conditions)
			if !in && !draining {
				continue
			}
			w := 0
			if in {
				w = config.DefaultWeight
			}
			for _, s := range ep.Addresses {
				a, err := netip.ParseAddr(s)
				if err != nil {
					continue
				}
				ap := netip.AddrPortFrom(a.Unmap(), p)
				if old, seen := weights[ap]; !seen || w > old {
					weights[ap] = w
				}
			}
		}
	}
	return realServers(weights)
}

func nodeReady(n *Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == NodeReady {
			return c.Status == ConditionTrue
		}
	}
	return false
}

func nodeTargets(svc *Service, vip netip.Addr, port ServicePort, slices []*EndpointSlice, nodes []*Node) ([]config.RealServer, []string) {
	if port.NodePort <= 0 || port.NodePort > 65535 {
		return nil, []string{fmt.Sprintf("service %s port %s: no nodePort (targets nodes needs allocateLoadBalancerNodePorts); skipped", nsName(svc), portID(port))}
	}
	var local map[string]bool
	if svc.Spec.ExternalTrafficPolicy == ServiceExternalTrafficPolicyLocal {
		local = map[string]bool{}
		for _, es := range slices {
			for _, ep := range es.Endpoints {
				if in, _ := endpointState(ep.Conditions); in && ep.NodeName != nil {
					local[*ep.NodeName] = true
				}
			}
		}
	}
	weights := map[netip.AddrPort]int{}
	for _, n := range nodes {
		if !nodeReady(n) || n.DeletionTimestamp != nil {
			continue
		}
		if _, excluded := n.Labels[LabelExcludeFromLB]; excluded {
			continue
		}
		if local != nil && !local[n.Name] {
			continue
		}
		for _, na := range n.Status.Addresses {
			if na.Type != NodeInternalIP {
				continue
			}
			a, err := netip.ParseAddr(na.Address)
			if err != nil || a.Unmap().Is4() != vip.Is4() {
				continue
			}
			weights[netip.AddrPortFrom(a.Unmap(), uint16(port.NodePort))] = config.DefaultWeight
			break
		}
	}
	return realServers(weights), nil
}

func realServers(weights map[netip.AddrPort]int) []config.RealServer {
	aps := make([]netip.AddrPort, 0, len(weights))
	for ap := range weights {
		aps = append(aps, ap)
	}
	sort.Slice(aps, func(i, j int) bool { return aps[i].Compare(aps[j]) < 0 })
	out := make([]config.RealServer, 0, len(aps))
	for _, ap := range aps {
		w := weights[ap]
		out = append(out, config.RealServer{Address: config.Addr{Addr: ap.Addr()}, Port: ap.Port(), Weight: &w})
	}
	return out
}
