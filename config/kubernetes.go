package config

import (
	"fmt"
	"strings"
	"time"
)

// Kubernetes configures the Kubernetes config source (package kubernetes): the director serves
// a remote cluster's Services of type LoadBalancer next to the services of this file. A
// Service claiming the same VIP:port/protocol as a service of the file loses (the file wins and
// the conflict is reported).
type Kubernetes struct {
	// Kubeconfig is the kubeconfig file to reach the cluster with (required).
	Kubeconfig string `yaml:"kubeconfig"`
	// Context is the kubeconfig context to use; empty means its current context.
	Context string `yaml:"context"`
	// Namespaces limits the Services watched; empty means every namespace.
	Namespaces []string `yaml:"namespaces"`
	// LabelSelector limits the Services watched (Kubernetes selector syntax, e.g. "tier=web").
	LabelSelector string `yaml:"label_selector"`
	// LoadBalancerClass selects the Services with that spec.loadBalancerClass; empty selects
	// the Services that have no class.
	LoadBalancerClass string `yaml:"load_balancer_class"`
	// Targets is what the real servers are: "nodes" (every ready node's InternalIP and the
	// Service port's nodePort, the default) or "pods" (the ready endpoints of the Service).
	Targets string `yaml:"targets"`
	// VIPAnnotation is the Service annotation that names its VIP (default lvs-director.io/vip).
	VIPAnnotation string `yaml:"vip_annotation"`
	// VIPPool is the CIDR VIPs are allocated from for Services that name none; unset means
	// such Services are not served. The allocation is deterministic so that several
	// directors agree without talking: see kubernetes.Translate.
	VIPPool *Prefix `yaml:"vip_pool,omitempty"`
	// UpdateStatus writes the VIP to the Service's status.loadBalancer.ingress.
	UpdateStatus bool `yaml:"update_status"`
	// Resync is the resync period (default 5m): the services are translated again (and their
	// status written) this often even without changes.
	Resync Duration `yaml:"resync"`
	// Scheduler is the IPVS scheduler of the services made from Kubernetes (default rr).
	Scheduler string `yaml:"scheduler"`
	// HealthCheck is the health check of the services made from Kubernetes; unset means
	// their real servers are not checked (Kubernetes readiness already chose them).
	HealthCheck *HealthCheck `yaml:"health_check,omitempty"`
}

// Kubernetes source defaults, filled by setDefaults.
const (
	DefaultKubeTargets       = KubeTargetsNodes
	DefaultKubeVIPAnnotation = "lvs-director.io/vip"
	DefaultKubeResync        = 5 * time.Minute
	MinKubeResync            = time.Second

	KubeTargetsNodes = "nodes"
	KubeTargetsPods  = "pods"

	// SourceFile and SourceKubernetes are the values of Service.Source.
	SourceFile       = "file"
	SourceKubernetes = "kubernetes"
)

func (k *Kubernetes) setDefaults() {
	k.Targets = strings.ToLower(k.Targets)
	if k.Targets == "" {
		k.Targets = DefaultKubeTargets
	}
	if k.VIPAnnotation == "" {
		k.VIPAnnotation = DefaultKubeVIPAnnotation
	}
	if k.Resync == 0 {
		k.Resync = Duration(DefaultKubeResync)
	}
	k.Scheduler = strings.ToLower(k.Scheduler)
	if k.Scheduler == "" {
		k.Scheduler = DefaultScheduler
	}
	if k.HealthCheck != nil {
		k.HealthCheck.setDefaults()
	}
}

func (k *Kubernetes) validate(v *validator, p string) {
	if k.Kubeconfig == "" {
		v.errorf(p+".kubeconfig", "is required")
	}
	seen := map[string]int{}
	for i, ns := range k.Namespaces {
		np := fmt.Sprintf("%s.namespaces[%d]", p, i)
		if errs := dns1123Label(ns); len(errs) > 0 {
			v.errorf(np, "invalid namespace %q: %s", ns, strings.Join(errs, "; "))
		} else if j, dup := seen[ns]; dup {
			v.errorf(np, "duplicate namespace %q (also namespaces[%d])", ns, j)
		} else {
			seen[ns] = i
		}
	}
	if err := checkLabelSelector(k.LabelSelector); err != nil {
		v.errorf(p+".label_selector", "invalid label selector %q: %v", k.LabelSelector, err)
	}
	if k.LoadBalancerClass != "" {
		if errs := qualifiedName(k.LoadBalancerClass); len(errs) > 0 {
			v.errorf(p+".load_balancer_class", "invalid class %q: %s", k.LoadBalancerClass, strings.Join(errs, "; "))
		}
	}
	switch k.Targets {
	case KubeTargetsNodes, KubeTargetsPods:
	default:
		v.errorf(p+".targets", "unknown targets %q (nodes or pods)", k.Targets)
	}
	if errs := qualifiedName(k.VIPAnnotation); len(errs) > 0 {
		v.errorf(p+".vip_annotation", "invalid annotation name %q: %s", k.VIPAnnotation, strings.Join(errs, "; "))
	}
	if k.VIPPool != nil {
		a := k.VIPPool.Addr()
		if a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() {
			v.errorf(p+".vip_pool", "%s cannot hold VIPs (unspecified, multicast or loopback)", k.VIPPool)
		} else if a.Is4() && k.VIPPool.Bits() < 16 || a.Is6() && k.VIPPool.Bits() < 112 {
			v.errorf(p+".vip_pool", "%s is too large (at most /16 for IPv4, /112 for IPv6)", k.VIPPool)
		}
	}
	if k.Resync.D() < MinKubeResync {
		v.errorf(p+".resync", "must be at least %s, got %s", MinKubeResync, k.Resync)
	}
	if !contains(Schedulers, k.Scheduler) {
		v.errorf(p+".scheduler", "unknown scheduler %q (one of %s)", k.Scheduler, strings.Join(Schedulers, " "))
	}
	if k.HealthCheck != nil {
		k.HealthCheck.validate(v, p+".health_check")
	}
}

// ValidateService fills the defaults of a service made by a program (the Kubernetes source)
// and checks it as a service of the file is checked, exclude being the director's
// exclude_cidrs. The error, when not nil, is an Errors value whose paths start with the
// service's name.
func ValidateService(s *Service, exclude []Prefix) error {
	v := newValidator(SourceKubernetes)
	s.setDefaults()
	s.validate(v, s.Name, exclude)
	if len(v.errs) > 0 {
		return v.errs
	}
	return nil
}
