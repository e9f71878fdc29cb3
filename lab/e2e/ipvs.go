//go:build lab

package e2e

import (
	"fmt"
	"strconv"
	"strings"
)

// IPVSService is one virtual service as "ipvsadm -Ln --exact" shows it.
type IPVSService struct {
	Proto     string // TCP, UDP, SCTP or FWM
	Addr      string // "10.100.0.10:80", "[2001:db8::10]:80" or the fwmark
	Scheduler string
	Flags     []string // the rest of the line, e.g. [persistent 300]
	Dests     []IPVSDest
	Stats     IPVSStats // filled by IPVSWithStats
}

// IPVSDest is one real server of a service.
type IPVSDest struct {
	Addr       string // "10.100.11.2:8080"
	Forward    string // Masq, Route, Tunnel or Local
	Weight     int
	ActiveConn int
	InActConn  int
	Stats      IPVSStats // filled by IPVSWithStats
}

// IPVSStats are the counters of "ipvsadm -Ln --stats --exact".
type IPVSStats struct {
	Conns, InPkts, OutPkts, InBytes, OutBytes uint64
}

// Key returns "PROTO ADDR", e.g. "TCP 10.100.0.10:80".
func (s IPVSService) Key() string { return s.Proto + " " + s.Addr }

// Dest returns the real server with the given address, or nil.
func (s *IPVSService) Dest(addr string) *IPVSDest {
	for i := range s.Dests {
		if s.Dests[i].Addr == addr {
			return &s.Dests[i]
		}
	}
	return nil
}

func (s IPVSService) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s", s.Proto, s.Addr, s.Scheduler)
	if len(s.Flags) > 0 {
		b.WriteString(" " + strings.Join(s.Flags, " "))
	}
	for _, d := range s.Dests {
		fmt.Fprintf(&b, "\n  -> %s %s w=%d active=%d inactive=%d", d.Addr, d.Forward, d.Weight, d.ActiveConn, d.InActConn)
	}
	return b.String()
}

// FormatServices renders services for failure messages.
func FormatServices(svcs []IPVSService) string {
	if len(svcs) == 0 {
		return "(no IPVS services)"
	}
	var parts []string
	for _, s := range svcs {
		parts = append(parts, s.String())
	}
	return strings.Join(parts, "\n")
}

func isServiceProto(f string) bool {
	switch f {
	case "TCP", "UDP", "SCTP", "FWM":
		return true
	}
	return false
}

// ParseIPVS parses the output of "ipvsadm -Ln --exact".
func ParseIPVS(out string) ([]IPVSService, error) {
	var svcs []IPVSService
	for n, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
		case isServiceProto(f[0]):
			if len(f) < 3 {
				return nil, fmt.Errorf("line %d: short service line %q", n+1, line)
			}
			svcs = append(svcs, IPVSService{Proto: f[0], Addr: f[1], Scheduler: f[2], Flags: f[3:]})
		case f[0] == "->" && len(f) >= 2 && f[1] == "RemoteAddress:Port":
			// header
		case f[0] == "->":
			if len(svcs) == 0 || len(f) != 6 {
				return nil, fmt.Errorf("line %d: unexpected real server line %q", n+1, line)
			}
			var nums [3]int
			for i := range nums {
				v, err := strconv.Atoi(f[3+i])
				if err != nil {
					return nil, fmt.Errorf("line %d: %q: %v", n+1, line, err)
				}
				nums[i] = v
			}
			s := &svcs[len(svcs)-1]
			s.Dests = append(s.Dests, IPVSDest{Addr: f[1], Forward: f[2], Weight: nums[0], ActiveConn: nums[1], InActConn: nums[2]})
		}
	}
	return svcs, nil
}

// parseIPVSStats parses "ipvsadm -Ln --stats --exact" into svcs (matched by
// position, as both listings come in the same order).
func parseIPVSStats(out string, svcs []IPVSService) error {
	si, di := -1, 0
	for n, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] == "Prot" || (f[0] == "->" && len(f) == 2 && f[1] == "RemoteAddress:Port") {
			continue
		}
		var st *IPVSStats
		var nums []string
		switch {
		case isServiceProto(f[0]) && len(f) >= 7:
			si++
			di = 0
			if si >= len(svcs) || svcs[si].Addr != f[1] {
				return fmt.Errorf("stats line %d: service %s does not match the listing", n+1, f[1])
			}
			st, nums = &svcs[si].Stats, f[2:7]
		case f[0] == "->" && len(f) >= 7 && si >= 0:
			if di >= len(svcs[si].Dests) || svcs[si].Dests[di].Addr != f[1] {
				return fmt.Errorf("stats line %d: real server %s does not match the listing", n+1, f[1])
			}
			st, nums = &svcs[si].Dests[di].Stats, f[2:7]
			di++
		default:
			if f[0] == "IP" { // "IP Virtual Server version ..."
				continue
			}
			return fmt.Errorf("stats line %d: unexpected %q", n+1, line)
		}
		var v [5]uint64
		for i, s := range nums {
			x, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return fmt.Errorf("stats line %d: %q: %v", n+1, line, err)
			}
			v[i] = x
		}
		*st = IPVSStats{Conns: v[0], InPkts: v[1], OutPkts: v[2], InBytes: v[3], OutBytes: v[4]}
	}
	return nil
}

// IPVS lists the IPVS table of the namespace ("ipvsadm -Ln --exact").
func (ns *NS) IPVS() []IPVSService {
	ns.lab.t.Helper()
	svcs, err := ParseIPVS(ns.MustRun("ipvsadm", "-Ln", "--exact"))
	if err != nil {
		ns.lab.t.Fatalf("[%s] parsing ipvsadm -Ln: %v", ns.Name, err)
	}
	return svcs
}

// IPVSWithStats lists the IPVS table with counters. The kernel updates the
// counters with a small delay (the estimator), so poll with Eventually.
func (ns *NS) IPVSWithStats() []IPVSService {
	ns.lab.t.Helper()
	for try := 0; ; try++ {
		svcs := ns.IPVS()
		err := parseIPVSStats(ns.MustRun("ipvsadm", "-Ln", "--stats", "--exact"), svcs)
		if err == nil {
			return svcs
		}
		if try == 3 { // the table changed between the two calls 4 times
			ns.lab.t.Fatalf("[%s] parsing ipvsadm -Ln --stats: %v", ns.Name, err)
		}
	}
}
