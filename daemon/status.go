package daemon

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/lvs-director/lvs-director/director"
)

// Report is what `lvs-director status` shows: the kernel's table joined with what only the
// director knows.
type Report struct {
	Config     string          `json:"config"`
	Reload     ReloadStatus    `json:"last_reload"`
	Sync       SyncReport      `json:"last_sync"`
	Services   []ServiceReport `json:"services"`
	VIPs       []string        `json:"vips_on_interface"`
	Interface  string          `json:"interface"`
	Extensions map[string]any  `json:"extensions,omitempty"`
}

// SyncReport is the last sync.
type SyncReport struct {
	At         time.Time `json:"at"`
	DurationMS float64   `json:"duration_ms"`
	Ops        int       `json:"operations"`
	Error      string    `json:"error,omitempty"`
	Draining   int       `json:"draining"`
}

// ServiceReport is one configured service.
type ServiceReport struct {
	Name        string             `json:"name"`
	Key         string             `json:"key"`
	Scheduler   string             `json:"scheduler"`
	InKernel    bool               `json:"in_kernel"`
	Healthy     bool               `json:"healthy"`
	Up          int                `json:"up"`
	Total       int                `json:"total"`
	Quorum      int                `json:"quorum"`
	Sorry       bool               `json:"sorry_server_active"`
	Announce    string             `json:"announce,omitempty"`
	Role        string             `json:"cluster_role,omitempty"`
	RealServers []RealServerReport `json:"real_servers"`
}

// RealServerReport is one real server, configured or still in the kernel.
type RealServerReport struct {
	Address      string `json:"address"`
	ConfigWeight *int   `json:"config_weight,omitempty"` // nil: no longer configured
	KernelWeight *int   `json:"kernel_weight,omitempty"` // nil: not in the kernel
	ActiveConns  int    `json:"active_conns"`
	InactConns   int    `json:"inactive_conns"`
	Health       string `json:"health"` // up, down, unchecked
	Reason       string `json:"reason,omitempty"`
	Drain        string `json:"drain,omitempty"` // operator, draining
}

// Status builds the report from the running config, the health and a fresh kernel read.
func (d *Daemon) Status() (Report, error) {
	observed, vips, err := d.rec.Observe()
	if err != nil {
		return Report{}, fmt.Errorf("reading the kernel: %w", err)
	}
	cfg := d.Config()
	_, health := d.Desired()
	last := d.rec.Last()
	drains := d.rec.DrainState()
	r := Report{
		Config: d.path, Reload: d.LastReload(), Interface: cfg.Director.Interface,
		Sync: SyncReport{At: last.At, DurationMS: float64(last.Duration.Microseconds()) / 1000, Ops: last.Ops, Error: last.Err, Draining: last.Draining},
	}
	for _, a := range vips {
		r.VIPs = append(r.VIPs, a.String())
	}
	kernel := map[director.ServiceKey]*director.VirtualService{}
	for i := range observed {
		kernel[observed[i].Key] = &observed[i]
	}
	hByName := map[string]director.ServiceHealth{}
	for _, h := range health {
		hByName[h.Name] = h
	}
	services := d.services()
	for i := range services {
		s := &services[i]
		key := director.ServiceKeyOf(s)
		h := hByName[s.Name]
		sr := ServiceReport{Name: s.Name, Key: key.String(), Scheduler: s.Scheduler, Healthy: h.Healthy,
			Up: h.Up, Total: h.Total, Quorum: h.Quorum, Sorry: h.Sorry}
		sr.Announce = d.announceState(s.VIP.Addr)
		if d.members != nil {
			sr.Role = d.members.Role(OwnershipKey(s.VIP.Addr), s.Failover).String()
		}
		ks, inKernel := kernel[key]
		sr.InKernel = inKernel
		seen := map[netip.AddrPort]bool{}
		add := func(a netip.AddrPort, cfgW *int) {
			seen[a] = true
			rr := RealServerReport{Address: a.String(), ConfigWeight: cfgW, Health: "unchecked"}
			if up, reason, checked := d.healthOf(s, a); checked {
				rr.Health, rr.Reason = "down", reason
				if up {
					rr.Health = "up"
				}
			}
			if d.isDrained(s.Name, a) {
				rr.Drain = "operator"
			} else if _, ok := drains[key][a]; ok {
				rr.Drain = "draining"
			}
			if inKernel {
				for _, kd := range ks.Dests {
					if kd.Addr == a {
						w := int(kd.Weight)
						rr.KernelWeight, rr.ActiveConns, rr.InactConns = &w, int(kd.ActiveConns), int(kd.InactiveConns)
					}
				}
			}
			sr.RealServers = append(sr.RealServers, rr)
		}
		for j := range s.RealServers {
			rs := &s.RealServers[j]
			w := rs.WeightOr()
			add(netip.AddrPortFrom(rs.Address.Addr, rs.Port), &w)
		}
		if s.SorryServer != nil {
			w := s.SorryServer.WeightOr()
			a := netip.AddrPortFrom(s.SorryServer.Address.Addr, s.SorryServer.Port)
			if !seen[a] {
				add(a, &w)
				sr.RealServers[len(sr.RealServers)-1].Health = "sorry"
			}
		}
		if inKernel {
			for _, kd := range ks.Dests {
				if !seen[kd.Addr] {
					add(kd.Addr, nil)
				}
			}
		}
		r.Services = append(r.Services, sr)
	}
	for _, ext := range d.extensions {
		if r.Extensions == nil {
			r.Extensions = map[string]any{}
		}
		name, v := ext()
		r.Extensions[name] = v
	}
	return r, nil
}

// drainFile keeps operator drains across restarts, next to the API socket.
func (d *Daemon) drainFile() string {
	return filepath.Join(filepath.Dir(d.Config().API.Socket), "drains.json")
}

func (d *Daemon) isDrained(service string, a netip.AddrPort) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.drained[service][a]
}

// SetDrained drains (on=true) or undrains a real server of a service by operator request.
// The override survives config reloads and restarts until undone.
func (d *Daemon) SetDrained(service string, a netip.AddrPort, on bool) error {
	services := d.services()
	found := false
	for i := range services {
		s := &services[i]
		if s.Name != service {
			continue
		}
		for _, rs := range s.RealServers {
			if netip.AddrPortFrom(rs.Address.Addr, rs.Port) == a {
				found = true
			}
		}
		if !found {
			return fmt.Errorf("service %q has no real server %s", service, a)
		}
	}
	if !found && on {
		return fmt.Errorf("no service named %q", service)
	}
	d.mu.Lock()
	if on {
		if d.drained[service] == nil {
			d.drained[service] = map[netip.AddrPort]bool{}
		}
		d.drained[service][a] = true
	} else {
		delete(d.drained[service], a)
		if len(d.drained[service]) == 0 {
			delete(d.drained, service)
		}
	}
	d.drainGen.Add(1)
	err := d.saveDrainsLocked()
	d.mu.Unlock()
	verb := "drained"
	if !on {
		verb = "undrained"
	}
	d.log.Info("operator "+verb+" a real server", "service", service, "real_server", a.String())
	d.requestSync()
	return err
}

func (d *Daemon) saveDrainsLocked() error {
	out := map[string][]string{}
	for s, m := range d.drained {
		for a := range m {
			out[s] = append(out[s], a.String())
		}
		sort.Strings(out[s])
	}
	b, _ := json.MarshalIndent(out, "", "  ")
	p := filepath.Join(filepath.Dir(d.cfg.API.Socket), "drains.json")
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		return fmt.Errorf("saving drains: %w", err)
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o640); err != nil {
		return fmt.Errorf("saving drains: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("saving drains: %w", err)
	}
	return nil
}

func (d *Daemon) loadDrains() {
	b, err := os.ReadFile(d.drainFile())
	if err != nil {
		return
	}
	var in map[string][]string
	if err := json.Unmarshal(b, &in); err != nil {
		d.log.Warn("ignoring unreadable drain file", "file", d.drainFile(), "err", err)
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for s, list := range in {
		for _, x := range list {
			a, err := netip.ParseAddrPort(x)
			if err != nil {
				continue
			}
			if d.drained[s] == nil {
				d.drained[s] = map[netip.AddrPort]bool{}
			}
			d.drained[s][a] = true
		}
	}
	d.drainGen.Add(1)
}
