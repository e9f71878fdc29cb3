package daemon

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/lvs-director/lvs-director/config"
	"github.com/lvs-director/lvs-director/kubernetes"
)

// ServiceSource is a second source of services besides the file (the Kubernetes source).
type ServiceSource interface {
	// Services is the last known set; it is kept when the source's API goes away.
	Services() []config.Service
	// Synced tells whether the source has listed everything once.
	Synced() bool
	Changes() <-chan struct{}
	Stale() (since time.Time, stale bool)
	Problems() []string
}

// SetSource attaches a second source of services; call before Run.
func (d *Daemon) SetSource(src ServiceSource) {
	d.source = src
	d.AddStatusExtension(func() (string, any) {
		since, stale := src.Stale()
		_, conflicts := d.mergedServices()
		return "kubernetes", map[string]any{
			"synced": src.Synced(), "stale": stale, "last_ok": since, "services": len(src.Services()),
			"problems": src.Problems(), "conflicts": conflicts,
		}
	})
}

// services returns the services in force: the file's, plus the source's when it is synced.
func (d *Daemon) services() []config.Service {
	s, _ := d.mergedServices()
	return s
}

func (d *Daemon) mergedServices() ([]config.Service, []string) { return d.mergedFor(d.Config()) }

// servicesFor returns the services in force under cfg.
func (d *Daemon) servicesFor(cfg *config.Config) []config.Service {
	s, _ := d.mergedFor(cfg)
	return s
}

func (d *Daemon) mergedFor(cfg *config.Config) ([]config.Service, []string) {
	if d.source == nil || !d.source.Synced() {
		return cfg.Services, nil
	}
	var kube []config.Service
	var excluded []string
	for _, s := range d.source.Services() {
		if inPrefixes(s.VIP.Addr, cfg.Director.ExcludeCIDRs) {
			excluded = append(excluded, fmt.Sprintf("%s: VIP %s is inside exclude_cidrs; ignored", s.Name, s.VIP))
			continue
		}
		kube = append(kube, s)
	}
	merged, conflicts := kubernetes.Merge(cfg.Services, kube)
	return merged, append(conflicts, excluded...)
}

func inPrefixes(a netip.Addr, ps []config.Prefix) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// sourceComplete tells whether every service source is known: until then nothing the
// director owns is removed from the kernel (a restart while the API is away keeps serving).
func (d *Daemon) sourceComplete() bool { return d.source == nil || d.source.Synced() }

// reportConflicts logs each new set of conflicts between the file and the source once.
func (d *Daemon) reportConflicts() {
	_, conflicts := d.mergedServices()
	sort.Strings(conflicts)
	key := strings.Join(conflicts, "\n")
	d.mu.Lock()
	changed := key != d.lastConflicts
	d.lastConflicts = key
	d.mu.Unlock()
	if changed {
		for _, c := range conflicts {
			d.log.Error("service conflict between the config file and Kubernetes; the file's service wins", "conflict", c)
		}
	}
}
