package kubernetes

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/labels"
)

// fakeAPI is a small in-memory API server for the resources the Source uses: list (with
// label selectors and pages), watch (from a resource version, with bookmarks, 410 Gone for
// compacted versions, timeoutSeconds), and merge patches of services/status. It lets tests
// drive the real HTTP client and reflectors, and break them on purpose.
type fakeAPI struct {
	t   *testing.T
	srv *httptest.Server

	mu          sync.Mutex
	rv          int64
	objects     map[string]map[string]map[string]any // resource -> namespace/name -> object
	events      []fakeEvent
	compacted   int64         // watches from a version below this get 410 Gone
	wake        chan struct{} // closed at each new event
	gen         int           // endWatches bumps it: open watches end
	goneGen     bool          // ... with an ERROR 410 event first
	reqs        []fakeRequest
	down        bool // every request fails with 503
	emptyWatch  bool // watches answer 200 and end at once
	openWatches int
}

type fakeEvent struct {
	rv       int64
	resource string // "" for a bookmark: every watch gets it
	typ      string
	obj      map[string]any
}

type fakeRequest struct {
	Method, Path string
	Query        map[string]string
	Header       http.Header
	Body         string
}

func (r fakeRequest) String() string {
	keys := make([]string, 0, len(r.Query))
	for k := range r.Query {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var q []string
	for _, k := range keys {
		q = append(q, k+"="+r.Query[k])
	}
	return r.Method + " " + r.Path + "?" + strings.Join(q, "&")
}

func newFakeAPI(t *testing.T) *fakeAPI {
	f := &fakeAPI{t: t, objects: map[string]map[string]map[string]any{}, wake: make(chan struct{}), rv: 100}
	f.srv = httptest.NewServer(f)
	t.Cleanup(f.close)
	return f
}

func (f *fakeAPI) close() {
	f.endWatches(false)
	f.srv.CloseClientConnections()
	f.srv.Close()
}

// client is a Client of the fake.
func (f *fakeAPI) client() *Client {
	c, err := NewClient(&RESTConfig{Host: f.srv.URL, BearerToken: "t0ken", UserAgent: "lvs-director-test"})
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

// toMap turns one of our objects into the JSON object the fake stores.
func toMap(obj any) map[string]any {
	b, err := json.Marshal(obj)
	if err != nil {
		panic(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		panic(err)
	}
	return m
}

func metaOf(m map[string]any) map[string]any {
	md, _ := m["metadata"].(map[string]any)
	if md == nil {
		md = map[string]any{}
		m["metadata"] = md
	}
	return md
}

func objKey(m map[string]any) string {
	md := metaOf(m)
	ns, _ := md["namespace"].(string)
	name, _ := md["name"].(string)
	if ns == "" {
		return name
	}
	return ns + "/" + name
}

func (f *fakeAPI) notifyLocked(ev fakeEvent) {
	f.events = append(f.events, ev)
	close(f.wake)
	f.wake = make(chan struct{})
}

// put creates or replaces an object (ADDED or MODIFIED).
func (f *fakeAPI) put(resource string, obj any) {
	m := toMap(obj)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rv++
	metaOf(m)["resourceVersion"] = strconv.FormatInt(f.rv, 10)
	if f.objects[resource] == nil {
		f.objects[resource] = map[string]map[string]any{}
	}
	typ := eventModified
	if _, ok := f.objects[resource][objKey(m)]; !ok {
		typ = eventAdded
	}
	f.objects[resource][objKey(m)] = m
	f.notifyLocked(fakeEvent{f.rv, resource, typ, m})
}

// del deletes an object (DELETED).
func (f *fakeAPI) del(resource, key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, ok := f.objects[resource][key]
	if !ok {
		f.t.Fatalf("fake API: no %s %s", resource, key)
	}
	delete(f.objects[resource], key)
	f.rv++
	gone := toMap(m)
	metaOf(gone)["resourceVersion"] = strconv.FormatInt(f.rv, 10)
	f.notifyLocked(fakeEvent{f.rv, resource, eventDeleted, gone})
}

// get returns a stored object.
func (f *fakeAPI) get(resource, key string) map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.objects[resource][key]
}

// bookmark sends every open watch a BOOKMARK at a new resource version.
func (f *fakeAPI) bookmark() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rv++
	f.notifyLocked(fakeEvent{f.rv, "", eventBookmark, map[string]any{"metadata": map[string]any{"resourceVersion": strconv.FormatInt(f.rv, 10)}}})
}

// compactAndEnd moves the resource version on (as changes of other resources do), makes
// every version before it too old to watch from, and ends the open watches: their next
// watch gets 410 Gone.
func (f *fakeAPI) compactAndEnd() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rv++
	f.compacted = f.rv
	f.gen++
	f.goneGen = false
	close(f.wake)
	f.wake = make(chan struct{})
}

// endWatches ends the open watches, with an ERROR 410 event first when gone.
func (f *fakeAPI) endWatches(gone bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gen++
	f.goneGen = gone
	close(f.wake)
	f.wake = make(chan struct{})
}

func (f *fakeAPI) setDown(down bool) {
	f.mu.Lock()
	f.down = down
	f.mu.Unlock()
	if down {
		f.endWatches(false)
	}
}

func (f *fakeAPI) setEmptyWatch(v bool) {
	f.mu.Lock()
	f.emptyWatch = v
	f.mu.Unlock()
}

func (f *fakeAPI) requests() []fakeRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeRequest(nil), f.reqs...)
}

func (f *fakeAPI) watchCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.openWatches
}

func writeStatus(w http.ResponseWriter, code int, reason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "message": msg, "code": code})
}

// route parses /api/v1/[namespaces/NS/]RESOURCE[/NAME[/status]] and the discovery group's.
func route(path string) (resource, ns, name, sub string, ok bool) {
	var rest string
	switch {
	case strings.HasPrefix(path, "/api/v1/"):
		rest = strings.TrimPrefix(path, "/api/v1/")
	case strings.HasPrefix(path, "/apis/discovery.k8s.io/v1/"):
		rest = strings.TrimPrefix(path, "/apis/discovery.k8s.io/v1/")
	default:
		return "", "", "", "", false
	}
	parts := strings.Split(rest, "/")
	if len(parts) >= 2 && parts[0] == "namespaces" {
		ns, parts = parts[1], parts[2:]
	}
	switch len(parts) {
	case 1:
		return parts[0], ns, "", "", true
	case 3:
		return parts[0], ns, parts[1], parts[2], true
	}
	return "", "", "", "", false
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	q := map[string]string{}
	for k, v := range r.URL.Query() {
		q[k] = strings.Join(v, ",")
	}
	f.mu.Lock()
	f.reqs = append(f.reqs, fakeRequest{r.Method, r.URL.Path, q, r.Header.Clone(), string(body)})
	down, emptyWatch := f.down, f.emptyWatch
	f.mu.Unlock()
	if down {
		writeStatus(w, http.StatusServiceUnavailable, "ServiceUnavailable", "the fake API server is down")
		return
	}
	if r.Header.Get("Authorization") != "Bearer t0ken" {
		writeStatus(w, http.StatusUnauthorized, "Unauthorized", "Unauthorized")
		return
	}
	resource, ns, name, sub, ok := route(r.URL.Path)
	if !ok {
		writeStatus(w, http.StatusNotFound, "NotFound", "the server could not find the requested resource")
		return
	}
	if ns == "forbidden" {
		writeStatus(w, http.StatusForbidden, "Forbidden", resource+` is forbidden: User "x" cannot list resource "`+resource+`" in namespace "forbidden"`)
		return
	}
	sel, err := labels.Parse(r.URL.Query().Get("labelSelector"))
	if err != nil {
		writeStatus(w, http.StatusBadRequest, "BadRequest", err.Error())
		return
	}
	switch {
	case r.Method == http.MethodPatch && resource == "services" && sub == "status":
		f.patchStatus(w, r, ns, name, body)
	case r.Method != http.MethodGet || name != "":
		writeStatus(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "not supported by the fake")
	case r.URL.Query().Get("watch") == "true":
		if emptyWatch {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			return
		}
		f.serveWatch(w, r, resource, ns, sel)
	default:
		f.serveList(w, r, resource, ns, sel)
	}
}

func matches(m map[string]any, resource, ns string, sel labels.Selector) bool {
	md := metaOf(m)
	if ns != "" && md["namespace"] != ns {
		return false
	}
	set := labels.Set{}
	if l, ok := md["labels"].(map[string]any); ok {
		for k, v := range l {
			set[k], _ = v.(string)
		}
	}
	return sel.Matches(set)
}

func (f *fakeAPI) serveList(w http.ResponseWriter, r *http.Request, resource, ns string, sel labels.Selector) {
	f.mu.Lock()
	var keys []string
	for k, m := range f.objects[resource] {
		if matches(m, resource, ns, sel) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	items := make([]map[string]any, 0, len(keys))
	for _, k := range keys {
		items = append(items, f.objects[resource][k])
	}
	rv := f.rv
	f.mu.Unlock()
	start, _ := strconv.Atoi(r.URL.Query().Get("continue"))
	limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
	meta := map[string]any{"resourceVersion": strconv.FormatInt(rv, 10)}
	items = items[min(start, len(items)):]
	if limit > 0 && len(items) > limit {
		items = items[:limit]
		meta["continue"] = strconv.Itoa(start + limit)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"kind": "List", "apiVersion": "v1", "metadata": meta, "items": items})
}

func (f *fakeAPI) serveWatch(w http.ResponseWriter, r *http.Request, resource, ns string, sel labels.Selector) {
	from, _ := strconv.ParseInt(r.URL.Query().Get("resourceVersion"), 10, 64)
	timeout := time.Hour
	if s, err := strconv.Atoi(r.URL.Query().Get("timeoutSeconds")); err == nil && s > 0 {
		timeout = time.Duration(s) * time.Second
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	fl := w.(http.Flusher)
	fl.Flush()
	enc := json.NewEncoder(w)
	send := func(typ string, obj any) bool {
		if err := enc.Encode(map[string]any{"type": typ, "object": obj}); err != nil {
			return false
		}
		fl.Flush()
		return true
	}

	f.mu.Lock()
	f.openWatches++
	gen := f.gen
	compactedAt := f.compacted
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.openWatches--
		f.mu.Unlock()
	}()
	if from < compactedAt {
		send(eventError, map[string]any{"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Expired",
			"message": fmt.Sprintf("too old resource version: %d (%d)", from, compactedAt), "code": 410})
		return
	}
	next := from
	for {
		f.mu.Lock()
		var pending []fakeEvent
		for _, ev := range f.events {
			if ev.rv > next && (ev.resource == "" || ev.resource == resource && matches(ev.obj, resource, ns, sel)) {
				pending = append(pending, ev)
			}
		}
		wake, ended, gone := f.wake, f.gen != gen, f.goneGen
		f.mu.Unlock()
		for _, ev := range pending {
			if !send(ev.typ, ev.obj) {
				return
			}
			next = ev.rv
		}
		if ended {
			if gone {
				send(eventError, map[string]any{"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Expired",
					"message": "too old resource version", "code": 410})
			}
			return
		}
		select {
		case <-wake:
		case <-deadline.C:
			return
		case <-r.Context().Done():
			return
		}
	}
}

// patchStatus applies a JSON merge patch (RFC 7386) to a Service's status.
func (f *fakeAPI) patchStatus(w http.ResponseWriter, r *http.Request, ns, name string, body []byte) {
	if ct := r.Header.Get("Content-Type"); ct != "application/merge-patch+json" {
		writeStatus(w, http.StatusUnsupportedMediaType, "UnsupportedMediaType", "content type "+ct)
		return
	}
	var patch map[string]any
	if err := json.Unmarshal(body, &patch); err != nil {
		writeStatus(w, http.StatusBadRequest, "BadRequest", err.Error())
		return
	}
	f.mu.Lock()
	cur, ok := f.objects["services"][ns+"/"+name]
	if !ok {
		f.mu.Unlock()
		writeStatus(w, http.StatusNotFound, "NotFound", fmt.Sprintf(`services %q not found`, name))
		return
	}
	next := toMap(cur)
	// Only the status subresource: anything else of the patch is ignored, as by the API.
	if st, ok := patch["status"]; ok {
		next["status"] = mergePatch(next["status"], st)
	}
	f.rv++
	metaOf(next)["resourceVersion"] = strconv.FormatInt(f.rv, 10)
	f.objects["services"][ns+"/"+name] = next
	f.notifyLocked(fakeEvent{f.rv, "services", eventModified, next})
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(next)
}

func mergePatch(target, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	t, ok := target.(map[string]any)
	if !ok {
		t = map[string]any{}
	}
	for k, v := range p {
		if v == nil {
			delete(t, k)
		} else {
			t[k] = mergePatch(t[k], v)
		}
	}
	return t
}
