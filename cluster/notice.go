package cluster

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// A notice is a user message a director sends straight to every peer (one UDP packet each,
// encrypted like gossip when a key is set) instead of waiting for gossip to carry a meta change.
// The only kind so far says "I am leaving now": a graceful stop must move traffic in well under a
// gossip round. Layout:
//
//	byte 0     version (noticeVersion)
//	byte 1     kind (noticeLeaving)
//	bytes 2-   the sender's node name (UTF-8, 1 to 255 bytes)
const (
	noticeVersion = 1
	noticeLeaving = 'L'
	maxNameLen    = 255
)

type notice struct {
	Kind byte
	Name string
}

func encodeNotice(n notice) []byte {
	return append([]byte{noticeVersion, n.Kind}, n.Name...)
}

// decodeNotice parses a peer's notice; it never panics.
func decodeNotice(b []byte) (notice, error) {
	switch {
	case len(b) < 3:
		return notice{}, fmt.Errorf("notice of %d bytes, want at least 3", len(b))
	case b[0] != noticeVersion:
		return notice{}, fmt.Errorf("notice version %d, want %d", b[0], noticeVersion)
	case b[1] != noticeLeaving:
		return notice{}, fmt.Errorf("unknown notice kind %#x", b[1])
	case len(b)-2 > maxNameLen:
		return notice{}, fmt.Errorf("notice node name of %d bytes, want at most %d", len(b)-2, maxNameLen)
	case !utf8.Valid(b[2:]):
		return notice{}, errors.New("notice node name is not UTF-8")
	}
	return notice{Kind: b[1], Name: string(b[2:])}, nil
}
