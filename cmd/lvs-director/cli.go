package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lvs-director/lvs-director/config"
)

// Exit codes: 0 success, 1 an error while doing the work (an invalid config, an unreachable
// director, a kernel error), 2 a usage error (unknown command or flag, bad arguments).
const (
	exitFailure = 1
	exitUsage   = 2
)

// exitError ends a command with code. err, when set, is printed as "lvs-director: err"; it is
// nil when the command already printed its own report (validate's list of errors).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// reported is the error of a command that printed its own explanation.
var reported = &exitError{code: exitFailure}

// runE adapts a command body: any error it returns that is not already an exitError is a
// failure of the work (exit 1), never a usage error.
func runE(f func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		err := f(cmd, args)
		var ee *exitError
		if err == nil || errors.As(err, &ee) {
			return err
		}
		return &exitError{code: exitFailure, err: err}
	}
}

// Main runs the CLI with args (without the program name) and returns the exit code.
func Main(ctx context.Context, args []string, out, errOut io.Writer) int {
	if len(args) == 0 {
		_ = newRootCmd(errOut, errOut).Usage()
		return exitUsage
	}
	root := newRootCmd(out, errOut)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintf(errOut, "lvs-director: %v\n", ee.err)
		}
		return ee.code
	}
	// Everything else comes from parsing the command line.
	if cmd == nil {
		cmd = root
	}
	fmt.Fprintf(errOut, "lvs-director: %v\nRun '%s --help' for usage.\n", strings.TrimRight(err.Error(), "\n"), cmd.CommandPath())
	return exitUsage
}

// newRootCmd builds the whole command tree, with cobra's completion command writing to out.
func newRootCmd(out, errOut io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "lvs-director COMMAND",
		Short: "a Linux LVS (IPVS) director",
		Long: `lvs-director keeps the kernel's IPVS virtual servers equal to a YAML configuration file,
health-checks the real servers, announces the virtual IP addresses over BGP and fails over
between directors. It normally runs as the systemd service lvs-director.service; the other
commands check a configuration, query or steer the running director, or change the kernel's
state by hand.`,
		Version:       buildVersion(),
		SilenceErrors: true,
		SilenceUsage:  true,
		// Unknown commands are errors, with suggestions.
		SuggestionsMinimumDistance: 2,
	}
	cobra.EnableCommandSorting = false // commands in the order below: the usual one first
	root.SetVersionTemplate(versionLine() + "\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return err })
	root.SetOut(out)
	root.SetErr(errOut)
	root.AddCommand(
		newRunCmd(),
		newValidateCmd(),
		newPlanCmd(),
		newCleanupCmd(),
		newStatusCmd(),
		newDrainCmd(true),
		newDrainCmd(false),
		newVersionCmd(),
		newDocsCmd(),
	)
	root.InitDefaultCompletionCmd() // captures out
	root.InitDefaultHelpCmd()
	for _, c := range root.Commands() {
		switch c.Name() {
		case "completion":
			c.Short = "print the shell completion script for bash, zsh, fish or powershell"
		case "help":
			c.Short = "help about any command"
		}
	}
	return root
}

// noArgs rejects positional arguments with the message the CLI has always printed.
func noArgs(_ *cobra.Command, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(args, " "))
	}
	return nil
}

// configFlag adds --config to cmd and returns where its value lands.
func configFlag(cmd *cobra.Command) *string {
	p := cmd.Flags().String("config", "/etc/lvs-director/director.yaml", "config file")
	_ = cmd.MarkFlagFilename("config", "yaml", "yml")
	return p
}

// socketFlag adds --socket to cmd.
func socketFlag(cmd *cobra.Command) *string {
	p := cmd.Flags().String("socket", config.DefaultSocket, "status API socket of the running director")
	_ = cmd.MarkFlagFilename("socket")
	return p
}

// choice is a string flag value restricted to a list; a bad value is a usage error at parse
// time, and the list is what shell completion offers.
type choice struct {
	value   string
	allowed []string
}

func (c *choice) String() string { return c.value }
func (c *choice) Type() string   { return "string" }

func (c *choice) Set(s string) error {
	if l := strings.ToLower(s); slices.Contains(c.allowed, l) {
		c.value = l
		return nil
	}
	return fmt.Errorf("want one of %s", strings.Join(c.allowed, ", "))
}

// choiceFlag adds a flag whose value is one of allowed.
func choiceFlag(cmd *cobra.Command, name, def, usage string, allowed ...string) *choice {
	c := &choice{value: def, allowed: allowed}
	cmd.Flags().Var(c, name, usage)
	_ = cmd.RegisterFlagCompletionFunc(name, cobra.FixedCompletions(allowed, cobra.ShellCompDirectiveNoFileComp))
	return c
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:               "version",
		Short:             "print the version",
		Args:              noArgs,
		ValidArgsFunction: cobra.NoFileCompletions,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), versionLine())
		},
	}
}

func versionLine() string {
	return fmt.Sprintf("lvs-director %s (%s)", buildVersion(), runtime.Version())
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
