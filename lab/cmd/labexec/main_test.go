package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestCopyConsole(t *testing.T) {
	const m = "LABEXEC-EXIT-0123"
	cases := []struct {
		name, in, want string
		code           int
	}{
		{"plain", "=== RUN   TestA\r\n--- PASS: TestA\r\nPASS\r\n\r\n" + m + " 0\r\n[ 3.1] reboot: Power down\r\n",
			"=== RUN   TestA\n--- PASS: TestA\nPASS\n", 0},
		{"blank lines kept", "a\n\n\nb\n\n" + m + " 1\n", "a\n\n\nb\n", 1},
		{"no final newline", "partial\n" + m + " 3\n", "partial\n", 3},
		{"no marker", "boom\nKernel panic\n", "boom\nKernel panic\n", -1},
		{"test2json framing bytes", "\x16=== RUN   TestA\n\n" + m + " 0\n", "\x16=== RUN   TestA\n", 0},
	}
	for _, c := range cases {
		var out bytes.Buffer
		code := -1
		copyConsole(strings.NewReader(c.in), &out, m, &code)
		if out.String() != c.want || code != c.code {
			t.Errorf("%s: want %q code %d, got %q code %d", c.name, c.want, c.code, out.String(), code)
		}
	}
}

// TestCpioWriter checks the archive with GNU cpio, if it is installed.
func TestCpioWriter(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("no cpio")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	os.WriteFile(src, []byte("hello world"), 0o644)
	var buf bytes.Buffer
	c := newCpioWriter(&buf)
	c.Bytes("/lab/run.sh", 0o755, []byte("#!/bin/sh\n"))
	if err := c.File("/a/b/c/file", 0o644, src); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if buf.Len()%4 != 0 {
		t.Errorf("archive length %d not a multiple of 4", buf.Len())
	}
	out := filepath.Join(dir, "out")
	os.Mkdir(out, 0o755)
	cmd := exec.Command("cpio", "-i", "-d", "--quiet")
	cmd.Dir = out
	cmd.Stdin = &buf
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v: %s", err, b)
	}
	if b, err := os.ReadFile(filepath.Join(out, "a/b/c/file")); err != nil || string(b) != "hello world" {
		t.Errorf("a/b/c/file: want %q, got %q (%v)", "hello world", b, err)
	}
	if st, err := os.Stat(filepath.Join(out, "lab/run.sh")); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("lab/run.sh: want mode 0755, got %v (%v)", st, err)
	}
}
