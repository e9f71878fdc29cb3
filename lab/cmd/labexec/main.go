// Command labexec runs a Go test binary as root inside a throw-away qemu VM
// booted from Debian's kernel (see lab/README.md). Use it as
//
//	go test -tags lab -exec /path/to/labexec ./lab/e2e/
//
// It packs the test binary, the files of $LAB_BIN_DIR (into /lab/bin, which is
// on PATH in the VM), the package's testdata/ directory and a run script into
// a small cpio archive, appends it to the cached base initramfs built by
// lab/setup.sh, boots qemu, streams the VM's console to stdout and exits with
// the test binary's exit code.
//
// Environment:
//
//	LAB_CACHE    cache root (default $HOME/.cache/lvs-director-lab)
//	LAB_KERNEL   kernel version in the cache (default: the one setup.sh wrote)
//	LAB_BIN_DIR  directory whose regular files go to /lab/bin in the VM
//	LAB_MEM      VM memory in MB (default 1024)
//	LAB_SMP      VM CPUs (default 1)
//	LAB_TIMEOUT  kill the VM after this long (Go duration, default 15m)
//	LAB_KEEP     if set, keep the generated initramfs and print its path
//	LAB_DEBUG    if set, show the full kernel log on the console
//	LAB_QEMU     qemu binary (default qemu-system-x86_64)
//	LAB_QEMU_ARGS extra qemu arguments (split at spaces)
//	LAB_KUBE     a directory with kube-apiserver and etcd ("1": the cache of
//	             scripts/kube-binaries.sh): run them on the host's loopback when
//	             the test asks, and give the VM a NIC that reaches only them (see kube.go)
//
// Every LAB_* and LVS_* variable is passed into the VM to the test process,
// which also gets LVS_LAB=1.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == "--relay" {
		os.Exit(relay(os.Args[2])) // run by qemu for a guestfwd connection (kube.go)
	}
	os.Exit(run())
}

func fatalf(format string, args ...any) int {
	fmt.Fprintf(os.Stderr, "labexec: "+format+"\n", args...)
	return 2
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func run() int {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: labexec TEST-BINARY [ARGS...]   (as go test -exec)")
		return 2
	}
	testBin, testArgs := os.Args[1], os.Args[2:]

	timeout, err := time.ParseDuration(envOr("LAB_TIMEOUT", "15m"))
	if err != nil {
		return fatalf("bad LAB_TIMEOUT: %v", err)
	}
	mem := envOr("LAB_MEM", "1024")
	smp := envOr("LAB_SMP", "1")

	kernel, baseInitrd, err := findLab()
	if err != nil {
		return fatalf("%v", err)
	}

	var nonce [8]byte
	rand.Read(nonce[:])
	marker := "LABEXEC-EXIT-" + hex.EncodeToString(nonce[:])

	tmp, err := os.MkdirTemp("", "labexec-")
	if err != nil {
		return fatalf("%v", err)
	}
	if os.Getenv("LAB_KEEP") != "" {
		fmt.Fprintf(os.Stderr, "labexec: keeping %s\n", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}
	kube, err := startKubeHost(tmp)
	if err != nil {
		return fatalf("%v", err)
	}
	var vm vmExtra
	if kube != nil {
		defer kube.close()
		vm = vmExtra{env: kube.vmEnv(), setup: kube.vmSetup()}
	}
	initrd := filepath.Join(tmp, "initramfs.cpio")
	if err := buildInitrd(initrd, baseInitrd, testBin, testArgs, marker, vm); err != nil {
		return fatalf("building initramfs: %v", err)
	}

	cmdline := "console=ttyS0 panic=-1 oops=panic mitigations=off random.trust_cpu=on LVS_LAB=1"
	if os.Getenv("LAB_DEBUG") == "" {
		cmdline += " quiet loglevel=0"
	}
	args := []string{
		"-M", "q35", "-m", mem, "-smp", smp,
		"-nodefaults", "-no-user-config", "-display", "none",
		"-serial", "stdio", "-monitor", "none",
		"-no-reboot", "-nic", "none",
		"-kernel", kernel, "-initrd", initrd,
		"-append", cmdline,
	}
	if kube != nil {
		self, err := os.Executable()
		if err != nil {
			return fatalf("%v", err)
		}
		args = append(args, kube.qemuArgs(self)...)
	}
	args = append(args, strings.Fields(os.Getenv("LAB_QEMU_ARGS"))...)
	if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err == nil {
		f.Close()
		args = append(args, "-enable-kvm", "-cpu", "host")
	}

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	qemu := exec.Command(envOr("LAB_QEMU", "qemu-system-x86_64"), args...)
	qemu.Stdin = nil
	qemu.Stderr = os.Stderr
	// Own process group (a terminal's ^C reaches us, and we kill qemu), and
	// SIGKILL qemu if labexec itself dies.
	qemu.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := qemu.StdoutPipe()
	if err != nil {
		return fatalf("%v", err)
	}
	start := time.Now()
	if err := qemu.Start(); err != nil {
		return fatalf("starting qemu: %v", err)
	}
	kill := func() { _ = syscall.Kill(-qemu.Process.Pid, syscall.SIGKILL) }
	defer kill()

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	var gotSig os.Signal
	go func() {
		select {
		case s := <-sigs:
			gotSig = s
			kill()
		case <-ctx.Done():
			kill()
		}
	}()

	exitCode := -1
	copyConsole(out, os.Stdout, marker, &exitCode)
	waitErr := qemu.Wait()
	elapsed := time.Since(start).Round(10 * time.Millisecond)

	switch {
	case gotSig != nil:
		fmt.Fprintf(os.Stderr, "labexec: %v: VM killed\n", gotSig)
		if s, ok := gotSig.(syscall.Signal); ok {
			return 128 + int(s)
		}
		return 130
	case errors.Is(ctx.Err(), context.DeadlineExceeded) && exitCode < 0:
		fmt.Fprintf(os.Stderr, "labexec: LAB_TIMEOUT (%v) reached: VM killed\n", timeout)
		return 124
	case exitCode < 0:
		fmt.Fprintf(os.Stderr, "labexec: the VM stopped without reporting the test's exit code (qemu: %v)\n", waitErr)
		return 2
	}
	if os.Getenv("LAB_DEBUG") != "" {
		fmt.Fprintf(os.Stderr, "labexec: VM ran %v, test exit code %d\n", elapsed, exitCode)
	}
	return exitCode
}

// findLab returns the kernel image and base initramfs made by lab/setup.sh.
func findLab() (kernel, base string, err error) {
	root := os.Getenv("LAB_CACHE")
	if root == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", "", err
		}
		root = filepath.Join(home, ".cache", "lvs-director-lab")
	}
	ver := os.Getenv("LAB_KERNEL")
	if ver == "" {
		b, err := os.ReadFile(filepath.Join(root, "current"))
		if err != nil {
			return "", "", fmt.Errorf("no lab in %s (run lab/setup.sh first): %v", root, err)
		}
		ver = strings.TrimSpace(string(b))
	}
	dir := filepath.Join(root, ver)
	base = filepath.Join(dir, "initramfs-base.cpio")
	if _, err := os.Stat(base); err != nil {
		return "", "", fmt.Errorf("no base initramfs (run lab/setup.sh first): %v", err)
	}
	for _, k := range []string{"vmlinux", "bzImage"} {
		if _, err := os.Stat(filepath.Join(dir, k)); err == nil {
			return filepath.Join(dir, k), base, nil
		}
	}
	return "", "", fmt.Errorf("no kernel in %s (run lab/setup.sh first)", dir)
}

// shq quotes s for /bin/sh.
func shq(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// passEnv are variables passed into the VM besides LAB_* and LVS_*.
var passEnv = map[string]bool{"GOTRACEBACK": true, "GODEBUG": true, "GOMAXPROCS": true}

// vmExtra is what the run script gets besides the usual: environment variables and shell
// commands run before the test.
type vmExtra struct {
	env   map[string]string
	setup string
}

// buildInitrd writes base + an extra archive with the test to dst.
func buildInitrd(dst, base, testBin string, testArgs []string, marker string, vm vmExtra) error {
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer f.Close()
	b, err := os.Open(base)
	if err != nil {
		return err
	}
	n, err := io.Copy(f, b)
	b.Close()
	if err != nil {
		return err
	}
	if pad := n % 4; pad != 0 {
		if _, err := f.Write(make([]byte, 4-pad)); err != nil {
			return err
		}
	}

	w := bufio.NewWriterSize(f, 1<<20)
	c := newCpioWriter(w)

	// The test binary.
	inVMBin := "/lab/test/" + filepath.Base(testBin)
	if err := c.File(inVMBin, 0o755, testBin); err != nil {
		return err
	}

	// $LAB_BIN_DIR/* -> /lab/bin/
	c.Dir("/lab/bin", 0o755)
	if dir := os.Getenv("LAB_BIN_DIR"); dir != "" {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("LAB_BIN_DIR: %v", err)
		}
		for _, e := range ents {
			if e.Name() == "labexec" {
				continue // no use in the VM
			}
			p := filepath.Join(dir, e.Name())
			st, err := os.Stat(p) // follows symlinks
			if err != nil || !st.Mode().IsRegular() {
				continue
			}
			if err := c.File("/lab/bin/"+e.Name(), uint32(st.Mode().Perm()|0o500), p); err != nil {
				return err
			}
		}
	}

	// The working directory: go test runs the binary in the package dir,
	// so the VM gets a directory at the same absolute path (bind-mounted
	// from /lab/cwd, which works under the VM's tmpfs /tmp too) holding the
	// package's testdata/.
	cwd, err := os.Getwd()
	if err != nil {
		return err
	}
	c.Dir("/lab/cwd", 0o755)
	td := filepath.Join(cwd, "testdata")
	if st, err := os.Stat(td); err == nil && st.IsDir() {
		err := filepath.WalkDir(td, func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			info, err := os.Stat(p)
			if err != nil {
				return nil // dangling symlink
			}
			rel, err := filepath.Rel(cwd, p)
			if err != nil {
				return err
			}
			switch {
			case info.IsDir():
				c.Dir("/lab/cwd/"+rel, uint32(info.Mode().Perm()))
			case info.Mode().IsRegular():
				return c.File("/lab/cwd/"+rel, uint32(info.Mode().Perm()), p)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("packing testdata: %v", err)
		}
	}

	// The run script.
	var s bytes.Buffer
	s.WriteString("#!/bin/sh\n")
	env := os.Environ()
	sort.Strings(env)
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if !envName.MatchString(k) {
			continue
		}
		if strings.HasPrefix(k, "LAB_") || strings.HasPrefix(k, "LVS_") || passEnv[k] {
			fmt.Fprintf(&s, "export %s=%s\n", k, shq(v))
		}
	}
	extra := make([]string, 0, len(vm.env))
	for k := range vm.env {
		extra = append(extra, k)
	}
	sort.Strings(extra)
	for _, k := range extra {
		fmt.Fprintf(&s, "export %s=%s\n", k, shq(vm.env[k]))
	}
	s.WriteString(vm.setup)
	s.WriteString("export LVS_LAB=1\n")
	fmt.Fprintf(&s, "export LAB_BIN=/lab/bin\n")
	// Output files named in test flags must have a parent dir in the VM.
	for _, a := range testArgs {
		for _, flag := range []string{"-test.testlogfile=", "-test.coverprofile=", "-test.cpuprofile=", "-test.memprofile=", "-test.trace="} {
			if p, ok := strings.CutPrefix(a, flag); ok && filepath.IsAbs(p) {
				fmt.Fprintf(&s, "mkdir -p %s\n", shq(filepath.Dir(p)))
			}
		}
	}
	fmt.Fprintf(&s, "mkdir -p %[1]s && mount --bind /lab/cwd %[1]s || echo 'labexec: cannot create the working directory %[1]s'\n", shq(cwd))
	fmt.Fprintf(&s, "cd %s && %s", shq(cwd), shq(inVMBin))
	for _, a := range testArgs {
		s.WriteString(" " + shq(a))
	}
	s.WriteString(" </dev/null\nrc=$?\n")
	fmt.Fprintf(&s, "printf '\\n%s %%d\\n' \"$rc\"\n", marker)
	c.Bytes("/lab/run.sh", 0o755, s.Bytes())

	if err := c.Close(); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close()
}

// copyConsole copies the VM console to w line by line, turning CRLF into
// LF, until it sees the exit marker (stored into *exitCode). Everything after
// the marker (shutdown messages) is dropped. The empty line that the run
// script prints before the marker is dropped too.
func copyConsole(r io.Reader, w io.Writer, marker string, exitCode *int) {
	br := bufio.NewReaderSize(r, 64<<10)
	pendingBlank := false
	done := false
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 && !done {
			text := bytes.TrimRight(line, "\r\n")
			if i := bytes.Index(text, []byte(marker+" ")); i >= 0 {
				if code, err := strconv.Atoi(string(text[i+len(marker)+1:])); err == nil {
					*exitCode = code
				}
				if i > 0 {
					w.Write(append(text[:i:i], '\n'))
				}
				done = true
				continue
			}
			if pendingBlank {
				w.Write([]byte("\n"))
				pendingBlank = false
			}
			if len(text) == 0 && line[len(line)-1] == '\n' {
				pendingBlank = true
				continue
			}
			w.Write(text)
			if line[len(line)-1] == '\n' {
				w.Write([]byte("\n"))
			}
		}
		if err != nil {
			if pendingBlank && !done {
				w.Write([]byte("\n"))
			}
			return
		}
	}
}
