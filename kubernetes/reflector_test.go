package kubernetes

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// reflectorProbe records what a reflector reports.
type reflectorProbe struct {
	mu       sync.Mutex
	alive    int
	changed  int
	failures []error
}

func (p *reflectorProbe) hooks() reflectorHooks {
	return reflectorHooks{
		alive:   func() { p.mu.Lock(); p.alive++; p.mu.Unlock() },
		failure: func(err error) { p.mu.Lock(); p.failures = append(p.failures, err); p.mu.Unlock() },
		changed: func() { p.mu.Lock(); p.changed++; p.mu.Unlock() },
	}
}

func (p *reflectorProbe) counts() (alive, changed, failures int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.alive, p.changed, len(p.failures)
}

func (p *reflectorProbe) lastFailure() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.failures) == 0 {
		return nil
	}
	return p.failures[len(p.failures)-1]
}

// startReflector runs a node reflector (small pages, short back-off) against api.
func startReflector(t *testing.T, api *fakeAPI, opts ...func(*reflector[Node, *Node])) (*reflector[Node, *Node], *reflectorProbe, context.CancelFunc, chan struct{}) {
	t.Helper()
	p := &reflectorProbe{}
	r := newReflector(quietLogger(), api.client(), resNodes, "", "", trimNode, p.hooks())
	r.pageSize = 2
	r.backoff = backoff{initial: 20 * time.Millisecond, max: 100 * time.Millisecond}
	r.watchTimeout = func() time.Duration { return time.Minute }
	r.emptyWindow = 0 // the tests end watches at once on purpose
	for _, o := range opts {
		o(r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return r, p, cancel, done
}

func nodeNames(r *reflector[Node, *Node]) string {
	var out []string
	for _, n := range r.list() {
		out = append(out, n.Name)
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

func lists(api *fakeAPI) int {
	n := 0
	for _, r := range api.requests() {
		if r.Query["watch"] == "" && r.Method == http.MethodGet {
			n++
		}
	}
	return n
}

func TestReflectorListAndWatch(t *testing.T) {
	api := newFakeAPI(t)
	for _, n := range []string{"n1", "n2", "n3"} {
		api.put("nodes", node(n, "10.0.0.1", true, LabelExcludeFromLB, "other"))
	}
	r, p, cancel, done := startReflector(t, api)
	eventually(t, 5*time.Second, "synced", r.hasSynced)
	if got := nodeNames(r); got != "n1,n2,n3" {
		t.Fatalf("after list: %s", got)
	}
	// Two pages: the second continues the first.
	reqs := api.requests()
	if len(reqs) < 2 || reqs[0].String() != "GET /api/v1/nodes?limit=2" || reqs[1].String() != "GET /api/v1/nodes?continue=2&limit=2" {
		t.Errorf("list requests: %v", reqs)
	}
	// Trimmed: only the label Translate reads.
	for _, n := range r.list() {
		if len(n.Labels) != 1 || n.Annotations != nil {
			t.Errorf("%s: labels %v", n.Name, n.Labels)
		}
	}
	eventually(t, 5*time.Second, "watch", func() bool { return api.watchCount() == 1 })

	api.put("nodes", node("n4", "10.0.0.4", true))
	api.del("nodes", "n1")
	api.put("nodes", node("n2", "10.0.0.22", true))
	eventually(t, 5*time.Second, "events", func() bool { return nodeNames(r) == "n2,n3,n4" })
	for _, n := range r.list() {
		if n.Name == "n2" && n.Status.Addresses[1].Address != "10.0.0.22" {
			t.Errorf("n2 not modified: %+v", n.Status)
		}
	}
	alive, changed, failures := p.counts()
	if alive != 4 || changed != 4 || failures != 0 {
		t.Errorf("alive %d changed %d failures %d; want 4 4 0 (a list and three events)", alive, changed, failures)
	}

	// A bookmark is a sign of life and moves the version a new watch starts from, without a
	// change.
	api.bookmark()
	eventually(t, 5*time.Second, "bookmark", func() bool { a, _, _ := p.counts(); return a == 5 })
	r.mu.Lock()
	rv := r.rv
	r.mu.Unlock()
	if _, c, _ := p.counts(); c != 4 || rv != "107" {
		t.Errorf("after the bookmark: changed %d, version %s", c, rv)
	}
	// The watch ends (its timeout): the next one resumes from the bookmark, without a list.
	api.endWatches(false)
	eventually(t, 5*time.Second, "watch again", func() bool {
		reqs := api.requests()
		return reqs[len(reqs)-1].Query["resourceVersion"] == "107" && api.watchCount() == 1
	})
	if n := lists(api); n != 2 {
		t.Errorf("%d list requests, want 2 (one list of two pages)", n)
	}

	// Stops with its context.
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("reflector did not stop with its context")
	}
	eventually(t, 5*time.Second, "watch closed", func() bool { return api.watchCount() == 0 })
	if _, _, f := p.counts(); f != 0 {
		t.Errorf("failures after stopping: %v", p.lastFailure())
	}
}

// 410 Gone, as an ERROR event of an open watch or for a new watch from a compacted version:
// the reflector lists again at once, and it is no failure.
func TestReflectorGoneRelists(t *testing.T) {
	api := newFakeAPI(t)
	api.put("nodes", node("n1", "10.0.0.1", true))
	r, p, _, _ := startReflector(t, api)
	eventually(t, 5*time.Second, "watch", func() bool { return r.hasSynced() && api.watchCount() == 1 })

	// ERROR 410 in the stream. The object deleted meanwhile goes with the new list.
	api.endWatches(true)
	api.del("nodes", "n1")
	api.put("nodes", node("n2", "10.0.0.2", true))
	eventually(t, 5*time.Second, "relist", func() bool { return nodeNames(r) == "n2" && lists(api) >= 2 })

	// A new watch from a compacted version.
	eventually(t, 5*time.Second, "watch", func() bool { return api.watchCount() == 1 })
	api.compactAndEnd()
	eventually(t, 5*time.Second, "relist after compaction", func() bool { return lists(api) >= 3 && api.watchCount() == 1 })
	if _, _, f := p.counts(); f != 0 {
		t.Errorf("410 counted as a failure: %v", p.lastFailure())
	}
}

// Failed lists and watches are reported as failures, retried with back-off, and the objects
// stay; the API coming back is a sign of life again.
func TestReflectorFailures(t *testing.T) {
	api := newFakeAPI(t)
	api.put("nodes", node("n1", "10.0.0.1", true))
	r, p, _, _ := startReflector(t, api)
	eventually(t, 5*time.Second, "watch", func() bool { return r.hasSynced() && api.watchCount() == 1 })

	api.setDown(true)
	eventually(t, 5*time.Second, "failures", func() bool { _, _, f := p.counts(); return f >= 3 })
	var ae *APIError
	if err := p.lastFailure(); !errors.As(err, &ae) || ae.Code != http.StatusServiceUnavailable ||
		!strings.Contains(err.Error(), "list nodes: the fake API server is down") {
		t.Errorf("failure = %v", err)
	}
	if got := nodeNames(r); got != "n1" {
		t.Errorf("objects while down: %s", got)
	}

	api.setDown(false)
	api.put("nodes", node("n2", "10.0.0.2", true))
	eventually(t, 5*time.Second, "recovered", func() bool { return nodeNames(r) == "n1,n2" && api.watchCount() == 1 })

	// A watch that ends at once without any event (a proxy in front of a dead API server)
	// is a failure too.
	// (A second reflector, which counts such watches.)
	r, p, _, _ = startReflector(t, api, func(r *reflector[Node, *Node]) { r.emptyWindow = emptyWatchWindow })
	eventually(t, 5*time.Second, "watch", func() bool { return r.hasSynced() && api.watchCount() == 2 })
	_, _, before := p.counts()
	api.setEmptyWatch(true)
	api.endWatches(false)
	eventually(t, 5*time.Second, "empty watch failure", func() bool { _, _, f := p.counts(); return f > before })
	if err := p.lastFailure(); !errors.Is(err, errEmptyWatch) {
		t.Errorf("failure = %v, want errEmptyWatch", err)
	}
}

// An ERROR event other than 410 ends the watch as a failure with the API's message.
func TestReflectorErrorEvent(t *testing.T) {
	srv := newFakeAPI(t)
	srv.put("nodes", node("n1", "10.0.0.1", true))
	p := &reflectorProbe{}
	c := srv.client()
	r := newReflector[Node, *Node](quietLogger(), c, resNodes, "forbidden", "", nil, p.hooks())
	r.backoff = backoff{initial: 10 * time.Millisecond, max: 10 * time.Millisecond}
	// A namespaced request for a cluster-scoped resource is not made: "forbidden" is ignored.
	if got := c.url(resNodes, "forbidden", nil); !strings.HasSuffix(got, "/api/v1/nodes") {
		t.Errorf("url = %s", got)
	}
	// Services in the forbidden namespace: 403 with the API's message.
	rs := newReflector[Service, *Service](quietLogger(), c, resServices, "forbidden", "", nil, p.hooks())
	rs.backoff = r.backoff
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); rs.run(ctx) }()
	eventually(t, 5*time.Second, "failure", func() bool { return p.lastFailure() != nil })
	cancel()
	<-done
	var ae *APIError
	if err := p.lastFailure(); !errors.As(err, &ae) || ae.Code != http.StatusForbidden || ae.Reason != "Forbidden" ||
		err.Error() != `list services in namespace forbidden: services is forbidden: User "x" cannot list resource "services" in namespace "forbidden"` {
		t.Errorf("failure = %v", err)
	}
	if rs.hasSynced() {
		t.Error("synced without a list")
	}

	// A watch stream's ERROR event (500) is an error with its message.
	var w watchStream
	body := `{"type":"ADDED","object":{"metadata":{"name":"n1","resourceVersion":"5"}}}
{"type":"ERROR","object":{"kind":"Status","status":"Failure","message":"internal error","reason":"InternalError","code":500}}
`
	w.body = nopCloser{strings.NewReader(body)}
	w.dec = jsonDecoder(w.body)
	n, err := r.consume(&w)
	if n != 1 || !errors.As(err, &ae) || ae.Code != 500 || err.Error() != "internal error" || isGone(err) {
		t.Errorf("consume = %d, %v", n, err)
	}
	if nodeNames(r) != "n1" {
		t.Errorf("event before the error not applied")
	}
}

func TestBackoff(t *testing.T) {
	b := backoff{initial: time.Second, max: 5 * time.Second}
	var got []time.Duration
	for range 5 {
		d := b.next()
		got = append(got, b.cur)
		if d < b.cur || d > b.cur+b.cur/2 {
			t.Errorf("wait %v outside [%v, %v]", d, b.cur, b.cur+b.cur/2)
		}
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("back-off steps %v, want %v", got, want)
			break
		}
	}
	b.reset()
	if b.active() || b.next() < time.Second || b.cur != time.Second {
		t.Errorf("after reset: %v", b.cur)
	}
}

type nopCloser struct{ io.Reader }

func (nopCloser) Close() error { return nil }

func jsonDecoder(r io.Reader) *json.Decoder { return json.NewDecoder(r) }
