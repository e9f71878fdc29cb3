package main

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/lvs-director/lvs-director/config"
	"github.com/lvs-director/lvs-director/daemon"
	"github.com/lvs-director/lvs-director/director"
)

// describeConfigError prints a config error the way operators read them (file:line: path:
// message, one a line) and ends the command with exit 1.
func describeConfigError(errOut io.Writer, err error) error {
	fmt.Fprintf(errOut, "%s\n", daemon.Describe(err))
	return reported
}

func newValidateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:               "validate --config FILE",
		Short:             "check a config file; exit 0 if valid, 1 with every error if not",
		Example:           "  lvs-director validate --config /etc/lvs-director/director.yaml",
		Args:              noArgs,
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	path := configFlag(cmd)
	cmd.RunE = runE(func(cmd *cobra.Command, _ []string) error {
		cfg, err := config.Load(*path)
		if err != nil {
			return describeConfigError(cmd.ErrOrStderr(), err)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s: valid (%d services)\n", *path, len(cfg.Services))
		return nil
	})
	return cmd
}

func openKernel() (*director.LinuxKernel, error) {
	k, err := director.OpenKernel()
	if err != nil {
		return nil, &exitError{code: exitFailure, err: err}
	}
	return k, nil
}

// offlineDaemon opens the kernel and loads the config at path into a daemon that is not run
// (plan, cleanup); call closeKernel when done.
func offlineDaemon(cmd *cobra.Command, log *slog.Logger, path string) (d *daemon.Daemon, closeKernel func(), err error) {
	k, err := openKernel()
	if err != nil {
		return nil, nil, err
	}
	d, err = daemon.New(log, prometheus.NewRegistry(), k, path, nil)
	if err != nil {
		k.Close()
		return nil, nil, describeConfigError(cmd.ErrOrStderr(), err)
	}
	return d, func() { k.Close() }, nil
}

func newPlanCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:               "plan --config FILE",
		Short:             "print the kernel operations a sync would apply now; applies nothing",
		Args:              noArgs,
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	path := configFlag(cmd)
	cmd.RunE = runE(func(cmd *cobra.Command, _ []string) error {
		d, closeKernel, err := offlineDaemon(cmd, slog.New(slog.NewTextHandler(io.Discard, nil)), *path)
		if err != nil {
			return err
		}
		defer closeKernel()
		p, err := d.Plan()
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		if len(p.Ops) == 0 {
			fmt.Fprintln(out, "No changes: the kernel matches the config.")
			return nil
		}
		for _, op := range p.Ops {
			fmt.Fprintln(out, op.String())
		}
		fmt.Fprintf(out, "\n%d operation(s) to apply.\n", len(p.Ops))
		return nil
	})
	return cmd
}

func newCleanupCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:               "cleanup --config FILE",
		Short:             "remove every virtual service and VIP the director owns, and nothing else",
		Args:              noArgs,
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	path := configFlag(cmd)
	cmd.RunE = runE(func(cmd *cobra.Command, _ []string) error {
		d, closeKernel, err := offlineDaemon(cmd, slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil)), *path)
		if err != nil {
			return err
		}
		defer closeKernel()
		p, err := d.Cleanup()
		out := cmd.OutOrStdout()
		for _, op := range p.Ops {
			fmt.Fprintln(out, op.String())
		}
		if err != nil {
			return fmt.Errorf("cleanup incomplete: %w", err)
		}
		fmt.Fprintf(out, "removed %d item(s)\n", len(p.Ops))
		return nil
	})
	return cmd
}
