package director

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"sync"
)

// ErrFakeMisuse is wrapped by every error the fake kernel returns for a call the real kernel
// would refuse (adding what exists, deleting what does not).
var ErrFakeMisuse = errors.New("fake kernel: invalid call")

// FakeKernel is an in-memory Kernel for tests. It records every call and refuses the calls the
// real kernel refuses. It is exported for the tests of other packages.
type FakeKernel struct {
	mu       sync.Mutex
	services map[ServiceKey]*VirtualService
	links    map[string]map[netip.Addr]bool
	fullNAT  []ServiceKey
	sysctls  map[string]string
	Calls    []string
	// dumps and reads count the reads of the whole table and of single services.
	dumps, reads int
	// FailOn makes the named call kind ("add-dest", ...) fail with this error when set.
	FailOn map[string]error
}

// NewFakeKernel returns an empty fake kernel.
func NewFakeKernel() *FakeKernel {
	return &FakeKernel{services: map[ServiceKey]*VirtualService{}, links: map[string]map[netip.Addr]bool{}}
}

func (f *FakeKernel) record(kind, format string, args ...any) error {
	f.Calls = append(f.Calls, kind+" "+fmt.Sprintf(format, args...))
	if err := f.FailOn[kind]; err != nil {
		return err
	}
	return nil
}

func misuse(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrFakeMisuse, fmt.Sprintf(format, args...))
}

// ResetCalls forgets the recorded calls.
func (f *FakeKernel) ResetCalls() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls = nil
}

// CallCount returns the number of recorded mutating calls.
func (f *FakeKernel) CallCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.Calls)
}

// Services implements IPVS.
func (f *FakeKernel) Services() ([]VirtualService, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.FailOn["dump"]; err != nil {
		return nil, err
	}
	f.dumps++
	out := make([]VirtualService, 0, len(f.services))
	for _, s := range f.services {
		c := *s
		c.Dests = append([]Dest(nil), s.Dests...)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key.Less(out[j].Key) })
	return out, nil
}

// Service implements ServiceReader.
func (f *FakeKernel) Service(k ServiceKey) (VirtualService, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.FailOn["read"]; err != nil {
		return VirtualService{}, false, err
	}
	f.reads++
	s, ok := f.services[k]
	if !ok {
		return VirtualService{}, false, nil
	}
	c := *s
	c.Dests = append([]Dest(nil), s.Dests...)
	return c, true, nil
}

// ReadCounts returns how many times the whole table (Services) and single services (Service)
// were read.
func (f *FakeKernel) ReadCounts() (dumps, reads int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dumps, f.reads
}

// ApplyAddrs implements AddrBatcher (one AddAddr or DelAddr per operation).
func (f *FakeKernel) ApplyAddrs(name string, ops []Op) []error {
	errs := make([]error, len(ops))
	for i, op := range ops {
		switch op.Kind {
		case OpAddVIP:
			errs[i] = f.AddAddr(name, op.VIP)
		case OpDelVIP:
			errs[i] = f.DelAddr(name, op.VIP)
		default:
			errs[i] = misuse("%s is not an address operation", op.Kind)
		}
	}
	return errs
}

// AddService implements IPVS.
func (f *FakeKernel) AddService(s VirtualService) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("add-service", "%s", s.String()); err != nil {
		return err
	}
	if _, ok := f.services[s.Key]; ok {
		return misuse("add-service %s: exists", s.Key)
	}
	if s.Scheduler == "" {
		return misuse("add-service %s: no scheduler", s.Key)
	}
	c := s
	c.Dests = nil
	f.services[s.Key] = &c
	return nil
}

// UpdateService implements IPVS.
func (f *FakeKernel) UpdateService(s VirtualService) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("update-service", "%s", s.String()); err != nil {
		return err
	}
	o, ok := f.services[s.Key]
	if !ok {
		return misuse("update-service %s: no such service", s.Key)
	}
	o.Scheduler, o.Flags, o.Timeout, o.Netmask = s.Scheduler, s.Flags, s.Timeout, s.Netmask
	return nil
}

// DelService implements IPVS.
func (f *FakeKernel) DelService(k ServiceKey) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("del-service", "%s", k); err != nil {
		return err
	}
	if _, ok := f.services[k]; !ok {
		return misuse("del-service %s: no such service", k)
	}
	delete(f.services, k)
	return nil
}

// AddDest implements IPVS.
func (f *FakeKernel) AddDest(k ServiceKey, d Dest) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("add-dest", "%s %s %d", k, d.Addr, d.Weight); err != nil {
		return err
	}
	s, ok := f.services[k]
	if !ok {
		return misuse("add-dest %s: no such service", k)
	}
	if _, ok := s.dest(d.Addr); ok {
		return misuse("add-dest %s %s: exists", k, d.Addr)
	}
	if d.Addr.Addr().Is4() != k.Addr.Is4() {
		return misuse("add-dest %s %s: address family mismatch", k, d.Addr)
	}
	d.Absent = false
	s.Dests = append(s.Dests, d)
	s.sortDests()
	return nil
}

// UpdateDest implements IPVS.
func (f *FakeKernel) UpdateDest(k ServiceKey, d Dest) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("update-dest", "%s %s %d", k, d.Addr, d.Weight); err != nil {
		return err
	}
	s, ok := f.services[k]
	if !ok {
		return misuse("update-dest %s: no such service", k)
	}
	od, ok := s.dest(d.Addr)
	if !ok {
		return misuse("update-dest %s %s: no such real server", k, d.Addr)
	}
	od.Weight, od.Fwd = d.Weight, d.Fwd
	return nil
}

// DelDest implements IPVS.
func (f *FakeKernel) DelDest(k ServiceKey, a DestKey) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("del-dest", "%s %s", k, a); err != nil {
		return err
	}
	s, ok := f.services[k]
	if !ok {
		return misuse("del-dest %s: no such service", k)
	}
	for i := range s.Dests {
		if s.Dests[i].Addr == a {
			s.Dests = append(s.Dests[:i], s.Dests[i+1:]...)
			return nil
		}
	}
	return misuse("del-dest %s %s: no such real server", k, a)
}

// SetConns sets the connection counters of a real server (as traffic would).
func (f *FakeKernel) SetConns(k ServiceKey, a DestKey, active, inactive uint32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s, ok := f.services[k]; ok {
		if d, ok := s.dest(a); ok {
			d.ActiveConns, d.InactiveConns = active, inactive
		}
	}
}

// Flush empties the IPVS table, like `ipvsadm -C` run by someone else.
func (f *FakeKernel) Flush() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.services = map[ServiceKey]*VirtualService{}
}

// EnsureLink implements Addresses.
func (f *FakeKernel) EnsureLink(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.links[name]; ok {
		return nil
	}
	if err := f.record("add-link", "%s", name); err != nil {
		return err
	}
	f.links[name] = map[netip.Addr]bool{}
	return nil
}

// Addrs implements Addresses.
func (f *FakeKernel) Addrs(name string) ([]netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []netip.Addr
	for a := range f.links[name] {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out, nil
}

// AddAddr implements Addresses.
func (f *FakeKernel) AddAddr(name string, a netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("add-addr", "%s %s", name, a); err != nil {
		return err
	}
	l, ok := f.links[name]
	if !ok {
		return misuse("add-addr %s: no such link %s", a, name)
	}
	if l[a] {
		return misuse("add-addr %s: exists on %s", a, name)
	}
	l[a] = true
	return nil
}

// DelAddr implements Addresses.
func (f *FakeKernel) DelAddr(name string, a netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("del-addr", "%s %s", name, a); err != nil {
		return err
	}
	if !f.links[name][a] {
		return misuse("del-addr %s: not on %s", a, name)
	}
	delete(f.links[name], a)
	return nil
}

// SetFullNAT implements Kernel.
func (f *FakeKernel) SetFullNAT(keys []ServiceKey) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("set-fullnat", "%v", keys); err != nil {
		return err
	}
	f.fullNAT = append([]ServiceKey(nil), keys...)
	return nil
}

// FullNAT returns the services the fake masquerades.
func (f *FakeKernel) FullNAT() []ServiceKey {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]ServiceKey(nil), f.fullNAT...)
}

// SetSysctl implements Kernel.
func (f *FakeKernel) SetSysctl(name, value string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sysctls[name] == value {
		return nil
	}
	if err := f.record("sysctl", "%s=%s", name, value); err != nil {
		return err
	}
	if f.sysctls == nil {
		f.sysctls = map[string]string{}
	}
	f.sysctls[name] = value
	return nil
}

// Sysctl returns a sysctl value the fake holds.
func (f *FakeKernel) Sysctl(name string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sysctls[name]
}

// GuardUnreachable implements Kernel.
func (f *FakeKernel) GuardUnreachable(vips []netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.record("guard", "%v", vips)
}
