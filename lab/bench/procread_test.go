//go:build lab

package bench

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lvs-director/lvs-director/director"
	"github.com/lvs-director/lvs-director/lab/e2e"
)

// TestBenchRead (issue 11) compares the director's full read of the kernel's table (Services:
// the services' dump and one real-server dump per service) with reading /proc/net/ip_vs, at
// LAB_READ_SIZES services (default 1000,10000) of 10 real servers, median of LAB_READ_REPS
// (default 3). Every read runs in a process of its own started in the table's namespace
// (TestReadHelper), so that the client's read and the /proc read start alike. When
// LAB_READ_BASE names a second test binary of this package in the VM (e.g. built from the
// previous commit and put in LAB_BIN_DIR), its client read is measured in the same run too
// ("read.N.base", "read.N.base-warm"), and both must return the same table. Each line
// gives the reads of every repetition, then the median and the minimum (the host's load
// spreads the figures: the minimum is the least disturbed read). LAB_READ_PROFILE=1 prints a
// CPU profile of the client's reads of the first repetition as "PPROF mode base64".
//
//	BENCH read.N.client   the client's full read, the first in a fresh process
//	BENCH read.N.client-warm  a second full read in the same process
//	BENCH read.N.proc     reading /proc/net/ip_vs (1 MiB reads), nothing parsed
//	BENCH read.N.cat      `cat /proc/net/ip_vs > /dev/null`, the process start included
//	BENCH read.N.parse    reading /proc/net/ip_vs and parsing it into services
func TestBenchRead(t *testing.T) {
	benchEnabled(t)
	_ = e2e.New(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	base := os.Getenv("LAB_READ_BASE")
	if base != "" {
		if _, err := os.Stat(base); err != nil {
			t.Fatalf("LAB_READ_BASE: %v", err)
		}
	}
	reps := 3
	if r := envInts("LAB_READ_REPS", nil); len(r) > 0 {
		reps = r[0]
	}
	for _, n := range envInts("LAB_READ_SIZES", []int{1000, 10000}) {
		r := ruleSet{n}
		ns := freshNS(t, fmt.Sprintf("read%d", n))
		var ops []director.Op
		for i := 0; i < n; i++ {
			key := director.ServiceKey{Protocol: director.ProtoTCP, Addr: netip.MustParseAddr(r.vip(i)), Port: uint16(r.port(i))}
			ops = append(ops, director.Op{Kind: director.OpAddService, Service: director.VirtualService{Key: key, Scheduler: "wrr", Netmask: 0xffffffff}})
			for j := 0; j < realServersPerService; j++ {
				ops = append(ops, director.Op{Kind: director.OpAddDest, Service: director.VirtualService{Key: key},
					Dest: director.Dest{Addr: netip.AddrPortFrom(netip.MustParseAddr(r.rs(i, j)), 8080), Weight: int32(1 + j%3)}})
			}
		}
		k := openKernelIn(t, ns)
		for i, err := range k.ApplyBatch(ops) {
			if err != nil {
				t.Fatalf("op %d (%s): %v", i, ops[i], err)
			}
		}
		k.Close()
		settle()
		times := map[string][]time.Duration{}
		var clientHash string
		runs := []string{"client", "proc", "cat", "parse"}
		if base != "" {
			runs = append(runs, "base")
		}
		for rep := 0; rep < reps; rep++ {
			for _, run := range runs {
				bin, mode := self, run
				if run == "base" {
					bin, mode = base, "client"
				}
				for _, r := range readHelper(t, ns, bin, mode, rep == 0) {
					name := strings.Replace(r.mode, "client", run, 1)
					times[name] = append(times[name], r.took)
					wantDests := n * realServersPerService
					if r.mode == "cat" {
						r.svcs, r.dests = n, wantDests // nothing counted
					}
					switch {
					case r.mode == "proc" || r.mode == "parse":
						// /proc/net/ip_vs is not exact while other namespaces have services
						// (seen once here after TestNetlinkBatchAgainstKernel: 999 of 1,000).
						if r.svcs != n || r.dests != wantDests {
							t.Logf("%s read: %d services, %d real servers; want %d, %d", name, r.svcs, r.dests, n, wantDests)
						}
					case r.svcs != n || r.dests != wantDests:
						t.Fatalf("%s read: %d services, %d real servers; want %d, %d", name, r.svcs, r.dests, n, wantDests)
					}
					switch {
					case r.mode == "proc" || r.mode == "cat" || r.mode == "parse":
					case clientHash == "":
						clientHash = r.hash
					case r.hash != clientHash:
						t.Errorf("%s read: the table differs from the first client read's", name)
					}
				}
			}
		}
		for _, name := range []string{"client", "client-warm", "proc", "cat", "parse", "base", "base-warm"} {
			if ds := times[name]; len(ds) > 0 {
				report(t, fmt.Sprintf("read.%d.%s", n, name), fmt.Sprintf("%s (median %s, min %s)", fmtDurations(ds), secs(median(ds)), secs(slices.Min(ds))))
			}
		}
		report(t, fmt.Sprintf("read.%d.client/proc", n), "median "+ratio(median(times["client"]), median(times["proc"]))+
			", min "+ratio(slices.Min(times["client"]), slices.Min(times["proc"])))
		if base != "" {
			report(t, fmt.Sprintf("read.%d.base/client", n), "median "+ratio(median(times["base"]), median(times["client"]))+
				", min "+ratio(slices.Min(times["base"]), slices.Min(times["client"])))
		}
		dropNS(t, ns)
	}
}

type readResult struct {
	mode        string
	took        time.Duration
	svcs, dests int
	hash        string
}

// readHelper runs TestReadHelper of bin in ns and returns what it measured.
func readHelper(t *testing.T, ns *e2e.NS, bin, mode string, profile bool) []readResult {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns.Name, bin, "-test.run", "^TestReadHelper$", "-test.v")
	cmd.Env = append(os.Environ(), "LAB_READ_HELPER="+mode)
	if !profile {
		cmd.Env = append(cmd.Env, "LAB_READ_PROFILE=")
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", bin, mode, err, out)
	}
	var rs []readResult
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 6 && f[0] == "READHELPER":
			ns, _ := strconv.ParseInt(f[2], 10, 64)
			svcs, _ := strconv.Atoi(f[3])
			dests, _ := strconv.Atoi(f[4])
			rs = append(rs, readResult{f[1], time.Duration(ns), svcs, dests, f[5]})
		case len(f) == 2 && f[0] == "PPROF":
			fmt.Printf("PPROF %s.%s %s\n", filepath.Base(bin), mode, f[1])
		}
	}
	if len(rs) == 0 {
		t.Fatalf("%s %s: no result in\n%s", bin, mode, out)
	}
	return rs
}

// TestReadHelper is TestBenchRead's reader, run in the namespace of the table with
// LAB_READ_HELPER set to what to read. It prints "READHELPER mode nanoseconds services
// real-servers hash".
func TestReadHelper(t *testing.T) {
	mode := os.Getenv("LAB_READ_HELPER")
	if mode == "" {
		t.Skip("run by TestBenchRead")
	}
	var svcs []director.VirtualService
	var took time.Duration
	switch mode {
	case "client":
		k, err := director.OpenKernel()
		if err != nil {
			t.Fatal(err)
		}
		defer k.Close()
		var prof bytes.Buffer
		if os.Getenv("LAB_READ_PROFILE") == "1" {
			if err := pprof.StartCPUProfile(&prof); err != nil {
				t.Fatal(err)
			}
		}
		start := time.Now()
		svcs, err = k.Services()
		took = time.Since(start)
		if err != nil {
			t.Fatal(err)
		}
		printRead(mode, took, svcs)
		start = time.Now()
		svcs, err = k.Services()
		took = time.Since(start)
		if err != nil {
			t.Fatal(err)
		}
		mode = "client-warm"
		if os.Getenv("LAB_READ_PROFILE") == "1" {
			pprof.StopCPUProfile()
			fmt.Printf("PPROF %s\n", base64.StdEncoding.EncodeToString(prof.Bytes()))
		}
	case "proc":
		buf := make([]byte, 1<<20)
		start := time.Now()
		n, err := readAll("/proc/net/ip_vs", buf, io.Discard)
		took = time.Since(start)
		if err != nil {
			t.Fatal(err)
		}
		// Count afterwards (not timed) from a second read.
		var b bytes.Buffer
		if _, err := readAll("/proc/net/ip_vs", buf, &b); err != nil {
			t.Fatal(err)
		}
		if svcs, err = parseProcIPVS(&b); err != nil {
			t.Fatal(err)
		}
		t.Logf("%d bytes", n)
	case "cat":
		devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer devnull.Close()
		cmd := exec.Command("cat", "/proc/net/ip_vs")
		cmd.Stdout = devnull
		start := time.Now()
		err = cmd.Run()
		took = time.Since(start)
		if err != nil {
			t.Fatal(err)
		}
	case "parse":
		f, err := os.Open("/proc/net/ip_vs")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		start := time.Now()
		svcs, err = parseProcIPVS(bufio.NewReaderSize(f, 1<<20))
		took = time.Since(start)
		if err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("LAB_READ_HELPER=%q", mode)
	}
	printRead(mode, took, svcs)
}

// printRead prints TestReadHelper's result line.
func printRead(mode string, took time.Duration, svcs []director.VirtualService) {
	dests := 0
	h := sha256.New()
	for _, s := range svcs {
		dests += len(s.Dests)
		fmt.Fprintf(h, "%+v\n", s)
	}
	fmt.Printf("READHELPER %s %d %d %d %s\n", mode, took.Nanoseconds(), len(svcs), dests, hex.EncodeToString(h.Sum(nil))[:16])
}

// readAll copies the file to w in reads of len(buf) bytes.
func readAll(name string, buf []byte, w io.Writer) (int64, error) {
	f, err := os.Open(name)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var total int64
	for {
		n, err := f.Read(buf)
		total += int64(n)
		if _, werr := w.Write(buf[:n]); werr != nil {
			return total, werr
		}
		if errors.Is(err, io.EOF) {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// parseProcIPVS parses /proc/net/ip_vs (IPv4 services only, which is what the benchmark
// makes): "TCP  0AC80001:1F40 wrr" and "  -> 0AC90001:1F90      Masq    1      0          0".
func parseProcIPVS(r io.Reader) ([]director.VirtualService, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	var out []director.VirtualService
	hexAddrPort := func(s string) (netip.AddrPort, error) {
		a, p, ok := strings.Cut(s, ":")
		av, err1 := strconv.ParseUint(a, 16, 32)
		pv, err2 := strconv.ParseUint(p, 16, 16)
		if !ok || len(a) != 8 || err1 != nil || err2 != nil {
			return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
		}
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{byte(av >> 24), byte(av >> 16), byte(av >> 8), byte(av)}), uint16(pv)), nil
	}
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 3 && (f[0] == "TCP" || f[0] == "UDP"):
			ap, err := hexAddrPort(f[1])
			if err != nil {
				return nil, err
			}
			proto := uint16(director.ProtoTCP)
			if f[0] == "UDP" {
				proto = director.ProtoUDP
			}
			out = append(out, director.VirtualService{Key: director.ServiceKey{Protocol: proto, Addr: ap.Addr(), Port: ap.Port()}, Scheduler: f[2]})
		case len(f) >= 6 && f[0] == "->" && f[1] != "RemoteAddress:Port" && len(out) > 0:
			ap, err := hexAddrPort(f[1])
			if err != nil {
				return nil, err
			}
			w, _ := strconv.Atoi(f[3])
			ac, _ := strconv.Atoi(f[4])
			ic, _ := strconv.Atoi(f[5])
			s := &out[len(out)-1]
			s.Dests = append(s.Dests, director.Dest{Addr: ap, Weight: int32(w), ActiveConns: uint32(ac), InactiveConns: uint32(ic)})
		}
	}
	for i := range out {
		d := out[i].Dests
		sort.Slice(d, func(a, b int) bool { return d[a].Addr.Compare(d[b].Addr) < 0 })
	}
	return out, sc.Err()
}

// procRead times one read of /proc/net/ip_vs of ns in a fresh process (TestReadHelper), for a
// comparison with the client's read (TestBenchLab's client-read.N).
func procRead(t *testing.T, ns *e2e.NS) time.Duration {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return readHelper(t, ns, self, "proc", false)[0].took
}
