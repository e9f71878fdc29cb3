package cluster

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
)

// LoadSecretKey reads a gossip encryption key file: the standard base64 encoding of 16, 24 or
// 32 bytes (AES-128, -192 or -256), surrounding white space ignored, as `openssl rand -base64 32`
// writes it. Only base64 is accepted, so a key is never misread as raw bytes or the reverse.
// insecure is true when the file can be read by group or others.
func LoadSecretKey(path string) (key []byte, insecure bool, err error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, false, fmt.Errorf("gossip key: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, false, fmt.Errorf("gossip key %s: not a regular file", path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, false, fmt.Errorf("gossip key: %w", err)
	}
	key, err = parseSecretKey(data)
	if err != nil {
		return nil, false, fmt.Errorf("gossip key %s: %w", path, err)
	}
	return key, st.Mode().Perm()&0o077 != 0, nil
}

func parseSecretKey(data []byte) ([]byte, error) {
	text := bytes.TrimSpace(data)
	if len(text) == 0 {
		return nil, fmt.Errorf("file is empty")
	}
	key := make([]byte, base64.StdEncoding.DecodedLen(len(text)))
	n, err := base64.StdEncoding.Decode(key, text)
	if err != nil {
		return nil, fmt.Errorf("not base64 (want base64 of 16, 24 or 32 bytes, e.g. openssl rand -base64 32): %w", err)
	}
	key = key[:n]
	switch len(key) {
	case 16, 24, 32:
		return key, nil
	}
	return nil, fmt.Errorf("key is %d bytes, want 16, 24 or 32", len(key))
}
