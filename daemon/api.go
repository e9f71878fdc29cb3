package daemon

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// DrainRequest is the body of POST /v1/drain and /v1/undrain.
type DrainRequest struct {
	Service    string `json:"service"`
	RealServer string `json:"real_server"`
}

// APIError is the body of every error answer.
type APIError struct {
	Error string `json:"error"`
}

// Handler serves the status API. With readOnly, drain, undrain and reload are refused.
func (d *Daemon) Handler(readOnly bool) http.Handler {
	return d.handler(func(*http.Request) bool { return !readOnly })
}

// TokenHandler serves the status API to anyone, and its changing calls only to requests that
// carry "Authorization: Bearer TOKEN".
func (d *Daemon) TokenHandler(token string) http.Handler {
	want := []byte("Bearer " + token)
	return d.handler(func(r *http.Request) bool {
		return token != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) == 1
	})
}

func (d *Daemon) handler(mayChange func(*http.Request) bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		rep, err := d.Status()
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, APIError{err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, rep)
	})
	drain := func(on bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if !mayChange(r) {
				writeJSON(w, http.StatusForbidden, APIError{"this listener is read-only without a valid token"})
				return
			}
			var req DrainRequest
			dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&req); err != nil {
				writeJSON(w, http.StatusBadRequest, APIError{"invalid request: " + err.Error()})
				return
			}
			a, err := netip.ParseAddrPort(req.RealServer)
			if err != nil {
				writeJSON(w, http.StatusBadRequest, APIError{fmt.Sprintf("invalid real server %q: want address:port", req.RealServer)})
				return
			}
			if err := d.SetDrained(req.Service, a, on); err != nil {
				writeJSON(w, http.StatusNotFound, APIError{err.Error()})
				return
			}
			writeJSON(w, http.StatusOK, req)
		}
	}
	mux.HandleFunc("POST /v1/drain", drain(true))
	mux.HandleFunc("POST /v1/undrain", drain(false))
	mux.HandleFunc("POST /v1/reload", func(w http.ResponseWriter, r *http.Request) {
		if !mayChange(r) {
			writeJSON(w, http.StatusForbidden, APIError{"this listener is read-only without a valid token"})
			return
		}
		if err := d.Reload(); err != nil {
			writeJSON(w, http.StatusUnprocessableEntity, APIError{Describe(err)})
			return
		}
		writeJSON(w, http.StatusOK, d.LastReload())
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// ServeAPI serves the status API on the unix socket of the config (mode 0660, owned by root and
// the configured group) until ctx ends.
func (d *Daemon) ServeAPI(ctx context.Context) error {
	api := d.Config().API
	if err := os.MkdirAll(filepath.Dir(api.Socket), 0o755); err != nil {
		return fmt.Errorf("status socket: %w", err)
	}
	if err := os.Remove(api.Socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("status socket: %w", err)
	}
	l, err := net.Listen("unix", api.Socket)
	if err != nil {
		return fmt.Errorf("status socket: %w", err)
	}
	if err := os.Chmod(api.Socket, 0o660); err != nil {
		l.Close()
		return fmt.Errorf("status socket: %w", err)
	}
	if api.SocketGroup != "" {
		g, err := user.LookupGroup(api.SocketGroup)
		if err != nil {
			l.Close()
			return fmt.Errorf("status socket group: %w", err)
		}
		gid, _ := strconv.Atoi(g.Gid)
		if err := os.Chown(api.Socket, 0, gid); err != nil {
			l.Close()
			return fmt.Errorf("status socket group: %w", err)
		}
	}
	return serve(ctx, l, d.Handler(false))
}

// ServeTCPAPI serves the status API on api.listen: read-only, or with drain and reload for
// requests carrying the token from api.token_file.
func (d *Daemon) ServeTCPAPI(ctx context.Context) error {
	api := d.Config().API
	token := ""
	if api.TokenFile != "" {
		b, err := os.ReadFile(api.TokenFile)
		if err != nil {
			return fmt.Errorf("status API token: %w", err)
		}
		if token = strings.TrimSpace(string(b)); len(token) < 16 {
			return fmt.Errorf("status API token in %s is shorter than 16 characters", api.TokenFile)
		}
	}
	l, err := net.Listen("tcp", api.Listen)
	if err != nil {
		return fmt.Errorf("status API listener: %w", err)
	}
	return serve(ctx, l, d.TokenHandler(token))
}

// ServeMetrics serves Prometheus metrics from g on addr until ctx ends.
func ServeMetrics(ctx context.Context, addr string, g prometheus.Gatherer) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	return serve(ctx, l, mux)
}

func serve(ctx context.Context, l net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
