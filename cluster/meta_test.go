package cluster

import (
	"math/rand/v2"
	"testing"
)

func TestMetaRoundTrip(t *testing.T) {
	for _, m := range []meta{{true, false, 100}, {false, false, 1}, {true, true, 1000}, {false, true, 65535}} {
		b := encodeMeta(m)
		if len(b) != metaLen {
			t.Errorf("encodeMeta(%v) is %d bytes, want %d", m, len(b), metaLen)
		}
		got, err := decodeMeta(b)
		if err != nil || got != m {
			t.Errorf("decodeMeta(encodeMeta(%v)) = %v, %v", m, got, err)
		}
	}
	// Clamped, never wrapped.
	if got, _ := decodeMeta(encodeMeta(meta{Priority: 70000})); got.Priority != 65535 {
		t.Errorf("priority 70000 encoded as %d, want 65535", got.Priority)
	}
	if got, _ := decodeMeta(encodeMeta(meta{Priority: -5})); got.Priority != 0 {
		t.Errorf("priority -5 encoded as %d, want 0", got.Priority)
	}
}

func TestMetaForwardCompatible(t *testing.T) {
	b := append(encodeMeta(meta{Eligible: true, Priority: 7}), 0xff, 0xee)
	b[1] |= 0x80 // a reserved flag
	got, err := decodeMeta(b)
	if err != nil || got != (meta{Eligible: true, Priority: 7}) {
		t.Errorf("decodeMeta with trailing bytes = %v, %v", got, err)
	}
}

func TestMetaErrors(t *testing.T) {
	tests := []struct {
		in   []byte
		want string
	}{
		{nil, "empty node meta (not an lvs-director, or too old)"},
		{[]byte{2, 1, 0, 100}, "node meta version 2, want 1"},
		{[]byte("{\"eligible\":true}"), "node meta version 123, want 1"},
		{[]byte{1, 1, 0}, "node meta of 3 bytes, want at least 4"},
	}
	for _, tt := range tests {
		_, err := decodeMeta(tt.in)
		if err == nil || err.Error() != tt.want {
			t.Errorf("decodeMeta(%v) error = %v, want %q", tt.in, err, tt.want)
		}
	}
}

func TestMetaGarbageNeverPanics(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 10000 {
		b := make([]byte, r.IntN(20))
		for i := range b {
			b[i] = byte(r.UintN(256))
		}
		_, _ = decodeMeta(b)
	}
}

func FuzzDecodeMeta(f *testing.F) {
	f.Add(encodeMeta(meta{Eligible: true, Priority: 100}))
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMeta(b)
		if err == nil && (m.Priority < 0 || m.Priority > 65535) {
			t.Errorf("decoded priority %d out of range", m.Priority)
		}
	})
}
