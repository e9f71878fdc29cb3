// Package helpdoc turns lvs-director's own --help output into a man page and a bash
// completion script, so that both follow the CLI as commands and flags are added.
package helpdoc

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
)

// Program is what `lvs-director --help` and each `lvs-director COMMAND --help` describe.
type Program struct {
	Name     string // "lvs-director"
	Summary  string // first line of the main help, after "NAME: "
	Commands []Command
}

// Command is one subcommand.
type Command struct {
	Name    string
	Summary string // from the main help's command list
	Usage   string // "lvs-director run --config FILE"
	Help    string // the paragraph between the usage line and "Flags:"
	Flags   []Flag
}

// Flag is one flag as the Go flag package prints it.
type Flag struct {
	Name    string // without dashes
	Type    string // "string", "duration", ...; empty for boolean flags
	Usage   string // without the default
	Default string // as printed inside (default ...), quotes removed; empty if none
}

// Runner runs the binary with args and returns what it printed (stdout and stderr).
type Runner func(args ...string) (string, error)

// Collect asks the binary for its help and that of each of its commands.
func Collect(run Runner) (Program, error) {
	main, err := run("--help")
	if err != nil {
		return Program{}, fmt.Errorf("--help: %w", err)
	}
	p, err := ParseMain(main)
	if err != nil {
		return Program{}, err
	}
	for i, c := range p.Commands {
		out, err := run(c.Name, "--help")
		if err != nil {
			return Program{}, fmt.Errorf("%s --help: %w", c.Name, err)
		}
		full, err := ParseCommand(out)
		if err != nil {
			return Program{}, fmt.Errorf("%s --help: %w", c.Name, err)
		}
		full.Name, full.Summary = c.Name, c.Summary
		p.Commands[i] = full
	}
	return p, nil
}

var commandLine = regexp.MustCompile(`^  ([a-z][a-z0-9-]*)\s+(\S.*)$`)

// ParseMain parses the main help: a "NAME: summary" first line and a "Commands:" section
// of "  name   summary" lines.
func ParseMain(text string) (Program, error) {
	lines := strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n")
	name, summary, ok := strings.Cut(lines[0], ": ")
	if !ok || name == "" || strings.ContainsAny(name, " \t") {
		return Program{}, fmt.Errorf("main help: first line %q is not \"NAME: summary\"", lines[0])
	}
	p := Program{Name: name, Summary: strings.TrimSpace(summary)}
	in := false
	for _, l := range lines[1:] {
		switch {
		case l == "Commands:":
			in = true
		case in && strings.TrimSpace(l) == "":
			in = false
		case in:
			m := commandLine.FindStringSubmatch(l)
			if m == nil {
				return Program{}, fmt.Errorf("main help: cannot parse command line %q", l)
			}
			p.Commands = append(p.Commands, Command{Name: m[1], Summary: strings.TrimSpace(m[2])})
		}
	}
	if len(p.Commands) == 0 {
		return Program{}, fmt.Errorf("main help: no \"Commands:\" section")
	}
	return p, nil
}

var defaultSuffix = regexp.MustCompile(`\s*\(default (.*)\)$`)

// ParseCommand parses a command's help: "Usage: ...", a blank line, the help paragraph,
// and "Flags:" followed by the flag package's PrintDefaults output.
func ParseCommand(text string) (Command, error) {
	lines := strings.Split(strings.TrimRight(strings.ReplaceAll(text, "\r\n", "\n"), "\n"), "\n")
	usage, ok := strings.CutPrefix(lines[0], "Usage: ")
	if !ok {
		return Command{}, fmt.Errorf("first line %q does not start with \"Usage: \"", lines[0])
	}
	c := Command{Usage: strings.TrimSpace(usage)}
	i := 1
	var help []string
	for ; i < len(lines) && lines[i] != "Flags:"; i++ {
		if s := strings.TrimSpace(lines[i]); s != "" {
			help = append(help, s)
		}
	}
	c.Help = strings.Join(help, " ")
	for i++; i < len(lines); i++ {
		l := lines[i]
		if !strings.HasPrefix(l, "  -") {
			if strings.TrimSpace(l) == "" {
				continue
			}
			// Usage continuation lines are indented with four spaces and a tab.
			if len(c.Flags) == 0 || !strings.HasPrefix(l, "    \t") {
				return Command{}, fmt.Errorf("cannot parse flag line %q", l)
			}
			f := &c.Flags[len(c.Flags)-1]
			f.Usage = strings.TrimSpace(f.Usage + " " + strings.TrimSpace(l))
			continue
		}
		// "  -name type" (usage on the next lines) or "  -x\tusage" (one-letter flags).
		head, rest, oneLine := strings.Cut(strings.TrimPrefix(l, "  -"), "\t")
		fields := strings.Fields(head)
		if len(fields) == 0 || len(fields) > 2 {
			return Command{}, fmt.Errorf("cannot parse flag line %q", l)
		}
		f := Flag{Name: fields[0]}
		if len(fields) == 2 {
			f.Type = fields[1]
		}
		if oneLine {
			f.Usage = strings.TrimSpace(rest)
		}
		c.Flags = append(c.Flags, f)
	}
	for i := range c.Flags {
		f := &c.Flags[i]
		if m := defaultSuffix.FindStringSubmatchIndex(f.Usage); m != nil {
			f.Default = strings.Trim(f.Usage[m[2]:m[3]], `"`)
			f.Usage = f.Usage[:m[0]]
		}
	}
	return c, nil
}

var choiceWord = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*$`)

// Choices returns the values a flag's usage enumerates after its last colon
// ("log level: debug, info, warn, error", "log format: text or json"), or nil.
func (f Flag) Choices() []string {
	i := strings.LastIndex(f.Usage, ":")
	if i < 0 || f.Type == "" {
		return nil
	}
	list := strings.ReplaceAll(f.Usage[i+1:], " or ", ", ")
	var out []string
	for _, w := range strings.Split(list, ",") {
		w = strings.TrimSpace(w)
		if !choiceWord.MatchString(w) {
			return nil
		}
		out = append(out, w)
	}
	if len(out) < 2 {
		return nil
	}
	return out
}

// TakesPath reports whether the flag's value is a file system path.
func (f Flag) TakesPath() bool {
	if f.Type == "" {
		return false
	}
	for _, w := range []string{"config", "file", "socket", "path", "dir"} {
		if strings.Contains(f.Name, w) {
			return true
		}
	}
	return strings.HasPrefix(f.Default, "/")
}

// BinaryRunner runs the program at path with a minimal environment (stable output) and
// returns its stdout and stderr together: the flag package prints a command's help on stderr.
func BinaryRunner(path string) Runner {
	return func(args ...string) (string, error) {
		cmd := exec.Command(path, args...)
		cmd.Env = []string{"LC_ALL=C", "PATH=/usr/bin:/bin"}
		out, err := cmd.CombinedOutput()
		if err != nil {
			return string(out), fmt.Errorf("%s %s: %w: %s", path, strings.Join(args, " "), err, out)
		}
		return string(out), nil
	}
}

// GzipMan compresses a man page as `gzip -9n` does: no file name, no time stamp.
func GzipMan(page string) ([]byte, error) {
	var b bytes.Buffer
	zw, err := gzip.NewWriterLevel(&b, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write([]byte(page)); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
