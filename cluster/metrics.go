package cluster

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	changes    prometheus.Counter
	metaErrors prometheus.Counter
}

// membersCollector reports lvs_director_cluster_members{state} from the member view at scrape time.
type membersCollector struct {
	c    *Cluster
	desc *prometheus.Desc
}

func (m *membersCollector) Describe(ch chan<- *prometheus.Desc) { ch <- m.desc }

func (m *membersCollector) Collect(ch chan<- prometheus.Metric) {
	counts := map[State]int{StateAlive: 0, StateDead: 0, StateLeft: 0}
	for _, mem := range m.c.Members() {
		counts[mem.State]++
	}
	for _, s := range []State{StateAlive, StateSuspect, StateDead, StateLeft} {
		if n, ok := counts[s]; ok {
			ch <- prometheus.MustNewConstMetric(m.desc, prometheus.GaugeValue, float64(n), s.String())
		}
	}
}

func newMetrics(reg prometheus.Registerer, c *Cluster) (*metrics, error) {
	m := &metrics{
		changes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lvs_director_cluster_member_changes_total",
			Help: "Membership events seen (member joined, left, failed or changed its meta).",
		}),
		metaErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lvs_director_cluster_meta_errors_total",
			Help: "Peer node meta that could not be decoded (the peer is treated as ineligible).",
		}),
	}
	if reg == nil {
		return m, nil
	}
	members := &membersCollector{c: c, desc: prometheus.NewDesc("lvs_director_cluster_members",
		"Directors known to this one, by state (alive, dead, left), itself included.", []string{"state"}, nil)}
	for _, col := range []prometheus.Collector{m.changes, m.metaErrors, members} {
		if err := reg.Register(col); err != nil {
			return nil, err
		}
	}
	return m, nil
}
