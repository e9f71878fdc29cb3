package director

import (
	"encoding/binary"
	"net/netip"
	"reflect"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// kernelNL is a fake kernel for the full read that answers like IPVS in Linux 6.1 and costs
// (almost) nothing itself, so that a benchmark counts the client's work: the services' dump in
// datagrams of up to 32 KiB, and each real-server dump as two datagrams, the real servers (with
// every attribute the kernel sends, counters included) and then NLMSG_DONE: the kernel makes
// the second one in the recvmsg that takes the first. It counts the system calls the client
// would make.
type kernelNL struct {
	tb       testing.TB
	svcMsgs  [][]byte        // one IPVS_CMD_NEW_SERVICE message each, sequence number patched in
	destMsgs [][]byte        // all real servers of service i, one message each, concatenated
	index    map[[4]byte]int // service address -> i
	done     []byte

	dg    []byte   // the services' dump, rebuilt for each request
	queue [][]byte // queued datagrams
	head  int

	sends, recvs int // system calls
}

func newKernelNL(tb testing.TB, svcs []VirtualService) *kernelNL {
	k := &kernelNL{tb: tb, index: map[[4]byte]int{}}
	genl := func(cmd uint8) []byte { return []byte{cmd, 1, 0, 0} }
	stats := func(typ uint16, wide bool) []byte {
		var p []byte
		for a := uint16(1); a <= 10; a++ {
			if wide || a == ipvsStatsInBytes || a == ipvsStatsOutBytes {
				p = append(p, tattr(a, le64(uint64(a)*1000+7))...)
			} else {
				p = append(p, tattr(a, le32(uint32(a)*10+3))...)
			}
		}
		return tattr(typ|unix.NLA_F_NESTED, p)
	}
	for i, s := range svcs {
		addr16 := make([]byte, 16)
		copy(addr16, s.Key.Addr.AsSlice())
		flags := binary.NativeEndian.AppendUint32(nil, s.Flags|flagHashed)
		svc := tattr(ipvsCmdAttrService|unix.NLA_F_NESTED,
			tattr(ipvsSvcAttrAF, le16(afOf(s.Key.Addr))), tattr(ipvsSvcAttrProtocol, le16(s.Key.Protocol)),
			tattr(ipvsSvcAttrAddr, addr16), tattr(ipvsSvcAttrPort, bige16(s.Key.Port)),
			tattr(ipvsSvcAttrSchedName, append([]byte(s.Scheduler), 0)),
			tattr(ipvsSvcAttrFlags, flags, le32(0xffffffff)), tattr(ipvsSvcAttrTimeout, le32(s.Timeout)),
			tattr(ipvsSvcAttrNetmask, binary.BigEndian.AppendUint32(nil, s.Netmask)),
			stats(ipvsSvcAttrStats, false), stats(ipvsSvcAttrStats64, true))
		k.svcMsgs = append(k.svcMsgs, tmsg(testFamily, nlmFMulti, 0, genl(ipvsCmdNewService), svc))
		var dm []byte
		for _, d := range slices.Backward(s.Dests) { // the kernel lists the newest first
			a16 := make([]byte, 16)
			copy(a16, d.Addr.Addr().AsSlice())
			dest := tattr(ipvsCmdAttrDest|unix.NLA_F_NESTED,
				tattr(ipvsDestAttrAddr, a16), tattr(ipvsDestAttrPort, bige16(d.Addr.Port())),
				tattr(ipvsDestAttrFwdMethod, le32(d.Fwd)), tattr(ipvsDestAttrWeight, le32(uint32(d.Weight))),
				tattr(ipvsDestAttrUThresh, le32(0)), tattr(ipvsDestAttrLThresh, le32(0)),
				tattr(ipvsDestAttrActiveConns, le32(uint32(d.ActiveConns))), tattr(ipvsDestAttrInactConns, le32(uint32(d.InactiveConns))),
				tattr(9, le32(0)), // persistent connections
				stats(ipvsDestAttrStats, false), tattr(ipvsDestAttrAddrFamily, le16(afOf(d.Addr.Addr()))),
				stats(ipvsDestAttrStats64, true),
				tattr(13, []byte{0}), tattr(14, le16(0)), tattr(15, le16(0))) // tunnel type, port, flags
			dm = append(dm, tmsg(testFamily, nlmFMulti, 0, genl(ipvsCmdNewDest), dest)...)
		}
		k.destMsgs = append(k.destMsgs, dm)
		k.index[s.Key.Addr.As4()] = i
	}
	k.done = tmsg(nlmsgDoneType, nlmFMulti, 0, le32(0))
	return k
}

// setSeq writes seq into every message of b.
func setSeq(b []byte, seq uint32) {
	for len(b) >= nlmsgHdrLen {
		l := align4(int(binary.NativeEndian.Uint32(b)))
		binary.NativeEndian.PutUint32(b[8:], seq)
		b = b[min(l, len(b)):]
	}
}

func (k *kernelNL) push(b []byte) {
	if k.head == len(k.queue) {
		k.queue, k.head = k.queue[:0], 0
	}
	k.queue = append(k.queue, b)
}

func (k *kernelNL) request(b []byte) error { return k.send(b) }

func (k *kernelNL) send(b []byte) error {
	k.sends++
	if len(b) < nlmsgHdrLen+genlHdrLen || binary.NativeEndian.Uint16(b[6:])&nlmFDump != nlmFDump {
		k.tb.Fatalf("kernelNL: not a dump request: %x", b)
	}
	seq := binary.NativeEndian.Uint32(b[8:])
	switch b[nlmsgHdrLen] {
	case ipvsCmdGetService:
		k.dg = k.dg[:0]
		for _, m := range k.svcMsgs {
			setSeq(m, seq)
			if len(k.dg)+len(m) > 32<<10 {
				k.push(k.dg)
				k.dg = k.dg[len(k.dg):]
			}
			k.dg = append(k.dg, m...)
		}
		k.push(k.dg)
	case ipvsCmdGetDest:
		// The service's address: the third attribute of the nest after the genl header.
		p := b[nlmsgHdrLen+genlHdrLen+4:]
		for len(p) >= 4 && binary.NativeEndian.Uint16(p[2:]) != ipvsSvcAttrAddr {
			p = p[align4(int(binary.NativeEndian.Uint16(p))):]
		}
		i, ok := k.index[[4]byte(p[4:8])]
		if !ok {
			k.tb.Fatalf("kernelNL: real servers of an unknown service")
		}
		setSeq(k.destMsgs[i], seq)
		k.push(k.destMsgs[i])
	default:
		k.tb.Fatalf("kernelNL: dump of command %d", b[nlmsgHdrLen])
	}
	setSeq(k.done, seq)
	k.push(k.done)
	return nil
}

func (k *kernelNL) recv(buf []byte, nonblock bool) (int, error) {
	k.recvs++
	if k.head == len(k.queue) {
		if nonblock {
			return 0, unix.EAGAIN
		}
		k.tb.Fatal("kernelNL: the client waits for an answer that never comes")
	}
	n := copy(buf, k.queue[k.head])
	k.head++
	return n, nil
}

func (k *kernelNL) recvMany(bufs [][]byte, ns []int) (int, error) {
	k.recvs++
	if k.head == len(k.queue) {
		k.tb.Fatal("kernelNL: the client waits for an answer that never comes")
	}
	i := 0
	for ; i < len(bufs) && k.head < len(k.queue); i++ {
		ns[i] = copy(bufs[i], k.queue[k.head])
		k.head++
	}
	return i, nil
}

func (k *kernelNL) close() error { return nil }

// readTable is n services of 10 real servers each, with counters.
func readTable(n int) []VirtualService {
	var svcs []VirtualService
	for i := 0; i < n; i++ {
		s := VirtualService{Key: ServiceKey{Protocol: ProtoTCP, Addr: netip.AddrFrom4([4]byte{10, 200, byte(i >> 8), byte(i)}), Port: 80},
			Scheduler: "wrr", Netmask: 0xffffffff}
		for j := 0; j < 10; j++ {
			s.Dests = append(s.Dests, Dest{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(60 + j), byte(i >> 8), byte(i)}), 8080),
				Weight: int32(j + 1), Fwd: FwdMasq, ActiveConns: uint32(j), InactiveConns: uint32(2 * j)})
		}
		svcs = append(svcs, s)
	}
	return svcs
}

func TestServicesFullReadLikeTheKernel(t *testing.T) {
	want := readTable(300)
	k := newKernelNL(t, want)
	c := newIPVSClient(k)
	c.family = testFamily
	got, err := c.services()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d services, want %d", len(got), len(want))
	}
	for i := range want {
		w := want[i]
		w.Stats = Stats{Conns: 1007, PacketsIn: 2007, PacketsOut: 3007, BytesIn: 4007, BytesOut: 5007}
		w.Dests = append([]Dest(nil), w.Dests...)
		for j := range w.Dests {
			w.Dests[j].Stats = &w.Stats
		}
		w.sortDests()
		if !reflect.DeepEqual(got[i], w) {
			t.Fatalf("service %d:\n got %+v\nwant %+v", i, got[i], w)
		}
	}
	t.Logf("%d services: %d sends, %d receives", len(want), k.sends, k.recvs)
	// A caller may append to a service's real servers without touching the next service's.
	got[0].Dests = append(got[0].Dests, Dest{})
	if got[1].Dests[0].Addr != want[1].Dests[0].Addr {
		t.Error("real servers of two services share memory")
	}
}

// BenchmarkServicesFullRead reads 1,000 services of 10 real servers from kernelNL: the client's
// own CPU time, allocations and system calls per service.
func BenchmarkServicesFullRead(b *testing.B) {
	const n = 1000
	k := newKernelNL(b, readTable(n))
	c := newIPVSClient(k)
	c.family = testFamily
	b.ReportAllocs()
	k.sends, k.recvs = 0, 0
	for b.Loop() {
		svcs, err := c.services()
		if err != nil || len(svcs) != n {
			b.Fatalf("%d services, %v", len(svcs), err)
		}
	}
	b.ReportMetric(float64(k.sends+k.recvs)/float64(b.N*n), "syscalls/svc")
	b.ReportMetric(float64(k.sends)/float64(b.N*n), "sends/svc")
	// allocs/svc: allocs/op divided by n (reported by -benchmem as allocs/op).
}

func TestSortedDests(t *testing.T) {
	a := func(s string) Dest { return Dest{Addr: netip.MustParseAddrPort(s)} }
	for _, in := range [][]Dest{
		nil,
		{a("10.0.0.1:80")},
		{a("10.0.0.1:80"), a("10.0.0.2:80"), a("10.0.0.2:81")},
		{a("10.0.0.3:80"), a("10.0.0.2:81"), a("10.0.0.2:80"), a("10.0.0.1:80")},
		{a("10.0.0.2:80"), a("10.0.0.3:80"), a("10.0.0.1:80"), a("[2001:db8::1]:80")},
		{a("[2001:db8::1]:80"), a("10.0.0.3:80"), a("10.0.0.4:80")},
	} {
		orig := slices.Clone(in)
		got := sortedDests(in)
		want := VirtualService{Dests: slices.Clone(in)}
		want.sortDests()
		if len(got) != len(in) || !reflect.DeepEqual(got, want.Dests) && len(in) > 0 {
			t.Errorf("sortedDests(%v) = %v, want %v", in, got, want.Dests)
		}
		if !reflect.DeepEqual(in, orig) {
			t.Errorf("sortedDests changed its argument: %v", in)
		}
		if len(got) != cap(got) {
			t.Errorf("sortedDests: len %d, cap %d", len(got), cap(got))
		}
	}
}
