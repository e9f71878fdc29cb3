package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestLoadMapped: a large file is parsed through a mapping, to the same config as its bytes;
// a small one is read.
func TestLoadMapped(t *testing.T) {
	dir := t.TempDir()
	big, small := filepath.Join(dir, "big.yaml"), filepath.Join(dir, "small.yaml")
	data := benchYAML(1000) // 430 kB
	if len(data) < mapMinSize {
		t.Fatalf("test file of %d bytes is too small to be mapped", len(data))
	}
	if err := os.WriteFile(big, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(small, benchYAML(3), 0o644); err != nil {
		t.Fatal(err)
	}
	itemCache.set(nil, "")
	cfg, unmap, ok, err := loadMapped(big)
	if !ok || err != nil {
		t.Fatalf("big file: ok %v, err %v", ok, err)
	}
	unmap()
	itemCache.set(nil, "")
	want, err := Parse(big, data)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Services) != 1000 || !reflect.DeepEqual(withoutRevisions(cfg), withoutRevisions(want)) {
		t.Fatal("the mapped file parsed to another config than its bytes")
	}
	if _, _, ok, _ := loadMapped(small); ok {
		t.Fatal("a small file was mapped")
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Fatal("a missing file loaded")
	}
}

// TestParseFaulting: a mapped file truncated under the parse makes it fault: the fault is
// caught and reported (ok false, so Load reads the file instead), not a crash.
func TestParseFaulting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, benchYAML(1000), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	data, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(data) //nolint:errcheck
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	itemCache.set(nil, "")
	cfg, ok, err := parseFaulting(path, data)
	if ok || cfg != nil || err != nil {
		t.Fatalf("parse of a truncated mapping: ok %v, cfg %v, err %v; want a caught fault", ok, cfg != nil, err)
	}
	cfg, err = Load(path) // now read: an empty file
	if err == nil && cfg != nil && len(cfg.Services) > 0 {
		t.Fatal("the truncated file still has services")
	}
}

// TestLoadDeferred: the mapping of a large file stays until release, and only until then; Load
// leaves none behind; a small file is never mapped.
func TestLoadDeferred(t *testing.T) {
	dir := t.TempDir()
	big, small := filepath.Join(dir, "big.yaml"), filepath.Join(dir, "small.yaml")
	if err := os.WriteFile(big, benchYAML(1000), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(small, benchYAML(3), 0o644); err != nil {
		t.Fatal(err)
	}
	mapped := func(path string) bool {
		b, err := os.ReadFile("/proc/self/maps")
		if err != nil {
			t.Fatal(err)
		}
		return strings.Contains(string(b), path)
	}
	itemCache.set(nil, "")
	cfg, release, err := LoadDeferred(big)
	if err != nil || len(cfg.Services) != 1000 {
		t.Fatalf("LoadDeferred: %v", err)
	}
	if !mapped(big) {
		t.Fatal("the file is not mapped before release")
	}
	release()
	if mapped(big) {
		t.Fatal("the file is still mapped after release")
	}
	if _, err := Load(big); err != nil || mapped(big) {
		t.Fatalf("Load: %v, mapped after it: %v", err, mapped(big))
	}
	cfg, release, err = LoadDeferred(small)
	if err != nil || len(cfg.Services) != 3 || mapped(small) {
		t.Fatalf("small file: %v, mapped %v", err, mapped(small))
	}
	release()
	if _, release, err = LoadDeferred(filepath.Join(dir, "missing.yaml")); err == nil || release == nil {
		t.Fatalf("a missing file: err %v, release %v", err, release != nil)
	}
	release()
}
