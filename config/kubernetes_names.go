package config

import (
	"fmt"
	"strconv"
	"strings"
)

// Validation of the Kubernetes names and label selectors of the kubernetes section, with the
// rules (and, for the syntax, the messages) of k8s.io/apimachinery's labels.Parse and
// util/validation, which this package used before: importing them linked apimachinery and
// klog into the binary for three checks. kubernetes_names_test.go compares the two on a
// corpus of selectors and names.

// Messages of k8s.io/apimachinery/pkg/util/validation (and api/validate/content).
const (
	nameCharsMsg  = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
	labelValueMsg = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
	dnsLabelMsg   = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
	dnsDomainMsg  = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
	labelKeyMsg   = "a valid label key " + nameCharsMsg + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"

	maxLabelLen  = 63
	maxDomainLen = 253
)

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func isLowerAlnum(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }

// isNameChars matches ([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]: the name part of a label key
// or qualified name, and a non-empty label value.
func isNameChars(s string) bool {
	if s == "" || !isAlnum(s[0]) || !isAlnum(s[len(s)-1]) {
		return false
	}
	for i := 1; i < len(s)-1; i++ {
		if c := s[i]; !isAlnum(c) && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}

// isDNSLabelChars matches [a-z0-9]([-a-z0-9]*[a-z0-9])?.
func isDNSLabelChars(s string) bool {
	if s == "" || !isLowerAlnum(s[0]) || !isLowerAlnum(s[len(s)-1]) {
		return false
	}
	for i := 1; i < len(s)-1; i++ {
		if c := s[i]; !isLowerAlnum(c) && c != '-' {
			return false
		}
	}
	return true
}

// isDNSDomainChars matches DNS labels joined by dots.
func isDNSDomainChars(s string) bool {
	for l := range strings.SplitSeq(s, ".") {
		if !isDNSLabelChars(l) {
			return false
		}
	}
	return true
}

// dns1123Label returns why s is not a lowercase RFC 1123 label (a namespace name), nil when
// it is one (util/validation.IsDNS1123Label).
func dns1123Label(s string) []string {
	var errs []string
	if len(s) > maxLabelLen {
		errs = append(errs, fmt.Sprintf("must be no more than %d characters", maxLabelLen))
	}
	if !isDNSLabelChars(s) {
		if isDNSDomainChars(s) {
			errs = append(errs, "must not contain dots")
		} else {
			errs = append(errs, dnsLabelMsg)
		}
	}
	return errs
}

// qualifiedName returns why s is not a qualified name: an optional DNS subdomain prefix and
// '/', then a name of at most 63 alphanumeric characters, '-', '_' or '.', starting and ending
// alphanumeric. Label keys, annotation names and load balancer classes are qualified names
// (util/validation.IsQualifiedName).
func qualifiedName(s string) []string {
	var errs []string
	var name string
	switch parts := strings.Split(s, "/"); len(parts) {
	case 1:
		name = parts[0]
	case 2:
		prefix := parts[0]
		name = parts[1]
		switch {
		case prefix == "":
			errs = append(errs, "prefix part must be non-empty")
		default:
			if len(prefix) > maxDomainLen {
				errs = append(errs, fmt.Sprintf("prefix part must be no more than %d bytes", maxDomainLen))
			}
			if !isDNSDomainChars(prefix) {
				errs = append(errs, "prefix part "+dnsDomainMsg)
			}
		}
	default:
		return []string{labelKeyMsg}
	}
	if name == "" {
		errs = append(errs, "name part must be non-empty")
	} else if len(name) > maxLabelLen {
		errs = append(errs, fmt.Sprintf("name part must be no more than %d bytes", maxLabelLen))
	}
	if !isNameChars(name) {
		errs = append(errs, "name part "+nameCharsMsg)
	}
	return errs
}

// labelValue returns why s is not a label value (util/validation.IsValidLabelValue).
func labelValue(s string) []string {
	var errs []string
	if len(s) > maxLabelLen {
		errs = append(errs, fmt.Sprintf("must be no more than %d bytes", maxLabelLen))
	}
	if s != "" && !isNameChars(s) {
		errs = append(errs, labelValueMsg)
	}
	return errs
}

// checkLabelSelector checks a label selector as the API server parses it (labels.Parse):
//
//	selector    = requirement { "," requirement }
//	requirement = [ "!" ] KEY [ ( "=" | "==" | "!=" | ">" | "<" ) VALUE | ( "in" | "notin" ) "(" VALUES ")" ]
//
// with white space between tokens, "in" and "notin" allowed as keys and values, empty values
// allowed (k=, k in ()), and the values of > and < integers. The errors about the syntax are
// those of labels.Parse; those about keys and values name them instead of its field paths.
func checkLabelSelector(sel string) error {
	p := &selectorParser{items: lexSelector(sel)}
	return p.parse()
}

// The selector's tokens, as labels.Lexer has them.
type selTok int

const (
	tokError selTok = iota
	tokEnd
	tokClosePar
	tokComma
	tokNot
	tokDoubleEquals
	tokEquals
	tokGreater
	tokIdent
	tokIn
	tokLess
	tokNotEquals
	tokNotIn
	tokOpenPar
)

var selKeywords = map[string]selTok{
	")": tokClosePar, ",": tokComma, "!": tokNot, "==": tokDoubleEquals, "=": tokEquals, ">": tokGreater,
	"in": tokIn, "<": tokLess, "!=": tokNotEquals, "notin": tokNotIn, "(": tokOpenPar,
}

type selItem struct {
	tok selTok
	lit string
}

func isSelSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func isSelSymbol(c byte) bool {
	switch c {
	case '=', '!', '(', ')', ',', '>', '<':
		return true
	}
	return false
}

// lexSelector splits a selector into tokens, ending with tokEnd (or a tokError).
func lexSelector(s string) []selItem {
	var items []selItem
	i := 0
	for {
		for i < len(s) && isSelSpace(s[i]) {
			i++
		}
		if i >= len(s) || s[i] == 0 {
			// labels.Parse's lexer takes a NUL byte for the end too.
			return append(items, selItem{tokEnd, ""})
		}
		start := i
		if isSelSymbol(s[i]) {
			// The longest run of symbols that is still an operator: "!=" but "=" "(" for "=(".
			var it selItem
			extended := false
			for i < len(s) && isSelSymbol(s[i]) {
				if t, ok := selKeywords[s[start:i+1]]; ok {
					it = selItem{t, s[start : i+1]}
				} else if it.tok != tokError {
					extended = true
					break
				}
				i++
			}
			if it.tok == tokError {
				// labels.Parse's lexer reports this as an error token it never shows.
				return append(items, selItem{tokError, fmt.Sprintf("error expected: keyword found '%s'", s[start:i])})
			}
			i = start + len(it.lit)
			if !extended && i < len(s) && s[i] == 0 {
				i++ // as after an identifier
			}
			items = append(items, it)
			continue
		}
		for i < len(s) && s[i] != 0 && !isSelSymbol(s[i]) && !isSelSpace(s[i]) {
			i++
		}
		lit := s[start:i]
		if i < len(s) && s[i] == 0 {
			i++ // labels.Parse's lexer ends an identifier at a NUL byte and drops it
		}
		if t, ok := selKeywords[lit]; ok {
			items = append(items, selItem{t, lit})
		} else {
			items = append(items, selItem{tokIdent, lit})
		}
	}
}

type selectorParser struct {
	items []selItem
	pos   int
}

// peek and next return the current token; as values (and keys), in and notin are
// identifiers.
func (p *selectorParser) peek(values bool) selItem {
	it := p.items[min(p.pos, len(p.items)-1)]
	if values && (it.tok == tokIn || it.tok == tokNotIn) {
		it.tok = tokIdent
	}
	return it
}

func (p *selectorParser) next(values bool) selItem {
	it := p.peek(values)
	if p.pos < len(p.items)-1 {
		p.pos++
	}
	return it
}

func (p *selectorParser) parse() error {
	for {
		switch it := p.peek(true); it.tok {
		case tokIdent, tokNot:
			if err := p.requirement(); err != nil {
				return fmt.Errorf("unable to parse requirement: %w", err)
			}
			switch it := p.next(true); it.tok {
			case tokEnd:
				return nil
			case tokComma:
				if t := p.peek(true); t.tok != tokIdent && t.tok != tokNot {
					return fmt.Errorf("found '%s', expected: identifier after ','", t.lit)
				}
			default:
				return fmt.Errorf("found '%s', expected: ',' or 'end of string'", it.lit)
			}
		case tokEnd:
			return nil
		default:
			return fmt.Errorf("found '%s', expected: !, identifier, or 'end of string'", it.lit)
		}
	}
}

func (p *selectorParser) requirement() error {
	it := p.next(true)
	not := it.tok == tokNot
	if not {
		it = p.next(true)
	}
	if it.tok != tokIdent {
		return fmt.Errorf("found '%s', expected: identifier", it.lit)
	}
	key := it.lit
	if errs := qualifiedName(key); len(errs) > 0 {
		return fmt.Errorf("invalid key %q: %s", key, strings.Join(errs, "; "))
	}
	if t := p.peek(true).tok; t == tokEnd || t == tokComma {
		return nil // exists, or !key: does not exist
	}
	if not {
		// "!k=v": labels.Parse takes "!k" and stumbles on the "=" after it.
		return nil
	}
	op := p.next(false)
	var values []string
	switch op.tok {
	case tokIn, tokNotIn:
		var err error
		if values, err = p.valueSet(); err != nil {
			return err
		}
	case tokEquals, tokDoubleEquals, tokNotEquals, tokGreater, tokLess:
		switch t := p.peek(true); t.tok {
		case tokEnd, tokComma:
			values = []string{""}
		case tokIdent:
			p.next(true)
			values = []string{t.lit}
		default:
			p.next(true)
			return fmt.Errorf("found '%s', expected: identifier", t.lit)
		}
	default:
		return fmt.Errorf("found '%s', expected: in, notin, =, ==, !=, gt, lt", op.lit)
	}
	var errs []string
	for _, v := range values {
		if op.tok == tokGreater || op.tok == tokLess {
			if _, err := strconv.ParseInt(v, 10, 64); err != nil {
				errs = append(errs, fmt.Sprintf("value %q of %s: for 'Gt', 'Lt' operators, the value must be an integer", v, key))
			}
		}
		if verrs := labelValue(v); len(verrs) > 0 {
			errs = append(errs, fmt.Sprintf("invalid value %q of %s: %s", v, key, strings.Join(verrs, "; ")))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// valueSet parses "(" [ VALUE ] { "," [ VALUE ] } ")"; empty values count as "".
func (p *selectorParser) valueSet() ([]string, error) {
	if it := p.next(true); it.tok != tokOpenPar {
		return nil, fmt.Errorf("found '%s' expected: '('", it.lit)
	}
	first := p.peek(true)
	switch first.tok {
	case tokClosePar:
		p.next(true)
		return []string{""}, nil
	case tokIdent, tokComma:
	default:
		return nil, fmt.Errorf("found '%s', expected: ',', ')' or identifier", first.lit)
	}
	var values []string
	for {
		it := p.next(true)
		switch it.tok {
		case tokIdent:
			values = append(values, it.lit)
			switch t := p.peek(true); t.tok {
			case tokComma:
				continue
			case tokClosePar:
				p.next(true)
				return values, nil
			default:
				return nil, fmt.Errorf("found '%s', expected: ',' or ')'", t.lit)
			}
		case tokComma:
			if len(values) == 0 {
				values = append(values, "") // "(,"
			}
			switch p.peek(true).tok {
			case tokClosePar:
				p.next(true)
				return append(values, ""), nil // ",)"
			case tokComma:
				values = append(values, "") // ",,"
			}
		default:
			return nil, fmt.Errorf("found '%s', expected: ',', or identifier", it.lit)
		}
	}
}
