package kubernetes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// A reflector keeps the objects of one resource (in one namespace, or all) up to date: it
// lists them, then watches from the list's resource version, resuming each watch where the
// last one ended, and lists again when the API server says that version is gone (410) or
// after a failure. It is the part of client-go's informer the Source used (a store and its
// events), without the machinery: the Source only needs the current objects and a signal
// when they change.

// Timings of the reflector. The watch timeout is random so that the watches of many
// directors (and of one director's resources) do not all end at once; client-go does the
// same with the same bounds.
const (
	minWatchTimeout = 5 * time.Minute
	// watchGrace: a watch gets this long past its timeoutSeconds before we give up on it
	// ourselves (a silent connection the API server no longer serves).
	watchGrace = 30 * time.Second
	// listTimeout bounds one page of a list.
	listTimeout = 2 * time.Minute
	// listPageSize: lists are read in pages, as client-go's reflector does, so the API
	// server does not build one huge answer for a big cluster.
	listPageSize = 500

	backoffInitial = time.Second
	backoffMax     = 30 * time.Second
)

// errEmptyWatch is recorded when a watch ends within emptyWatchWindow without any event.
var errEmptyWatch = errors.New("watch ended at once without any event (API server unreachable behind a proxy?)")

// emptyWatchWindow: a watch that ends this soon without an event is counted as a failure. The
// API server keeps a healthy watch open for minutes; a proxy in front of a dead API server
// accepts and closes at once.
const emptyWatchWindow = 2 * time.Second

// object is what the reflector needs of an API object: its metadata (the types of types.go
// embed ObjectMeta).
type object interface{ objectMeta() *ObjectMeta }

// reflectorHooks is how a reflector reports to the Source.
type reflectorHooks struct {
	alive   func()      // a successful list, an event or a bookmark: a sign of life
	failure func(error) // a failed list or watch (not called once the context ended)
	changed func()      // the objects changed
}

// reflector lists and watches one resource into a map. T is one of the types of types.go.
type reflector[T any, PT interface {
	*T
	object
}] struct {
	log      *slog.Logger
	client   *Client
	res      resource
	ns       string // "": all namespaces (or cluster-scoped)
	selector string // labelSelector of the lists and watches
	// trim drops what the Source does not read from a new object before it is kept (big
	// annotations such as kubectl's last-applied-configuration); nil keeps all.
	trim  func(PT)
	hooks reflectorHooks

	// Timings, changed by tests.
	watchTimeout func() time.Duration
	emptyWindow  time.Duration // see emptyWatchWindow
	pageSize     int
	backoff      backoff

	mu     sync.Mutex
	items  map[string]PT // by namespace/name; the objects are never modified once stored
	rv     string        // resource version to watch from
	synced bool          // listed once
}

func newReflector[T any, PT interface {
	*T
	object
}](log *slog.Logger, client *Client, res resource, ns, selector string, trim func(PT), hooks reflectorHooks) *reflector[T, PT] {
	return &reflector[T, PT]{
		log:      log.With("resource", res.name, "namespace", ns),
		client:   client,
		res:      res,
		ns:       ns,
		selector: selector,
		trim:     trim,
		hooks:    hooks,
		watchTimeout: func() time.Duration {
			return minWatchTimeout + rand.N(minWatchTimeout)
		},
		emptyWindow: emptyWatchWindow,
		pageSize:    listPageSize,
		backoff:     backoff{initial: backoffInitial, max: backoffMax},
		items:       map[string]PT{},
	}
}

// what names the reflector's resource in errors.
func (r *reflector[T, PT]) what() string {
	if r.ns == "" {
		return r.res.name
	}
	return r.res.name + " in namespace " + r.ns
}

// hasSynced tells whether the first list completed.
func (r *reflector[T, PT]) hasSynced() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.synced
}

// list returns the current objects, in no particular order. They must not be modified.
func (r *reflector[T, PT]) list() []PT {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]PT, 0, len(r.items))
	for _, o := range r.items {
		out = append(out, o)
	}
	return out
}

func key(m *ObjectMeta) string {
	if m.Namespace == "" {
		return m.Name
	}
	return m.Namespace + "/" + m.Name
}

// run lists and watches until ctx ends. After a failure, it waits (exponential back-off up
// to backoffMax, with jitter) and lists again; meanwhile the last known objects stay.
func (r *reflector[T, PT]) run(ctx context.Context) {
	for ctx.Err() == nil {
		err := r.relist(ctx)
		if err == nil {
			err = r.watchLoop(ctx)
		}
		if ctx.Err() != nil {
			return
		}
		if isGone(err) && !r.backoff.active() {
			// The version we watched from is compacted away: list again at once, as
			// client-go does. Only repeated ones without a healthy watch in between wait.
			r.log.Debug("kubernetes resource version too old; listing again", "err", err)
			r.backoff.next()
			continue
		}
		if !isGone(err) {
			r.hooks.failure(err)
		}
		t := time.NewTimer(r.backoff.next())
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// relist replaces the objects with a complete list, read in pages.
func (r *reflector[T, PT]) relist(ctx context.Context) error {
	items := map[string]PT{}
	var rv, cont string
	for {
		lctx, cancel := context.WithTimeout(ctx, listTimeout)
		page, err := listOnce[T](lctx, r.client, r.res, r.ns, listOptions{labelSelector: r.selector, limit: r.pageSize, continueToken: cont})
		cancel()
		if err != nil {
			return fmt.Errorf("list %s: %w", r.what(), err)
		}
		if rv == "" {
			// Every page answers from the first one's snapshot.
			rv = page.Metadata.ResourceVersion
		}
		for i := range page.Items {
			o := PT(&page.Items[i])
			if r.trim != nil {
				r.trim(o)
			}
			items[key(o.objectMeta())] = o
		}
		if cont = page.Metadata.Continue; cont == "" {
			break
		}
	}
	r.mu.Lock()
	r.items, r.rv, r.synced = items, rv, true
	r.mu.Unlock()
	r.hooks.alive()
	r.hooks.changed()
	return nil
}

// watchLoop watches from the current resource version, again and again as each watch ends,
// until an error that needs a new list (returned).
func (r *reflector[T, PT]) watchLoop(ctx context.Context) error {
	for {
		r.mu.Lock()
		rv := r.rv
		r.mu.Unlock()
		timeout := r.watchTimeout()
		wctx, cancel := context.WithTimeout(ctx, timeout+watchGrace)
		opened := time.Now()
		w, err := r.client.watch(wctx, r.res, r.ns, listOptions{labelSelector: r.selector, resourceVersion: rv, timeoutSeconds: int(timeout / time.Second)})
		if err != nil {
			cancel()
			return fmt.Errorf("watch %s: %w", r.what(), err)
		}
		events, err := r.consume(w)
		w.close()
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		early := events == 0 && time.Since(opened) < r.emptyWindow
		if !early {
			r.backoff.reset()
		}
		switch {
		case err == nil && early:
			return fmt.Errorf("watch %s: %w", r.what(), errEmptyWatch)
		case err == nil:
			// The API server ended the watch at its timeout: watch again from where it ended.
		case isGone(err):
			return fmt.Errorf("watch %s: %w", r.what(), err)
		case early:
			return fmt.Errorf("watch %s ended at once without any event: %w", r.what(), err)
		default:
			var ae *APIError
			if errors.As(err, &ae) {
				return fmt.Errorf("watch %s: %w", r.what(), err)
			}
			// The stream broke (connection reset, a restarting API server): watch again
			// from the last version; if the server is gone, that fails and counts.
			r.log.Debug("kubernetes watch stream ended", "err", err)
		}
	}
}

// consume applies the events of a watch until it ends. It returns how many events (and
// bookmarks) it saw, and nil when the server ended the watch normally.
func (r *reflector[T, PT]) consume(w *watchStream) (int, error) {
	n := 0
	for {
		ev, err := w.next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return n, nil
			}
			return n, err
		}
		switch ev.Type {
		case eventAdded, eventModified, eventDeleted:
			o := PT(new(T))
			if err := json.Unmarshal(ev.Object, o); err != nil {
				return n, fmt.Errorf("decoding a %s event: %w", ev.Type, err)
			}
			r.apply(ev.Type, o)
			r.hooks.alive()
			r.hooks.changed()
		case eventBookmark:
			// Only the resource version counts; the object is otherwise empty.
			var b struct {
				Metadata struct {
					ResourceVersion string `json:"resourceVersion"`
				} `json:"metadata"`
			}
			if err := json.Unmarshal(ev.Object, &b); err != nil {
				return n, fmt.Errorf("decoding a bookmark: %w", err)
			}
			if b.Metadata.ResourceVersion != "" {
				r.mu.Lock()
				r.rv = b.Metadata.ResourceVersion
				r.mu.Unlock()
			}
			r.hooks.alive()
		case eventError:
			var st status
			if err := json.Unmarshal(ev.Object, &st); err != nil {
				return n, fmt.Errorf("decoding an error event: %w", err)
			}
			return n, &APIError{Code: st.Code, Reason: st.Reason, Message: st.Message}
		default:
			return n, fmt.Errorf("unknown watch event type %q", ev.Type)
		}
		n++
	}
}

// apply stores or removes the object of an event and notes its version.
func (r *reflector[T, PT]) apply(typ string, o PT) {
	m := o.objectMeta()
	k := key(m)
	r.mu.Lock()
	defer r.mu.Unlock()
	if typ == eventDeleted {
		delete(r.items, k)
	} else {
		if r.trim != nil {
			r.trim(o)
		}
		r.items[k] = o
	}
	if m.ResourceVersion != "" {
		r.rv = m.ResourceVersion
	}
}

// backoff is an exponential back-off with jitter. Not safe for concurrent use: each
// reflector has its own.
type backoff struct {
	initial, max time.Duration
	cur          time.Duration // 0: reset
}

// next returns the next wait: initial, doubling up to max, each plus up to 50% jitter so that
// many directors do not retry in step.
func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.initial
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	return b.cur + rand.N(b.cur/2+1)
}

// active tells whether a back-off is running (next was called since the last reset).
func (b *backoff) active() bool { return b.cur != 0 }

func (b *backoff) reset() { b.cur = 0 }
