package config

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// FieldError is one problem in a config file: where it is and what is wrong.
type FieldError struct {
	File string
	Line int    // 0 when unknown
	Path string // e.g. services[0].real_servers[1].port; empty for file-level errors
	Msg  string

	decoded bool // from the YAML decoder: Line known, Path to find
}

func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one config file, in file order.
type Errors []*FieldError

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// validator collects errors with the line of the field they concern.
type validator struct {
	file  string
	lines map[string]int   // field path -> line
	paths map[int][]string // line -> field paths that start on it
	errs  Errors
	// known marks the services (by index) that passed this validation unchanged in the last
	// parse with the same exclude_cidrs (see parseSplit): only the checks across services run
	// for them.
	known []bool
	// uniqueChecked: the caller checked that names and virtual services are unique.
	uniqueChecked bool
	// knownNoBGP: the known services have no bgp section of their own (they passed the last
	// parse without a top-level one).
	knownNoBGP bool
}

func newValidator(file string) *validator {
	return &validator{file: file, lines: map[string]int{}, paths: map[int][]string{}}
}

func (v *validator) record(path string, line int) {
	if _, ok := v.lines[path]; !ok {
		v.lines[path] = line
		v.paths[line] = append(v.paths[line], path)
	}
}

func (v *validator) index(n *yaml.Node, path string) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			v.index(c, path)
		}
	case yaml.MappingNode:
		v.record(path, n.Line)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			v.record(p, k.Line)
			v.index(val, p)
		}
	case yaml.SequenceNode:
		v.record(path, n.Line)
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			v.record(p, c.Line)
			v.index(c, p)
		}
	case yaml.AliasNode:
		// aliases are resolved by the decoder; their fields keep the anchor's lines
	default:
		v.record(path, n.Line)
	}
}

// lineOf returns the line of path, or of its nearest parent that is in the file.
func (v *validator) lineOf(path string) int {
	for p := path; p != ""; p = parentPath(p) {
		if l, ok := v.lines[p]; ok {
			return l
		}
	}
	return 0
}

func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

// errorf records a problem with the field at path; its line is found by located.
func (v *validator) errorf(path, format string, args ...any) {
	v.errs = append(v.errs, &FieldError{File: v.file, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// pathAtLine returns the field path of a decoding error at line: the deepest path there when
// the paths on that line nest (a block item whose first key is on the item's line), else their
// common parent (several fields of a flow mapping share the line).
func (v *validator) pathAtLine(line int) string {
	ps := v.paths[line]
	if len(ps) == 0 {
		return ""
	}
	longest := ps[0]
	for _, p := range ps[1:] {
		if len(p) > len(longest) {
			longest = p
		}
	}
	nested := true
	for _, p := range ps {
		if !isPathPrefix(p, longest) {
			nested = false
		}
	}
	if nested {
		return longest
	}
	common := ps[0]
	for _, p := range ps[1:] {
		for !isPathPrefix(common, p) && common != "" {
			common = parentPath(common)
		}
	}
	return common
}

// isPathPrefix tells whether field path p is q or one of q's parents.
func isPathPrefix(p, q string) bool {
	return p == q || strings.HasPrefix(q, p) && (q[len(p)] == '.' || q[len(p)] == '[')
}

var yamlLineRe = regexp.MustCompile(`^line (\d+): (.*)$`)
var unknownFieldRe = regexp.MustCompile(`^field (\S+) not found in type \S+$`)

// decodeErrors turns a yaml.v3 decoding error into FieldErrors (with their lines; the paths
// are found by located).
func (v *validator) decodeErrors(err error) {
	var msgs []string
	if te, ok := err.(*yaml.TypeError); ok {
		msgs = te.Errors
	} else {
		msgs = []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	for _, m := range msgs {
		fe := &FieldError{File: v.file, Msg: m}
		if g := yamlLineRe.FindStringSubmatch(m); g != nil {
			fe.Line, _ = strconv.Atoi(g[1])
			fe.Msg = g[2]
			fe.decoded = true
		}
		v.errs = append(v.errs, fe)
	}
}

// located fills in the lines of validation errors and the paths of decoding errors from the
// index, and returns the errors in file order.
func (v *validator) located() Errors {
	for _, fe := range v.errs {
		if !fe.decoded {
			fe.Line = v.lineOf(fe.Path)
			continue
		}
		fe.Path = v.pathAtLine(fe.Line)
		if u := unknownFieldRe.FindStringSubmatch(fe.Msg); u != nil {
			fe.Msg = fmt.Sprintf("unknown field %q", u[1])
			if fe.Path != "" && !strings.HasSuffix(fe.Path, u[1]) {
				fe.Path = fe.Path + "." + u[1]
			} else if fe.Path == "" {
				fe.Path = u[1]
			}
		}
	}
	sort.SliceStable(v.errs, func(i, j int) bool { return v.errs[i].Line < v.errs[j].Line })
	return v.errs
}

// typeError reports a scalar that cannot be parsed, in the form yaml.v3 collects.
func typeError(n *yaml.Node, format string, args ...any) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s", n.Line, fmt.Sprintf(format, args...))}}
}
