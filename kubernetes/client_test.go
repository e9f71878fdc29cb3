package kubernetes

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
)

// The status patch, applied as a JSON merge patch by client-go's object tracker, sets the
// ingress to the VIP alone and keeps the rest of the Service (its spec, the status's
// conditions): what a PUT of our partial type would have dropped.
func TestStatusPatchAppliedByAPIMachinery(t *testing.T) {
	cond := metav1.Condition{Type: "Ready", Status: metav1.ConditionTrue, Reason: "R", LastTransitionTime: metav1.Now()}
	orig := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "front"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": "front"}},
		Status: corev1.ServiceStatus{Conditions: []metav1.Condition{cond},
			LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "192.0.2.1"}, {Hostname: "old.example"}}}}}
	cs := fake.NewClientset(orig)
	got, err := cs.CoreV1().Services("web").Patch(context.Background(), "front", types.MergePatchType, statusPatch("198.51.100.7"),
		metav1.PatchOptions{FieldManager: fieldManager}, "status")
	if err != nil {
		t.Fatal(err)
	}
	if want := []corev1.LoadBalancerIngress{{IP: "198.51.100.7"}}; !reflect.DeepEqual(got.Status.LoadBalancer.Ingress, want) {
		t.Errorf("ingress = %+v", got.Status.LoadBalancer.Ingress)
	}
	if !reflect.DeepEqual(got.Spec, orig.Spec) || len(got.Status.Conditions) != 1 {
		t.Errorf("patch changed more than the ingress: %+v", got)
	}
	if string(statusPatch("2001:db8::1")) != `{"status":{"loadBalancer":{"ingress":[{"ip":"2001:db8::1"}]}}}` {
		t.Errorf("patch = %s", statusPatch("2001:db8::1"))
	}
}

// The client's requests, one by one, and its errors.
func TestClientRequestsAndErrors(t *testing.T) {
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r.Method+" "+r.URL.String()+" accept="+r.Header.Get("Accept")+" ct="+r.Header.Get("Content-Type")+" ua="+r.Header.Get("User-Agent"))
		switch {
		case strings.Contains(r.URL.Path, "/teapot/"):
			w.WriteHeader(http.StatusTeapot)
			w.Write([]byte("<html>no</html>"))
		case strings.Contains(r.URL.Path, "/empty/"):
			w.WriteHeader(http.StatusBadGateway)
		case strings.Contains(r.URL.Path, "/gone/"):
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusGone)
			w.Write([]byte(`{"kind":"Status","status":"Failure","message":"too old resource version: 1 (5)","reason":"Expired","code":410}`))
		case r.URL.Query().Get("watch") == "true":
			w.Write([]byte(`{"type":"ADDED","object":{"metadata":{"name":"a","namespace":"web","resourceVersion":"8"}}}` + "\n" +
				`{"type":"BOOKMARK","object":{"kind":"Service","metadata":{"resourceVersion":"9"}}}`))
		case r.Method == http.MethodPatch:
			w.Write([]byte(`{}`))
		default:
			w.Write([]byte(`{"kind":"ServiceList","metadata":{"resourceVersion":"7","continue":"c2"},"items":[{"metadata":{"name":"a","namespace":"web"},"spec":{"type":"LoadBalancer"}}]}`))
		}
	}))
	defer srv.Close()
	c, err := NewClient(&RESTConfig{Host: srv.URL + "/prefix/"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	page, err := listOnce[Service](ctx, c, resServices, "web", listOptions{labelSelector: "a in (b,c)", limit: 500, continueToken: "c1"})
	if err != nil || page.Metadata.ResourceVersion != "7" || page.Metadata.Continue != "c2" || len(page.Items) != 1 || page.Items[0].Spec.Type != "LoadBalancer" {
		t.Errorf("list: %+v %v", page, err)
	}
	w, err := c.watch(ctx, resEndpointSlices, "", listOptions{labelSelector: LabelServiceName, resourceVersion: "7", timeoutSeconds: 300})
	if err != nil {
		t.Fatal(err)
	}
	var events []string
	for {
		ev, err := w.next()
		if err != nil {
			break
		}
		events = append(events, ev.Type+" "+string(ev.Object))
	}
	w.close()
	if len(events) != 2 || !strings.HasPrefix(events[1], "BOOKMARK ") {
		t.Errorf("events: %q", events)
	}
	if err := c.patchServiceStatus(ctx, "web", "front", "198.51.100.1"); err != nil {
		t.Error(err)
	}
	want := []string{
		"GET /prefix/api/v1/namespaces/web/services?continue=c1&labelSelector=a+in+%28b%2Cc%29&limit=500 accept=application/json ct= ua=lvs-director",
		"GET /prefix/apis/discovery.k8s.io/v1/endpointslices?allowWatchBookmarks=true&labelSelector=kubernetes.io%2Fservice-name&resourceVersion=7&timeoutSeconds=300&watch=true accept=application/json ct= ua=lvs-director",
		"PATCH /prefix/api/v1/namespaces/web/services/front/status?fieldManager=lvs-director accept=application/json ct=application/merge-patch+json ua=lvs-director",
	}
	if !reflect.DeepEqual(seen, want) {
		t.Errorf("requests:\n got %q\nwant %q", seen, want)
	}

	for _, tt := range []struct {
		ns, want string
		code     int
		gone     bool
	}{
		{"teapot", "the server answered HTTP 418 I'm a teapot: <html>no</html>", 418, false},
		{"empty", "the server answered HTTP 502 Bad Gateway", 502, false},
		{"gone", "too old resource version: 1 (5)", 410, true},
	} {
		_, err := listOnce[Service](ctx, c, resServices, tt.ns, listOptions{})
		var ae *APIError
		if !errors.As(err, &ae) || ae.Code != tt.code || err.Error() != tt.want || isGone(err) != tt.gone {
			t.Errorf("%s: %v (%+v)", tt.ns, err, ae)
		}
	}

	for _, host := range []string{"ftp://x", "https://", "::"} {
		if _, err := NewClient(&RESTConfig{Host: host}); err == nil {
			t.Errorf("NewClient(%q): no error", host)
		}
	}
}
