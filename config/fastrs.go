package config

import (
	"bytes"
	"net/netip"
)

// At 10,000 services of 10 real servers, yaml.v3 spends most of a config load (and allocates
// about 170 MB) on the real servers' scalars: a node, a tag and a value string for each of
// 200,000 keys and 200,000 values. Generated files write a service's real servers as one flow
// sequence on one line, in a form simple enough to read directly:
//
//	real_servers: [{address: 10.0.0.1, port: 8080}, {address: 10.0.0.2, port: 8080, weight: 2}]
//
// cutRealServers reads exactly that form and nothing else: IPv4 addresses, decimal ports and
// weights without signs or leading zeros, keys address, port and weight at most once each, one
// space after each colon and comma. The item is then decoded by yaml.v3 with "[]" in place of
// the sequence, and the real servers put back. Anything else (quotes, comments, tags, IPv6,
// health checks of real servers, other spellings, several lines) leaves the item to yaml.v3 as
// it is, and so does an error: the result is always what yaml.v3 gives for the whole item
// (TestParseSplitEqualsWhole, FuzzSplitEqualsWhole).

var rsKey = []byte("real_servers:")

// cutRealServers returns item with its real-server flow sequence replaced by "[]", and the
// real servers it held; ok is false when the item is not in the simple form.
func cutRealServers(item []byte) (rest []byte, rss []RealServer, ok bool) {
	at := bytes.Index(item, rsKey)
	if at <= 0 || bytes.LastIndex(item, rsKey) != at || bytes.ContainsAny(item, "\"'#!&*|>%@`\t") {
		return nil, nil, false
	}
	switch item[at-1] {
	case ' ', '{', ',':
	default:
		return nil, nil, false
	}
	open := at + len(rsKey)
	for open < len(item) && item[open] == ' ' {
		open++
	}
	if open == at+len(rsKey) || open >= len(item) || item[open] != '[' {
		return nil, nil, false
	}
	end := bytes.IndexByte(item[open:], ']')
	if end < 0 {
		return nil, nil, false
	}
	end += open
	list := item[open+1 : end]
	rss, ok = parseRealServerList(list)
	if !ok {
		return nil, nil, false
	}
	rest = make([]byte, 0, len(item)-len(list))
	rest = append(rest, item[:open]...)
	rest = append(rest, "[]"...)
	rest = append(rest, item[end+1:]...)
	return rest, rss, true
}

// parseRealServerList reads the inside of a one-line flow sequence of real servers (at least one).
func parseRealServerList(list []byte) (rss []RealServer, ok bool) {
	if bytes.IndexByte(list, '\n') >= 0 || bytes.IndexByte(list, '[') >= 0 {
		return nil, false
	}
	n := bytes.Count(list, []byte("{"))
	if n == 0 {
		return nil, false
	}
	rss = make([]RealServer, 0, n)
	var weights []int
	p := rsParser{b: list}
	for {
		rs, w, ok := p.realServer()
		if !ok {
			return nil, false
		}
		if w >= 0 {
			if weights == nil {
				weights = make([]int, 0, n)
			}
			weights = append(weights, w)
			rs.Weight = &weights[len(weights)-1]
		}
		rss = append(rss, rs)
		if p.i == len(p.b) {
			break
		}
		if !p.lit(", ") {
			return nil, false
		}
	}
	return rss, true
}

type rsParser struct {
	b []byte
	i int
}

func (p *rsParser) lit(s string) bool {
	if len(p.b)-p.i < len(s) || string(p.b[p.i:p.i+len(s)]) != s {
		return false
	}
	p.i += len(s)
	return true
}

// token returns the run of bytes up to the next ',' or '}' (or the end).
func (p *rsParser) token() []byte {
	start := p.i
	for p.i < len(p.b) && p.b[p.i] != ',' && p.b[p.i] != '}' {
		p.i++
	}
	return p.b[start:p.i]
}

// realServer reads one {address: A, port: P, weight: W} (port and weight optional, any order);
// w is -1 without a weight.
func (p *rsParser) realServer() (rs RealServer, w int, ok bool) {
	w = -1
	if !p.lit("{") {
		return rs, w, false
	}
	var seen [3]bool
	for first := true; ; first = false {
		if !first && !p.lit(", ") {
			return rs, w, false
		}
		var key int
		switch {
		case p.lit("address: "):
			key = 0
		case p.lit("port: "):
			key = 1
		case p.lit("weight: "):
			key = 2
		default:
			return rs, w, false
		}
		if seen[key] {
			return rs, w, false
		}
		seen[key] = true
		tok := p.token()
		switch key {
		case 0:
			a, ok := ipv4Token(tok)
			if !ok {
				return rs, w, false
			}
			rs.Address = Addr{a}
		case 1:
			v, ok := decimal(tok, 65535)
			if !ok {
				return rs, w, false
			}
			rs.Port = uint16(v)
		case 2:
			v, ok := decimal(tok, 1<<30)
			if !ok {
				return rs, w, false
			}
			w = v
		}
		if p.lit("}") {
			return rs, w, seen[0]
		}
	}
}

// ipv4Token parses a dotted IPv4 address made only of digits and dots (four decimal parts of
// 0-255 without leading zeros, as netip.ParseAddr takes them), without allocating.
func ipv4Token(tok []byte) (netip.Addr, bool) {
	var b [4]byte
	part, digits, v := 0, 0, 0
	for i := 0; i <= len(tok); i++ {
		if i == len(tok) || tok[i] == '.' {
			if digits == 0 || part > 3 {
				return netip.Addr{}, false
			}
			b[part] = byte(v)
			part, digits, v = part+1, 0, 0
			continue
		}
		c := tok[i]
		if c < '0' || c > '9' || digits > 0 && v == 0 { // not a digit, or a leading zero
			return netip.Addr{}, false
		}
		v = v*10 + int(c-'0')
		digits++
		if v > 255 {
			return netip.Addr{}, false
		}
	}
	if part != 4 {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4(b), true
}

// decimal parses digits without a sign or leading zeros ("0" itself is fine), at most max.
func decimal(tok []byte, max int) (int, bool) {
	if len(tok) == 0 || len(tok) > 10 || len(tok) > 1 && tok[0] == '0' {
		return 0, false
	}
	v := 0
	for _, c := range tok {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
		if v > max {
			return 0, false
		}
	}
	return v, true
}

// fastItemInto reads a whole service item written as one flow mapping on one line with only the
// keys name, vip, port, protocol, scheduler, failover and real_servers, in the simple form
// cutRealServers takes, words for the strings and an IPv4 VIP:
//
//   - {name: s1, vip: 10.200.0.1, port: 8000, scheduler: wrr, real_servers: [{address: 10.1.0.1, port: 8080}]}
//
// ok is false for anything else (yaml.v3 then decodes the item).
//
// Every byte it takes is a literal of that grammar or in a word, address or number it checks:
// quotes, comments, tags, anchors, aliases, tabs and carriage returns fail it by themselves.
//
// It reads into *s, which it clears first (a reload edited in place reads into the place of
// the service the item replaces): a 200-byte Service is not copied back. On failure *s is left
// partly filled: the caller decodes the item again into it.
func fastItemInto(item []byte, s *Service) (ok bool) {
	*s = Service{}
	i := 0
	for i < len(item) && item[i] == ' ' {
		i++
	}
	line := bytes.TrimRight(item[i:], " \n")
	if !bytes.HasPrefix(line, []byte("- {")) || line[len(line)-1] != '}' || bytes.IndexByte(line, '\n') >= 0 {
		return false
	}
	p := rsParser{b: line[3 : len(line)-1]}
	var seen [7]bool
	for first := true; p.i < len(p.b) || first; first = false {
		if !first && !p.lit(", ") {
			return false
		}
		key := -1
		for k, name := range itemKeys {
			if p.lit(name) {
				key = k
				break
			}
		}
		if key < 0 || seen[key] {
			return false
		}
		seen[key] = true
		if key == 6 { // real_servers
			if !p.lit("[") {
				return false
			}
			end := bytes.IndexByte(p.b[p.i:], ']')
			if end < 0 {
				return false
			}
			rss, ok := parseRealServerList(p.b[p.i : p.i+end])
			if !ok {
				return false
			}
			s.RealServers = rss
			p.i += end + 1
			continue
		}
		tok := p.token()
		switch key {
		case 0:
			if !plainWord(tok) {
				return false
			}
			s.Name = string(tok)
		case 1:
			a, ok := ipv4Token(tok)
			if !ok {
				return false
			}
			s.VIP = Addr{a}
		case 2:
			v, ok := decimal(tok, 65535)
			if !ok {
				return false
			}
			s.Port = uint16(v)
		case 3, 4, 5:
			if !plainWord(tok) {
				return false
			}
			switch key {
			case 3:
				s.Protocol = string(tok)
			case 4:
				s.Scheduler = string(tok)
			case 5:
				s.Failover = string(tok)
			}
		}
	}
	return true
}

var itemKeys = [7]string{"name: ", "vip: ", "port: ", "protocol: ", "scheduler: ", "failover: ", "real_servers: "}

// plainWord tells whether tok is a plain YAML scalar that can only be the string it spells: a
// letter or '_' first, then letters, digits, '.', '_' or '-', and not a word YAML reads as a
// boolean or null.
func plainWord(tok []byte) bool {
	if len(tok) == 0 || len(tok) > 63 {
		return false
	}
	for j, c := range tok {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
		case j > 0 && (c >= '0' && c <= '9' || c == '.' || c == '-'):
		default:
			return false
		}
	}
	for _, w := range yamlWords {
		if len(tok) == len(w) && asciiEqualFold(tok, w) {
			return false
		}
	}
	return true
}

// yamlWords are the words YAML may read as a boolean or null, in any case.
var yamlWords = [...]string{"null", "true", "false", "yes", "no", "on", "off", "y", "n"}

func asciiEqualFold(b []byte, s string) bool {
	for i := range b {
		c := b[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}
