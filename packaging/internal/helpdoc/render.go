package helpdoc

import (
	"fmt"
	"sort"
	"strings"
)

// ManOptions are the parts of the man page that are not in --help.
type ManOptions struct {
	Version string // "1.2.3", shown in the footer
	Date    string // "2026-11-24", shown in the footer; may be empty
}

// roff escapes text for a man page: backslashes, hyphens (as \-), and a leading . or '.
func roff(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

// Man renders p as a man(7) page in section 8.
func Man(p Program, o ManOptions) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	w(`.\" Generated from %s --help by packaging/cmd/mkman; do not edit.`, p.Name)
	w(`.TH %s 8 "%s" "%s %s" "System Administration"`, strings.ToUpper(roff(p.Name)), roff(o.Date), roff(p.Name), roff(o.Version))
	w(".SH NAME")
	w(`%s \- %s`, roff(p.Name), roff(p.Summary))
	w(".SH SYNOPSIS")
	w(`.B %s`, roff(p.Name))
	w(`.I COMMAND`)
	w(`.RI [ flags ]`)
	w(".SH DESCRIPTION")
	w(`.B %s`, roff(p.Name))
	w(`keeps the kernel's IPVS virtual servers equal to a YAML configuration file,`)
	w(`health-checks the real servers, announces the virtual IP addresses over BGP and`)
	w(`fails over between directors.`)
	w(`It normally runs as the systemd service`)
	w(`.BR lvs-director.service ;`)
	w(`the other commands check a configuration, query or steer the running director, or change`)
	w(`the kernel's state by hand.`)
	w(`Flags are written with one or two dashes.`)
	w(".SH COMMANDS")
	for _, c := range p.Commands {
		w(".SS %s", roff(c.Name))
		w(".nf")
		w(`.B %s`, roff(c.Usage))
		w(".fi")
		w(".PP")
		help := c.Help
		if help == "" {
			help = c.Summary
		}
		w("%s", roff(help))
		for _, f := range c.Flags {
			w(".TP")
			if f.Type != "" {
				w(`.BI \-\-%s " %s"`, roff(f.Name), roff(f.Type))
			} else {
				w(`.B \-\-%s`, roff(f.Name))
			}
			u := f.Usage
			if f.Default != "" {
				u += " (default: " + f.Default + ")"
			}
			w("%s", roff(u))
		}
	}
	w(".SH SIGNALS")
	w(".TP")
	w(".B SIGHUP")
	w("reload the configuration file (also done when the file changes).")
	w(".TP")
	w(".BR SIGTERM \", \" SIGINT")
	w("stop; the kernel's IPVS table stays as it is, so traffic keeps flowing.")
	w(".SH FILES")
	for _, f := range [][2]string{
		{"/etc/lvs-director/director.yaml", "the configuration file."},
		{"/run/lvs-director/api.sock", "the status socket."},
		{"/lib/systemd/system/lvs-director.service", "the systemd unit."},
		{"/usr/lib/modules-load.d/lvs-director.conf", "kernel modules loaded at boot."},
		{"/usr/lib/sysctl.d/60-lvs-director.conf", "forwarding and IPVS sysctls set at boot."},
	} {
		w(".TP")
		w(".I %s", roff(f[0]))
		w("%s", roff(f[1]))
	}
	w(".SH EXIT STATUS")
	w("0 on success, 1 on an error (such as an invalid configuration), 2 on a usage error.")
	w(".SH SEE ALSO")
	w(`.BR ipvsadm (8),`)
	w(`.BR systemctl (1),`)
	w(`.BR systemd.service (5),`)
	w(`.BR sysctl.d (5),`)
	w(`.BR modules\-load.d (5)`)
	return b.String()
}

// Completion renders a static bash completion script for p: commands, each command's
// flags, file names for path flags and the values a flag's usage enumerates.
func Completion(p Program) string {
	fn := "_" + strings.NewReplacer("-", "_", ".", "_").Replace(p.Name)
	var names []string
	for _, c := range p.Commands {
		names = append(names, c.Name)
	}
	pathFlags := map[string]bool{}
	choices := map[string][]string{}
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	w("# bash completion for %s; generated from its --help by packaging/cmd/mkman.", p.Name)
	w("%s() {", fn)
	w(`    local cur prev cmd flags`)
	w(`    COMPREPLY=()`)
	w(`    cur=${COMP_WORDS[COMP_CWORD]}`)
	w(`    prev=${COMP_WORDS[COMP_CWORD-1]}`)
	w(`    if [[ $COMP_CWORD -eq 1 ]]; then`)
	w(`        COMPREPLY=($(compgen -W %q -- "$cur"))`, strings.Join(append(names, "help", "--help"), " "))
	w(`        return 0`)
	w(`    fi`)
	w(`    cmd=${COMP_WORDS[1]}`)
	w(`    case $cmd in`)
	for _, c := range p.Commands {
		var fl []string
		for _, f := range c.Flags {
			fl = append(fl, "--"+f.Name)
			if f.TakesPath() {
				pathFlags[f.Name] = true
			} else if ch := f.Choices(); ch != nil {
				choices[f.Name] = ch
			}
		}
		fl = append(fl, "--help")
		w(`    %s) flags=%q ;;`, c.Name, strings.Join(fl, " "))
	}
	w(`    *) return 0 ;;`)
	w(`    esac`)
	w(`    case $prev in`)
	var pf []string
	for n := range pathFlags {
		pf = append(pf, "-"+n, "--"+n)
	}
	sort.Strings(pf)
	if len(pf) > 0 {
		w(`    %s)`, strings.Join(pf, "|"))
		w(`        compopt -o filenames 2>/dev/null`)
		w(`        COMPREPLY=($(compgen -f -- "$cur"))`)
		w(`        return 0 ;;`)
	}
	var cn []string
	for n := range choices {
		cn = append(cn, n)
	}
	sort.Strings(cn)
	for _, n := range cn {
		w(`    -%s|--%s)`, n, n)
		w(`        COMPREPLY=($(compgen -W %q -- "$cur"))`, strings.Join(choices[n], " "))
		w(`        return 0 ;;`)
	}
	w(`    esac`)
	w(`    COMPREPLY=($(compgen -W "$flags" -- "$cur"))`)
	w(`}`)
	w(`complete -F %s %s`, fn, p.Name)
	return b.String()
}
