// Package config loads and validates lvs-director's YAML configuration.
//
// Loading is strict: unknown keys are errors, every error names the file, the line and the
// field path, defaults are filled in one place (setDefaults), and every field is validated.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the whole configuration file.
type Config struct {
	Director Director  `yaml:"director"`
	Services []Service `yaml:"services"`
	// API is the operations surface: metrics and the status socket.
	API API `yaml:"api"`
	// BGP is optional: without it no route is announced.
	BGP *BGP `yaml:"bgp,omitempty"`
	// Cluster is optional: without it the director runs alone and owns every VIP.
	Cluster *Cluster `yaml:"cluster,omitempty"`
	// Kubernetes is optional: a second source of services, from a remote cluster's Services.
	Kubernetes *Kubernetes `yaml:"kubernetes,omitempty"`

	// Path is the file the configuration was read from.
	Path string `yaml:"-"`

	// id numbers the configs parsed piecewise in this process; base is the id of the config
	// whose services this one took in place (Edits), edited the indices of the others.
	id, base uint64
	edited   []int
}

// Edits tells which services may differ from prev's. When the config was parsed right after
// prev with as many services, each taken from prev at the same index except a few (the usual
// reload: a real server added or a weight changed in place), edited lists the indices of those
// few in increasing order and ok is true: every other service is prev's at that index, with its
// Revision. Otherwise ok is false, and anything may have changed. (At 10,000 services this
// spares a consumer a look at every service: in the lab's emulated VM each such pass over the
// 2 MB of services cost a reload 1-3 ms.)
func (c *Config) Edits(prev *Config) (edited []int, ok bool) {
	if c == nil || prev == nil || c.base == 0 || c.base != prev.id {
		return nil, false
	}
	return c.edited, true
}

// configIDs numbers the configs parsed piecewise (Config.id).
var configIDs atomic.Uint64

// Director holds the settings of the reconciler.
type Director struct {
	Interface     string   `yaml:"interface"`
	SyncPeriod    Duration `yaml:"sync_period"`
	MinSyncPeriod Duration `yaml:"min_sync_period"`
	DrainTimeout  Duration `yaml:"drain_timeout"`
	ExcludeCIDRs  []Prefix `yaml:"exclude_cidrs"`
}

// Service is one virtual service: VIP:port/protocol and its real servers.
type Service struct {
	Name               string       `yaml:"name"`
	VIP                Addr         `yaml:"vip"`
	Port               uint16       `yaml:"port"`
	Protocol           string       `yaml:"protocol"`
	Scheduler          string       `yaml:"scheduler"`
	Persistence        Duration     `yaml:"persistence"`
	PersistenceNetmask *int         `yaml:"persistence_netmask,omitempty"`
	FullNAT            bool         `yaml:"full_nat"`
	RealServers        []RealServer `yaml:"real_servers"`

	// Health checking (see healthcheck.go).
	HealthCheck      *HealthCheck `yaml:"health_check,omitempty"`
	InhibitOnFailure bool         `yaml:"inhibit_on_failure"`
	Quorum           int          `yaml:"quorum"`
	SorryServer      *RealServer  `yaml:"sorry_server,omitempty"`

	// Announcement and failover (see bgp.go and cluster.go).
	BGP             *ServiceBGP `yaml:"bgp,omitempty"`
	Failover        string      `yaml:"failover"`
	StandbyAnnounce bool        `yaml:"standby_announce"`

	// Source names where the service came from ("file" or "kubernetes"); not read from YAML.
	Source string `yaml:"-"`

	// rev identifies this service's parse (see Revision).
	rev uint64
	// checks caches HasChecks for a parsed service: 0 not known, 1 no checks, 2 checks.
	checks uint8
}

// HasChecks tells whether the service or any of its real servers has a health check.
func (s *Service) HasChecks() bool {
	switch s.checks {
	case 1:
		return false
	case 2:
		return true
	}
	return s.findChecks()
}

func (s *Service) findChecks() bool {
	if s.HealthCheck != nil {
		return true
	}
	for i := range s.RealServers {
		if s.RealServers[i].HealthCheck != nil {
			return true
		}
	}
	return false
}

// revisions numbers the services parsed in this process (Revision).
var revisions atomic.Uint64

// Revision identifies the parse a service comes from: two services with the same non-zero
// revision are equal in every field (a reload hands out a service item whose text did not
// change with its earlier revision). 0 means unknown: a service built or changed outside
// Parse. Consumers use it to redo work only for services that changed.
func (s *Service) Revision() uint64 { return s.rev }

// WithoutRevision returns a copy of s whose revision is unknown (for a service that is
// changed after Parse).
func (s Service) WithoutRevision() Service {
	s.rev = 0
	return s
}

// numberServices gives each service that has none a new revision.
func numberServices(ss []Service) {
	for i := range ss {
		if ss[i].rev == 0 {
			ss[i].rev = revisions.Add(1)
		}
	}
}

// RealServer is one backend of a service.
type RealServer struct {
	Address     Addr         `yaml:"address"`
	Port        uint16       `yaml:"port"`
	Weight      *int         `yaml:"weight,omitempty"`
	HealthCheck *HealthCheck `yaml:"health_check,omitempty"`
}

// API configures the metrics listener and the status API.
type API struct {
	// MetricsListen is the Prometheus listener, host:port; "" disables it.
	MetricsListen string `yaml:"metrics_listen"`
	// Socket is the unix socket of the status API.
	Socket string `yaml:"socket"`
	// SocketGroup is the group that may use the socket (mode 0660); empty = root only.
	SocketGroup string `yaml:"socket_group"`
	// Listen is an optional TCP listener (host:port) for the status API. It is read-only
	// unless TokenFile names a file holding a bearer token that unlocks drain and reload.
	Listen    string `yaml:"listen"`
	TokenFile string `yaml:"token_file"`
	// MetricsMaxRealServers bounds the per-real-server IPVS series (8 per real server): while
	// the director's services have more real servers than this in the kernel, only the
	// per-service series are exported (and lvs_director_ipvs_realservers_unexported says how
	// many were left out). 0 exports no per-real-server series. Nil until defaults are set.
	MetricsMaxRealServers *int `yaml:"metrics_max_real_servers,omitempty"`
}

// MaxRealServerMetrics returns api.metrics_max_real_servers, or its default when unset.
func (a *API) MaxRealServerMetrics() int {
	if a.MetricsMaxRealServers == nil {
		return DefaultMetricsMaxRealServers
	}
	return *a.MetricsMaxRealServers
}

// Key identifies a virtual service in the kernel.
func (s *Service) Key() string {
	return strings.ToLower(s.Protocol) + "/" + netip.AddrPortFrom(s.VIP.Addr, s.Port).String()
}

// WeightOr returns the configured weight.
func (r *RealServer) WeightOr() int {
	if r.Weight == nil {
		return DefaultWeight
	}
	return *r.Weight
}

// Defaults, filled in one place by setDefaults.
const (
	DefaultInterface     = "lvs0"
	DefaultSyncPeriod    = 30 * time.Second
	DefaultMinSyncPeriod = 1 * time.Second
	DefaultDrainTimeout  = 30 * time.Second
	DefaultProtocol      = "tcp"
	DefaultScheduler     = "rr"
	DefaultWeight        = 1
	DefaultMetricsListen = "127.0.0.1:9813"
	// DefaultMetricsMaxRealServers keeps a scrape near 40,000 per-real-server series at most.
	DefaultMetricsMaxRealServers = 5000
	DefaultSocket                = "/run/lvs-director/api.sock"
	DefaultFailover              = "active-active"
)

// Schedulers lists the IPVS schedulers the director accepts.
var Schedulers = []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh", "fo", "ovf"}

// Load reads and validates a config file.
func Load(path string) (*Config, error) {
	cfg, release, err := LoadDeferred(path)
	release()
	return cfg, err
}

// LoadDeferred is Load leaving the file mapped until release is called (a large file is read
// through a mapping, see loadMapped; release is never nil). Unmapping 4 MB took 1-5 ms of a
// reload at 10,000 services in the lab VM: the daemon releases after the sync that follows.
func LoadDeferred(path string) (cfg *Config, release func(), err error) {
	if cfg, unmap, ok, err := loadMapped(path); ok {
		return cfg, unmap, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, func() {}, fmt.Errorf("reading config: %w", err)
	}
	cfg, err = Parse(path, data)
	return cfg, func() {}, err
}

// Parse decodes and validates config data; name is used in error messages.
// The error, when not nil, is an Errors value listing every problem.
func Parse(name string, data []byte) (*Config, error) {
	if cfg, ok := parseSplit(name, data); ok {
		return cfg, nil // a valid file of the usual layout, decoded piecewise (split.go)
	}
	cfg, err := parseWhole(name, data)
	if err == nil {
		numberServices(cfg.Services)
	}
	return cfg, err
}

// parseWhole decodes the file in one piece; it reports the errors with their lines.
func parseWhole(name string, data []byte) (*Config, error) {
	v := newValidator(name)
	cfg := &Config{Path: name}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		v.decodeErrors(err)
	} else {
		cfg.setDefaults()
		cfg.validate(v)
	}
	if len(v.errs) == 0 {
		return cfg, nil
	}
	// Only a file with errors pays for the field path <-> line index (a second parse).
	var root yaml.Node
	if yaml.Unmarshal(data, &root) == nil {
		v.index(&root, "")
	}
	return nil, v.located()
}

// setDefaults fills every default; it is the only place defaults are set.
func (c *Config) setDefaults() {
	d := &c.Director
	if d.Interface == "" {
		d.Interface = DefaultInterface
	}
	if d.SyncPeriod == 0 {
		d.SyncPeriod = Duration(DefaultSyncPeriod)
	}
	if d.MinSyncPeriod == 0 {
		d.MinSyncPeriod = Duration(DefaultMinSyncPeriod)
	}
	if d.DrainTimeout == 0 {
		d.DrainTimeout = Duration(DefaultDrainTimeout)
	}
	if c.API.MetricsListen == "" {
		c.API.MetricsListen = DefaultMetricsListen
	}
	if c.API.Socket == "" {
		c.API.Socket = DefaultSocket
	}
	if c.API.MetricsMaxRealServers == nil {
		n := DefaultMetricsMaxRealServers
		c.API.MetricsMaxRealServers = &n
	}
	for i := range c.Services {
		c.Services[i].setDefaults()
	}
	if c.BGP != nil {
		c.BGP.setDefaults()
	}
	if c.Cluster != nil {
		c.Cluster.setDefaults()
	}
	if c.Kubernetes != nil {
		c.Kubernetes.setDefaults()
	}
}

func (s *Service) setDefaults() {
	defer func() { // (after the defaults: they may fill in checks)
		s.checks = 1
		if s.findChecks() {
			s.checks = 2
		}
	}()
	if s.Source == "" {
		s.Source = "file"
	}
	s.Protocol = strings.ToLower(s.Protocol)
	if s.Protocol == "" {
		s.Protocol = DefaultProtocol
	}
	s.Scheduler = strings.ToLower(s.Scheduler)
	if s.Scheduler == "" {
		s.Scheduler = DefaultScheduler
	}
	if s.Failover == "" {
		s.Failover = DefaultFailover
	}
	// The real servers without a weight share one default (a loaded Config is read-only): one
	// allocation per service instead of one per real server.
	var w *int
	for i := range s.RealServers {
		r := &s.RealServers[i]
		if r.Weight == nil {
			if w == nil {
				w = new(int)
				*w = DefaultWeight
			}
			r.Weight = w
		}
		r.setDefaults(s.Port)
	}
	if s.SorryServer != nil {
		s.SorryServer.setDefaults(s.Port)
	}
	if s.HealthCheck != nil {
		s.HealthCheck.setDefaults()
	}
}

func (r *RealServer) setDefaults(vport uint16) {
	if r.Port == 0 {
		r.Port = vport
	}
	if r.Weight == nil {
		w := DefaultWeight
		r.Weight = &w
	}
	if r.HealthCheck != nil {
		r.HealthCheck.setDefaults()
	}
}

func (c *Config) validate(v *validator) {
	d := &c.Director
	if !validIfName(d.Interface) {
		v.errorf("director.interface", "invalid interface name %q (1-15 characters, no '/', ':' or spaces)", d.Interface)
	}
	if d.SyncPeriod < 0 {
		v.errorf("director.sync_period", "must be positive, got %s", d.SyncPeriod)
	}
	if d.MinSyncPeriod < 0 {
		v.errorf("director.min_sync_period", "must be positive, got %s", d.MinSyncPeriod)
	}
	if d.MinSyncPeriod > d.SyncPeriod {
		v.errorf("director.min_sync_period", "%s is longer than sync_period %s", d.MinSyncPeriod, d.SyncPeriod)
	}
	if d.DrainTimeout < 0 {
		v.errorf("director.drain_timeout", "must not be negative, got %s", d.DrainTimeout)
	}
	if c.API.MetricsListen != "off" {
		if _, err := netip.ParseAddrPort(c.API.MetricsListen); err != nil {
			v.errorf("api.metrics_listen", "invalid listen address %q (want IP:port, or off)", c.API.MetricsListen)
		}
	}
	if n := c.API.MaxRealServerMetrics(); n < 0 {
		v.errorf("api.metrics_max_real_servers", "must be 0 or more, got %d", n)
	}
	if !strings.HasPrefix(c.API.Socket, "/") {
		v.errorf("api.socket", "must be an absolute path, got %q", c.API.Socket)
	}
	if c.API.Listen != "" {
		if _, err := netip.ParseAddrPort(c.API.Listen); err != nil {
			v.errorf("api.listen", "invalid listen address %q (want IP:port)", c.API.Listen)
		}
	}
	if c.API.TokenFile != "" && !strings.HasPrefix(c.API.TokenFile, "/") {
		v.errorf("api.token_file", "must be an absolute path, got %q", c.API.TokenFile)
	}
	if c.API.TokenFile != "" && c.API.Listen == "" {
		v.errorf("api.token_file", "needs api.listen (the unix socket is protected by its file mode)")
	}

	nUnique := len(c.Services)
	if v.uniqueChecked {
		nUnique = 0
	}
	names := make(map[string]int, nUnique)
	type svcKey struct {
		proto string
		ap    netip.AddrPort
	}
	keys := make(map[svcKey]int, nUnique)
	for i := range c.Services {
		s := &c.Services[i]
		p := func() string { return "services[" + strconv.Itoa(i) + "]" } // (only for errors and new items)
		if i >= len(v.known) || !v.known[i] {
			s.validate(v, p(), d.ExcludeCIDRs)
		}
		if v.uniqueChecked {
			continue
		}
		if s.Name != "" {
			if j, dup := names[s.Name]; dup {
				v.errorf(p()+".name", "duplicate service name %q (also services[%d])", s.Name, j)
			} else {
				names[s.Name] = i
			}
		}
		if s.VIP.IsValid() {
			if key := (svcKey{strings.ToLower(s.Protocol), netip.AddrPortFrom(s.VIP.Addr, s.Port)}); keys[key] > 0 {
				v.errorf(p(), "duplicate virtual service %s (also services[%d])", s.Key(), keys[key]-1)
			} else {
				keys[key] = i + 1 // 0: not seen
			}
		}
	}
	if c.BGP != nil {
		c.BGP.validate(v, "bgp")
	}
	if c.Cluster != nil {
		c.Cluster.validate(v, "cluster")
	}
	if c.Kubernetes != nil {
		c.Kubernetes.validate(v, "kubernetes")
	}
	c.validateCrossSections(v)
}

func (s *Service) validate(v *validator, p string, exclude []Prefix) {
	if s.Name == "" {
		v.errorf(p+".name", "is required")
	} else if !validName(s.Name) {
		v.errorf(p+".name", "invalid name %q (letters, digits, '-', '_' and '.' only, at most 63)", s.Name)
	}
	if !s.VIP.IsValid() {
		v.errorf(p+".vip", "is required")
	} else {
		if s.VIP.IsUnspecified() || s.VIP.IsMulticast() || s.VIP.IsLoopback() {
			v.errorf(p+".vip", "%s cannot be a VIP (unspecified, multicast or loopback)", s.VIP)
		}
		for _, x := range exclude {
			if x.Contains(s.VIP.Addr) {
				v.errorf(p+".vip", "%s is inside exclude_cidrs %s", s.VIP, x)
			}
		}
	}
	if s.Port == 0 {
		v.errorf(p+".port", "is required (1-65535)")
	}
	switch s.Protocol {
	case "tcp", "udp", "sctp":
	default:
		v.errorf(p+".protocol", "unknown protocol %q (tcp, udp or sctp)", s.Protocol)
	}
	if !contains(Schedulers, s.Scheduler) {
		v.errorf(p+".scheduler", "unknown scheduler %q (one of %s)", s.Scheduler, strings.Join(Schedulers, " "))
	}
	if s.Persistence < 0 || s.Persistence.D() > 0 && s.Persistence.D() < time.Second {
		v.errorf(p+".persistence", "must be 0 or at least 1s, got %s", s.Persistence)
	}
	if s.PersistenceNetmask != nil {
		max := 32
		if s.VIP.Is6() {
			max = 128
		}
		if s.Persistence == 0 {
			v.errorf(p+".persistence_netmask", "needs persistence to be set")
		} else if *s.PersistenceNetmask < 1 || *s.PersistenceNetmask > max {
			v.errorf(p+".persistence_netmask", "must be a prefix length 1-%d, got %d", max, *s.PersistenceNetmask)
		}
	}
	// Paths are built only for a real server with a problem: at 10,000 services, building one
	// per real server was a third of a config load's validation.
	rsPath := func(i int) string { return p + ".real_servers[" + strconv.Itoa(i) + "]" }
	for i := range s.RealServers {
		r := &s.RealServers[i]
		if !r.plainValid(s.VIP.Addr) {
			r.validate(v, rsPath(i), s.VIP.Addr)
		}
	}
	s.checkDuplicateRealServers(v, rsPath)
	if s.SorryServer != nil {
		s.SorryServer.validate(v, p+".sorry_server", s.VIP.Addr)
	}
	if s.Quorum < 0 || s.Quorum > len(s.RealServers) {
		v.errorf(p+".quorum", "must be between 0 and the number of real servers (%d), got %d", len(s.RealServers), s.Quorum)
	}
	if s.HealthCheck != nil {
		s.HealthCheck.validate(v, p+".health_check")
	}
	switch s.Failover {
	case "active-active", "active-standby":
	default:
		v.errorf(p+".failover", "unknown failover mode %q (active-active or active-standby)", s.Failover)
	}
	if s.BGP != nil {
		s.BGP.validate(v, p+".bgp")
	}
}

func (c *Config) validateCrossSections(v *validator) {
	if c.BGP != nil {
		return
	}
	for i := range c.Services {
		if v.knownNoBGP && i < len(v.known) && v.known[i] {
			continue // (without looking at the service: at 10,000 a pass over 2 MB)
		}
		if c.Services[i].BGP != nil {
			v.errorf(fmt.Sprintf("services[%d].bgp", i), "route attributes need the top-level bgp section")
		}
	}
}

// smallDupScan is the most real servers checked for duplicates pair by pair (cheaper than a map).
const smallDupScan = 32

// checkDuplicateRealServers reports every real server (address and port) listed twice.
func (s *Service) checkDuplicateRealServers(v *validator, rsPath func(int) string) {
	rss := s.RealServers
	apOf := func(i int) netip.AddrPort { return netip.AddrPortFrom(rss[i].Address.Addr, rss[i].Port) }
	if len(rss) <= smallDupScan {
		for i := 1; i < len(rss); i++ {
			ap := apOf(i)
			for j := 0; j < i; j++ {
				if apOf(j) == ap {
					v.errorf(rsPath(i), "duplicate real server %s (also real_servers[%d])", ap, firstIndex(rss, ap))
					break
				}
			}
		}
		return
	}
	seen := make(map[netip.AddrPort]int, len(rss))
	for i := range rss {
		ap := apOf(i)
		if j, dup := seen[ap]; dup {
			v.errorf(rsPath(i), "duplicate real server %s (also real_servers[%d])", ap, j)
		} else {
			seen[ap] = i
		}
	}
}

// firstIndex returns the index of the first real server at ap.
func firstIndex(rss []RealServer, ap netip.AddrPort) int {
	for i := range rss {
		if netip.AddrPortFrom(rss[i].Address.Addr, rss[i].Port) == ap {
			return i
		}
	}
	return -1
}

// plainValid tells, without building any error path, that validate would find nothing wrong
// with a real server that has no health check of its own (the common case).
func (r *RealServer) plainValid(vip netip.Addr) bool {
	if r.HealthCheck != nil || !r.Address.IsValid() || r.Address.IsUnspecified() || r.Address.IsMulticast() {
		return false
	}
	if vip.IsValid() && r.Address.Is4() != vip.Is4() {
		return false
	}
	w := r.WeightOr()
	return w >= 0 && w <= 65535
}

func (r *RealServer) validate(v *validator, p string, vip netip.Addr) {
	if !r.Address.IsValid() {
		v.errorf(p+".address", "is required")
	} else {
		if r.Address.IsUnspecified() || r.Address.IsMulticast() {
			v.errorf(p+".address", "%s cannot be a real server", r.Address)
		}
		if vip.IsValid() && r.Address.Is4() != vip.Is4() {
			v.errorf(p+".address", "%s and the VIP %s are of different IP families (NAT cannot mix them)", r.Address, vip)
		}
	}
	if w := r.WeightOr(); w < 0 || w > 65535 {
		v.errorf(p+".weight", "must be 0-65535, got %d", w)
	}
	if r.HealthCheck != nil {
		r.HealthCheck.validate(v, p+".health_check")
	}
}

func validIfName(s string) bool {
	return len(s) > 0 && len(s) < 16 && !strings.ContainsAny(s, "/: \t\n")
}

func validName(s string) bool {
	if len(s) > 63 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
