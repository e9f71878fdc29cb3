package config

import (
	"net/netip"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration written as a Go duration string ("30s", "1m30s").
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML parses a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return typeError(n, "expected a duration such as 30s")
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return typeError(n, "invalid duration %q (use a unit, e.g. 500ms, 30s, 1m)", n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// Addr is an IPv4 or IPv6 address without zone.
type Addr struct{ netip.Addr }

// UnmarshalYAML parses an IP address.
func (a *Addr) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return typeError(n, "expected an IP address")
	}
	v, err := netip.ParseAddr(n.Value)
	if err != nil || v.Zone() != "" {
		return typeError(n, "invalid IP address %q", n.Value)
	}
	a.Addr = v.Unmap()
	return nil
}

// MarshalYAML writes the address as a string.
func (a Addr) MarshalYAML() (any, error) { return a.String(), nil }

// Prefix is a CIDR such as 10.255.0.0/16.
type Prefix struct{ netip.Prefix }

// UnmarshalYAML parses a CIDR.
func (p *Prefix) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return typeError(n, "expected a CIDR such as 10.0.0.0/8")
	}
	v, err := netip.ParsePrefix(n.Value)
	if err != nil {
		return typeError(n, "invalid CIDR %q", n.Value)
	}
	if v.Masked() != v {
		return typeError(n, "CIDR %q has host bits set (did you mean %s?)", n.Value, v.Masked())
	}
	p.Prefix = v
	return nil
}

// MarshalYAML writes the prefix as a string.
func (p Prefix) MarshalYAML() (any, error) { return p.String(), nil }
