package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lvs-director/lvs-director/config"
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

func socketFlag(fs *flag.FlagSet) *string {
	return fs.String("socket", config.DefaultSocket, "status API socket of the running director")
}

func cmdStatus(_ context.Context, fs *flag.FlagSet, args []string, out, errOut io.Writer) int {
	sock := socketFlag(fs)
	asJSON := fs.Bool("json", false, "print the raw JSON report")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	var raw json.RawMessage
	if err := newAPIClient(*sock).do("GET", "/v1/status", nil, &raw); err != nil {
		fmt.Fprintf(errOut, "lvs-director: %v\n", err)
		return 1
	}
	if *asJSON {
		var b bytes.Buffer
		_ = json.Indent(&b, raw, "", "  ")
		fmt.Fprintln(out, b.String())
		return 0
	}
	var rep daemon.Report
	if err := json.Unmarshal(raw, &rep); err != nil {
		fmt.Fprintf(errOut, "lvs-director: bad status answer: %v\n", err)
		return 1
	}
	printReport(out, &rep)
	return 0
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

func drainCommand(on bool) func(context.Context, *flag.FlagSet, []string, io.Writer, io.Writer) int {
	return func(_ context.Context, fs *flag.FlagSet, args []string, out, errOut io.Writer) int {
		sock := socketFlag(fs)
		if err := fs.Parse(args); err != nil {
			if err == flag.ErrHelp {
				return 0
			}
			return 2
		}
		if fs.NArg() != 2 {
			fmt.Fprintf(errOut, "want SERVICE REALSERVER (address:port), got %d argument(s)\n", fs.NArg())
			fs.Usage()
			return 2
		}
		path, verb := "/v1/drain", "draining"
		if !on {
			path, verb = "/v1/undrain", "undrained"
		}
		req := daemon.DrainRequest{Service: fs.Arg(0), RealServer: fs.Arg(1)}
		if err := newAPIClient(*sock).do("POST", path, req, nil); err != nil {
			fmt.Fprintf(errOut, "lvs-director: %v\n", err)
			return 1
		}
		fmt.Fprintf(out, "%s %s of service %s\n", verb, req.RealServer, req.Service)
		return 0
	}
}
