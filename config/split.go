package config

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/bits"
	"math/rand/v2"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// Decoding a large file in one piece is slow and memory hungry: yaml.v3 first builds a node for
// every scalar of the whole document and only then fills the structs, so at 10,000 services the
// node tree of the entire file (about 40 times its size) is alive at once and the garbage
// collector scans it again and again. parseSplit decodes the services list in small pieces
// instead: the tree of each piece is garbage as soon as it is decoded.
//
// It handles only the plain layout: a top-level block mapping with one "services:" key whose
// value is a block sequence. Anything else (anchors and aliases across items, several documents,
// directives, tabs or carriage returns in indentation, flow-style top level) falls back to the
// whole-file decoding, and so does a file with any error: the fallback then reports it with its
// line and field path exactly as before. A split that cut a construct in two (a multi-line
// quoted string with a line at the sequence's indentation) cannot decode cleanly, so it falls
// back too.

// splitBatch is how many service items one decoder call takes.
const splitBatch = 64

// splitServices cuts data into the file without the items of its top-level services sequence
// (the "services:" key stays, with an empty value) and the items' text, each item with its
// original indentation and lines. ok is false when the file is not of the plain layout.
//
// hashes are the items' hashes (itemHash), taken in the same pass over the file as the lines.
// expect is how many items there likely are (those of the last parse): the lists are made for
// that many at once instead of growing (at 10,000 items growing them left 1.3 MB of garbage).
func splitServices(data []byte, expect int) (head []byte, items [][]byte, hashes []itemHash, ok bool) {
	// (Carriage returns make yaml.v3 see other lines: the caller refuses any in the head and the
	// items it decodes; lines left out refuse them below. Items taken from the cache have none.)
	if bytes.HasPrefix(data, []byte("\xef\xbb\xbf")) {
		return nil, nil, nil, false
	}
	head = make([]byte, 0, 4096)
	items, hashes = make([][]byte, 0, expect), make([]itemHash, 0, expect)
	inSeq := false // inside the services sequence
	seqIndent := -1
	seen := false
	content := false // a non-blank line was seen
	curStart := -1   // offset of the item being collected
	var cur itemHasher
	flush := func(end int) {
		if curStart >= 0 {
			items = append(items, data[curStart:end])
			hashes = append(hashes, cur.sum(end-curStart))
			curStart = -1
		}
	}
	for off := 0; off < len(data); {
		end, lineSum := scanLine(data, off)
		next := len(data)
		if end < len(data) {
			next = end + 1
		}
		line := data[off:end]
		indent := 0
		for indent < len(line) && line[indent] == ' ' {
			indent++
		}
		rest := line[indent:]
		blank := len(rest) == 0 || rest[0] == '#'
		if len(rest) > 0 && rest[0] == '\t' {
			return nil, nil, nil, false // tabs in indentation: leave it to the full decoder
		}
		if indent == 0 && len(rest) > 0 && (rest[0] == '%' || bytes.HasPrefix(rest, []byte("---")) || bytes.HasPrefix(rest, []byte("..."))) {
			if content || !isDocStart(rest) {
				return nil, nil, nil, false // directives or several documents
			}
			head = append(head, data[off:next]...)
			off, content = next, true // a second marker falls back
			continue
		}
		if !blank {
			content = true
		}
		if inSeq && blank && curStart < 0 && !plainText(line) {
			return nil, nil, nil, false // a line left out below: yaml.v3 must still see what it refuses
		}
		if inSeq && !blank {
			switch {
			case seqIndent < 0:
				if !isSeqEntry(rest) {
					return nil, nil, nil, false // the value of services: is not a block sequence
				}
				seqIndent = indent
				curStart, cur = off, itemHasher{}
			case indent == seqIndent && isSeqEntry(rest):
				flush(off)
				curStart, cur = off, itemHasher{}
			case indent > seqIndent:
				// a continuation of the current item
			case indent == 0 && seqIndent > 0 || indent == 0 && !isSeqEntry(rest):
				flush(off)
				inSeq = false
			default:
				return nil, nil, nil, false
			}
		}
		if curStart >= 0 {
			cur.add(lineSum) // (a line of the item, blank ones within it too)
		}
		if !inSeq {
			if indent == 0 && len(rest) > 0 && (rest[0] == '{' || rest[0] == '[' || rest[0] == '&' || rest[0] == '!' || rest[0] == '-') {
				return nil, nil, nil, false // not a block mapping at the top
			}
			if indent == 0 && isServicesKey(rest) {
				if seen {
					return nil, nil, nil, false // a duplicate key: the full decoder reports it
				}
				seen, inSeq = true, true
			}
			head = append(head, data[off:next]...)
			if next == len(data) && end == len(data) && len(line) > 0 {
				head = append(head, '\n')
			}
		}
		off = next
	}
	if inSeq {
		flush(len(data))
	}
	if !seen {
		return nil, nil, nil, false
	}
	return head, items, hashes, true
}

// plainText tells whether a line is printable ASCII (tabs allowed): what yaml.v3 refuses in
// other characters is left to it.
func plainText(line []byte) bool {
	for _, c := range line {
		if c < 0x20 && c != '\t' || c >= 0x7f {
			return false
		}
	}
	return true
}

// isDocStart tells whether a line is a bare document start marker ("---", maybe with a comment).
func isDocStart(rest []byte) bool {
	r, ok := bytes.CutPrefix(rest, []byte("---"))
	if !ok {
		return false
	}
	t := bytes.TrimLeft(r, " ")
	return len(t) == 0 || t[0] == '#' && len(t) < len(r)
}

// isSeqEntry tells whether a line (without its indentation) starts a block sequence entry.
func isSeqEntry(rest []byte) bool {
	return len(rest) > 0 && rest[0] == '-' && (len(rest) == 1 || rest[1] == ' ')
}

// isServicesKey tells whether a top-level line is exactly the key "services:" with nothing
// but a comment after it.
func isServicesKey(rest []byte) bool {
	r, ok := bytes.CutPrefix(rest, []byte("services:"))
	if !ok {
		return false
	}
	r = bytes.TrimLeft(r, " ")
	return len(r) == 0 || r[0] == '#' && len(rest)-len(r) > len("services:")
}

// parseSplit decodes data piecewise (see above). ok is false when the file is not of the
// plain layout or has any error; the caller then decodes it whole.
func parseSplit(name string, data []byte) (*Config, bool) {
	prev, prevExcl := itemCache.get()
	expect := 0
	if prev != nil {
		expect = len(prev.hashes) + 16
	}
	head, items, hashes, ok := splitServices(data, expect)
	if !ok || bytes.IndexByte(head, '\r') >= 0 {
		return nil, false
	}
	cfg := &Config{Path: name}
	sameHead := prev != nil && bytes.Equal(head, prev.head)
	if sameHead {
		// The other sections are those of the last parse, defaults filled and valid on their
		// own: shared as its services are (a loaded Config is read-only). Decoding them again
		// with yaml.v3 took 1-4 ms of a reload in the lab VM.
		*cfg = *prev.cfg
		cfg.Path, cfg.Services, cfg.id, cfg.base, cfg.edited = name, nil, 0, 0, nil
	} else {
		if !decodeStrict(head, cfg) {
			return nil, false
		}
		if cfg.Services != nil {
			return nil, false
		}
	}
	services := make([]Service, len(items))
	prefault(services)
	reused := make([]bool, len(items))
	var missing []int // items not in the cache, in file order
	var moved []int   // where in the last parse the items found elsewhere were
	// Items edited in place (as many items as before, a few not where they were) are new: only
	// when items were added, removed or moved around is the last parse searched by hash.
	edited := 0 // items not where an item of the same text was
	for i := range items {
		if prev == nil || i >= len(prev.hashes) || hashes[i] != prev.hashes[i] {
			edited++
		}
	}
	inPlace := prev != nil && len(prev.hashes) == len(items) && edited <= maxEditedInPlace
	var editedAt []int // (in place: where the items are not the last parse's)
	if inPlace {
		copy(services, prev.cfg.Services) // one move (the edited ones are replaced below)
		editedAt = make([]int, 0, edited)
	}
	for i := range items {
		h := hashes[i]
		if inPlace && h == prev.hashes[i] {
			reused[i] = true // (copied above)
			continue
		}
		if inPlace {
			editedAt = append(editedAt, i)
		}
		if s, j := prev.find(i, h, !inPlace); s != nil {
			services[i], reused[i] = *s, true
			if j != i {
				moved = append(moved, j)
			}
			continue
		}
		missing = append(missing, i)
	}
	var slow []int // the items fastItemInto cannot read
	for _, i := range missing {
		if fastItemInto(items[i], &services[i]) {
			continue // (its grammar has no anchor, alias or carriage return)
		}
		if it := items[i]; hasAnchorOrAlias(it) || bytes.IndexByte(it, '\r') >= 0 {
			return nil, false // (a cached item has neither: it was decoded piecewise)
		}
		slow = append(slow, i)
	}
	var buf []byte
	cut := make([][]RealServer, splitBatch) // real servers read by cutRealServers
	for k := 0; k < len(slow); k += splitBatch {
		batch := slow[k:min(k+splitBatch, len(slow))]
		buf = buf[:0]
		for j, i := range batch {
			it := items[i]
			cut[j] = nil
			if rest, rss, ok := cutRealServers(it); ok {
				it, cut[j] = rest, rss
			}
			buf = append(buf, it...)
			if buf[len(buf)-1] != '\n' {
				buf = append(buf, '\n')
			}
		}
		var part []Service
		if !decodeStrict(buf, &part) {
			return nil, false
		}
		if len(part) != len(batch) {
			return nil, false // the pieces were not cut at item boundaries
		}
		for j, i := range batch {
			services[i] = part[j]
			if cut[j] != nil {
				services[i].RealServers = cut[j]
			}
		}
	}
	if !sameHead {
		cfg.Services = nil // the other sections' defaults; the services' follow
		cfg.setDefaults()
	}
	if len(services) > 0 {
		cfg.Services = services
	}
	for i := range cfg.Services {
		if !reused[i] {
			cfg.Services[i].setDefaults()
		}
	}
	v := newValidator(name)
	excl := excludeKey(cfg.Director.ExcludeCIDRs)
	if prevExcl == excl {
		v.known = reused // a service's own checks depend on nothing else than exclude_cidrs
		v.knownNoBGP = prev != nil && prev.cfg.BGP == nil
	}
	if len(missing) <= maxUniqueScan && reusedOnce(prev, hashes, reused, moved) {
		// The reused items were unique in the last parse, and none is here twice: only the
		// new ones can clash (a clash falls back to the whole decoding, which reports it).
		for _, i := range missing {
			if clashes(services, i) {
				return nil, false
			}
		}
		v.uniqueChecked = true
	}
	cfg.validate(v)
	if len(v.errs) > 0 {
		return nil, false
	}
	for _, i := range missing {
		services[i].rev = revisions.Add(1) // the new items; reused ones keep their revision
	}
	cfg.id = configIDs.Add(1)
	if inPlace {
		cfg.base, cfg.edited = prev.cfg.id, editedAt
	}
	itemCache.set(&parsedItems{hashes: hashes, cfg: cfg, head: bytes.Clone(head)}, excl) // (the earlier Config is left to the GC)
	return cfg, true
}

// maxEditedInPlace is the most items a reload takes for edited in place (new, not searched
// for elsewhere in the last parse).
const maxEditedInPlace = 16

// maxUniqueScan is the most new items whose uniqueness a reload checks against every service
// one by one; more are checked with the maps of the whole validation.
const maxUniqueScan = 16

// reusedOnce tells whether no item of the last parse is reused twice: moved are the last
// parse's positions of the reused items that moved (the others were reused where they were).
func reusedOnce(prev *parsedItems, hashes []itemHash, reused []bool, moved []int) bool {
	if prev == nil || len(moved) > maxUniqueScan {
		return false
	}
	seen := make(map[int]bool, len(moved))
	for _, j := range moved {
		if seen[j] || j < len(hashes) && reused[j] && hashes[j] == prev.hashes[j] {
			return false // reused twice, or also where it was
		}
		seen[j] = true
	}
	return true
}

// clashes tells whether service i has the name or the virtual service of another.
func clashes(services []Service, i int) bool {
	x := &services[i]
	proto := strings.ToLower(x.Protocol)
	for j := range services {
		s := &services[j]
		if j == i {
			continue
		}
		if x.Name != "" && s.Name == x.Name {
			return true
		}
		if x.VIP.IsValid() && s.Port == x.Port && s.VIP.Addr == x.VIP.Addr && strings.ToLower(s.Protocol) == proto {
			return true
		}
	}
	return false
}

// excludeKey identifies a list of exclude_cidrs.
func excludeKey(ps []Prefix) string {
	var b []byte
	for _, p := range ps {
		b = p.AppendTo(b)
		b = append(b, ' ')
	}
	return string(b)
}

// decodeStrict decodes one document into out, refusing unknown fields.
func decodeStrict(b []byte, out any) bool {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(out); err != nil && !errors.Is(err, io.EOF) {
		return false
	}
	return true
}

// hasAnchorOrAlias tells whether an item may use an anchor or alias (a '&' or '*' that starts a
// token). Items that do are decoded with the whole file: an alias may refer to another item.
func hasAnchorOrAlias(b []byte) bool {
	for i, c := range b {
		if c != '&' && c != '*' {
			continue
		}
		if i == 0 {
			return true
		}
		switch b[i-1] {
		case ' ', '[', '{', ',', ':', '-', '\n':
			return true
		}
	}
	return false
}

// Reloads: a service item whose text is byte for byte that of an item of the last file parsed
// here decodes to the same service with the same defaults (neither depends on anything outside
// the item), so it is taken from that parse instead of being decoded again. At 10,000 services
// a reload that changed one service decodes one item. The cache holds the items of the last
// successful parse only (the running config's, for the daemon), and the services it hands out
// are shared with that earlier Config: a loaded Config is read-only.
var itemCache serviceCache

type serviceCache struct {
	mu    sync.Mutex
	items *parsedItems
	// exclude is the exclude_cidrs (excludeKey) the items were validated with.
	exclude string
}

// parsedItems are the items of a parse: the hash of each item's text and its service, in file
// order. An item is looked up where it was first (a reload that changed services in place
// finds every other item there), and by hash when it moved: the index for that is built only
// then (10,000 map insertions are a good part of a reload where hashing is slow, as in an
// emulated VM without AES instructions).
type parsedItems struct {
	hashes []itemHash
	cfg    *Config   // the Config parsed (read-only, its services in file order)
	head   []byte    // its text without the services' items (splitServices)
	index  sync.Once // builds byHash (parses may run at once)
	byHash map[itemHash]int
}

// find returns the service of the item with hash h, expected at position i, and where it was;
// nil if none. Unless search, it looks at position i only.
func (p *parsedItems) find(i int, h itemHash, search bool) (*Service, int) {
	if p == nil {
		return nil, -1
	}
	if i < len(p.hashes) && p.hashes[i] == h {
		return &p.cfg.Services[i], i
	}
	if !search {
		return nil, -1
	}
	p.index.Do(func() {
		p.byHash = make(map[itemHash]int, len(p.hashes))
		for j := range p.hashes {
			p.byHash[p.hashes[j]] = j
		}
	})
	if j, ok := p.byHash[h]; ok {
		return &p.cfg.Services[j], j
	}
	return nil, -1
}

func (c *serviceCache) get() (*parsedItems, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.items, c.exclude
}

func (c *serviceCache) set(p *parsedItems, exclude string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.items, c.exclude = p, exclude
}

// itemHash identifies an item's text: a 64-bit hash of it (its lines' hashes combined by
// itemHasher) and its length.
type itemHash [2]uint64

// Items are hashed in the same pass over the file that finds its lines (scanLine): eight bytes
// at a time with plain integer operations, both the search for the line's end and the hash. In
// the lab's emulated VM (no AES instructions, vector instructions emulated) finding the lines
// with bytes.IndexByte and then hashing each item with hash/maphash were two passes of 9 and 4
// ms over a 4 MB file on every reload. A line's hash depends on its bytes only (its words are
// taken from its own start), an item's on its lines in order and its length: so an item hashes
// alike wherever it is in the file. The seed is random per process.
//
// Each step (mix) is a bijection of the state for a given word, so two lines of the same
// length that differ in any byte always end in different states, and so do two items of as
// many lines whose lines differ; fmix64 is a bijection too. Other pairs (lines or items of
// other lengths) collide with a chance of about 2^-64.
var lineSeed = rand.Uint64()

const (
	mulA   = 0x9e3779b97f4a7c15
	ones   = 0x0101010101010101
	highs  = 0x8080808080808080
	eights = 0x0a0a0a0a0a0a0a0a // '\n' in every byte
)

func mix(h, w uint64) uint64 { return bits.RotateLeft64((h^w)*mulA, 29) }

// fmix64 is MurmurHash3's finalizer: every bit of the result depends on every bit of h.
func fmix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// scanLine finds the end of the line that starts at off (the index of its '\n', or len(b))
// and hashes the line, its '\n' included.
func scanLine(b []byte, off int) (end int, sum uint64) {
	h := lineSeed
	i := off
	for ; i+16 <= len(b); i += 16 { // two words a turn while neither has the '\n'
		w0, w1 := binary.LittleEndian.Uint64(b[i:]), binary.LittleEndian.Uint64(b[i+8:])
		x0, x1 := w0^eights, w1^eights
		if ((x0-ones)&^x0|(x1-ones)&^x1)&highs != 0 {
			break // (the loop below finds it)
		}
		h = mix(mix(h, w0), w1)
	}
	for ; i+8 <= len(b); i += 8 {
		w := binary.LittleEndian.Uint64(b[i:])
		x := w ^ eights
		if m := (x - ones) &^ x & highs; m != 0 { // a zero byte of x: a '\n' (the lowest is exact)
			n := bits.TrailingZeros64(m) >> 3
			h = mix(h, w&(^uint64(0)>>(56-8*n))) // the bytes up to the '\n'
			return i + n, fmix64(h ^ uint64(i+n+1-off))
		}
		h = mix(h, w)
	}
	var w uint64 // the last bytes, fewer than 8
	for k := 0; i+k < len(b); k++ {
		w |= uint64(b[i+k]) << (8 * k)
		if b[i+k] == '\n' {
			return i + k, fmix64(mix(h, w) ^ uint64(i+k+1-off))
		}
	}
	if i < len(b) {
		h = mix(h, w)
	}
	return len(b), fmix64(h ^ uint64(len(b)-off))
}

// itemHasher combines the hashes of an item's lines.
type itemHasher struct{ h uint64 }

func (h *itemHasher) add(line uint64) { h.h = mix(h.h, line) }

func (h *itemHasher) sum(n int) itemHash { return itemHash{fmix64(h.h ^ uint64(n)), uint64(n)} }
