package kubernetes

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/lvs-director/lvs-director/config"
)

func svc(name, source, vip string, port uint16, proto string) config.Service {
	return config.Service{Name: name, Source: source, VIP: config.Addr{Addr: netip.MustParseAddr(vip)}, Port: port, Protocol: proto}
}

func names(ss []config.Service) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.Name)
	}
	return out
}

func TestMerge(t *testing.T) {
	tests := []struct {
		name          string
		file, kube    []config.Service
		want          []string
		wantConflicts []string
	}{
		{"disjoint", []config.Service{svc("web", "file", "192.0.2.1", 80, "tcp")}, []config.Service{svc("k8s.a.b.http", "kubernetes", "192.0.2.2", 80, "tcp")},
			[]string{"web", "k8s.a.b.http"}, nil},
		{"same VIP:port, other protocol is no conflict", []config.Service{svc("dns", "file", "192.0.2.1", 53, "udp")}, []config.Service{svc("k8s.a.dns.tcp", "kubernetes", "192.0.2.1", 53, "tcp")},
			[]string{"dns", "k8s.a.dns.tcp"}, nil},
		{"key conflict: file wins", []config.Service{svc("web", "file", "192.0.2.1", 80, "tcp")},
			[]config.Service{svc("k8s.a.b.http", "kubernetes", "192.0.2.1", 80, "tcp"), svc("k8s.a.c.http", "kubernetes", "192.0.2.3", 80, "tcp")},
			[]string{"web", "k8s.a.c.http"},
			[]string{`kubernetes service "k8s.a.b.http" claims tcp/192.0.2.1:80, already served by file service "web": the file service wins`}},
		{"name conflict: file wins", []config.Service{svc("k8s.a.b.http", "file", "192.0.2.1", 80, "tcp")}, []config.Service{svc("k8s.a.b.http", "kubernetes", "192.0.2.2", 80, "tcp")},
			[]string{"k8s.a.b.http"},
			[]string{`kubernetes service "k8s.a.b.http" (tcp/192.0.2.2:80) has the name of a file service: the file service wins`}},
		{"no kube", []config.Service{svc("web", "file", "192.0.2.1", 80, "tcp")}, nil, []string{"web"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fileCopy := append([]config.Service(nil), tt.file...)
			got, conflicts := Merge(tt.file, tt.kube)
			if !reflect.DeepEqual(names(got), tt.want) {
				t.Errorf("merged %q want %q", names(got), tt.want)
			}
			if !reflect.DeepEqual(conflicts, tt.wantConflicts) {
				t.Errorf("conflicts %q want %q", conflicts, tt.wantConflicts)
			}
			if !reflect.DeepEqual(fileCopy, tt.file) {
				t.Errorf("file input modified")
			}
		})
	}
}
