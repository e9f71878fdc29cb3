package kubernetes

import (
	"fmt"

	"github.com/lvs-director/lvs-director/config"
)

// Merge joins the services of the config file and those made from Kubernetes. A Kubernetes
// service that claims the virtual service (VIP:port/protocol, config.Service.Key) or the name
// of a file service is left out and reported in conflicts: the file always wins, never
// silently. The file services come first, in their order, then the Kubernetes ones in theirs.
// Neither input is modified.
func Merge(file, kube []config.Service) (merged []config.Service, conflicts []string) {
	merged = make([]config.Service, 0, len(file)+len(kube))
	keys := make(map[string]string, len(file)+len(kube))
	names := make(map[string]bool, len(file)+len(kube))
	for _, s := range file {
		merged = append(merged, s)
		keys[s.Key()] = s.Name
		names[s.Name] = true
	}
	for _, s := range kube {
		if other, clash := keys[s.Key()]; clash {
			conflicts = append(conflicts, fmt.Sprintf("kubernetes service %q claims %s, already served by file service %q: the file service wins", s.Name, s.Key(), other))
			continue
		}
		if names[s.Name] {
			conflicts = append(conflicts, fmt.Sprintf("kubernetes service %q (%s) has the name of a file service: the file service wins", s.Name, s.Key()))
			continue
		}
		merged = append(merged, s)
		keys[s.Key()] = s.Name
		names[s.Name] = true
	}
	return merged, conflicts
}
