package director

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"syscall"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// FullNATTable is the nftables table (family inet) that the director owns whole.
const FullNATTable = "lvs_director"

// FullNATMark is the packet mark bit the director sets on packets to full-NAT services, so that
// they are masqueraded after IPVS picked a real server (as kube-proxy does with 0x4000).
const FullNATMark uint32 = 0x00400000

// SetFullNAT makes the table hold exactly the rules for keys: packets to a full-NAT VIP:port get
// FullNATMark in prerouting and are masqueraded in postrouting. The table is replaced in one
// atomic transaction, and only when its fingerprint differs from keys.
func (k *LinuxKernel) SetFullNAT(keys []ServiceKey) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	want := FullNATFingerprint(keys)
	table := &nftables.Table{Name: FullNATTable, Family: nftables.TableFamilyINet}
	have, exists, err := currentFingerprint(c, table)
	if err != nil {
		return err
	}
	if exists && bytes.Equal(have, want) || !exists && len(keys) == 0 {
		return nil
	}
	if exists {
		c.DelTable(table)
	}
	if len(keys) > 0 {
		c.AddTable(table)
		pre := c.AddChain(&nftables.Chain{Name: "prerouting", Table: table, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityMangle})
		post := c.AddChain(&nftables.Chain{Name: "postrouting", Table: table, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
		for i, key := range keys {
			r := &nftables.Rule{Table: table, Chain: pre, Exprs: markExprs(key)}
			if i == 0 {
				r.UserData = want
			}
			c.AddRule(r)
		}
		mark := binary.NativeEndian.AppendUint32(nil, FullNATMark)
		c.AddRule(&nftables.Rule{Table: table, Chain: post, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mark, Xor: []byte{0, 0, 0, 0}},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
			&expr.Masq{},
		}})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables table %s: %w", FullNATTable, err)
	}
	return nil
}

func currentFingerprint(c *nftables.Conn, table *nftables.Table) ([]byte, bool, error) {
	if _, err := c.ListTableOfFamily(FullNATTable, nftables.TableFamilyINet); err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOENT) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("nftables: listing table %s: %w", FullNATTable, err)
	}
	rules, err := c.GetRules(table, &nftables.Chain{Name: "prerouting", Table: table})
	if err != nil || len(rules) == 0 {
		return nil, true, nil // present but not as we write it: replace
	}
	return rules[0].UserData, true, nil
}

// markExprs matches VIP:port/protocol and sets FullNATMark on the packet.
func markExprs(k ServiceKey) []expr.Any {
	var nfproto byte = unix.NFPROTO_IPV4
	off, l := uint32(16), uint32(4)
	if k.Addr.Is6() {
		nfproto, off, l = unix.NFPROTO_IPV6, 24, 16
	}
	port := binary.BigEndian.AppendUint16(nil, k.Port)
	mark := binary.NativeEndian.AppendUint32(nil, FullNATMark)
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{nfproto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: l},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: k.Addr.AsSlice()},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{byte(k.Protocol)}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: port},
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binary.NativeEndian.AppendUint32(nil, ^FullNATMark), Xor: mark},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
	}
}

// GuardTable is the nftables table (family inet) that suppresses the director's own ICMP
// "port unreachable" answers for a VIP while the VIP's scheduler is being replaced.
const GuardTable = "lvs_director_guard"

// GuardUnreachable drops the ICMP destination-unreachable messages the director sends from
// these VIPs; an empty list removes the guard. The kernel unbinds a service's old scheduler
// before binding the new one, and a connection attempt in between is refused with ICMP port
// unreachable: dropped instead, the client simply retransmits its SYN.
func (k *LinuxKernel) GuardUnreachable(vips []netip.Addr) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	table := &nftables.Table{Name: GuardTable, Family: nftables.TableFamilyINet}
	if _, err := c.ListTableOfFamily(GuardTable, nftables.TableFamilyINet); err == nil {
		c.DelTable(table)
	}
	if len(vips) > 0 {
		c.AddTable(table)
		out := c.AddChain(&nftables.Chain{Name: "output", Table: table, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityFilter})
		for _, a := range vips {
			var nfproto, l4, icmpType byte = unix.NFPROTO_IPV4, unix.IPPROTO_ICMP, 3
			off, l := uint32(12), uint32(4)
			if a.Is6() {
				nfproto, l4, icmpType, off, l = unix.NFPROTO_IPV6, unix.IPPROTO_ICMPV6, 1, 8, 16
			}
			c.AddRule(&nftables.Rule{Table: table, Chain: out, Exprs: []expr.Any{
				&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{nfproto}},
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: l},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a.AsSlice()},
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{l4}},
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{icmpType}},
				&expr.Verdict{Kind: expr.VerdictDrop},
			}})
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables table %s: %w", GuardTable, err)
	}
	return nil
}
