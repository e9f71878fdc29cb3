package director

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

const testFamily = 0x24

func littleEndian(t *testing.T) {
	t.Helper()
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("the byte-level expectations are written for a little-endian machine")
	}
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var (
	testKey4 = ServiceKey{Protocol: ProtoTCP, Addr: netip.MustParseAddr("10.0.0.1"), Port: 80}
	testRS4  = netip.MustParseAddrPort("10.0.1.2:8080")
)

func TestAppendOpBytes(t *testing.T) {
	littleEndian(t)
	svcKey := "06000100 02000000" + // AF = AF_INET
		"06000200 06000000" + // PROTOCOL = TCP
		"08000300 0a000001" + // ADDR 10.0.0.1
		"06000400 00500000" // PORT 80, network order
	tests := []struct {
		name string
		op   Op
		want string
	}{{
		name: "add-service persistent with an IPv4 netmask",
		op: Op{Kind: OpAddService, Service: VirtualService{Key: testKey4, Scheduler: "wrr",
			Flags: FlagPersistent | flagHashed, Timeout: 300, Netmask: 0xffffff00}},
		want: "5c000000 2400 0100 07000000 00000000" + // nlmsghdr: len 92, family, NLM_F_REQUEST, seq 7
			"01010000" + // genl: IPVS_CMD_NEW_SERVICE, version 1
			"48000180" + // nested IPVS_CMD_ATTR_SERVICE, 72 bytes
			svcKey +
			"08000600 77727200" + // SCHED_NAME "wrr\0"
			"0c000700 01000000 ffffffff" + // FLAGS persistent (hashed masked out), mask all
			"08000800 2c010000" + // TIMEOUT 300
			"08000900 ffffff00", // NETMASK 255.255.255.0 as __be32
	}, {
		name: "del-service sends the key only",
		op:   Op{Kind: OpDelService, Service: VirtualService{Key: testKey4, Scheduler: "rr"}},
		want: "38000000 2400 0100 07000000 00000000 03010000 24000180" + svcKey,
	}, {
		name: "add-dest",
		op:   Op{Kind: OpAddDest, Service: VirtualService{Key: testKey4}, Dest: Dest{Addr: testRS4, Weight: 5, Fwd: FwdMasq}},
		want: "74000000 2400 0100 07000000 00000000 05010000 24000180" + svcKey +
			"3c000280" + // nested IPVS_CMD_ATTR_DEST, 60 bytes
			"08000100 0a000102" + // ADDR 10.0.1.2
			"06000200 1f900000" + // PORT 8080
			"06000b00 02000000" + // ADDR_FAMILY
			"08000300 00000000" + // FWD_METHOD masq
			"08000400 05000000" + // WEIGHT 5
			"08000500 00000000 08000600 00000000", // U_THRESH, L_THRESH
	}, {
		name: "del-dest sends the address only",
		op:   Op{Kind: OpDelDest, Service: VirtualService{Key: testKey4}, Dest: Dest{Addr: testRS4, Weight: 5}},
		want: "54000000 2400 0100 07000000 00000000 07010000 24000180" + svcKey +
			"1c000280 08000100 0a000102 06000200 1f900000 06000b00 02000000",
	}, {
		name: "update-service of an IPv6 service: the netmask is a prefix length",
		op: Op{Kind: OpUpdateService, Service: VirtualService{
			Key:       ServiceKey{Protocol: ProtoUDP, Addr: netip.MustParseAddr("2001:db8::1"), Port: 53},
			Scheduler: "sh", Netmask: 64}},
		want: "68000000 2400 0100 07000000 00000000 02010000 54000180" +
			"06000100 0a000000 06000200 11000000" +
			"14000300 20010db8000000000000000000000001" +
			"06000400 00350000 07000600 73680000" +
			"0c000700 00000000 ffffffff 08000800 00000000 08000900 40000000",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := appendOp(nil, testFamily, 0, 7, &tt.op)
			if err != nil {
				t.Fatal(err)
			}
			if want := unhex(t, tt.want); !bytes.Equal(got, want) {
				t.Errorf("bytes:\n got %x\nwant %x", got, want)
			}
		})
	}
}

func TestAppendOpRefusesBadOps(t *testing.T) {
	for _, tt := range []struct {
		op   Op
		want string
	}{
		{Op{Kind: OpAddVIP, VIP: testKey4.Addr}, "add-vip is not an IPVS operation"},
		{Op{Kind: OpAddService}, "add-service: the service has no address"},
		{Op{Kind: OpAddDest, Service: VirtualService{Key: testKey4}}, "add-dest: the real server has no address"},
	} {
		_, err := appendOp(nil, testFamily, 0, 1, &tt.op)
		if err == nil || err.Error() != tt.want {
			t.Errorf("%v: got error %v, want %q", tt.op, err, tt.want)
		}
	}
}

// Test-side attribute builder (independent of the encoder under test).
func tattr(typ uint16, v ...[]byte) []byte {
	p := bytes.Join(v, nil)
	b := binary.LittleEndian.AppendUint16(nil, uint16(4+len(p)))
	b = binary.LittleEndian.AppendUint16(b, typ)
	b = append(b, p...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// errLE is the error field of an NLMSG_ERROR answer: the negative errno.
func errLE(e unix.Errno) []byte { return le32(uint32(-int32(e))) }

func le16(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }
func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
func le64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }
func bige16(v uint16) []byte {
	return binary.BigEndian.AppendUint16(nil, v)
}

func tmsg(typ, flags uint16, seq uint32, payload ...[]byte) []byte {
	p := bytes.Join(payload, nil)
	b := le32(uint32(16 + len(p)))
	b = append(b, le16(typ)...)
	b = append(b, le16(flags)...)
	b = append(b, le32(seq)...)
	b = append(b, le32(0)...)
	return append(b, p...)
}

func TestParseServiceAndDest(t *testing.T) {
	littleEndian(t)
	addr16 := append([]byte{10, 0, 0, 1}, make([]byte, 12)...)
	svc := bytes.Join([][]byte{
		tattr(ipvsSvcAttrAF, le16(unix.AF_INET)),
		tattr(ipvsSvcAttrProtocol, le16(ProtoTCP)),
		tattr(ipvsSvcAttrAddr, addr16),
		tattr(ipvsSvcAttrPort, bige16(443)),
		tattr(ipvsSvcAttrSchedName, []byte("wlc\x00")),
		tattr(ipvsSvcAttrFlags, le32(FlagPersistent|flagHashed), le32(0xffffffff)),
		tattr(ipvsSvcAttrTimeout, le32(360)),
		tattr(ipvsSvcAttrNetmask, []byte{255, 255, 0, 0}),
		// the old counters (32-bit connections) and the 64-bit ones, which win
		tattr(ipvsSvcAttrStats|unix.NLA_F_NESTED, tattr(ipvsStatsConns, le32(7))),
		tattr(ipvsSvcAttrStats64|unix.NLA_F_NESTED,
			tattr(ipvsStatsConns, le64(5_000_000_000)), tattr(ipvsStatsInPkts, le64(6_000_000_000)),
			tattr(ipvsStatsOutPkts, le64(3)), tattr(ipvsStatsInBytes, le64(1<<40)), tattr(ipvsStatsOutBytes, le64(1<<41))),
	}, nil)
	vs, fwmark, err := parseService(svc)
	if err != nil || fwmark != 0 {
		t.Fatalf("parseService: fwmark %d, err %v", fwmark, err)
	}
	want := VirtualService{
		Key:       ServiceKey{Protocol: ProtoTCP, Addr: netip.MustParseAddr("10.0.0.1"), Port: 443},
		Scheduler: "wlc", Flags: FlagPersistent, Timeout: 360, Netmask: 0xffff0000,
		Stats: Stats{Conns: 5_000_000_000, PacketsIn: 6_000_000_000, PacketsOut: 3, BytesIn: 1 << 40, BytesOut: 1 << 41},
	}
	if !reflect.DeepEqual(vs, want) {
		t.Errorf("parseService:\n got %+v\nwant %+v", vs, want)
	}

	v6 := netip.MustParseAddr("2001:db8::7")
	dest := bytes.Join([][]byte{
		tattr(ipvsDestAttrAddr, v6.AsSlice()),
		tattr(ipvsDestAttrPort, bige16(8443)),
		tattr(ipvsDestAttrFwdMethod, le32(fwdTunnel)),
		tattr(ipvsDestAttrWeight, le32(12)),
		tattr(ipvsDestAttrActiveConns, le32(4)),
		tattr(ipvsDestAttrInactConns, le32(9)),
		tattr(ipvsDestAttrAddrFamily, le16(unix.AF_INET6)),
		tattr(ipvsDestAttrStats|unix.NLA_F_NESTED, tattr(ipvsStatsConns, le32(11)), tattr(ipvsStatsInBytes, le64(1<<33))),
	}, nil)
	slab := make([]Stats, 0, 1)
	d, err := parseDest(dest, unix.AF_INET, &slab) // an IPv6 real server of an IPv4 service (tunnel)
	if err != nil {
		t.Fatal(err)
	}
	wantD := Dest{Addr: netip.AddrPortFrom(v6, 8443), Weight: 12, Fwd: fwdTunnel, ActiveConns: 4, InactiveConns: 9,
		Stats: &Stats{Conns: 11, BytesIn: 1 << 33}}
	if !reflect.DeepEqual(d, wantD) || d.Stats != &slab[0] {
		t.Errorf("parseDest:\n got %+v\nwant %+v (counters in the slab: %v)", d, wantD, d.Stats == &slab[0])
	}

	if _, err := parseDest(tattr(ipvsDestAttrAddr, []byte{1, 2}), unix.AF_INET, &slab); err == nil ||
		err.Error() != "real server: bad address attribute (family 2, 2 bytes)" {
		t.Errorf("short address: got %v", err)
	}
	if _, _, err := parseService([]byte{9, 0, 1, 0}); err == nil {
		t.Error("attribute longer than the message: no error")
	}
}

// fakeNL is a fake kernel behind the transport: it answers requests the way the kernel does
// (an answer for each failed message and for each one with NLM_F_ACK) and dumps its services.
type fakeNL struct {
	t        *testing.T
	services []VirtualService
	fwmarks  []uint32 // extra firewall-mark services in the dump
	// fail decides the error of a request (nil: applied).
	fail func(cmd uint8, svc VirtualService, d Dest) error
	// sendErr, when set, fails a write with more than one message.
	sendErr error
	// queueCap drops answers beyond this many queued datagrams (0: no limit) and reports
	// ENOBUFS once, like an overflowing socket.
	queueCap int
	overflow bool

	writes  [][]nlMsg // messages of each accepted write
	applied []string
	queue   [][]byte
}

func (f *fakeNL) enqueue(b []byte) {
	if f.queueCap > 0 && len(f.queue) >= f.queueCap {
		f.overflow = true
		return
	}
	f.queue = append(f.queue, b)
}

func (f *fakeNL) send(b []byte) error {
	b = bytes.Clone(b) // the client reuses its buffer
	msgs, err := parseMsgs(b)
	if err != nil {
		f.t.Fatalf("fake kernel: %v", err)
	}
	if f.sendErr != nil && len(msgs) > 1 {
		return f.sendErr
	}
	f.writes = append(f.writes, msgs)
	for _, m := range msgs {
		if m.typ != testFamily {
			f.t.Fatalf("fake kernel: message type %#x", m.typ)
		}
		cmd := m.payload[0]
		var svc VirtualService
		var d Dest
		if a, err := cmdAttr(m.payload, ipvsCmdAttrService); err == nil {
			svc, _, err = parseService(a)
			if err != nil {
				f.t.Fatalf("fake kernel: service: %v", err)
			}
		}
		if a, err := cmdAttr(m.payload, ipvsCmdAttrDest); err == nil {
			if d, err = parseDest(a, afOf(svc.Key.Addr), &[]Stats{}); err != nil {
				f.t.Fatalf("fake kernel: dest: %v", err)
			}
		}
		if m.flags&nlmFDump == nlmFDump {
			f.dump(m, cmd, svc)
			continue
		}
		if cmd == ipvsCmdGetService {
			f.getService(m, svc)
			continue
		}
		var errno error
		if f.fail != nil {
			errno = f.fail(cmd, svc, d)
		}
		if errno == nil {
			f.applied = append(f.applied, fmt.Sprintf("%s %s %s", ipvsCmdNames[cmd], svc.Key, d.Addr))
		}
		if errno != nil || m.flags&nlmFAck != 0 {
			code := int32(0)
			if errno != nil {
				code = -int32(errno.(unix.Errno))
			}
			// NETLINK_CAP_ACK: the answer carries the request's header only.
			hdr := b[:0:0]
			hdr = append(hdr, le32(16)...)
			hdr = append(hdr, le16(m.typ)...)
			hdr = append(hdr, le16(m.flags)...)
			hdr = append(hdr, le32(m.seq)...)
			hdr = append(hdr, le32(0)...)
			f.enqueue(tmsg(nlmsgErrorType, 0x100, m.seq, le32(uint32(code)), hdr))
		}
	}
	return nil
}

func (f *fakeNL) dump(m nlMsg, cmd uint8, key VirtualService) {
	var dg []byte
	genl := []byte{0, 1, 0, 0}
	switch cmd {
	case ipvsCmdGetService:
		genl[0] = ipvsCmdNewService
		for _, s := range f.services {
			dg = append(dg, tmsg(testFamily, nlmFMulti, m.seq, genl,
				appendServiceAttr(nil, &s, true))...)
			if len(dg) > 200 { // several datagrams
				f.enqueue(dg)
				dg = nil
			}
		}
		for _, fw := range f.fwmarks {
			dg = append(dg, tmsg(testFamily, nlmFMulti, m.seq, genl,
				tattr(ipvsCmdAttrService|unix.NLA_F_NESTED, tattr(ipvsSvcAttrAF, le16(unix.AF_INET)), tattr(ipvsSvcAttrFwmark, le32(fw))))...)
		}
	case ipvsCmdGetDest:
		genl[0] = ipvsCmdNewDest
		for _, s := range f.services {
			if s.Key != key.Key {
				continue
			}
			for _, d := range s.Dests {
				dg = append(dg, tmsg(testFamily, nlmFMulti, m.seq, genl, appendDestAttr(nil, &d, true))...)
			}
		}
	default:
		f.t.Fatalf("fake kernel: dump of command %d", cmd)
	}
	f.enqueue(append(dg, tmsg(nlmsgDoneType, nlmFMulti, m.seq, le32(0))...))
}

func (f *fakeNL) recv(buf []byte, nonblock bool) (int, error) {
	if f.overflow {
		f.overflow = false
		return 0, unix.ENOBUFS
	}
	if len(f.queue) == 0 {
		if nonblock {
			return 0, unix.EAGAIN
		}
		f.t.Fatal("fake kernel: the client waits for an answer that never comes")
	}
	n := copy(buf, f.queue[0])
	f.queue = f.queue[1:]
	return n, nil
}

func (f *fakeNL) request(b []byte) error { return f.send(b) }

func (f *fakeNL) recvMany(bufs [][]byte, ns []int) (int, error) {
	// Like recvmmsg: an error after the first datagram waits for the next call.
	k := 0
	for ; k < len(bufs) && (k == 0 || !f.overflow && len(f.queue) > 0); k++ {
		n, err := f.recv(bufs[k], false)
		if err != nil {
			return 0, err
		}
		ns[k] = n
	}
	return k, nil
}

func (f *fakeNL) close() error { return nil }

func newFakeClient(f *fakeNL) *ipvsClient {
	c := newIPVSClient(f)
	c.family = testFamily
	return c
}

// manyOps returns an add-service and n add-dests for it.
func manyOps(n int) []Op {
	ops := []Op{{Kind: OpAddService, Service: VirtualService{Key: testKey4, Scheduler: "rr", Netmask: 0xffffffff}}}
	for i := 0; i < n; i++ {
		a := netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
		ops = append(ops, Op{Kind: OpAddDest, Service: VirtualService{Key: testKey4}, Dest: Dest{Addr: netip.AddrPortFrom(a, 80), Weight: 1}})
	}
	return ops
}

func TestApplyBatchMatchesErrorsToOps(t *testing.T) {
	failing := netip.MustParseAddrPort("10.1.1.44:80") // op 301
	f := &fakeNL{t: t, fail: func(cmd uint8, svc VirtualService, d Dest) error {
		if d.Addr == failing {
			return unix.EEXIST
		}
		return nil
	}}
	c := newFakeClient(f)
	ops := manyOps(599) // 600 ops: writes of 256, 256 and 88 messages
	ops = append(ops[:5], append([]Op{{Kind: OpAddVIP, VIP: testKey4.Addr}}, ops[5:]...)...)
	errs := c.apply(ops)
	if len(errs) != len(ops) {
		t.Fatalf("%d results for %d ops", len(errs), len(ops))
	}
	for i, err := range errs {
		switch {
		case i == 5:
			if err == nil || err.Error() != "add-vip is not an IPVS operation" {
				t.Errorf("errs[5] (VIP op) = %v", err)
			}
		case ops[i].Dest.Addr == failing:
			want := "IPVS_CMD_NEW_DEST tcp/10.0.0.1:80 -> 10.1.1.44:80: file exists"
			if err == nil || err.Error() != want || !errors.Is(err, unix.EEXIST) {
				t.Errorf("errs[%d] = %v, want %q wrapping EEXIST", i, err, want)
			}
		case err != nil:
			t.Errorf("errs[%d] = %v, want nil", i, err)
		}
	}
	if len(f.applied) != 599 {
		t.Errorf("the kernel applied %d ops, want 599", len(f.applied))
	}
	var sizes []int
	for _, w := range f.writes {
		sizes = append(sizes, len(w))
		for j, m := range w {
			if ack := m.flags&nlmFAck != 0; ack != (j == len(w)-1) {
				t.Errorf("write of %d: message %d has NLM_F_ACK=%v", len(w), j, ack)
			}
			if j > 0 && m.seq != w[j-1].seq+1 {
				t.Errorf("sequence numbers not consecutive: %d after %d", m.seq, w[j-1].seq)
			}
		}
	}
	if !reflect.DeepEqual(sizes, []int{256, 256, 88}) {
		t.Errorf("messages per write = %v, want [256 256 88]", sizes)
	}
}

func TestApplyBatchBoundsBytes(t *testing.T) {
	f := &fakeNL{t: t}
	c := newFakeClient(f)
	c.maxBytes = 1000 // an add-dest is 116 bytes: 8 per write
	errs := c.apply(manyOps(19))
	for i, err := range errs {
		if err != nil {
			t.Errorf("errs[%d] = %v", i, err)
		}
	}
	var sizes []int
	for _, w := range f.writes {
		sizes = append(sizes, len(w))
	}
	if !reflect.DeepEqual(sizes, []int{8, 8, 4}) {
		t.Errorf("messages per write = %v, want [8 8 4]", sizes)
	}
}

func TestApplyBatchLostAnswers(t *testing.T) {
	// Every odd real server fails; the socket holds only 3 answers: the client must report
	// each op whose answer is lost, never as a success, then go on one message at a time.
	f := &fakeNL{t: t, queueCap: 3, fail: func(cmd uint8, svc VirtualService, d Dest) error {
		if cmd == ipvsCmdNewDest && d.Addr.Addr().As4()[3]%2 == 1 {
			return unix.EEXIST
		}
		return nil
	}}
	c := newFakeClient(f)
	c.maxMsgs = 10
	ops := manyOps(19) // 20 ops: the first write holds 10
	errs := c.apply(ops)
	// First write: ops 0-9. 2, 4, 6 and 8 fail; the answers of 2, 4 and 6 fit, those of 8
	// and of 9 (the acknowledgement) are dropped.
	for i := 0; i < 10; i++ {
		err := errs[i]
		switch {
		case i == 2 || i == 4 || i == 6:
			if !errors.Is(err, unix.EEXIST) {
				t.Errorf("errs[%d] = %v, want EEXIST", i, err)
			}
		case i < 6: // no answer before an answered one: applied
			if err != nil {
				t.Errorf("errs[%d] = %v, want nil", i, err)
			}
		default: // 7, 8, 9: after the last answer, outcome unknown
			if !errors.Is(err, unix.ENOBUFS) || !errors.Is(err, errOutcomeLost) {
				t.Errorf("errs[%d] = %v, want a lost outcome", i, err)
			}
		}
	}
	for i := 10; i < 20; i++ {
		wantFail := (i-1)%2 == 1
		if got := errs[i] != nil; got != wantFail || (wantFail && !errors.Is(errs[i], unix.EEXIST)) {
			t.Errorf("errs[%d] = %v, want failure %v", i, errs[i], wantFail)
		}
	}
	for _, w := range f.writes[1:] {
		if len(w) != 1 || w[0].flags&nlmFAck == 0 {
			t.Fatalf("after the overflow: a write of %d messages (ack %v), want one acknowledged message", len(w), w[0].flags&nlmFAck != 0)
		}
	}
	if len(f.writes) != 11 {
		t.Errorf("%d writes, want 1 batch + 10 single", len(f.writes))
	}
}

func TestApplyBatchSendFailureRetriesOneByOne(t *testing.T) {
	f := &fakeNL{t: t, sendErr: unix.EMSGSIZE}
	c := newFakeClient(f)
	errs := c.apply(manyOps(4))
	for i, err := range errs {
		if err != nil {
			t.Errorf("errs[%d] = %v", i, err)
		}
	}
	if len(f.writes) != 5 || len(f.applied) != 5 {
		t.Errorf("writes %d, applied %d: want 5 single writes", len(f.writes), len(f.applied))
	}
}

func TestApplyBatchIgnoresStaleAnswers(t *testing.T) {
	f := &fakeNL{t: t}
	c := newFakeClient(f)
	c.seq = 100
	f.queue = append(f.queue, tmsg(nlmsgErrorType, 0, 99, errLE(unix.EINVAL)))
	if err := c.apply(manyOps(0))[0]; err != nil {
		t.Errorf("a stale answer (sequence 99) was taken for the op's: %v", err)
	}
}

func TestServicesDumps(t *testing.T) {
	a := VirtualService{Key: testKey4, Scheduler: "rr", Netmask: 0xffffffff, Dests: []Dest{
		{Addr: netip.MustParseAddrPort("10.0.1.3:80"), Weight: 2},
		{Addr: netip.MustParseAddrPort("10.0.1.2:80"), Weight: 1},
	}}
	b := VirtualService{Key: ServiceKey{Protocol: ProtoUDP, Addr: netip.MustParseAddr("2001:db8::5"), Port: 53},
		Scheduler: "sh", Flags: FlagPersistent, Timeout: 60, Netmask: 64}
	f := &fakeNL{t: t, services: []VirtualService{a, b}, fwmarks: []uint32{7}}
	c := newFakeClient(f)
	got, err := c.services()
	if err != nil {
		t.Fatal(err)
	}
	a.sortDests()
	if want := []VirtualService{a, b}; !reflect.DeepEqual(got, want) {
		t.Errorf("services:\n got %+v\nwant %+v", got, want)
	}
	// one service dump, then one real-server dump per (non-fwmark) service, each with a key
	if len(f.writes) != 3 || f.writes[0][0].payload[0] != ipvsCmdGetService ||
		f.writes[1][0].payload[0] != ipvsCmdGetDest || f.writes[2][0].payload[0] != ipvsCmdGetDest {
		t.Errorf("requests: %d writes: %v", len(f.writes), f.writes)
	}
}

func TestServicesDumpError(t *testing.T) {
	f := &fakeNL{t: t}
	c := newFakeClient(f)
	f.queue = nil
	// An error answer to the dump request.
	c.seq = 10
	f.queue = append(f.queue, tmsg(nlmsgErrorType, 0, 10, errLE(unix.EPERM)))
	c.t = &noSendNL{f}
	_, err := c.services()
	if !errors.Is(err, unix.EPERM) || err.Error() != "IPVS_CMD_GET_SERVICE dump: operation not permitted" {
		t.Errorf("got %v", err)
	}
}

// noSendNL accepts writes without answering them.
type noSendNL struct{ *fakeNL }

func (n *noSendNL) send([]byte) error { return nil }

func (n *noSendNL) request([]byte) error { return nil }

// getService answers a (non-dump) IPVS_CMD_GET_SERVICE: the service and an acknowledgement,
// or ESRCH.
func (f *fakeNL) getService(m nlMsg, key VirtualService) {
	for _, s := range f.services {
		if s.Key == key.Key {
			f.enqueue(append(tmsg(testFamily, 0, m.seq, []byte{ipvsCmdNewService, 1, 0, 0}, appendServiceAttr(nil, &s, true)),
				tmsg(nlmsgErrorType, 0x100, m.seq, le32(0), make([]byte, 16))...))
			return
		}
	}
	f.enqueue(tmsg(nlmsgErrorType, 0, m.seq, errLE(unix.ESRCH), make([]byte, 16)))
}

func TestServiceReadsOne(t *testing.T) {
	a := VirtualService{Key: testKey4, Scheduler: "wrr", Netmask: 0xffffffff, Dests: []Dest{
		{Addr: netip.MustParseAddrPort("10.0.1.3:80"), Weight: 2},
		{Addr: netip.MustParseAddrPort("10.0.1.2:80"), Weight: 1},
	}}
	b := VirtualService{Key: ServiceKey{Protocol: ProtoUDP, Addr: netip.MustParseAddr("2001:db8::5"), Port: 53},
		Scheduler: "sh", Flags: FlagPersistent, Timeout: 60, Netmask: 64}
	f := &fakeNL{t: t, services: []VirtualService{b, a}}
	c := newFakeClient(f)
	got, found, err := c.service(testKey4)
	if err != nil || !found {
		t.Fatalf("found %v, err %v", found, err)
	}
	a.sortDests()
	if !reflect.DeepEqual(got, a) {
		t.Errorf("service:\n got %+v\nwant %+v", got, a)
	}
	// one request for the service, one dump of its real servers
	if len(f.writes) != 2 || f.writes[0][0].payload[0] != ipvsCmdGetService || f.writes[0][0].flags&nlmFDump != 0 ||
		f.writes[1][0].payload[0] != ipvsCmdGetDest {
		t.Errorf("requests: %d writes: %v", len(f.writes), f.writes)
	}
	got, found, err = c.service(b.Key)
	if err != nil || !found || !reflect.DeepEqual(got, b) {
		t.Errorf("IPv6 service: %+v %v %v", got, found, err)
	}
	if _, found, err := c.service(ServiceKey{Protocol: ProtoTCP, Addr: testKey4.Addr, Port: 81}); found || err != nil {
		t.Errorf("a missing service: found %v, err %v", found, err)
	}
}
