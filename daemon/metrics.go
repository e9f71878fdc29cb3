package daemon

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lvs-director/lvs-director/director"
)

// ipvsCollector reads the kernel's IPVS counters of the configured services at each scrape.
type ipvsCollector struct {
	d                                   *Daemon
	svcConns, svcPackets, svcBytes      *prometheus.Desc
	rsConns, rsPackets, rsBytes         *prometheus.Desc
	rsActive, rsInactive, rsWeight, err *prometheus.Desc
}

func newIPVSCollector(d *Daemon) *ipvsCollector {
	svc := []string{"service"}
	svcDir := []string{"service", "direction"}
	rs := []string{"service", "real_server"}
	rsDir := []string{"service", "real_server", "direction"}
	return &ipvsCollector{
		d:          d,
		svcConns:   prometheus.NewDesc("lvs_director_ipvs_service_connections_total", "Connections scheduled by the virtual service (kernel counter).", svc, nil),
		svcPackets: prometheus.NewDesc("lvs_director_ipvs_service_packets_total", "Packets through the virtual service by direction (kernel counter).", svcDir, nil),
		svcBytes:   prometheus.NewDesc("lvs_director_ipvs_service_bytes_total", "Bytes through the virtual service by direction (kernel counter).", svcDir, nil),
		rsConns:    prometheus.NewDesc("lvs_director_ipvs_realserver_connections_total", "Connections scheduled to the real server (kernel counter).", rs, nil),
		rsPackets:  prometheus.NewDesc("lvs_director_ipvs_realserver_packets_total", "Packets to and from the real server by direction (kernel counter).", rsDir, nil),
		rsBytes:    prometheus.NewDesc("lvs_director_ipvs_realserver_bytes_total", "Bytes to and from the real server by direction (kernel counter).", rsDir, nil),
		rsActive:   prometheus.NewDesc("lvs_director_ipvs_realserver_active_connections", "Active connections of the real server.", rs, nil),
		rsInactive: prometheus.NewDesc("lvs_director_ipvs_realserver_inactive_connections", "Inactive connection entries of the real server.", rs, nil),
		rsWeight:   prometheus.NewDesc("lvs_director_ipvs_realserver_weight", "Weight of the real server in the kernel.", rs, nil),
		err:        prometheus.NewDesc("lvs_director_ipvs_read_errors", "Reading the kernel's IPVS table failed at this scrape (1).", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *ipvsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.svcConns, c.svcPackets, c.svcBytes, c.rsConns, c.rsPackets, c.rsBytes, c.rsActive, c.rsInactive, c.rsWeight, c.err} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *ipvsCollector) Collect(ch chan<- prometheus.Metric) {
	observed, _, err := c.d.rec.Observe()
	failed := 0.0
	if err != nil {
		failed = 1
	}
	ch <- prometheus.MustNewConstMetric(c.err, prometheus.GaugeValue, failed)
	if err != nil {
		return
	}
	names := map[director.ServiceKey]string{}
	services := c.d.services()
	for i := range services {
		names[director.ServiceKeyOf(&services[i])] = services[i].Name
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v int, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	for _, s := range observed {
		name, ok := names[s.Key]
		if !ok {
			continue // not the director's
		}
		counter(c.svcConns, s.Stats.Conns, name)
		counter(c.svcPackets, s.Stats.PacketsIn, name, "in")
		counter(c.svcPackets, s.Stats.PacketsOut, name, "out")
		counter(c.svcBytes, s.Stats.BytesIn, name, "in")
		counter(c.svcBytes, s.Stats.BytesOut, name, "out")
		for _, d := range s.Dests {
			rs := d.Addr.String()
			counter(c.rsConns, d.Stats.Conns, name, rs)
			counter(c.rsPackets, d.Stats.PacketsIn, name, rs, "in")
			counter(c.rsPackets, d.Stats.PacketsOut, name, rs, "out")
			counter(c.rsBytes, d.Stats.BytesIn, name, rs, "in")
			counter(c.rsBytes, d.Stats.BytesOut, name, rs, "out")
			gauge(c.rsActive, d.ActiveConns, name, rs)
			gauge(c.rsInactive, d.InactiveConns, name, rs)
			gauge(c.rsWeight, d.Weight, name, rs)
		}
	}
}
