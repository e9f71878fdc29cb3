// Command ipvsbatch is the lab's batched-netlink floor run as a program of its own, started
// the way the daemons are: it reads a rule file in the format `ipvsadm -R` reads (the part of it
// the benchmark writes) and applies it with the director's netlink client, requests in writes
// of 256 on one socket (director.LinuxKernel.ApplyBatch), in its network namespace.
//
//	ipvsbatch RULES
//
// Lines: "-A -t|-u ADDR:PORT -s SCHEDULER" adds a virtual service, "-a -t|-u ADDR:PORT -r
// ADDR:PORT [-m] [-w WEIGHT]" a real server (NAT). It exits with status 1 when a line cannot be
// read or an operation fails, and changes nothing when a line cannot be read.
package main

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"runtime/debug"
	"strconv"
	"unsafe"

	"github.com/lvs-director/lvs-director/director"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: ipvsbatch RULES")
		os.Exit(2)
	}
	debug.SetGCPercent(-1) // (a short run: nothing to collect for)
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "ipvsbatch:", err)
		os.Exit(1)
	}
}

func run(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	ops, err := parseRules(data)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	k, err := director.OpenKernel()
	if err != nil {
		return err
	}
	defer k.Close()
	failed := 0
	for i, err := range k.ApplyBatch(ops) {
		if err != nil {
			if failed < 10 {
				fmt.Fprintf(os.Stderr, "ipvsbatch: %s: %v\n", ops[i], err)
			}
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d operations failed", failed, len(ops))
	}
	return nil
}

// parseRules reads the rule lines into operations, in their order. (It is the floor of a
// benchmark: one pass, no allocation per line but the operations themselves.)
func parseRules(data []byte) ([]director.Op, error) {
	ops := make([]director.Op, 0, bytes.Count(data, []byte{'\n'})+1)
	var last []byte // the last virtual service's text, and its parsed key
	var lastKey director.ServiceKey
	var f [12][]byte
	for n := 1; len(data) > 0; n++ {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		nf := 0
		for len(line) > 0 && nf < len(f) {
			for len(line) > 0 && (line[0] == ' ' || line[0] == '\t' || line[0] == '\r') {
				line = line[1:]
			}
			j := 0
			for j < len(line) && line[j] != ' ' && line[j] != '\t' && line[j] != '\r' {
				j++
			}
			if j > 0 {
				f[nf] = line[:j]
				nf++
			}
			line = line[j:]
		}
		if nf == 0 {
			continue
		}
		if nf == len(f) {
			return nil, fmt.Errorf("line %d: too many words", n)
		}
		op, err := parseLine(f[:nf], &last, &lastKey)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		ops = append(ops, op)
	}
	return ops, nil
}

// str is b as a string without a copy, for parsers that keep nothing of it.
func str(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

func parseLine(f [][]byte, last *[]byte, lastKey *director.ServiceKey) (director.Op, error) {
	var op director.Op
	switch string(f[0]) {
	case "-A":
		op.Kind = director.OpAddService
	case "-a":
		op.Kind = director.OpAddDest
	default:
		return op, fmt.Errorf("unknown command %q (want -A or -a)", f[0])
	}
	op.Dest.Weight = 1
	op.Dest.Fwd = director.FwdMasq
	for i := 1; i < len(f); i++ {
		flag := str(f[i]) // (formatting an error copies it)
		if flag == "-m" {
			continue
		}
		if i+1 >= len(f) {
			return op, fmt.Errorf("%s without a value", flag)
		}
		i++
		v := f[i]
		switch flag {
		case "-t", "-u":
			proto := director.ProtoTCP
			if flag == "-u" {
				proto = director.ProtoUDP
			}
			if *last != nil && bytes.Equal(v, *last) && lastKey.Protocol == proto {
				op.Service.Key = *lastKey
			} else {
				ap, err := netip.ParseAddrPort(str(v))
				if err != nil {
					return op, fmt.Errorf("%s: not an ip:port", flag)
				}
				op.Service.Key = director.ServiceKey{Protocol: proto, Addr: ap.Addr(), Port: ap.Port()}
				*last, *lastKey = v, op.Service.Key
			}
			if op.Service.Key.Addr.Is4() {
				op.Service.Netmask = 0xffffffff
			} else {
				op.Service.Netmask = 128
			}
		case "-s":
			op.Service.Scheduler = string(v)
		case "-r":
			ap, err := netip.ParseAddrPort(str(v))
			if err != nil {
				return op, fmt.Errorf("-r: not an ip:port")
			}
			op.Dest.Addr = ap
		case "-w":
			w, err := strconv.ParseInt(str(v), 10, 32)
			if err != nil || w < 0 {
				return op, fmt.Errorf("-w: bad weight %q", v)
			}
			op.Dest.Weight = int32(w)
		default:
			return op, fmt.Errorf("unknown option %q", flag)
		}
	}
	if !op.Service.Key.Addr.IsValid() {
		return op, fmt.Errorf("no virtual service (-t or -u)")
	}
	switch {
	case op.Kind == director.OpAddService && op.Service.Scheduler == "":
		return op, fmt.Errorf("no scheduler (-s)")
	case op.Kind == director.OpAddDest && !op.Dest.Addr.IsValid():
		return op, fmt.Errorf("no real server (-r)")
	case op.Kind == director.OpAddDest:
		op.Service = director.VirtualService{Key: op.Service.Key}
	}
	return op, nil
}
