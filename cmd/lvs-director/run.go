package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/lvs-director/lvs-director/bgp"
	"github.com/lvs-director/lvs-director/cluster"
	"github.com/lvs-director/lvs-director/config"
	"github.com/lvs-director/lvs-director/daemon"
	"github.com/lvs-director/lvs-director/healthcheck"
	"github.com/lvs-director/lvs-director/kubernetes"
)

func newRunCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run --config FILE",
		Short: "run the director: keep the kernel's IPVS table equal to the config",
		Long: `Run the director: keep the kernel's IPVS table equal to the config, health-check the
real servers, serve the status API and the Prometheus metrics, announce VIPs over BGP and
join the cluster when configured. SIGHUP (or a change of the file) reloads the config;
SIGTERM stops and leaves the kernel's table as it is.`,
		Example:           "  lvs-director run --config /etc/lvs-director/director.yaml --log-format json",
		Args:              noArgs,
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	path := configFlag(cmd)
	level := choiceFlag(cmd, "log-level", "info", "log level: debug, info, warn, error", "debug", "info", "warn", "error")
	format := choiceFlag(cmd, "log-format", "text", "log format: text or json", "text", "json")
	cmd.RunE = runE(func(cmd *cobra.Command, _ []string) error {
		return runDirector(cmd.Context(), *path, level.String(), format.String(), cmd.ErrOrStderr())
	})
	return cmd
}

// runDirector is the daemon's life: it returns when ctx ends (SIGTERM, SIGINT).
func runDirector(ctx context.Context, path, level, format string, errOut io.Writer) error {
	log, err := newLogger(errOut, level, format)
	if err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	if _, err := os.Stat(path); err != nil {
		return err
	}
	k, err := openKernel()
	if err != nil {
		return err
	}
	defer k.Close()
	reg := prometheus.NewRegistry()
	held := daemon.HoldGCForStart() // (loading a large config is not collected either)
	d, err := daemon.New(log, reg, k, path, systemdNotifier(log))
	if err != nil {
		held()
		return describeConfigError(errOut, err)
	}
	d.SetStartGCHold(held)
	d.PrepareKernel() // (while the rest is set up)
	d.SetWatchdog(watchdogInterval())
	reg.MustRegister(runtimeCollectors()...)
	cfg := d.Config()
	go func() {
		if err := d.ServeAPI(ctx); err != nil {
			log.Error("status API stopped", "err", err)
		}
	}()
	if cfg.API.Listen != "" {
		go func() {
			if err := d.ServeTCPAPI(ctx); err != nil {
				log.Error("status API listener stopped", "err", err)
			}
		}()
	}
	if cfg.API.MetricsListen != "off" {
		go func() {
			if err := daemon.ServeMetrics(ctx, cfg.API.MetricsListen, reg); err != nil {
				log.Error("metrics listener stopped", "err", err)
			}
		}()
	}
	checker, err := healthcheck.New(log, reg)
	if err != nil {
		return fmt.Errorf("health checks: %w", err)
	}
	d.SetHealth(daemon.HealthFromChecker(checker))
	go func() {
		if err := checker.Run(ctx); err != nil {
			log.Error("health checks stopped", "err", err)
		}
	}()
	if cfg.Kubernetes != nil {
		src, err := kubernetes.New(log, reg, cfg.Kubernetes)
		if err != nil {
			return fmt.Errorf("kubernetes: %w", err)
		}
		d.SetSource(src)
		go func() {
			if err := src.Run(ctx); err != nil {
				log.Error("kubernetes source stopped", "err", err)
			}
		}()
	}
	var speaker *bgp.Speaker
	if cfg.BGP != nil {
		if speaker, err = bgp.New(log, reg, cfg.BGP); err != nil {
			return fmt.Errorf("BGP: %w", err)
		}
		if err := speaker.Start(ctx); err != nil {
			return fmt.Errorf("BGP: %w", err)
		}
		d.SetSpeaker(speaker)
		d.OnReload(func(c *config.Config) {
			if c.BGP == nil {
				log.Error("the bgp section was removed: keeping BGP running until restart")
				return
			}
			go func() {
				rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := speaker.Reconfigure(rctx, c.BGP); err != nil {
					log.Error("BGP reconfiguration", "err", err)
				}
			}()
		})
	}
	var members *cluster.Cluster
	if cfg.Cluster != nil {
		if members, err = cluster.New(log, reg, cfg.Cluster); err != nil {
			return fmt.Errorf("cluster: %w", err)
		}
		if err := members.Start(ctx); err != nil {
			return fmt.Errorf("cluster: %w", err)
		}
		d.SetMembership(members)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	reload := make(chan struct{}, 1)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default:
			}
		}
	}()
	runErr := d.Run(ctx, reload)
	stopAnnouncing(log, speaker, members, handoverNeeded(d.Config().Services))
	if runErr != nil {
		log.Error("stopped with an error", "err", runErr)
		return reported
	}
	log.Info("stopped")
	return nil
}

func newLogger(w io.Writer, level string, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("invalid --log-level %q (debug, info, warn, error)", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	if os.Getenv("JOURNAL_STREAM") != "" {
		// systemd's journal stamps every line itself: no second timestamp.
		opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}
	}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("invalid --log-format %q (text or json)", format)
}

// runtimeCollectors are the Go runtime's and the process's metrics, and the build info.
//
// The collectors come from package prometheus itself: collectors.NewGoCollector and
// collectors.NewProcessCollector are one-line wrappers around these very functions, but
// package collectors also links database/sql (for its DB stats collector), whose package
// initialisation every command paid at start-up.
func runtimeCollectors() []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGoCollector(),                                       //nolint:staticcheck // what collectors.NewGoCollector() returns
		prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}), //nolint:staticcheck // what collectors.NewProcessCollector returns
		buildInfo(),
	}
}

func buildInfo() prometheus.Collector {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "lvs_director_build_info",
		Help: "Build information; the value is always 1.",
	}, []string{"version", "goversion"})
	g.WithLabelValues(buildVersion(), runtime.Version()).Set(1)
	return g
}

// stopAnnouncing moves traffic away before the process ends, inside systemd's stop timeout.
// When every VIP already has a route from another director (active-active, or active-standby
// with standby_announce) it withdraws first, while it leaves the cluster: routers switch at
// once. When some active-standby VIP has no standby route (handover), it leaves the cluster
// first (the new owner notices and announces), keeps its routes a moment longer so that
// routers always have a path, then withdraws.
func stopAnnouncing(log *slog.Logger, speaker *bgp.Speaker, members *cluster.Cluster, handoverNeeded bool) {
	withdraw := func() {
		if speaker == nil {
			return
		}
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := speaker.Stop(sctx); err != nil {
			log.Error("BGP stop", "err", err)
		}
	}
	leave := func() {
		if members == nil {
			return
		}
		if err := members.Leave(2 * time.Second); err != nil {
			log.Warn("cluster leave", "err", err)
		}
	}
	shutdown := func() {
		if members == nil {
			return
		}
		if err := members.Shutdown(); err != nil {
			log.Warn("cluster shutdown", "err", err)
		}
	}
	if members != nil && speaker != nil && handoverNeeded {
		// Leaving sends each peer a packet at once, so the new owner announces without waiting
		// for gossip; meanwhile this director demotes its routes: routers keep them until the
		// new owner's arrive and switch the moment they do. The demoted routes go after the
		// handover.
		start := time.Now()
		left := make(chan struct{})
		go func() { leave(); close(left) }()
		dctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if err := speaker.Demote(dctx); err != nil {
			log.Warn("BGP demote before the handover", "err", err)
		}
		cancel()
		<-left
		time.Sleep(handover - time.Since(start))
		withdraw()
		shutdown()
		return
	}
	done := make(chan struct{})
	go func() { leave(); close(done) }()
	withdraw()
	<-done
	shutdown()
}

// handoverNeeded tells whether some active-standby VIP has no route from the standbys.
func handoverNeeded(services []config.Service) bool {
	for _, s := range services {
		if s.Failover == "active-standby" && !s.StandbyAnnounce {
			return true
		}
	}
	return false
}

// handover is how long a leaving director keeps its demoted routes after it starts leaving the
// cluster: the new owner usually announces within milliseconds (it gets a leaving notice), but
// a loaded host can take a second or more, and a demoted route costs nothing once a better
// one exists, so it is kept for a while before the withdrawal.
const handover = 2 * time.Second
