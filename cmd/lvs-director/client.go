package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/lvs-director/lvs-director/daemon"
)

// apiClient talks to a running director over its unix socket.
type apiClient struct {
	socket string
	http   *http.Client
}

func newAPIClient(socket string) *apiClient {
	return &apiClient{socket: socket, http: &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}},
	}}
}

func (c *apiClient) do(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "http://lvs-director"+path, rd)
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the director at %s (is it running?): %w", c.socket, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		var e daemon.APIError
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s", e.Error)
		}
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

func newStatusCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status",
		Short: "show the running director's view: kernel table, health, drains, announcements",
		Long: `Show the running director's view: the kernel's IPVS table joined with the health of each
real server and why, drains, the announcement of each VIP, BGP neighbors, cluster members
and the result of the last config reload. --json prints the raw report for scripts.`,
		Example:           "  lvs-director status\n  lvs-director status --json | jq '.services[].real_servers'",
		Args:              noArgs,
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	sock := socketFlag(cmd)
	asJSON := cmd.Flags().Bool("json", false, "print the raw JSON report")
	cmd.RunE = runE(func(cmd *cobra.Command, _ []string) error {
		var raw json.RawMessage
		if err := newAPIClient(*sock).do("GET", "/v1/status", nil, &raw); err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		if *asJSON {
			var b bytes.Buffer
			_ = json.Indent(&b, raw, "", "  ")
			fmt.Fprintln(out, b.String())
			return nil
		}
		var rep daemon.Report
		if err := json.Unmarshal(raw, &rep); err != nil {
			return fmt.Errorf("bad status answer: %w", err)
		}
		printReport(out, &rep)
		return nil
	})
	return cmd
}

func printReport(out io.Writer, rep *daemon.Report) {
	reload := "ok"
	if !rep.Reload.OK {
		reload = "FAILED (running the previous config):\n    " + strings.Join(rep.Reload.Errors, "\n    ")
	}
	fmt.Fprintf(out, "Config %s, last reload %s: %s\n", rep.Config, rep.Reload.At.Format(time.RFC3339), reload)
	syncState := "ok"
	if rep.Sync.Error != "" {
		syncState = "ERROR " + rep.Sync.Error
	}
	fmt.Fprintf(out, "Last sync %s: %d operation(s) in %.1f ms, %d draining: %s\n", rep.Sync.At.Format(time.RFC3339), rep.Sync.Ops, rep.Sync.DurationMS, rep.Sync.Draining, syncState)
	fmt.Fprintf(out, "VIPs on %s: %s\n\n", rep.Interface, strings.Join(rep.VIPs, " "))
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tVIRTUAL / REAL SERVER\tSCHED/WEIGHT\tCONFIG\tACTIVE\tINACT\tHEALTH\tNOTE")
	for _, s := range rep.Services {
		state := "healthy"
		if !s.Healthy {
			state = "UNHEALTHY"
		}
		if s.Sorry {
			state += " (sorry server)"
		}
		if !s.InKernel {
			state += " NOT IN KERNEL"
		}
		note := fmt.Sprintf("%d/%d up, quorum %d", s.Up, s.Total, s.Quorum)
		if s.Announce != "" {
			note += ", " + s.Announce
		}
		if s.Role != "" {
			note += ", cluster role " + s.Role
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t\t\t\t%s\t%s\n", s.Name, s.Key, s.Scheduler, state, note)
		for _, r := range s.RealServers {
			kw, cw := "-", "-"
			if r.KernelWeight != nil {
				kw = fmt.Sprint(*r.KernelWeight)
			}
			if r.ConfigWeight != nil {
				cw = fmt.Sprint(*r.ConfigWeight)
			}
			h := r.Health
			if r.Reason != "" {
				h += " (" + r.Reason + ")"
			}
			fmt.Fprintf(tw, "\t  -> %s\t%s\t%s\t%d\t%d\t%s\t%s\n", r.Address, kw, cw, r.ActiveConns, r.InactConns, h, r.Drain)
		}
	}
	tw.Flush()
	names := make([]string, 0, len(rep.Extensions))
	for n := range rep.Extensions {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		b, _ := json.MarshalIndent(rep.Extensions[n], "  ", "  ")
		fmt.Fprintf(out, "\n%s:\n  %s\n", n, b)
	}
}

func newDrainCmd(on bool) *cobra.Command {
	name, short, path, verb := "drain", "take a real server out of rotation (weight 0, then removal) until undrain", "/v1/drain", "draining"
	if !on {
		name, short, path, verb = "undrain", "put a drained real server back", "/v1/undrain", "undrained"
	}
	cmd := &cobra.Command{
		Use:     name + " [flags] SERVICE REALSERVER",
		Short:   short,
		Example: "  lvs-director " + name + " web 10.0.0.11:8080",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 2 {
				return fmt.Errorf("want SERVICE REALSERVER (address:port), got %d argument(s)", len(args))
			}
			if _, err := netip.ParseAddrPort(args[1]); err != nil {
				return fmt.Errorf("invalid real server %q: want address:port", args[1])
			}
			return nil
		},
	}
	sock := socketFlag(cmd)
	cmd.ValidArgsFunction = func(_ *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		return completeDrainArgs(*sock, args)
	}
	cmd.RunE = runE(func(cmd *cobra.Command, args []string) error {
		req := daemon.DrainRequest{Service: args[0], RealServer: args[1]}
		if err := newAPIClient(*sock).do("POST", path, req, nil); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s %s of service %s\n", verb, req.RealServer, req.Service)
		return nil
	})
	return cmd
}

// completeDrainArgs completes SERVICE and REALSERVER from the running director's status; when
// the director cannot be reached it offers nothing (never file names).
func completeDrainArgs(socket string, args []string) ([]cobra.Completion, cobra.ShellCompDirective) {
	none := cobra.ShellCompDirectiveNoFileComp
	if len(args) >= 2 {
		return nil, none
	}
	c := newAPIClient(socket)
	c.http.Timeout = 2 * time.Second
	var rep daemon.Report
	if err := c.do("GET", "/v1/status", nil, &rep); err != nil {
		return nil, none
	}
	var out []cobra.Completion
	for _, s := range rep.Services {
		switch {
		case len(args) == 0:
			out = append(out, cobra.CompletionWithDesc(s.Name, s.Key))
		case s.Name == args[0]:
			for _, r := range s.RealServers {
				out = append(out, cobra.CompletionWithDesc(r.Address, r.Health))
			}
		}
	}
	return out, none
}
