package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// manSections are the parts of lvs-director(8) that are not in --help (markdown, as cobra's
// man page generator takes it).
const manSections = `

Every command has its own page, lvs-director-COMMAND(8), and answers **--help**.
Shell completion for bash, zsh and fish comes from **lvs-director completion SHELL**.
The kernel's table can also be read with **ipvsadm**(8); the service is managed with
**systemctl**(1) (see **systemd.service**(5), **sysctl.d**(5), **modules-load.d**(5)).

# SIGNALS
**SIGHUP**
: reload the configuration file (also done when the file changes).

**SIGTERM**, **SIGINT**
: stop; the kernel's IPVS table stays as it is, so traffic keeps flowing.

# FILES
*/etc/lvs-director/director.yaml*
: the configuration file.

*/run/lvs-director/api.sock*
: the status socket.

*/lib/systemd/system/lvs-director.service*
: the systemd unit.

*/usr/lib/modules-load.d/lvs-director.conf*
: kernel modules loaded at boot.

*/usr/lib/sysctl.d/60-lvs-director.conf*
: forwarding and IPVS sysctls set at boot.

# EXIT STATUS
0 on success, 1 on an error (such as an invalid configuration), 2 on a usage error.
`

// newDocsCmd is the hidden command packaging uses to write the man pages with cobra's
// generator, so that they follow the commands and flags of this very binary.
func newDocsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:    "gendocs --man-dir DIR",
		Short:  "write the man pages (section 8) of every command into DIR",
		Hidden: true,
		Args:   noArgs,
	}
	dir := cmd.Flags().String("man-dir", "", "directory for the man pages (created if missing)")
	ver := cmd.Flags().String("version", "", "version in the footer (default: this binary's)")
	date := cmd.Flags().String("date", "", "date in the footer, YYYY-MM-DD (default: $SOURCE_DATE_EPOCH or today)")
	_ = cmd.MarkFlagRequired("man-dir")
	_ = cmd.MarkFlagDirname("man-dir")
	cmd.RunE = runE(func(_ *cobra.Command, _ []string) error {
		hdr := &doc.GenManHeader{Section: "8", Manual: "System Administration", Source: "lvs-director " + buildVersion()}
		if *ver != "" {
			hdr.Source = "lvs-director " + *ver
		}
		if *date != "" {
			t, err := time.Parse(time.DateOnly, *date)
			if err != nil {
				return &exitError{code: exitUsage, err: fmt.Errorf("--date: %w", err)}
			}
			hdr.Date = &t
		}
		if err := os.MkdirAll(*dir, 0o755); err != nil {
			return err
		}
		return writeManPages(*dir, hdr)
	})
	return cmd
}

// writeManPages renders the man pages of a fresh command tree into dir.
func writeManPages(dir string, hdr *doc.GenManHeader) error {
	root := newRootCmd(io.Discard, io.Discard)
	root.Long += manSections
	root.DisableAutoGenTag = true
	if err := doc.GenManTree(root, hdr, dir); err != nil {
		return fmt.Errorf("man pages: %w", err)
	}
	return nil
}
