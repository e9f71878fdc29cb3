package daemon

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lvs-director/lvs-director/director"
)

// scrapeMaxAge is how long a kernel dump serves scrapes: scrapes within it (several
// Prometheus servers, a retry, a curl by hand) share one dump instead of each reading the whole
// IPVS table again. Counters are at most this much behind the kernel.
const scrapeMaxAge = time.Second

// ipvsCollector reads the kernel's IPVS counters of the configured services at each scrape.
//
// Its cost is bounded two ways. Per-real-server series (8 per real server) are exported only
// while the director's services have at most api.metrics_max_real_servers real servers in the
// kernel; above that only the per-service series are, and
// lvs_director_ipvs_realservers_unexported tells how many real servers were left out (all or
// none: a series never comes and goes with the order of the table). And a kernel dump younger
// than scrapeMaxAge is reused, with the series built from it.
type ipvsCollector struct {
	d   *Daemon
	now func() time.Time
	// maxAge is scrapeMaxAge; 0 reads the kernel at every scrape.
	maxAge time.Duration

	svcConns, svcPackets, svcBytes      *prometheus.Desc
	svcActive, svcInactive              *prometheus.Desc
	rsConns, rsPackets, rsBytes         *prometheus.Desc
	rsActive, rsInactive, rsWeight, err *prometheus.Desc
	unexported                          *prometheus.Desc

	// mu is held while reading the kernel, so that concurrent scrapes wait for one dump and
	// share its series.
	mu       sync.Mutex
	cached   []prometheus.Metric // the series of the last dump; nil after a failed read
	dumpedAt time.Time
	// capped is whether the last scrape left the per-real-server series out (logged on change).
	capped bool
}

func newIPVSCollector(d *Daemon) *ipvsCollector {
	svc := []string{"service"}
	svcDir := []string{"service", "direction"}
	rs := []string{"service", "real_server"}
	rsDir := []string{"service", "real_server", "direction"}
	return &ipvsCollector{
		d:           d,
		now:         time.Now,
		maxAge:      scrapeMaxAge,
		svcConns:    prometheus.NewDesc("lvs_director_ipvs_service_connections_total", "Connections scheduled by the virtual service (kernel counter).", svc, nil),
		svcPackets:  prometheus.NewDesc("lvs_director_ipvs_service_packets_total", "Packets through the virtual service by direction (kernel counter).", svcDir, nil),
		svcBytes:    prometheus.NewDesc("lvs_director_ipvs_service_bytes_total", "Bytes through the virtual service by direction (kernel counter).", svcDir, nil),
		svcActive:   prometheus.NewDesc("lvs_director_ipvs_service_active_connections", "Active connections of the virtual service (sum over its real servers).", svc, nil),
		svcInactive: prometheus.NewDesc("lvs_director_ipvs_service_inactive_connections", "Inactive connection entries of the virtual service (sum over its real servers).", svc, nil),
		rsConns:     prometheus.NewDesc("lvs_director_ipvs_realserver_connections_total", "Connections scheduled to the real server (kernel counter).", rs, nil),
		rsPackets:   prometheus.NewDesc("lvs_director_ipvs_realserver_packets_total", "Packets to and from the real server by direction (kernel counter).", rsDir, nil),
		rsBytes:     prometheus.NewDesc("lvs_director_ipvs_realserver_bytes_total", "Bytes to and from the real server by direction (kernel counter).", rsDir, nil),
		rsActive:    prometheus.NewDesc("lvs_director_ipvs_realserver_active_connections", "Active connections of the real server.", rs, nil),
		rsInactive:  prometheus.NewDesc("lvs_director_ipvs_realserver_inactive_connections", "Inactive connection entries of the real server.", rs, nil),
		rsWeight:    prometheus.NewDesc("lvs_director_ipvs_realserver_weight", "Weight of the real server in the kernel.", rs, nil),
		err:         prometheus.NewDesc("lvs_director_ipvs_read_errors", "Reading the kernel's IPVS table failed at this scrape (1).", nil, nil),
		unexported: prometheus.NewDesc("lvs_director_ipvs_realservers_unexported",
			"Real servers whose per-real-server series this scrape left out because there are more than api.metrics_max_real_servers.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *ipvsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.svcConns, c.svcPackets, c.svcBytes, c.svcActive, c.svcInactive,
		c.rsConns, c.rsPackets, c.rsBytes, c.rsActive, c.rsInactive, c.rsWeight, c.err, c.unexported} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *ipvsCollector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c.metrics() {
		ch <- m
	}
}

// metrics returns the series of the kernel's IPVS table: those of the last scrape when it read
// the kernel less than maxAge ago, else those of a new dump. A failed read is not kept: the
// next scrape tries again. The slice is shared: read only.
func (c *ipvsCollector) metrics() []prometheus.Metric {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if c.cached != nil && now.Sub(c.dumpedAt) < c.maxAge && !now.Before(c.dumpedAt) {
		return c.cached
	}
	observed, _, err := c.d.rec.Observe()
	if err != nil {
		c.cached = nil
		return []prometheus.Metric{prometheus.MustNewConstMetric(c.err, prometheus.GaugeValue, 1)}
	}
	c.cached, c.dumpedAt = c.build(observed), now
	return c.cached
}

// exportRealServers decides, for a dump with total real servers, whether their series are
// exported, and logs when that changes. Called with mu held.
func (c *ipvsCollector) exportRealServers(total int) bool {
	limit := c.d.Config().API.MaxRealServerMetrics()
	capped := total > limit
	changed := capped != c.capped
	c.capped = capped
	switch {
	case !changed || limit == 0:
		// Nothing new, or the operator turned per-real-server series off.
	case capped:
		c.d.log.Warn("more real servers than api.metrics_max_real_servers: exporting per-service IPVS metrics only",
			"real_servers", total, "metrics_max_real_servers", limit)
	default:
		c.d.log.Info("exporting per-real-server IPVS metrics again", "real_servers", total, "metrics_max_real_servers", limit)
	}
	return !capped
}

// build turns a kernel dump into the series of the director's services. Called with mu held.
func (c *ipvsCollector) build(observed []director.VirtualService) []prometheus.Metric {
	names := map[director.ServiceKey]string{}
	services := c.d.services()
	for i := range services {
		names[director.ServiceKeyOf(&services[i])] = services[i].Name
	}
	total, owned := 0, 0
	for i := range observed {
		if _, ok := names[observed[i].Key]; ok {
			total += len(observed[i].Dests)
			owned++
		}
	}
	perRS := c.exportRealServers(total)
	size := 2 + owned*7
	unexported := total
	if perRS {
		size += total * 8
		unexported = 0
	}
	out := make([]prometheus.Metric, 0, size)
	out = append(out,
		prometheus.MustNewConstMetric(c.err, prometheus.GaugeValue, 0),
		prometheus.MustNewConstMetric(c.unexported, prometheus.GaugeValue, float64(unexported)))
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		out = append(out, prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...))
	}
	gauge := func(d *prometheus.Desc, v int, labels ...string) {
		out = append(out, prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...))
	}
	for i := range observed {
		s := &observed[i]
		name, ok := names[s.Key]
		if !ok {
			continue // not the director's
		}
		counter(c.svcConns, s.Stats.Conns, name)
		counter(c.svcPackets, s.Stats.PacketsIn, name, "in")
		counter(c.svcPackets, s.Stats.PacketsOut, name, "out")
		counter(c.svcBytes, s.Stats.BytesIn, name, "in")
		counter(c.svcBytes, s.Stats.BytesOut, name, "out")
		active, inactive := 0, 0
		for j := range s.Dests {
			d := &s.Dests[j]
			active += int(d.ActiveConns)
			inactive += int(d.InactiveConns)
			if !perRS {
				continue
			}
			rs := d.Addr.String()
			counter(c.rsConns, d.Counters().Conns, name, rs)
			counter(c.rsPackets, d.Counters().PacketsIn, name, rs, "in")
			counter(c.rsPackets, d.Counters().PacketsOut, name, rs, "out")
			counter(c.rsBytes, d.Counters().BytesIn, name, rs, "in")
			counter(c.rsBytes, d.Counters().BytesOut, name, rs, "out")
			gauge(c.rsActive, int(d.ActiveConns), name, rs)
			gauge(c.rsInactive, int(d.InactiveConns), name, rs)
			gauge(c.rsWeight, int(d.Weight), name, rs)
		}
		gauge(c.svcActive, active, name)
		gauge(c.svcInactive, inactive, name)
	}
	return out
}
