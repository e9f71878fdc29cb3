package kubernetes

// The few Kubernetes API objects the Source reads, as JSON types of our own: only the fields
// Translate and the Source use. k8s.io/api's types carry every field of every object and
// their registration (with k8s.io/apimachinery, klog and friends) cost ~5 MB of resident
// memory and 5-10 ms of package initialisation for every command of the binary, Kubernetes or
// not. Unknown fields of the JSON are ignored by encoding/json, so objects of
// newer API servers decode fine. The JSON names are those of core/v1 and discovery.k8s.io/v1
// (types_test.go checks them against k8s.io/api).

// Values of the API the translation compares with.
const (
	// LabelServiceName names the Service an EndpointSlice belongs to.
	LabelServiceName = "kubernetes.io/service-name"
	// LabelExcludeFromLB excludes a node from external load balancers (targets: nodes).
	LabelExcludeFromLB = "node.kubernetes.io/exclude-from-external-load-balancers"

	ServiceTypeLoadBalancer           = "LoadBalancer"
	ServiceExternalTrafficPolicyLocal = "Local"

	ProtocolTCP  = "TCP"
	ProtocolUDP  = "UDP"
	ProtocolSCTP = "SCTP"

	AddressTypeIPv4 = "IPv4"
	AddressTypeIPv6 = "IPv6"

	NodeReady      = "Ready"
	NodeInternalIP = "InternalIP"
	ConditionTrue  = "True"
)

// ObjectMeta is the part of metadata the Source uses.
type ObjectMeta struct {
	Name            string            `json:"name,omitempty"`
	Namespace       string            `json:"namespace,omitempty"`
	UID             string            `json:"uid,omitempty"`
	ResourceVersion string            `json:"resourceVersion,omitempty"`
	Labels          map[string]string `json:"labels,omitempty"`
	Annotations     map[string]string `json:"annotations,omitempty"`
	// DeletionTimestamp is only tested for presence (a node being deleted), so it is kept as
	// the API's text.
	DeletionTimestamp *string `json:"deletionTimestamp,omitempty"`
}

// objectMeta gives the reflector the metadata of any of the types below (they embed
// ObjectMeta, which promotes this method).
func (m *ObjectMeta) objectMeta() *ObjectMeta { return m }

// Service is a core/v1 Service.
type Service struct {
	ObjectMeta `json:"metadata"`
	Spec       ServiceSpec   `json:"spec"`
	Status     ServiceStatus `json:"status"`
}

// ServiceSpec is the part of a Service's spec the translation reads.
type ServiceSpec struct {
	Type                  string        `json:"type,omitempty"`
	Ports                 []ServicePort `json:"ports,omitempty"`
	LoadBalancerIP        string        `json:"loadBalancerIP,omitempty"`
	LoadBalancerClass     *string       `json:"loadBalancerClass,omitempty"`
	ExternalTrafficPolicy string        `json:"externalTrafficPolicy,omitempty"`
}

// ServicePort is one port of a Service.
type ServicePort struct {
	Name     string `json:"name,omitempty"`
	Protocol string `json:"protocol,omitempty"`
	Port     int32  `json:"port"`
	NodePort int32  `json:"nodePort,omitempty"`
}

// ServiceStatus is a Service's status.
type ServiceStatus struct {
	LoadBalancer LoadBalancerStatus `json:"loadBalancer"`
}

// LoadBalancerStatus is status.loadBalancer of a Service.
type LoadBalancerStatus struct {
	Ingress []LoadBalancerIngress `json:"ingress,omitempty"`
}

// LoadBalancerIngress is one entry of status.loadBalancer.ingress.
type LoadBalancerIngress struct {
	IP       string `json:"ip,omitempty"`
	Hostname string `json:"hostname,omitempty"`
}

// EndpointSlice is a discovery.k8s.io/v1 EndpointSlice.
type EndpointSlice struct {
	ObjectMeta  `json:"metadata"`
	AddressType string         `json:"addressType"`
	Endpoints   []Endpoint     `json:"endpoints"`
	Ports       []EndpointPort `json:"ports"`
}

// Endpoint is one endpoint of an EndpointSlice.
type Endpoint struct {
	Addresses  []string           `json:"addresses"`
	Conditions EndpointConditions `json:"conditions"`
	NodeName   *string            `json:"nodeName,omitempty"`
}

// EndpointConditions are an endpoint's conditions; unset ones have API-defined defaults
// (see endpointState).
type EndpointConditions struct {
	Ready       *bool `json:"ready,omitempty"`
	Serving     *bool `json:"serving,omitempty"`
	Terminating *bool `json:"terminating,omitempty"`
}

// EndpointPort is one port of an EndpointSlice.
type EndpointPort struct {
	Name     *string `json:"name,omitempty"`
	Protocol *string `json:"protocol,omitempty"`
	Port     *int32  `json:"port,omitempty"`
}

// Node is a core/v1 Node.
type Node struct {
	ObjectMeta `json:"metadata"`
	Status     NodeStatus `json:"status"`
}

// NodeStatus is the part of a Node's status the translation reads.
type NodeStatus struct {
	Conditions []NodeCondition `json:"conditions,omitempty"`
	Addresses  []NodeAddress   `json:"addresses,omitempty"`
}

// NodeCondition is one condition of a Node.
type NodeCondition struct {
	Type   string `json:"type"`
	Status string `json:"status"`
}

// NodeAddress is one address of a Node.
type NodeAddress struct {
	Type    string `json:"type"`
	Address string `json:"address"`
}

// status is a meta/v1 Status: the body of API errors and of watch ERROR events.
type status struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Code    int    `json:"code,omitempty"`
}
