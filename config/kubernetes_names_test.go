package config

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
)

// A corpus of selectors: what people write, and the corners of labels.Parse's grammar.
var selectorCorpus = []string{
	"", " ", "a", "a=b", "a==b", "a!=b", "a = b", "a  in  ( b , c )", "a in (b,c)", "a notin (b,c)", "!a", "!a,!b",
	"a,b", "a=b,c!=d,e in (f),!g,h", "tier in (front),!canary", "expose=lvs", "example.com/expose=lvs",
	"app.kubernetes.io/name in (web, api)", "a in ()", "a in (,)", "a in (,b)", "a in (b,)", "a in (b,,c)", "a notin (a,,b)",
	"a=", "a==", "a!=", "a=,b", "in=in", "notin in (in, notin)", "a in (in)", "a>1", "a<-2", "a>b", "a>1,b<x", "a >1",
	"a in b", "a in (b", "a in (b c)", "a in (b,-c)", "a in (-b)", "a in b)", "a (b)", "a b", "a!", "a!!b", "a=!b",
	"!a=b", "!a in (b)", "!", "!!a", "!=a", "=a", "a=b,", ",a", "a,,b", "a=b c", "a=(", "a=b)", "a=b=c", "a==b==c",
	"a=b_", "a=-b", "a=b.", "a=B.c_d-E", "Foo_=x", "_a", "a_", "x/y/z=1", "/a", "a/", "A.B/c=d", "ex_ample.com/c=d",
	"example.com./a", "-example.com/a", strings.Repeat("a", 63), strings.Repeat("a", 64), "a=" + strings.Repeat("b", 63),
	"a=" + strings.Repeat("b", 64), strings.Repeat("d.", 126) + "x/a", strings.Repeat("d", 254) + "/a", "a&b", "a||b",
	"é=1", "a=é", "a\tin\t(b)", "a\n=\nb", "a=b\x00c", "a(", "a)", "(a)", "a,(", "a in ((b))", "a<", "a<>1", "a>=1",
	"a in (b),", "a notin", "a in", "in", "notin", "in in (in)", "a.b-c_d=e", "1=2", "a=b,a!=b",
	"0 in(\x000", "a=b\x00", "a\x00=b", "\x00a",
}

// checkLabelSelector accepts and rejects what labels.Parse does, and its syntax errors are
// labels.Parse's word for word.
func TestCheckLabelSelectorMatchesApimachinery(t *testing.T) {
	for _, sel := range selectorCorpus {
		_, want := labels.Parse(sel)
		got := checkLabelSelector(sel)
		if (got == nil) != (want == nil) {
			t.Errorf("%q: got %v, labels.Parse %v", sel, got, want)
			continue
		}
		if got != nil && !strings.Contains(want.Error(), "Invalid value") && got.Error() != want.Error() {
			t.Errorf("%q: message\n got %v\nwant %v", sel, got, want)
		}
	}
}

func TestCheckLabelSelectorErrors(t *testing.T) {
	tests := []struct{ sel, want string }{
		{"a in b", "unable to parse requirement: found 'b' expected: '('"},
		{"a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"},
		{"a=b,", "found '', expected: identifier after ','"},
		{"!a=b", "found '=', expected: ',' or 'end of string'"},
		{"=a", "found '=', expected: !, identifier, or 'end of string'"},
		{"a in (b c)", "unable to parse requirement: found 'c', expected: ',' or ')'"},
		{"a=(", "unable to parse requirement: found '(', expected: identifier"},
		{"Foo_=x", `unable to parse requirement: invalid key "Foo_": name part ` + nameCharsMsg},
		{"/a", `unable to parse requirement: invalid key "/a": prefix part must be non-empty`},
		{"x/y/z", `unable to parse requirement: invalid key "x/y/z": ` + labelKeyMsg},
		{strings.Repeat("a", 64), `unable to parse requirement: invalid key "` + strings.Repeat("a", 64) + `": name part must be no more than 63 bytes`},
		{"a=b_", `unable to parse requirement: invalid value "b_" of a: ` + labelValueMsg},
		{"a in (x,-y)", `unable to parse requirement: invalid value "-y" of a: ` + labelValueMsg},
		{"a=" + strings.Repeat("b", 64), `unable to parse requirement: invalid value "` + strings.Repeat("b", 64) + `" of a: must be no more than 63 bytes`},
		{"a>b", `unable to parse requirement: value "b" of a: for 'Gt', 'Lt' operators, the value must be an integer`},
		{"A.B/c=d", `unable to parse requirement: invalid key "A.B/c": prefix part ` + dnsDomainMsg},
	}
	for _, tt := range tests {
		err := checkLabelSelector(tt.sel)
		if err == nil || err.Error() != tt.want {
			t.Errorf("%q:\n got %v\nwant %s", tt.sel, err, tt.want)
		}
	}
}

// The name checks give util/validation's answers and messages.
func TestNameChecksMatchApimachinery(t *testing.T) {
	names := []string{"", "a", "web", "Web_1", "web-1", "-web", "web-", "a.b", "a..b", "web.example.com", "1", "a_b",
		"lvs-director.io/vip", "example.com/lvs", "/vip", "vip/", "a/b/c", "a b", "A.B/c", "ex_ample.com/c", "é",
		strings.Repeat("a", 63), strings.Repeat("a", 64), strings.Repeat("a.", 32) + "a", strings.Repeat("d", 254) + "/a",
		strings.Repeat("d.", 126) + "dd/a"}
	for _, n := range names {
		if got, want := dns1123Label(n), validation.IsDNS1123Label(n); strings.Join(got, "; ") != strings.Join(want, "; ") {
			t.Errorf("dns1123Label(%q):\n got %q\nwant %q", n, got, want)
		}
		if got, want := qualifiedName(n), validation.IsQualifiedName(n); strings.Join(got, "; ") != strings.Join(want, "; ") {
			t.Errorf("qualifiedName(%q):\n got %q\nwant %q", n, got, want)
		}
		if got, want := labelValue(n), validation.IsValidLabelValue(n); strings.Join(got, "; ") != strings.Join(want, "; ") {
			t.Errorf("labelValue(%q):\n got %q\nwant %q", n, got, want)
		}
	}
}

// FuzzCheckLabelSelector: accept and reject as labels.Parse does (go test -fuzz=FuzzCheckLabelSelector).
func FuzzCheckLabelSelector(f *testing.F) {
	for _, s := range selectorCorpus {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sel string) {
		_, want := labels.Parse(sel)
		got := checkLabelSelector(sel)
		if (got == nil) != (want == nil) {
			t.Fatalf("%q: got %v, labels.Parse %v", sel, got, want)
		}
		if got != nil && !strings.Contains(want.Error(), "Invalid value") && got.Error() != want.Error() {
			t.Fatalf("%q: message\n got %v\nwant %v", sel, got, want)
		}
	})
}
