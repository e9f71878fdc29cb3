package cluster

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseSecretKey(t *testing.T) {
	for _, n := range []int{16, 24, 32} {
		raw := make([]byte, n)
		for i := range raw {
			raw[i] = byte(i * 7)
		}
		enc := "  " + base64.StdEncoding.EncodeToString(raw) + "\n"
		got, err := parseSecretKey([]byte(enc))
		if err != nil || string(got) != string(raw) {
			t.Errorf("parseSecretKey(%d-byte key) = %x, %v", n, got, err)
		}
	}
	tests := []struct {
		in   string
		want string
	}{
		{"", "file is empty"},
		{" \n", "file is empty"},
		{base64.StdEncoding.EncodeToString(make([]byte, 20)), "key is 20 bytes, want 16, 24 or 32"},
		{"0123456789abcdef0123456789abcdef!", "not base64 (want base64 of 16, 24 or 32 bytes, e.g. openssl rand -base64 32): illegal base64 data at input byte 32"},
	}
	for _, tt := range tests {
		_, err := parseSecretKey([]byte(tt.in))
		if err == nil || err.Error() != tt.want {
			t.Errorf("parseSecretKey(%q) error = %v, want %q", tt.in, err, tt.want)
		}
	}
}

func TestLoadSecretKey(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.key")
	if err := os.WriteFile(good, []byte(base64.StdEncoding.EncodeToString(make([]byte, 32))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	key, insecure, err := LoadSecretKey(good)
	if err != nil || len(key) != 32 || insecure {
		t.Errorf("LoadSecretKey(0600) = %d bytes, insecure %v, %v", len(key), insecure, err)
	}
	if err := os.Chmod(good, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, insecure, err := LoadSecretKey(good); err != nil || !insecure {
		t.Errorf("LoadSecretKey(0644): insecure %v, %v; want insecure", insecure, err)
	}
	if _, _, err := LoadSecretKey(filepath.Join(dir, "missing.key")); err == nil || !os.IsNotExist(unwrapAll(err)) {
		t.Errorf("missing file: err = %v, want a not-exist error", err)
	}
	if _, _, err := LoadSecretKey(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: err = %v", err)
	}
	bad := filepath.Join(dir, "bad.key")
	if err := os.WriteFile(bad, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadSecretKey(bad); err == nil || !strings.HasPrefix(err.Error(), "gossip key "+bad+": ") {
		t.Errorf("bad key: err = %v", err)
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}
