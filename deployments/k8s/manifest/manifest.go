// Package manifest renders natter's Kubernetes manifests (the kustomize
// overlays under deployments/k8s) and decodes every object strictly into
// its Kubernetes API type, so that tests can hold them against the binaries
// they run. It also holds the NATS users and permissions (natsauth.go) from
// which deployments/k8s/base/nats/auth.conf is generated.
package manifest

import (
	"errors"
	"fmt"
	"regexp"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// Object is one rendered object, decoded into the API type of its
// apiVersion and kind (Value is a pointer such as *appsv1.Deployment).
type Object struct {
	APIVersion, Kind, Name string
	// Origin is the name in the kustomization, before a generator's hash
	// suffix (natter-nats-auth for natter-nats-auth-6df6f6g7cg).
	Origin string
	YAML   []byte
	Value  any
}

// kinds are the API types the manifests may use; anything else is an error.
var kinds = map[string]func() any{
	"v1/Namespace":                            func() any { return &corev1.Namespace{} },
	"v1/ConfigMap":                            func() any { return &corev1.ConfigMap{} },
	"v1/Secret":                               func() any { return &corev1.Secret{} },
	"v1/Service":                              func() any { return &corev1.Service{} },
	"apps/v1/Deployment":                      func() any { return &appsv1.Deployment{} },
	"apps/v1/StatefulSet":                     func() any { return &appsv1.StatefulSet{} },
	"autoscaling/v2/HorizontalPodAutoscaler":  func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"policy/v1/PodDisruptionBudget":           func() any { return &policyv1.PodDisruptionBudget{} },
	"networking.k8s.io/v1/NetworkPolicy":      func() any { return &networkingv1.NetworkPolicy{} },
	"networking.k8s.io/v1/Ingress":            func() any { return &networkingv1.Ingress{} },
	"gateway.networking.k8s.io/v1/Gateway":    func() any { return &gatewayv1.Gateway{} },
	"gateway.networking.k8s.io/v1/HTTPRoute":  func() any { return &gatewayv1.HTTPRoute{} },
	"monitoring.coreos.com/v1/PodMonitor":     func() any { return &monitoringv1.PodMonitor{} },
	"monitoring.coreos.com/v1/PrometheusRule": func() any { return &monitoringv1.PrometheusRule{} },
}

// hashSuffix is the content hash kustomize's generators append to a name
// (kustomize encodes it in an alphabet without vowels).
var hashSuffix = regexp.MustCompile(`-[2456789bcdfghkmt]{10}$`)

// Set is a rendered overlay.
type Set struct {
	Objects []Object
}

// Load renders the kustomization in dir (as `kubectl kustomize dir` does)
// and decodes every object strictly: an unknown apiVersion/kind or an
// unknown field is an error.
func Load(dir string) (*Set, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize %s: %w", dir, err)
	}
	s := &Set{}
	for _, r := range m.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			return nil, fmt.Errorf("kustomize %s: %s: %w", dir, r.CurId(), err)
		}
		o, err := Decode(y)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", dir, err)
		}
		o.Origin = o.Name
		if o.Kind == "ConfigMap" || o.Kind == "Secret" {
			o.Origin = hashSuffix.ReplaceAllString(o.Name, "")
		}
		s.Objects = append(s.Objects, o)
	}
	return s, nil
}

// Decode decodes one object strictly into the API type its apiVersion and
// kind name, as the API server's strict field validation does: unknown or
// duplicate fields, and fields in the wrong case, are errors.
func Decode(y []byte) (Object, error) {
	var meta struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal(y, &meta); err != nil {
		return Object{}, fmt.Errorf("decode object: %w", err)
	}
	o := Object{APIVersion: meta.APIVersion, Kind: meta.Kind, Name: meta.Metadata.Name, YAML: y}
	newValue, ok := kinds[meta.APIVersion+"/"+meta.Kind]
	if !ok {
		return o, fmt.Errorf("%s %s: unknown apiVersion/kind %s/%s", meta.Kind, o.Name, meta.APIVersion, meta.Kind)
	}
	j, err := yaml.YAMLToJSONStrict(y)
	if err != nil {
		return o, fmt.Errorf("%s %s: %w", meta.Kind, o.Name, err)
	}
	o.Value = newValue()
	strict, err := kjson.UnmarshalStrict(j, o.Value, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return o, fmt.Errorf("%s %s: %w", meta.Kind, o.Name, err)
	}
	if err := errors.Join(strict...); err != nil {
		return o, fmt.Errorf("%s %s: %w", meta.Kind, o.Name, err)
	}
	return o, nil
}

// Find returns the object of that kind and name (rendered, or as in the
// kustomization: Origin), or nil.
func (s *Set) Find(kind, name string) *Object {
	for i := range s.Objects {
		if o := &s.Objects[i]; o.Kind == kind && (o.Name == name || o.Origin == name) {
			return o
		}
	}
	return nil
}

// All returns the objects of one kind, sorted by name.
func All[T any](s *Set) []*T {
	var out []*T
	names := map[*T]string{}
	for _, o := range s.Objects {
		if v, ok := o.Value.(*T); ok {
			out = append(out, v)
			names[v] = o.Name
		}
	}
	sort.Slice(out, func(i, j int) bool { return names[out[i]] < names[out[j]] })
	return out
}

// Workload is a Deployment or StatefulSet: what runs pods.
type Workload struct {
	Kind, Name string
	Labels     map[string]string
	Selector   map[string]string
	// Replicas is nil when the manifest leaves it out (an HPA owns it).
	Replicas *int32
	Template *corev1.PodTemplateSpec
}

// Workloads returns the Deployments and StatefulSets, sorted by kind and
// name.
func (s *Set) Workloads() []Workload {
	var out []Workload
	for _, o := range s.Objects {
		switch v := o.Value.(type) {
		case *appsv1.Deployment:
			out = append(out, Workload{"Deployment", v.Name, v.Labels, v.Spec.Selector.MatchLabels, v.Spec.Replicas, &v.Spec.Template})
		case *appsv1.StatefulSet:
			out = append(out, Workload{"StatefulSet", v.Name, v.Labels, v.Spec.Selector.MatchLabels, v.Spec.Replicas, &v.Spec.Template})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return out[i].Kind < out[j].Kind
		}
		return out[i].Name < out[j].Name
	})
	return out
}
