// Command labnode is the lab's tiny traffic helper, run inside network
// namespaces by the end-to-end tests (build it with CGO_ENABLED=0).
//
//	labnode serve --name NAME --listen ADDR:PORT [--udp]
//	    HTTP server answering every request with NAME (plus "\n"):
//	      /slow?ms=N  waits N ms before answering
//	      /hold       sends NAME and a newline, then keeps the connection
//	                  open (streaming a "." every second) until the client
//	                  goes away or the server stops
//	    With --udp: a UDP echo server that answers "NAME: <payload>".
//
//	labnode client --url URL [--count N] [--interval D] [--timeout T]
//	    N sequential HTTP GETs, each on a fresh connection, then one JSON
//	    line on stdout: {"ok":N,"failed":N,"by_name":{...},"errors":[...]}
//
//	labnode udp --addr ADDR:PORT [--count N] [--interval D] [--timeout T]
//	    N UDP request/answer exchanges (fresh socket each), same JSON.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func usage() {
	fmt.Fprintln(os.Stderr, "usage: labnode serve|client|udp [flags]   (labnode CMD -h for flags)")
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "client":
		err = client(os.Args[2:])
	case "udp":
		err = udpClient(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "labnode:", err)
		os.Exit(1)
	}
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	name := fs.String("name", "", "name to answer with (default: hostname)")
	listen := fs.String("listen", ":8080", "address to listen on")
	udp := fs.Bool("udp", false, "UDP echo server instead of HTTP")
	fs.Parse(args)
	if *name == "" {
		*name, _ = os.Hostname()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	if *udp {
		pc, err := net.ListenPacket("udp", *listen)
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "labnode %s: udp echo on %s\n", *name, pc.LocalAddr())
		go func() { <-ctx.Done(); pc.Close() }()
		buf := make([]byte, 64<<10)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			pc.WriteTo(append([]byte(*name+": "), buf[:n]...), from)
		}
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		fmt.Fprintln(w, *name)
	})
	mux.HandleFunc("/hold", func(w http.ResponseWriter, r *http.Request) {
		fl, _ := w.(http.Flusher)
		fmt.Fprintln(w, *name)
		if fl != nil {
			fl.Flush()
		}
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-r.Context().Done():
				return
			case <-ctx.Done():
				return
			case <-t.C:
				if _, err := io.WriteString(w, "."); err != nil {
					return
				}
				if fl != nil {
					fl.Flush()
				}
			}
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, *name)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		srv.Close()
	}()
	fmt.Fprintf(os.Stderr, "labnode %s: http on %s\n", *name, ln.Addr())
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		return err
	}
	return nil
}

// Summary is what client and udp print, as one JSON line.
type Summary struct {
	OK     int            `json:"ok"`
	Failed int            `json:"failed"`
	ByName map[string]int `json:"by_name"`
	Errors []string       `json:"errors"`
}

const maxErrors = 5

func (s *Summary) add(name string, err error) {
	if err != nil {
		s.Failed++
		if len(s.Errors) < maxErrors {
			s.Errors = append(s.Errors, err.Error())
		}
		return
	}
	s.OK++
	s.ByName[name]++
}

func (s *Summary) print() error {
	return json.NewEncoder(os.Stdout).Encode(s)
}

func loopFlags(fs *flag.FlagSet) (count *int, interval, timeout *time.Duration) {
	count = fs.Int("count", 1, "number of requests; 0 = until SIGTERM or SIGINT, then print the summary")
	interval = fs.Duration("interval", 0, "pause between requests")
	timeout = fs.Duration("timeout", 2*time.Second, "timeout of one request")
	return
}

func client(args []string) error {
	fs := flag.NewFlagSet("client", flag.ExitOnError)
	url := fs.String("url", "", "URL to GET")
	count, interval, timeout := loopFlags(fs)
	fs.Parse(args)
	if *url == "" {
		return fmt.Errorf("client: --url is required")
	}
	hc := &http.Client{
		Timeout: *timeout,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			Proxy:             nil,
			DialContext:       (&net.Dialer{Timeout: *timeout}).DialContext,
		},
	}
	sum := &Summary{ByName: map[string]int{}, Errors: []string{}}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	for i := 0; *count == 0 || i < *count; i++ {
		if i > 0 && *interval > 0 {
			time.Sleep(*interval)
		}
		if ctx.Err() != nil {
			break
		}
		resp, err := hc.Get(*url)
		if err != nil {
			sum.add("", err)
			continue
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("status %s", resp.Status)
		}
		sum.add(strings.TrimSpace(string(body)), err)
	}
	return sum.print()
}

func udpClient(args []string) error {
	fs := flag.NewFlagSet("udp", flag.ExitOnError)
	addr := fs.String("addr", "", "ADDR:PORT of the UDP echo server")
	count, interval, timeout := loopFlags(fs)
	fs.Parse(args)
	if *addr == "" {
		return fmt.Errorf("udp: --addr is required")
	}
	sum := &Summary{ByName: map[string]int{}, Errors: []string{}}
	buf := make([]byte, 64<<10)
	for i := 0; i < *count; i++ {
		if i > 0 && *interval > 0 {
			time.Sleep(*interval)
		}
		name, err := func() (string, error) {
			c, err := net.DialTimeout("udp", *addr, *timeout)
			if err != nil {
				return "", err
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(*timeout))
			if _, err := fmt.Fprintf(c, "ping %d", i); err != nil {
				return "", err
			}
			n, err := c.Read(buf)
			if err != nil {
				return "", err
			}
			name, _, ok := strings.Cut(string(buf[:n]), ": ")
			if !ok {
				return "", fmt.Errorf("bad answer %q", buf[:n])
			}
			return name, nil
		}()
		sum.add(name, err)
	}
	return sum.print()
}
