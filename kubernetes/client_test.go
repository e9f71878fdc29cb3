package kubernetes

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubeclient "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
)

// clientsetClient adapts client-go's clientset (real or fake) to Client: the tests' way to
// drive the Source with fake.NewClientset, and the reference the REST client is compared to.
type clientsetClient struct{ cs kubeclient.Interface }

func (c clientsetClient) Services(ns string) ServiceClient { return c.cs.CoreV1().Services(ns) }
func (c clientsetClient) EndpointSlices(ns string) EndpointSliceClient {
	return c.cs.DiscoveryV1().EndpointSlices(ns)
}
func (c clientsetClient) Nodes() NodeClient { return c.cs.CoreV1().Nodes() }

// fakeClientWithWatchList is a fake clientset's Client. It keeps the fake's answer to the
// reflector's question whether the client supports watch-list (the fake does not).
type fakeClientWithWatchList struct {
	clientsetClient
	fake *fake.Clientset
}

func (f fakeClientWithWatchList) IsWatchListSemanticsUnSupported() bool {
	return f.fake.IsWatchListSemanticsUnSupported()
}

func fakeClient(cs *fake.Clientset) Client {
	return fakeClientWithWatchList{clientsetClient{cs}, cs}
}

// apiRequest is what the fake API server saw of a request.
type apiRequest struct {
	Method, URL, Accept, ContentType, UserAgent string
	Body                                        []byte
}

// fakeAPI answers the few requests the Source makes, in JSON, and records them.
type fakeAPI struct {
	mu   sync.Mutex
	reqs []apiRequest
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.reqs = append(f.reqs, apiRequest{r.Method, r.URL.String(), r.Header.Get("Accept"), r.Header.Get("Content-Type"), r.Header.Get("User-Agent"), body})
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	write := func(code int, v any) {
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(v)
	}
	tm := func(kind, apiVersion string) metav1.TypeMeta {
		return metav1.TypeMeta{Kind: kind, APIVersion: apiVersion}
	}
	svc := corev1.Service{TypeMeta: tm("Service", "v1"), ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "front", ResourceVersion: "7"}}
	p := r.URL.Path
	switch {
	case strings.Contains(p, "/forbidden/"):
		write(http.StatusForbidden, metav1.Status{TypeMeta: tm("Status", "v1"), Status: metav1.StatusFailure,
			Reason: metav1.StatusReasonForbidden, Code: http.StatusForbidden, Message: "services is forbidden: no"})
	case r.URL.Query().Get("watch") == "true":
		w.WriteHeader(http.StatusOK)
		obj := any(corev1.Node{TypeMeta: tm("Node", "v1"), ObjectMeta: metav1.ObjectMeta{Name: "n1", ResourceVersion: "8"}})
		if strings.HasSuffix(p, "/services") {
			obj = svc
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"type": "ADDED", "object": obj})
	case r.Method == http.MethodPut:
		svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.51.100.1"}}
		write(http.StatusOK, svc)
	case strings.HasSuffix(p, "/services"):
		write(http.StatusOK, corev1.ServiceList{TypeMeta: tm("ServiceList", "v1"), ListMeta: metav1.ListMeta{ResourceVersion: "9"}, Items: []corev1.Service{svc}})
	case strings.HasSuffix(p, "/endpointslices"):
		write(http.StatusOK, discoveryv1.EndpointSliceList{TypeMeta: tm("EndpointSliceList", "discovery.k8s.io/v1"),
			Items: []discoveryv1.EndpointSlice{{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "front-a"}, AddressType: discoveryv1.AddressTypeIPv4}}})
	case strings.HasSuffix(p, "/nodes"):
		write(http.StatusOK, corev1.NodeList{TypeMeta: tm("NodeList", "v1"), Items: []corev1.Node{{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}}})
	default:
		http.NotFound(w, r)
	}
}

// exercise makes every call the Source makes and returns what came back, as text.
func exercise(t *testing.T, c Client) []string {
	t.Helper()
	ctx := context.Background()
	var out []string
	note := func(format string, a ...any) { out = append(out, fmt.Sprintf(format, a...)) }
	timeout := int64(30)
	opts := metav1.ListOptions{LabelSelector: "tier=front", ResourceVersion: "5", TimeoutSeconds: &timeout, AllowWatchBookmarks: true}

	svcs, err := c.Services("web").List(ctx, opts)
	note("services list: %v %v", err, svcs)
	eps, err := c.EndpointSlices("").List(ctx, metav1.ListOptions{LabelSelector: LabelServiceName})
	note("endpointslices list: %v %v", err, eps)
	nodes, err := c.Nodes().List(ctx, metav1.ListOptions{})
	note("nodes list: %v %v", err, nodes)
	sw, err := c.Services("web").Watch(ctx, opts)
	if err != nil {
		t.Fatalf("services watch: %v", err)
	}
	for ev := range sw.ResultChan() {
		note("services watch: %s %T %v", ev.Type, ev.Object, ev.Object)
	}
	nw, err := c.Nodes().Watch(ctx, metav1.ListOptions{ResourceVersion: "8"})
	if err != nil {
		t.Fatalf("nodes watch: %v", err)
	}
	for ev := range nw.ResultChan() {
		note("nodes watch: %s %T %v", ev.Type, ev.Object, ev.Object)
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "front", ResourceVersion: "7"}}
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.51.100.1"}}
	got, err := c.Services("web").UpdateStatus(ctx, svc, metav1.UpdateOptions{FieldManager: "lvs-director"})
	note("update status: %v %v", err, got)
	_, err = c.Services("forbidden").List(ctx, metav1.ListOptions{})
	note("forbidden: %v %v %T", err, apierrors.IsForbidden(err), err)
	return out
}

// The REST client sends the very requests client-go's clientset sends (paths, query, content
// negotiation, user agent, bodies) and decodes the answers and errors the same way.
func TestClientMatchesClientset(t *testing.T) {
	run := func(newClient func(*rest.Config) (Client, error)) ([]string, []apiRequest) {
		api := &fakeAPI{}
		srv := httptest.NewServer(api)
		defer srv.Close()
		c, err := newClient(&rest.Config{Host: srv.URL})
		if err != nil {
			t.Fatal(err)
		}
		results := exercise(t, c)
		api.mu.Lock()
		defer api.mu.Unlock()
		return results, api.reqs
	}
	wantResults, wantReqs := run(func(rc *rest.Config) (Client, error) {
		cs, err := kubeclient.NewForConfig(rc)
		return clientsetClient{cs}, err
	})
	gotResults, gotReqs := run(NewClient)
	if len(wantReqs) != 7 {
		t.Fatalf("the clientset made %d requests, want 7: %+v", len(wantReqs), wantReqs)
	}
	if !reflect.DeepEqual(gotReqs, wantReqs) {
		for i := range max(len(gotReqs), len(wantReqs)) {
			var g, w apiRequest
			if i < len(gotReqs) {
				g = gotReqs[i]
			}
			if i < len(wantReqs) {
				w = wantReqs[i]
			}
			if !reflect.DeepEqual(g, w) {
				t.Errorf("request %d:\n got %+v\nwant %+v", i, g, w)
			}
		}
	}
	if !reflect.DeepEqual(gotResults, wantResults) {
		t.Errorf("results:\n got %q\nwant %q", gotResults, wantResults)
	}
	for _, want := range []string{
		"GET /api/v1/namespaces/web/services?allowWatchBookmarks=true&labelSelector=tier%3Dfront&resourceVersion=5&timeout=30s&timeoutSeconds=30",
		"GET /apis/discovery.k8s.io/v1/endpointslices?labelSelector=kubernetes.io%2Fservice-name",
		"PUT /api/v1/namespaces/web/services/front/status?fieldManager=lvs-director",
	} {
		found := false
		for _, r := range gotReqs {
			found = found || r.Method+" "+r.URL == want
		}
		if !found {
			t.Errorf("no request %s in %+v", want, gotReqs)
		}
	}
	for _, r := range gotReqs {
		if r.Accept != "application/vnd.kubernetes.protobuf,application/json" {
			t.Errorf("%s %s: Accept %q, want protobuf preferred", r.Method, r.URL, r.Accept)
		}
	}
	t.Logf("%d requests, bodies and decoded answers identical to the clientset's", len(gotReqs))
}

// The client's rate limiting follows the config as the clientset's does.
func TestNewClientBurstRequired(t *testing.T) {
	_, errCS := kubeclient.NewForConfig(&rest.Config{Host: "https://127.0.0.1:1", QPS: 5})
	_, err := NewClient(&rest.Config{Host: "https://127.0.0.1:1", QPS: 5})
	if err == nil || errCS == nil || err.Error() != errCS.Error() {
		t.Errorf("QPS without burst: %v, clientset: %v", err, errCS)
	}
	if _, err := NewClient(&rest.Config{Host: "https://127.0.0.1:1", QPS: 5, Burst: 10}); err != nil {
		t.Error(err)
	}
}
