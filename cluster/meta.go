package cluster

import (
	"encoding/binary"
	"fmt"
)

// Node meta is what a director tells the others about itself, gossiped with its alive message.
// It is 4 bytes (memberlist allows MetaMaxSize = 512):
//
//	byte 0     version (metaVersion)
//	byte 1     flags: bit 0 = eligible, bit 1 = leaving (set just before a graceful leave, so
//	           peers can tell "left" from "dead": memberlist v0.7.0 does not say which);
//	           other bits reserved, sent as 0, ignored
//	bytes 2-3  priority, big-endian uint16
//
// Later versions may append bytes; a decoder of version 1 ignores what follows.
const (
	metaVersion      = 1
	metaLen          = 4
	metaFlagEligible = 1 << 0
	metaFlagLeaving  = 1 << 1
)

type meta struct {
	Eligible bool
	Leaving  bool
	Priority int
}

func encodeMeta(m meta) []byte {
	b := make([]byte, metaLen)
	b[0] = metaVersion
	if m.Eligible {
		b[1] |= metaFlagEligible
	}
	if m.Leaving {
		b[1] |= metaFlagLeaving
	}
	p := m.Priority
	if p < 0 {
		p = 0
	}
	if p > 0xffff {
		p = 0xffff
	}
	binary.BigEndian.PutUint16(b[2:], uint16(p))
	return b
}

// decodeMeta parses a peer's meta. It never panics; on error the caller treats the peer as
// ineligible.
func decodeMeta(b []byte) (meta, error) {
	if len(b) == 0 {
		return meta{}, fmt.Errorf("empty node meta (not an lvs-director, or too old)")
	}
	if b[0] != metaVersion {
		return meta{}, fmt.Errorf("node meta version %d, want %d", b[0], metaVersion)
	}
	if len(b) < metaLen {
		return meta{}, fmt.Errorf("node meta of %d bytes, want at least %d", len(b), metaLen)
	}
	return meta{
		Eligible: b[1]&metaFlagEligible != 0,
		Leaving:  b[1]&metaFlagLeaving != 0,
		Priority: int(binary.BigEndian.Uint16(b[2:4])),
	}, nil
}
