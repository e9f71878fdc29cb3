package kubernetes

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// The Source needs three resources of two API groups, read-only but for one status patch. It
// talks to them with this small JSON client instead of client-go: client-go, even reduced to
// the REST client and the two groups' types, brought k8s.io/apimachinery's scheme, klog,
// protobuf codecs and friends into every start of the binary (~5 MB resident, 5-10 ms of
// package initialisation, 9 MB of binary), for every command, Kubernetes or not.
//
// Requests are JSON only (Accept: application/json). The API server speaks JSON for every
// resource; protobuf would save some CPU on huge lists but needs generated code per type.

// resource is one API resource the Source uses.
type resource struct {
	name       string // plural, as in the URL: services
	apiPrefix  string // /api/v1 or /apis/GROUP/VERSION
	namespaced bool
}

var (
	resServices       = resource{"services", "/api/v1", true}
	resEndpointSlices = resource{"endpointslices", "/apis/discovery.k8s.io/v1", true}
	resNodes          = resource{"nodes", "/api/v1", false}
)

// Client is a client of an API server for the Source: list and watch of a resource, and the
// status patch of a Service. Make it with NewClient.
type Client struct {
	base      *url.URL
	http      *http.Client
	userAgent string
	username  string
	password  string
	token     *tokenSource // nil: no bearer token
}

// NewClient makes the Client for rc. It does not contact the API server.
func NewClient(rc *RESTConfig) (*Client, error) {
	base, err := url.Parse(rc.Host)
	if err != nil {
		return nil, fmt.Errorf("server %q: %w", rc.Host, err)
	}
	if base.Scheme != "https" && base.Scheme != "http" || base.Host == "" {
		return nil, fmt.Errorf("server %q: not an http(s) URL", rc.Host)
	}
	base.Path = strings.TrimSuffix(base.Path, "/")
	proxy := http.ProxyFromEnvironment
	if rc.ProxyURL != "" {
		u, err := url.Parse(rc.ProxyURL)
		if err != nil {
			return nil, fmt.Errorf("proxy-url %q: %w", rc.ProxyURL, err)
		}
		proxy = http.ProxyURL(u)
	}
	tlsCfg := rc.TLS
	if tlsCfg != nil {
		tlsCfg = tlsCfg.Clone()
	}
	tr := &http.Transport{
		Proxy: proxy,
		DialContext: (&net.Dialer{
			Timeout: 30 * time.Second,
			// TCP keepalives find a dead peer of a quiet HTTP/1.1 watch.
			KeepAlive: 30 * time.Second,
		}).DialContext,
		TLSClientConfig:     tlsCfg,
		TLSHandshakeTimeout: 10 * time.Second,
		// Several watches share one connection over HTTP/2, as with client-go. A custom TLS
		// config turns HTTP/2 off unless asked for.
		ForceAttemptHTTP2: true,
		// Pings find a dead HTTP/2 connection (a watch would otherwise wait for its
		// timeout): the values client-go uses.
		HTTP2:               &http.HTTP2Config{SendPingTimeout: 30 * time.Second, PingTimeout: 15 * time.Second},
		MaxIdleConnsPerHost: 25,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  rc.DisableCompression,
	}
	c := &Client{
		base: base,
		// No overall timeout: watches last minutes. Each request has a context instead.
		http:      &http.Client{Transport: tr},
		userAgent: rc.UserAgent,
		username:  rc.Username,
		password:  rc.Password,
	}
	if c.userAgent == "" {
		c.userAgent = "lvs-director"
	}
	if rc.BearerToken != "" || rc.BearerTokenFile != "" {
		c.token = &tokenSource{token: rc.BearerToken, file: rc.BearerTokenFile}
	}
	return c, nil
}

// Host is the API server's URL.
func (c *Client) Host() string { return c.base.String() }

// tokenSource is a bearer token, re-read from its file at most once a minute: projected
// service account tokens are rotated, and client-go re-reads them too. A failed read keeps the
// last token.
type tokenSource struct {
	file string

	mu     sync.Mutex
	token  string
	readAt time.Time
}

const tokenFileReread = time.Minute

func (t *tokenSource) get() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.file != "" && time.Since(t.readAt) >= tokenFileReread {
		if tok, err := readToken(t.file); err == nil {
			t.token = tok
		}
		t.readAt = time.Now()
	}
	return t.token
}

// APIError is an error answer of the API server (a meta/v1 Status, or just an HTTP status).
type APIError struct {
	Code    int    // HTTP status code
	Reason  string // Status reason, e.g. Forbidden, Expired; may be empty
	Message string
}

func (e *APIError) Error() string {
	if e.Message != "" {
		return e.Message
	}
	return fmt.Sprintf("the server answered HTTP %d %s", e.Code, http.StatusText(e.Code))
}

// isGone tells whether err says the resource version asked for is too old (compacted away):
// the client must list again. The API server says so with 410 Gone (reason Expired or Gone).
func isGone(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && (ae.Code == http.StatusGone || ae.Reason == "Expired" || ae.Reason == "Gone")
}

// url returns the URL of a resource in namespace ns ("" for all namespaces or a
// cluster-scoped resource), with optional further segments (name, subresource).
func (c *Client) url(r resource, ns string, q url.Values, segments ...string) string {
	var b strings.Builder
	b.WriteString(c.base.Path)
	b.WriteString(r.apiPrefix)
	if r.namespaced && ns != "" {
		b.WriteString("/namespaces/")
		b.WriteString(url.PathEscape(ns))
	}
	b.WriteString("/")
	b.WriteString(r.name)
	for _, s := range segments {
		b.WriteString("/")
		b.WriteString(url.PathEscape(s))
	}
	u := *c.base
	u.Path = b.String()
	u.RawPath = ""
	u.RawQuery = q.Encode()
	return u.String()
}

// do sends a request and returns the response when its status is 2xx; otherwise the error
// the body describes.
func (c *Client) do(ctx context.Context, method, u string, body []byte, contentType string) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	switch {
	case c.token != nil:
		req.Header.Set("Authorization", "Bearer "+c.token.get())
	case c.username != "" || c.password != "":
		req.SetBasicAuth(c.username, c.password)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, errorFrom(resp)
}

// errorFrom makes the APIError of a non-2xx answer: the Status in its body when there is one.
func errorFrom(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	e := &APIError{Code: resp.StatusCode}
	var st status
	if json.Unmarshal(b, &st) == nil && (st.Message != "" || st.Reason != "") {
		e.Reason, e.Message = st.Reason, st.Message
		if st.Code != 0 {
			e.Code = st.Code
		}
		return e
	}
	if text := strings.TrimSpace(string(b)); text != "" {
		if len(text) > 200 {
			text = text[:200] + "..."
		}
		e.Message = fmt.Sprintf("the server answered HTTP %d %s: %s", resp.StatusCode, http.StatusText(resp.StatusCode), text)
	}
	return e
}

// listOptions are the query parameters of a list or watch the Source uses.
type listOptions struct {
	labelSelector   string
	resourceVersion string
	limit           int
	continueToken   string
	// watch only
	timeoutSeconds int
}

func (o listOptions) query(watch bool) url.Values {
	q := url.Values{}
	if o.labelSelector != "" {
		q.Set("labelSelector", o.labelSelector)
	}
	if o.resourceVersion != "" {
		q.Set("resourceVersion", o.resourceVersion)
	}
	if watch {
		q.Set("watch", "true")
		// Bookmarks: the API server tells a quiet watch the current resource version now
		// and then, so a new watch resumes from there (instead of an old version that may
		// be compacted away, forcing a list) and the Source hears a sign of life.
		q.Set("allowWatchBookmarks", "true")
		if o.timeoutSeconds > 0 {
			q.Set("timeoutSeconds", fmt.Sprint(o.timeoutSeconds))
		}
		return q
	}
	if o.limit > 0 {
		q.Set("limit", fmt.Sprint(o.limit))
	}
	if o.continueToken != "" {
		q.Set("continue", o.continueToken)
	}
	return q
}

// listPage is one page of a list answer.
type listPage[T any] struct {
	Metadata struct {
		ResourceVersion string `json:"resourceVersion"`
		Continue        string `json:"continue"`
	} `json:"metadata"`
	Items []T `json:"items"`
}

// listOnce reads one page of the list of r in ns. The body is decoded as it arrives, into the
// small types of types.go: the fields we do not model are skipped, never held.
func listOnce[T any](ctx context.Context, c *Client, r resource, ns string, o listOptions) (*listPage[T], error) {
	resp, err := c.do(ctx, http.MethodGet, c.url(r, ns, o.query(false)), nil, "")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var page listPage[T]
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
		return nil, fmt.Errorf("decoding the list of %s: %w", r.name, err)
	}
	return &page, nil
}

// watchEvent is one event of a watch stream.
type watchEvent struct {
	Type   string          `json:"type"`
	Object json.RawMessage `json:"object"`
}

// Watch event types.
const (
	eventAdded    = "ADDED"
	eventModified = "MODIFIED"
	eventDeleted  = "DELETED"
	eventBookmark = "BOOKMARK"
	eventError    = "ERROR"
)

// watchStream is an open watch: a stream of JSON events, one after the other.
type watchStream struct {
	body io.ReadCloser
	dec  *json.Decoder
}

// watch opens a watch of r in ns. Close the stream when done; cancelling ctx also ends it.
func (c *Client) watch(ctx context.Context, r resource, ns string, o listOptions) (*watchStream, error) {
	resp, err := c.do(ctx, http.MethodGet, c.url(r, ns, o.query(true)), nil, "")
	if err != nil {
		return nil, err
	}
	return &watchStream{body: resp.Body, dec: json.NewDecoder(resp.Body)}, nil
}

// next returns the next event; io.EOF when the server ended the watch (its timeout).
func (w *watchStream) next() (watchEvent, error) {
	var ev watchEvent
	err := w.dec.Decode(&ev)
	return ev, err
}

func (w *watchStream) close() { w.body.Close() }

// statusPatch is the merge patch (RFC 7386) that sets a Service's status.loadBalancer.ingress
// to the one VIP. A patch, not a PUT of the object: our Service type leaves out most fields,
// so a PUT would drop them (the status's conditions, other ingress fields).
func statusPatch(vip string) []byte {
	type ingress struct {
		IP string `json:"ip"`
	}
	var p struct {
		Status struct {
			LoadBalancer struct {
				Ingress []ingress `json:"ingress"`
			} `json:"loadBalancer"`
		} `json:"status"`
	}
	p.Status.LoadBalancer.Ingress = []ingress{{IP: vip}}
	b, _ := json.Marshal(p) // cannot fail
	return b
}

// fieldManager names the director in the managed fields of what it writes.
const fieldManager = "lvs-director"

// patchServiceStatus writes vip as the only status.loadBalancer.ingress of a Service.
func (c *Client) patchServiceStatus(ctx context.Context, ns, name, vip string) error {
	q := url.Values{"fieldManager": {fieldManager}}
	resp, err := c.do(ctx, http.MethodPatch, c.url(resServices, ns, q, name, "status"), statusPatch(vip), "application/merge-patch+json")
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body) // the answer (the Service) arrives by the watch too
	return resp.Body.Close()
}
