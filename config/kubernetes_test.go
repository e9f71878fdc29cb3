package config

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestKubernetesDefaults(t *testing.T) {
	cfg, err := Parse("k.yaml", []byte("kubernetes:\n  kubeconfig: /etc/lvs-director/kubeconfig\n"))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := Kubernetes{
		Kubeconfig:    "/etc/lvs-director/kubeconfig",
		Targets:       "nodes",
		VIPAnnotation: "lvs-director.io/vip",
		Resync:        Duration(5 * time.Minute),
		Scheduler:     "rr",
	}
	if !reflect.DeepEqual(*cfg.Kubernetes, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", *cfg.Kubernetes, want)
	}
}

func TestKubernetesFull(t *testing.T) {
	cfg, err := Parse("k.yaml", []byte(`kubernetes:
  kubeconfig: /k
  context: prod
  namespaces: [web, api]
  label_selector: "tier in (front),!canary"
  load_balancer_class: example.com/lvs
  targets: PODS
  vip_annotation: example.com/vip
  vip_pool: 198.51.100.0/24
  update_status: true
  resync: 1m
  scheduler: WLC
  health_check: {type: http, path: /healthz}
`))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	k := cfg.Kubernetes
	if k.Targets != "pods" || k.Scheduler != "wlc" || k.Resync.D() != time.Minute || !k.UpdateStatus ||
		k.VIPPool.Prefix != netip.MustParsePrefix("198.51.100.0/24") || k.Context != "prod" ||
		!reflect.DeepEqual(k.Namespaces, []string{"web", "api"}) || k.LoadBalancerClass != "example.com/lvs" {
		t.Errorf("kubernetes = %+v", k)
	}
	if k.HealthCheck == nil || k.HealthCheck.Type != "http" || k.HealthCheck.Interval.D() != DefaultCheckInterval || k.HealthCheck.Method != "GET" {
		t.Errorf("health check defaults not filled: %+v", k.HealthCheck)
	}
}

func TestKubernetesInvalid(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []string
	}{
		{"kubeconfig required", "  context: x\n", []string{
			"k.yaml:1: kubernetes.kubeconfig: is required",
		}},
		{"namespaces", "  kubeconfig: /k\n  namespaces: [web, Web_1, web]\n", []string{
			`k.yaml:3: kubernetes.namespaces[1]: invalid namespace "Web_1": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`,
			`k.yaml:3: kubernetes.namespaces[2]: duplicate namespace "web" (also namespaces[0])`,
		}},
		{"label selector", "  kubeconfig: /k\n  label_selector: \"a in b\"\n", []string{
			`k.yaml:3: kubernetes.label_selector: invalid label selector "a in b": unable to parse requirement: found 'b' expected: '('`,
		}},
		{"class, targets, annotation", "  kubeconfig: /k\n  load_balancer_class: \"a b\"\n  targets: services\n  vip_annotation: \"/vip\"\n", []string{
			`k.yaml:3: kubernetes.load_balancer_class: invalid class "a b": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')`,
			`k.yaml:4: kubernetes.targets: unknown targets "services" (nodes or pods)`,
			`k.yaml:5: kubernetes.vip_annotation: invalid annotation name "/vip": prefix part must be non-empty`,
		}},
		{"pool", "  kubeconfig: /k\n  vip_pool: 10.0.0.0/8\n", []string{
			"k.yaml:3: kubernetes.vip_pool: 10.0.0.0/8 is too large (at most /16 for IPv4, /112 for IPv6)",
		}},
		{"pool loopback", "  kubeconfig: /k\n  vip_pool: 127.0.0.0/24\n", []string{
			"k.yaml:3: kubernetes.vip_pool: 127.0.0.0/24 cannot hold VIPs (unspecified, multicast or loopback)",
		}},
		{"pool syntax", "  kubeconfig: /k\n  vip_pool: 10.0.0.1/24\n", []string{
			`k.yaml:3: kubernetes.vip_pool: CIDR "10.0.0.1/24" has host bits set (did you mean 10.0.0.0/24?)`,
		}},
		{"resync and scheduler", "  kubeconfig: /k\n  resync: 10ms\n  scheduler: fifo\n", []string{
			"k.yaml:3: kubernetes.resync: must be at least 1s, got 10ms",
			"k.yaml:4: kubernetes.scheduler: unknown scheduler \"fifo\" (one of " + strings.Join(Schedulers, " ") + ")",
		}},
		{"health check through its hooks", "  kubeconfig: /k\n  health_check: {type: udp, rise: -1}\n", []string{
			"k.yaml:3: kubernetes.health_check.rise: must be 1-1000, got -1",
			"k.yaml:3: kubernetes.health_check.expect: is required for a udp check (a regexp the reply must match)",
		}},
		{"unknown field", "  kubeconfig: /k\n  vip_pools: 10.0.0.0/24\n", []string{
			`k.yaml:3: kubernetes.vip_pools: unknown field "vip_pools"`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("k.yaml", []byte("kubernetes:\n"+tt.body))
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("Parse = %v, want config errors", err)
			}
			got := strings.Split(es.Error(), "\n")
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("errors differ\n got: %q\nwant: %q", got, tt.want)
			}
		})
	}
}

func TestValidateService(t *testing.T) {
	w := 0
	ok := Service{Name: "k8s.web.front.http", VIP: Addr{netip.MustParseAddr("198.51.100.1")}, Port: 80,
		RealServers: []RealServer{{Address: Addr{netip.MustParseAddr("10.0.0.1")}, Port: 30080, Weight: &w}}, Source: SourceKubernetes}
	if err := ValidateService(&ok, nil); err != nil {
		t.Fatalf("valid service: %v", err)
	}
	if ok.Protocol != "tcp" || ok.Scheduler != "rr" || ok.Source != SourceKubernetes || ok.RealServers[0].WeightOr() != 0 {
		t.Errorf("defaults: %+v", ok)
	}
	bad := Service{Name: "k8s/web", VIP: Addr{netip.MustParseAddr("198.51.100.1")}, Port: 80, Protocol: "tcp",
		RealServers: []RealServer{{Address: Addr{netip.MustParseAddr("fd00::1")}, Port: 80}}}
	err := ValidateService(&bad, []Prefix{{netip.MustParsePrefix("198.51.100.0/24")}})
	want := strings.Join([]string{
		`kubernetes: k8s/web.name: invalid name "k8s/web" (letters, digits, '-', '_' and '.' only, at most 63)`,
		`kubernetes: k8s/web.vip: 198.51.100.1 is inside exclude_cidrs 198.51.100.0/24`,
		`kubernetes: k8s/web.real_servers[0].address: fd00::1 and the VIP 198.51.100.1 are of different IP families (NAT cannot mix them)`,
	}, "\n")
	if err == nil || err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}
}
