// Command lvs-director is a standalone Linux LVS director: it keeps kernel IPVS NAT virtual
// servers equal to a YAML file, health-checks real servers and announces VIPs over BGP.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/lvs-director/lvs-director/bgp"
	"github.com/lvs-director/lvs-director/cluster"
	"github.com/lvs-director/lvs-director/config"
	"github.com/lvs-director/lvs-director/daemon"
	"github.com/lvs-director/lvs-director/director"
	"github.com/lvs-director/lvs-director/healthcheck"
	"github.com/lvs-director/lvs-director/kubernetes"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

type command struct {
	name, args, help string
	run              func(ctx context.Context, fs *flag.FlagSet, args []string, out, errOut io.Writer) int
}

func commands() []command {
	return []command{
		{"run", "--config FILE", "run the director: keep the kernel's IPVS table equal to the config", cmdRun},
		{"validate", "--config FILE", "check a config file; exit 0 if valid, 1 with every error if not", cmdValidate},
		{"plan", "--config FILE", "print the kernel operations a sync would apply now; applies nothing", cmdPlan},
		{"cleanup", "--config FILE", "remove every virtual service and VIP the director owns, and nothing else", cmdCleanup},
		{"status", "[--json] [--socket PATH]", "show the running director's view: kernel table, health, drains, announcements", cmdStatus},
		{"drain", "[--socket PATH] SERVICE REALSERVER", "take a real server out of rotation (weight 0, then removal) until undrain", drainCommand(true)},
		{"undrain", "[--socket PATH] SERVICE REALSERVER", "put a drained real server back", drainCommand(false)},
		{"version", "", "print the version", cmdVersion},
	}
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "lvs-director: a Linux LVS (IPVS) director\n\nUsage:\n  lvs-director COMMAND [flags]\n\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.help)
	}
	fmt.Fprintf(w, "\nRun 'lvs-director COMMAND --help' for a command's flags.\n")
}

func main() {
	os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
}

// Main runs the CLI and returns the exit code.
func Main(args []string, out, errOut io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(out)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		fs := flag.NewFlagSet("lvs-director "+c.name, flag.ContinueOnError)
		fs.SetOutput(errOut)
		fs.Usage = func() {
			fmt.Fprintf(errOut, "Usage: lvs-director %s %s\n\n%s\n\nFlags:\n", c.name, c.args, c.help)
			fs.PrintDefaults()
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		return c.run(ctx, fs, args[1:], out, errOut)
	}
	fmt.Fprintf(errOut, "lvs-director: unknown command %q\n\n", args[0])
	usage(errOut)
	return 2
}

func parse(fs *flag.FlagSet, args []string) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		fs.Usage()
		return 2, false
	}
	return 0, true
}

func configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", "/etc/lvs-director/director.yaml", "config file")
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

func cmdValidate(_ context.Context, fs *flag.FlagSet, args []string, out, errOut io.Writer) int {
	path := configFlag(fs)
	if code, ok := parse(fs, args); !ok {
		return code
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintf(errOut, "%s\n", daemon.Describe(err))
		return 1
	}
	fmt.Fprintf(out, "%s: valid (%d services)\n", *path, len(cfg.Services))
	return 0
}

func openKernel(errOut io.Writer) (*director.LinuxKernel, bool) {
	k, err := director.OpenKernel()
	if err != nil {
		fmt.Fprintf(errOut, "lvs-director: %v\n", err)
		return nil, false
	}
	return k, true
}

func cmdPlan(_ context.Context, fs *flag.FlagSet, args []string, out, errOut io.Writer) int {
	path := configFlag(fs)
	if code, ok := parse(fs, args); !ok {
		return code
	}
	k, ok := openKernel(errOut)
	if !ok {
		return 1
	}
	defer k.Close()
	d, err := daemon.New(slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry(), k, *path, nil)
	if err != nil {
		fmt.Fprintf(errOut, "%s\n", daemon.Describe(err))
		return 1
	}
	p, err := d.Plan()
	if err != nil {
		fmt.Fprintf(errOut, "lvs-director: %v\n", err)
		return 1
	}
	if len(p.Ops) == 0 {
		fmt.Fprintln(out, "No changes: the kernel matches the config.")
		return 0
	}
	for _, op := range p.Ops {
		fmt.Fprintln(out, op.String())
	}
	fmt.Fprintf(out, "\n%d operation(s) to apply.\n", len(p.Ops))
	return 0
}

func cmdCleanup(_ context.Context, fs *flag.FlagSet, args []string, out, errOut io.Writer) int {
	path := configFlag(fs)
	if code, ok := parse(fs, args); !ok {
		return code
	}
	k, ok := openKernel(errOut)
	if !ok {
		return 1
	}
	defer k.Close()
	log := slog.New(slog.NewTextHandler(errOut, nil))
	d, err := daemon.New(log, prometheus.NewRegistry(), k, *path, nil)
	if err != nil {
		fmt.Fprintf(errOut, "%s\n", daemon.Describe(err))
		return 1
	}
	p, err := d.Cleanup()
	for _, op := range p.Ops {
		fmt.Fprintln(out, op.String())
	}
	if err != nil {
		fmt.Fprintf(errOut, "lvs-director: cleanup incomplete: %v\n", err)
		return 1
	}
	fmt.Fprintf(out, "removed %d item(s)\n", len(p.Ops))
	return 0
}

func cmdVersion(_ context.Context, fs *flag.FlagSet, args []string, out, _ io.Writer) int {
	if code, ok := parse(fs, args); !ok {
		return code
	}
	fmt.Fprintf(out, "lvs-director %s (%s)\n", buildVersion(), runtime.Version())
	return 0
}

func buildVersion() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return version
}

func cmdRun(ctx context.Context, fs *flag.FlagSet, args []string, _, errOut io.Writer) int {
	path := configFlag(fs)
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	format := fs.String("log-format", "text", "log format: text or json")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	log, err := newLogger(errOut, *level, *format)
	if err != nil {
		fmt.Fprintf(errOut, "lvs-director: %v\n", err)
		return 2
	}
	if _, err := os.Stat(*path); err != nil {
		fmt.Fprintf(errOut, "lvs-director: %v\n", err)
		return 1
	}
	k, ok := openKernel(errOut)
	if !ok {
		return 1
	}
	defer k.Close()
	reg := prometheus.NewRegistry()
	d, err := daemon.New(log, reg, k, *path, systemdNotifier(log))
	if err != nil {
		fmt.Fprintf(errOut, "%s\n", daemon.Describe(err))
		return 1
	}
	d.SetWatchdog(watchdogInterval())
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo())
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
		fmt.Fprintf(errOut, "lvs-director: health checks: %v\n", err)
		return 1
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
			fmt.Fprintf(errOut, "lvs-director: kubernetes: %v\n", err)
			return 1
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
			fmt.Fprintf(errOut, "lvs-director: BGP: %v\n", err)
			return 1
		}
		if err := speaker.Start(ctx); err != nil {
			fmt.Fprintf(errOut, "lvs-director: BGP: %v\n", err)
			return 1
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
			fmt.Fprintf(errOut, "lvs-director: cluster: %v\n", err)
			return 1
		}
		if err := members.Start(ctx); err != nil {
			fmt.Fprintf(errOut, "lvs-director: cluster: %v\n", err)
			return 1
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
		return 1
	}
	log.Info("stopped")
	return 0
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
		leave()
		time.Sleep(handover)
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

// handover is how long a leaving director keeps announcing after it left the cluster: enough
// for the new owner to notice (one gossip round) and send its UPDATE.
const handover = 700 * time.Millisecond
