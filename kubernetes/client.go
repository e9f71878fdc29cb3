package kubernetes

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
)

// The Source needs three resources of two API groups. It talks to them with a small client of
// its own instead of client-go's generated clientset (k8s.io/client-go/kubernetes): that one
// links the typed clients, apply configurations and scheme of every API group (~56), whose
// package initialisation alone (registering every type) cost a noticeable part of the
// binary's start-up, for every command. The requests below are the ones the generated typed
// clients send (k8s.io/client-go/gentype): same paths, parameters, content types (protobuf
// preferred, JSON accepted) and rate limiting.

// Client is the part of the Kubernetes API the Source uses. The typed clients of client-go's
// clientset have these methods, so a fake clientset adapts to it in one line per resource.
type Client interface {
	Services(namespace string) ServiceClient
	EndpointSlices(namespace string) EndpointSliceClient
	Nodes() NodeClient
}

// ServiceClient lists and watches core/v1 Services and writes their status.
type ServiceClient interface {
	List(ctx context.Context, opts metav1.ListOptions) (*corev1.ServiceList, error)
	Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
	UpdateStatus(ctx context.Context, svc *corev1.Service, opts metav1.UpdateOptions) (*corev1.Service, error)
}

// EndpointSliceClient lists and watches discovery.k8s.io/v1 EndpointSlices.
type EndpointSliceClient interface {
	List(ctx context.Context, opts metav1.ListOptions) (*discoveryv1.EndpointSliceList, error)
	Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
}

// NodeClient lists and watches core/v1 Nodes.
type NodeClient interface {
	List(ctx context.Context, opts metav1.ListOptions) (*corev1.NodeList, error)
	Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
}

// apiScheme knows only the types the Source reads (core/v1, discovery/v1) and the meta/v1
// ones of requests and errors (options, Status, WatchEvent). Built on first use, so that the
// commands that do not talk to Kubernetes do not pay for it.
type apiScheme struct {
	scheme *runtime.Scheme
	codecs serializer.CodecFactory
	params runtime.ParameterCodec
}

var getScheme = sync.OnceValue(func() *apiScheme {
	s := runtime.NewScheme()
	// As k8s.io/client-go/kubernetes/scheme does, for its two groups we use.
	metav1.AddToGroupVersion(s, schema.GroupVersion{Version: "v1"})
	utilruntime.Must(corev1.AddToScheme(s))
	utilruntime.Must(discoveryv1.AddToScheme(s))
	return &apiScheme{scheme: s, codecs: serializer.NewCodecFactory(s), params: runtime.NewParameterCodec(s)}
})

// restClient is the Client of a real API server: one REST client per API group sharing one
// HTTP client, as the clientset builds them.
type restClient struct {
	core      rest.Interface // core/v1 at /api
	discovery rest.Interface // discovery.k8s.io/v1 at /apis
	params    runtime.ParameterCodec
}

// NewClient is the Client for rc: what kubernetes.NewForConfig of client-go makes of it, for
// the resources the Source uses.
func NewClient(rc *rest.Config) (Client, error) {
	cfg := *rc
	if cfg.UserAgent == "" {
		cfg.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	// Share the transport between the groups.
	httpClient, err := rest.HTTPClientFor(&cfg)
	if err != nil {
		return nil, err
	}
	// And the rate limiter, when the config asks for one.
	if cfg.RateLimiter == nil && cfg.QPS > 0 {
		if cfg.Burst <= 0 {
			return nil, fmt.Errorf("burst is required to be greater than 0 when RateLimiter is not set and QPS is set to greater than 0")
		}
		cfg.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(cfg.QPS, cfg.Burst)
	}
	sch := getScheme()
	c := &restClient{params: sch.params}
	if c.core, err = groupClient(&cfg, httpClient, sch, corev1.SchemeGroupVersion, "/api"); err != nil {
		return nil, err
	}
	if c.discovery, err = groupClient(&cfg, httpClient, sch, discoveryv1.SchemeGroupVersion, "/apis"); err != nil {
		return nil, err
	}
	return c, nil
}

// groupClient is the REST client of one API group version (the generated clients'
// setConfigDefaults and NewForConfigAndClient).
func groupClient(c *rest.Config, h *http.Client, sch *apiScheme, gv schema.GroupVersion, apiPath string) (*rest.RESTClient, error) {
	config := *c
	config.GroupVersion = &gv
	config.APIPath = apiPath
	config.NegotiatedSerializer = rest.CodecFactoryForGeneratedClient(sch.scheme, sch.codecs).WithoutConversion()
	if config.UserAgent == "" {
		config.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	return rest.RESTClientForConfigAndClient(&config, h)
}

func (c *restClient) Services(namespace string) ServiceClient {
	return &resource[*corev1.Service, *corev1.ServiceList]{
		client: c.core, params: c.params, resource: "services", namespace: namespace,
		newObject: func() *corev1.Service { return &corev1.Service{} },
		newList:   func() *corev1.ServiceList { return &corev1.ServiceList{} },
	}
}

func (c *restClient) EndpointSlices(namespace string) EndpointSliceClient {
	return &resource[*discoveryv1.EndpointSlice, *discoveryv1.EndpointSliceList]{
		client: c.discovery, params: c.params, resource: "endpointslices", namespace: namespace,
		newObject: func() *discoveryv1.EndpointSlice { return &discoveryv1.EndpointSlice{} },
		newList:   func() *discoveryv1.EndpointSliceList { return &discoveryv1.EndpointSliceList{} },
	}
}

func (c *restClient) Nodes() NodeClient {
	return &resource[*corev1.Node, *corev1.NodeList]{
		client: c.core, params: c.params, resource: "nodes",
		newObject: func() *corev1.Node { return &corev1.Node{} },
		newList:   func() *corev1.NodeList { return &corev1.NodeList{} },
	}
}

type object interface {
	runtime.Object
	metav1.Object
}

// resource is one resource, in a namespace or not ("": all namespaces, or cluster-scoped).
// Its methods are those of gentype.Client of client-go for a type that prefers protobuf, as
// all of core/v1 and discovery/v1 do.
type resource[T object, L runtime.Object] struct {
	client    rest.Interface
	params    runtime.ParameterCodec
	resource  string
	namespace string
	newObject func() T
	newList   func() L
}

func (r *resource[T, L]) List(ctx context.Context, opts metav1.ListOptions) (L, error) {
	list := r.newList()
	var timeout time.Duration
	if opts.TimeoutSeconds != nil {
		timeout = time.Duration(*opts.TimeoutSeconds) * time.Second
	}
	err := r.client.Get().
		UseProtobufAsDefault().
		NamespaceIfScoped(r.namespace, r.namespace != "").
		Resource(r.resource).
		VersionedParams(&opts, r.params).
		Timeout(timeout).
		Do(ctx).
		Into(list)
	return list, err
}

func (r *resource[T, L]) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	var timeout time.Duration
	if opts.TimeoutSeconds != nil {
		timeout = time.Duration(*opts.TimeoutSeconds) * time.Second
	}
	opts.Watch = true
	return r.client.Get().
		UseProtobufAsDefault().
		NamespaceIfScoped(r.namespace, r.namespace != "").
		Resource(r.resource).
		VersionedParams(&opts, r.params).
		Timeout(timeout).
		Watch(ctx)
}

func (r *resource[T, L]) UpdateStatus(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error) {
	result := r.newObject()
	err := r.client.Put().
		UseProtobufAsDefault().
		NamespaceIfScoped(r.namespace, r.namespace != "").
		Resource(r.resource).
		Name(obj.GetName()).
		SubResource("status").
		VersionedParams(&opts, r.params).
		Body(obj).
		Do(ctx).
		Into(result)
	return result, err
}
