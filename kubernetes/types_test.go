package kubernetes

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// roundTrip decodes the JSON of in into out.
func roundTrip(t *testing.T, in, out any) {
	t.Helper()
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
}

// Our types read the JSON of k8s.io/api's: objects with only the fields we model go
// k8s.io/api -> ours -> k8s.io/api unchanged, so no JSON name is wrong; fields we do not
// model are ignored.
func TestTypesMatchKubernetesAPI(t *testing.T) {
	class, proto, name, port, nodeName := "example.com/lvs", corev1.ProtocolUDP, "dns", int32(1053), "n1"
	del := metav1.NewTime(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	meta := metav1.ObjectMeta{Name: "a", Namespace: "b", UID: "u-1", ResourceVersion: "42",
		Labels: map[string]string{"l": "1"}, Annotations: map[string]string{"a": "2"}}
	svc := &corev1.Service{ObjectMeta: meta, Spec: corev1.ServiceSpec{
		Type:                  corev1.ServiceTypeLoadBalancer,
		Ports:                 []corev1.ServicePort{{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53, NodePort: 30053}, {Port: 80}},
		LoadBalancerIP:        "198.51.100.1",
		LoadBalancerClass:     &class,
		ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
	}, Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "198.51.100.1"}, {Hostname: "lb.example"}}}}}
	es := &discoveryv1.EndpointSlice{ObjectMeta: meta, AddressType: discoveryv1.AddressTypeIPv6,
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"fd00::1"}, NodeName: &nodeName,
			Conditions: discoveryv1.EndpointConditions{Ready: bp(true), Serving: bp(false), Terminating: bp(true)}}},
		Ports: []discoveryv1.EndpointPort{{Name: &name, Protocol: &proto, Port: &port}}}
	n := &corev1.Node{ObjectMeta: meta, Status: corev1.NodeStatus{
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
		Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0.1"}},
	}}
	n.DeletionTimestamp = &del

	for _, c := range []struct {
		in             any
		ours, out, ref any
	}{
		{svc, &Service{}, &corev1.Service{}, &corev1.Service{}},
		{es, &EndpointSlice{}, &discoveryv1.EndpointSlice{}, &discoveryv1.EndpointSlice{}},
		{n, &Node{}, &corev1.Node{}, &corev1.Node{}},
	} {
		roundTrip(t, c.in, c.ref) // through JSON alone (times come back in the local zone)
		roundTrip(t, c.in, c.ours)
		roundTrip(t, c.ours, c.out)
		if !reflect.DeepEqual(c.out, c.ref) {
			t.Errorf("%T through ours:\n got %+v\nwant %+v", c.in, c.out, c.ref)
		}
	}
	var ours Node
	roundTrip(t, n, &ours)
	if ours.DeletionTimestamp == nil || *ours.DeletionTimestamp != "2030-01-02T03:04:05Z" || ours.UID != "u-1" {
		t.Errorf("node metadata: %+v", ours.ObjectMeta)
	}

	// Fields we do not model are skipped.
	full := svc.DeepCopy()
	full.Spec.Selector = map[string]string{"app": "x"}
	full.Spec.ClusterIPs = []string{"10.96.0.1"}
	full.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	var got Service
	roundTrip(t, full, &got)
	var want Service
	roundTrip(t, svc, &want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("extra fields changed the decoding: %+v", got)
	}
}
