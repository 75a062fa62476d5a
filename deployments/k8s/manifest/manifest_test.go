package manifest_test

import (
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/nats-io/nats-server/v2/server"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/natter-chat/natter/deployments/k8s/manifest"
	"github.com/natter-chat/natter/shared/ops"
)

// TestDecodeStrict: an unknown field or kind fails the decoding (what the
// manifests are held to).
func TestDecodeStrict(t *testing.T) {
	for _, y := range []string{
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicass: 2}\n",
		"apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: 1, targetport: 2}]}\n",
		"apiVersion: v1\nkind: Service\nmetadata: {name: x, name: y}\n",
		"apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: x}\n",
		"apiVersion: apps/v1beta1\nkind: Deployment\nmetadata: {name: x}\n",
	} {
		if _, err := manifest.Decode([]byte(y)); err == nil {
			t.Errorf("decoded without an error:\n%s", y)
		}
	}
	if _, err := manifest.Decode([]byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicas: 2}\n")); err != nil {
		t.Errorf("a valid Deployment: %v", err)
	}
}

// TestManifests renders every overlay, decodes every object strictly into
// its API type and holds the objects against each other and against the
// binaries they run.
func TestManifests(t *testing.T) {
	bin := binaries(t)
	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) {
			s := load(t, overlay)
			checkInventory(t, s, overlay)
			checkLabels(t, s)
			checkReferences(t, s, overlay)
			checkPodSecurity(t, s)
			checkResources(t, s)
			checkSelectors(t, s)
			checkAutoscaling(t, s)
			checkNATS(t, s)
			checkNatterContainers(t, s, bin, overlay)
			checkGatewayAPI(t, s, overlay)
			checkNetworkPolicies(t, s)
			checkMemoryLimits(t, s)
			checkMonitoring(t, s, overlay)
			if overlay == "dev" {
				checkDevDatabase(t, s)
			}
		})
	}
}

// checkInventory: the objects each overlay must have.
func checkInventory(t *testing.T, s *manifest.Set, overlay string) {
	want := []string{
		"Namespace/" + map[string]string{"dev": "natter-dev", "prod": "natter"}[overlay],
		"StatefulSet/nats", "Service/nats", "Service/nats-headless", "PodDisruptionBudget/nats", "NetworkPolicy/nats",
		"Deployment/natter-gateway", "Service/natter-gateway", "HorizontalPodAutoscaler/natter-gateway", "PodDisruptionBudget/natter-gateway",
		"Service/natter-gateway-web", "Gateway/natter-web", "HTTPRoute/natter-gateway-web", "NetworkPolicy/natter-gateway",
	}
	for _, svc := range []string{"user", "offline", "friend", "group"} {
		want = append(want, "Deployment/natter-"+svc, "HorizontalPodAutoscaler/natter-"+svc, "PodDisruptionBudget/natter-"+svc,
			"NetworkPolicy/natter-"+svc)
	}
	if overlay == "dev" {
		want = append(want, "StatefulSet/mariadb", "Service/mariadb", "NetworkPolicy/mariadb")
	}
	for _, w := range want {
		kind, name, _ := strings.Cut(w, "/")
		if s.Find(kind, name) == nil {
			t.Errorf("no %s", w)
		}
	}
	if overlay == "prod" {
		for _, w := range s.Workloads() {
			if w.Name == "mariadb" {
				t.Errorf("prod runs a database in the cluster")
			}
		}
	}
	var ns []string
	for _, o := range s.Objects {
		if o.Kind == "Namespace" {
			ns = append(ns, o.Name)
		}
	}
	if len(ns) != 1 {
		t.Errorf("namespaces %v, want one", ns)
	}
	// Each object of a kind once (kustomize would refuse duplicates; this
	// guards the test's lookups by name).
	seen := map[string]bool{}
	for _, o := range s.Objects {
		id := o.Kind + "/" + o.Name
		if seen[id] {
			t.Errorf("%s twice", id)
		}
		seen[id] = true
	}
}

// checkLabels: app.kubernetes.io/* on every object and pod template.
func checkLabels(t *testing.T, s *manifest.Set) {
	for _, o := range s.Objects {
		meta := objectLabels(o)
		for _, k := range []string{"app.kubernetes.io/name", "app.kubernetes.io/part-of", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance"} {
			if meta[k] == "" {
				t.Errorf("%s %s: no label %s", o.Kind, o.Name, k)
			}
		}
		if meta["app.kubernetes.io/part-of"] != "natter" {
			t.Errorf("%s %s: app.kubernetes.io/part-of=%q", o.Kind, o.Name, meta["app.kubernetes.io/part-of"])
		}
		if o.Kind != "Namespace" && meta["app.kubernetes.io/component"] == "" {
			t.Errorf("%s %s: no label app.kubernetes.io/component", o.Kind, o.Name)
		}
	}
	for _, w := range s.Workloads() {
		for _, k := range []string{"app.kubernetes.io/name", "app.kubernetes.io/component", "app.kubernetes.io/part-of", "app.kubernetes.io/instance"} {
			if w.Template.Labels[k] == "" || w.Template.Labels[k] != w.Labels[k] {
				t.Errorf("%s %s: pod label %s=%q, object's %q", w.Kind, w.Name, k, w.Template.Labels[k], w.Labels[k])
			}
		}
		if !maps.Equal(w.Selector, map[string]string{
			"app.kubernetes.io/name": w.Labels["app.kubernetes.io/name"], "app.kubernetes.io/component": w.Labels["app.kubernetes.io/component"],
		}) {
			t.Errorf("%s %s: selector %v, want app.kubernetes.io/name and component", w.Kind, w.Name, w.Selector)
		}
	}
}

func objectLabels(o manifest.Object) map[string]string {
	switch v := o.Value.(type) {
	case *corev1.Namespace:
		return v.Labels
	case *corev1.ConfigMap:
		return v.Labels
	case *corev1.Secret:
		return v.Labels
	case *corev1.Service:
		return v.Labels
	case *appsv1.Deployment:
		return v.Labels
	case *appsv1.StatefulSet:
		return v.Labels
	case *autoscalingv2.HorizontalPodAutoscaler:
		return v.Labels
	case *policyv1.PodDisruptionBudget:
		return v.Labels
	case *networkingv1.NetworkPolicy:
		return v.Labels
	case *networkingv1.Ingress:
		return v.Labels
	case *gatewayv1.Gateway:
		return v.Labels
	case *gatewayv1.HTTPRoute:
		return v.Labels
	case *monitoringv1.PodMonitor:
		return v.Labels
	case *monitoringv1.PrometheusRule:
		return v.Labels
	}
	return nil
}

// checkReferences: every Secret and ConfigMap a pod uses exists with the
// keys used, or (prod) is one of the documented operator-provided Secrets.
func checkReferences(t *testing.T, s *manifest.Set, overlay string) {
	readme, err := os.ReadFile(filepath.Join(root, "deployments/k8s/README.md"))
	if err != nil {
		t.Fatal(err)
	}
	secretKey := func(where, name, key string) {
		if o := s.Find("Secret", name); o != nil {
			if _, ok := secretValue(s, name, key); !ok {
				t.Errorf("%s: Secret %s has no key %s", where, name, key)
			}
			return
		}
		if overlay != "prod" {
			t.Errorf("%s: Secret %s is not in the manifests", where, name)
			return
		}
		if _, ok := operatorSecrets[name][key]; !ok {
			t.Errorf("%s: Secret %s (key %s) is neither in the manifests nor an operator-provided Secret", where, name, key)
		}
		// Documented: the README's table names the Secret and each key.
		row := regexp.MustCompile("(?m)^\\|\\s*`" + regexp.QuoteMeta(name) + "`\\s*\\|.*`" + regexp.QuoteMeta(key) + "`")
		if !row.Match(readme) {
			t.Errorf("%s: operator-provided Secret %s key %s is not documented in deployments/k8s/README.md", where, name, key)
		}
	}
	configMapKey := func(where, name, key string) {
		if s.Find("ConfigMap", name) == nil {
			t.Errorf("%s: ConfigMap %s is not in the manifests", where, name)
			return
		}
		if key != "" {
			if _, ok := configMapValue(s, name, key); !ok {
				t.Errorf("%s: ConfigMap %s has no key %s", where, name, key)
			}
		}
	}
	for _, w := range s.Workloads() {
		spec := w.Template.Spec
		for _, v := range spec.Volumes {
			where := fmt.Sprintf("%s %s volume %s", w.Kind, w.Name, v.Name)
			switch {
			case v.Secret != nil:
				if len(v.Secret.Items) == 0 {
					t.Errorf("%s: mount named items, not the whole Secret", where)
				}
				for _, it := range v.Secret.Items {
					secretKey(where, v.Secret.SecretName, it.Key)
				}
			case v.ConfigMap != nil:
				configMapKey(where, v.ConfigMap.Name, "")
				for _, it := range v.ConfigMap.Items {
					configMapKey(where, v.ConfigMap.Name, it.Key)
				}
			case v.EmptyDir != nil:
			default:
				t.Errorf("%s: a volume type the manifests do not use", where)
			}
		}
		for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
			for _, e := range c.Env {
				where := fmt.Sprintf("%s %s container %s env %s", w.Kind, w.Name, c.Name, e.Name)
				if e.ValueFrom == nil {
					continue
				}
				if r := e.ValueFrom.SecretKeyRef; r != nil {
					secretKey(where, r.Name, r.Key)
				}
				if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
					configMapKey(where, r.Name, r.Key)
				}
			}
			for _, ef := range c.EnvFrom {
				if ef.ConfigMapRef != nil {
					configMapKey(fmt.Sprintf("%s %s container %s envFrom", w.Kind, w.Name, c.Name), ef.ConfigMapRef.Name, "")
				}
				if ef.SecretRef != nil {
					t.Errorf("%s %s container %s: envFrom a Secret puts every key in the environment; mount files", w.Kind, w.Name, c.Name)
				}
			}
		}
	}
	// Nothing generated and unused.
	used := map[string]bool{}
	for _, gw := range manifest.All[gatewayv1.Gateway](s) {
		for _, l := range gw.Spec.Listeners {
			if l.TLS == nil {
				continue
			}
			for _, ref := range l.TLS.CertificateRefs {
				for _, key := range []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey} {
					secretKey("Gateway "+gw.Name+" listener "+string(l.Name)+" tls", string(ref.Name), key)
				}
				used["Secret/"+string(ref.Name)] = true
			}
		}
	}
	for _, w := range s.Workloads() {
		for _, v := range w.Template.Spec.Volumes {
			if v.Secret != nil {
				used["Secret/"+v.Secret.SecretName] = true
			}
			if v.ConfigMap != nil {
				used["ConfigMap/"+v.ConfigMap.Name] = true
			}
		}
		for _, c := range w.Template.Spec.Containers {
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					used["Secret/"+e.ValueFrom.SecretKeyRef.Name] = true
				}
			}
			for _, ef := range c.EnvFrom {
				if ef.ConfigMapRef != nil {
					used["ConfigMap/"+ef.ConfigMapRef.Name] = true
				}
			}
		}
	}
	for _, o := range s.Objects {
		if (o.Kind == "Secret" || o.Kind == "ConfigMap") && !used[o.Kind+"/"+o.Name] {
			t.Errorf("%s %s is used by no pod", o.Kind, o.Name)
		}
	}
}

// checkPodSecurity: every pod meets the restricted Pod Security Standard
// and more (read-only root, no service account token), and the namespace
// enforces restricted.
func checkPodSecurity(t *testing.T, s *manifest.Set) {
	for _, o := range s.Objects {
		if ns, ok := o.Value.(*corev1.Namespace); ok && ns.Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
			t.Errorf("Namespace %s does not enforce the restricted Pod Security Standard", ns.Name)
		}
	}
	for _, w := range s.Workloads() {
		spec := w.Template.Spec
		where := w.Kind + " " + w.Name
		if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
			t.Errorf("%s: automountServiceAccountToken is not false", where)
		}
		psc := spec.SecurityContext
		if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
			t.Errorf("%s: pod securityContext without runAsNonRoot and a non-zero runAsUser", where)
		}
		if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: pod seccompProfile is not RuntimeDefault", where)
		}
		if spec.HostNetwork || spec.HostPID || spec.HostIPC {
			t.Errorf("%s: host namespaces", where)
		}
		for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
			where := where + " container " + c.Name
			sc := c.SecurityContext
			switch {
			case sc == nil:
				t.Errorf("%s: no securityContext", where)
				continue
			case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
				t.Errorf("%s: runAsNonRoot is not true", where)
			case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
				t.Errorf("%s: readOnlyRootFilesystem is not true", where)
			case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
				t.Errorf("%s: allowPrivilegeEscalation is not false", where)
			case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
				t.Errorf("%s: capabilities are not drop [ALL]", where)
			case sc.Privileged != nil && *sc.Privileged:
				t.Errorf("%s: privileged", where)
			case sc.RunAsUser != nil && *sc.RunAsUser == 0:
				t.Errorf("%s: runAsUser 0", where)
			}
			for _, p := range c.Ports {
				if p.HostPort != 0 {
					t.Errorf("%s: hostPort", where)
				}
			}
		}
	}
}

// checkResources: requests and limits on every container, the image
// pinned.
func checkResources(t *testing.T, s *manifest.Set) {
	for _, w := range s.Workloads() {
		for _, c := range w.Template.Spec.Containers {
			where := fmt.Sprintf("%s %s container %s", w.Kind, w.Name, c.Name)
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				req, hasReq := c.Resources.Requests[r]
				lim, hasLim := c.Resources.Limits[r]
				if !hasReq || !hasLim {
					t.Errorf("%s: %s request/limit missing", where, r)
				} else if req.Cmp(lim) > 0 {
					t.Errorf("%s: %s request %s above the limit %s", where, r, req.String(), lim.String())
				}
			}
			if _, tag, ok := strings.Cut(c.Image[strings.LastIndex(c.Image, "/")+1:], ":"); !ok || tag == "" || tag == "latest" {
				t.Errorf("%s: image %s has no fixed tag", where, c.Image)
			}
		}
	}
}

// checkSelectors: Services, PDBs, NetworkPolicies and spread constraints
// select the pods they are about.
func checkSelectors(t *testing.T, s *manifest.Set) {
	matches := func(sel map[string]string) []string {
		var out []string
		for _, w := range s.Workloads() {
			if len(sel) > 0 && labels.SelectorFromSet(sel).Matches(labels.Set(w.Template.Labels)) {
				out = append(out, w.Name)
			}
		}
		return out
	}
	for _, svc := range manifest.All[corev1.Service](s) {
		ws := matches(svc.Spec.Selector)
		if len(ws) != 1 {
			t.Errorf("Service %s selects %v, want one workload", svc.Name, ws)
			continue
		}
		w := workload(s, ws[0])
		for _, p := range svc.Spec.Ports {
			if _, ok := containerPort(w.Template.Spec.Containers[0], p.TargetPort); !ok {
				t.Errorf("Service %s port %s: targetPort %s is no port of %s", svc.Name, p.Name, p.TargetPort.String(), w.Name)
			}
		}
	}
	for _, pdb := range manifest.All[policyv1.PodDisruptionBudget](s) {
		ws := matches(pdb.Spec.Selector.MatchLabels)
		if len(ws) != 1 || len(pdb.Spec.Selector.MatchExpressions) > 0 {
			t.Errorf("PodDisruptionBudget %s selects %v, want one workload", pdb.Name, ws)
			continue
		}
		w := workload(s, ws[0])
		if w.Name != pdb.Name || !maps.Equal(pdb.Spec.Selector.MatchLabels, w.Selector) {
			t.Errorf("PodDisruptionBudget %s: selector %v, %s's is %v", pdb.Name, pdb.Spec.Selector.MatchLabels, w.Name, w.Selector)
		}
		if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 {
			t.Errorf("PodDisruptionBudget %s: maxUnavailable is not 1", pdb.Name)
		}
	}
	for _, np := range manifest.All[networkingv1.NetworkPolicy](s) {
		ws := matches(np.Spec.PodSelector.MatchLabels)
		if len(ws) != 1 {
			t.Errorf("NetworkPolicy %s applies to %v, want one workload", np.Name, ws)
			continue
		}
		w := workload(s, ws[0])
		for _, rule := range np.Spec.Ingress {
			for _, p := range rule.Ports {
				if _, ok := containerPort(w.Template.Spec.Containers[0], *p.Port); !ok {
					t.Errorf("NetworkPolicy %s: port %s is no port of %s", np.Name, p.Port.String(), w.Name)
				}
			}
			for _, peer := range rule.From {
				sel, err := metaSelector(peer.PodSelector)
				if err != nil {
					t.Errorf("NetworkPolicy %s: %v", np.Name, err)
					continue
				}
				n := 0
				for _, w := range s.Workloads() {
					if sel.Matches(labels.Set(w.Template.Labels)) {
						n++
					}
				}
				if n == 0 {
					t.Errorf("NetworkPolicy %s: a rule admits no pod of the manifests", np.Name)
				}
			}
		}
	}
	for _, w := range s.Workloads() {
		for _, tsc := range w.Template.Spec.TopologySpreadConstraints {
			if !maps.Equal(tsc.LabelSelector.MatchLabels, w.Selector) {
				t.Errorf("%s %s: topologySpreadConstraint on %s selects %v, not its own pods", w.Kind, w.Name, tsc.TopologyKey, tsc.LabelSelector.MatchLabels)
			}
		}
		if len(w.Template.Spec.TopologySpreadConstraints) == 0 && w.Name != "mariadb" {
			t.Errorf("%s %s: replicas without topologySpreadConstraints", w.Kind, w.Name)
		}
		if a := w.Template.Spec.Affinity; a != nil && a.PodAntiAffinity != nil {
			for _, term := range a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
				if !maps.Equal(term.LabelSelector.MatchLabels, w.Selector) {
					t.Errorf("%s %s: anti-affinity selects %v, not its own pods", w.Kind, w.Name, term.LabelSelector.MatchLabels)
				}
			}
		}
	}
}

// metaSelector turns a NetworkPolicy peer's pod selector into a selector
// (nil matches nothing: such peers are not used here).
func metaSelector(ls *metav1.LabelSelector) (labels.Selector, error) {
	if ls == nil {
		return labels.Nothing(), nil
	}
	return metav1.LabelSelectorAsSelector(ls)
}

func workload(s *manifest.Set, name string) manifest.Workload {
	for _, w := range s.Workloads() {
		if w.Name == name {
			return w
		}
	}
	return manifest.Workload{}
}

// containerPort resolves a port (name or number) against a container.
func containerPort(c corev1.Container, p intstr.IntOrString) (int32, bool) {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp.ContainerPort, true
		}
	}
	return 0, false
}

// checkAutoscaling: an HPA (CPU, at least 2 replicas) for every Deployment,
// targeting it, and no spec.replicas in the Deployment (an apply would reset
// the HPA's count).
func checkAutoscaling(t *testing.T, s *manifest.Set) {
	hpas := map[string]*autoscalingv2.HorizontalPodAutoscaler{}
	for _, h := range manifest.All[autoscalingv2.HorizontalPodAutoscaler](s) {
		ref := h.Spec.ScaleTargetRef
		if ref.Kind != "Deployment" || ref.APIVersion != "apps/v1" || s.Find("Deployment", ref.Name) == nil {
			t.Errorf("HorizontalPodAutoscaler %s: target %s %s %s is not a Deployment of the manifests", h.Name, ref.APIVersion, ref.Kind, ref.Name)
		}
		hpas[ref.Name] = h
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 || h.Spec.MaxReplicas < *h.Spec.MinReplicas {
			t.Errorf("HorizontalPodAutoscaler %s: replicas %v..%d, want at least 2", h.Name, h.Spec.MinReplicas, h.Spec.MaxReplicas)
		}
		cpu := slices.ContainsFunc(h.Spec.Metrics, func(m autoscalingv2.MetricSpec) bool {
			return m.Type == autoscalingv2.ResourceMetricSourceType && m.Resource.Name == corev1.ResourceCPU &&
				m.Resource.Target.Type == autoscalingv2.UtilizationMetricType && m.Resource.Target.AverageUtilization != nil
		})
		if !cpu {
			t.Errorf("HorizontalPodAutoscaler %s: no CPU utilization target", h.Name)
		}
	}
	for _, d := range manifest.All[appsv1.Deployment](s) {
		if hpas[d.Name] == nil {
			t.Errorf("Deployment %s has no HorizontalPodAutoscaler", d.Name)
		}
		if d.Spec.Replicas != nil {
			t.Errorf("Deployment %s sets replicas, which its HorizontalPodAutoscaler owns", d.Name)
		}
		if ru := d.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
			t.Errorf("Deployment %s: a rolling update may take instances away before new ones are ready", d.Name)
		}
	}
}

// natsConf loads the rendered NATS configuration as the nats-server of the
// StatefulSet would (its config file from the ConfigMap, with the pod's
// environment), with the pod's volumes under dir. It returns the options,
// the container and the mapping of container paths to dir.
func natsConf(t *testing.T, s *manifest.Set, dir, pod string) (*server.Options, corev1.Container, func(string) string) {
	t.Helper()
	sts := s.Find("StatefulSet", "nats").Value.(*appsv1.StatefulSet)
	c := sts.Spec.Template.Spec.Containers[0]
	paths := materialize(t, s, sts.Spec.Template.Spec, c, dir, nil)
	if len(c.Args) != 2 || c.Args[0] != "--config" {
		t.Fatalf("nats args %v, want --config FILE", c.Args)
	}
	// The configuration names files in the pod's mounts (certificates):
	// point them at where materialize put them.
	confDir := paths(filepath.Dir(c.Args[1]))
	confs, err := os.ReadDir(confDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range confs {
		file := filepath.Join(confDir, f.Name())
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		for _, m := range c.VolumeMounts {
			mount := strings.TrimSuffix(m.MountPath, "/") + "/"
			text = strings.ReplaceAll(text, " "+mount, " "+paths(mount[:len(mount)-1])+"/")
		}
		if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, kv := range resolveEnv(t, s, c, pod) {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	opts, err := server.ProcessConfigFile(paths(c.Args[1]))
	if err != nil {
		t.Fatalf("nats-server config %s: %v", c.Args[1], err)
	}
	return opts, c, paths
}

// checkNATS: the NATS StatefulSet and its configuration agree (ports,
// routes through the headless Service, lame duck within the grace period,
// the pid file the preStop signals, no JetStream), and every role of
// manifest.Roles is a user with the permissions generated for it.
func checkNATS(t *testing.T, s *manifest.Set) {
	sts := s.Find("StatefulSet", "nats").Value.(*appsv1.StatefulSet)
	opts, c, _ := natsConf(t, s, t.TempDir(), "nats-0")
	port := func(name string) int {
		p, ok := containerPort(c, intstr.FromString(name))
		if !ok {
			t.Errorf("nats container has no port %s", name)
		}
		return int(p)
	}
	if opts.Port != port("nats") || opts.HTTPPort != port("monitor") || opts.Cluster.Port != port("cluster") {
		t.Errorf("nats.conf ports client %d, monitor %d, cluster %d; container ports %d, %d, %d",
			opts.Port, opts.HTTPPort, opts.Cluster.Port, port("nats"), port("monitor"), port("cluster"))
	}
	if opts.ServerName != "nats-0" {
		t.Errorf("server_name %q, want the pod name", opts.ServerName)
	}
	if opts.JetStream {
		t.Errorf("JetStream is on; natter does not use it")
	}
	if len(sts.Spec.VolumeClaimTemplates) > 0 {
		t.Errorf("NATS has volumeClaimTemplates; without JetStream it stores nothing")
	}
	if sts.Spec.Replicas == nil || *sts.Spec.Replicas != 3 {
		t.Errorf("NATS replicas %v, want 3", sts.Spec.Replicas)
	}
	headless := s.Find("Service", sts.Spec.ServiceName)
	if headless == nil || headless.Value.(*corev1.Service).Spec.ClusterIP != corev1.ClusterIPNone {
		t.Fatalf("NATS serviceName %s is not a headless Service", sts.Spec.ServiceName)
	}
	// Routes authenticate: every node asks for the route user's password
	// and presents it in each route URL.
	routePW, _ := secretValue(s, "natter-nats-auth", "route")
	if opts.Cluster.Username != manifest.RouteUser || opts.Cluster.Password != routePW || routePW == "" {
		t.Errorf("NATS cluster authorization: user %q, want %s with natter-nats-auth's key route", opts.Cluster.Username, manifest.RouteUser)
	}
	var routes []string
	for _, r := range opts.Routes {
		if pw, _ := r.User.Password(); r.User.Username() != manifest.RouteUser || pw != routePW {
			t.Errorf("NATS route %s does not present the route user's password", r.Redacted())
		}
		u := *r
		u.User = nil
		routes = append(routes, u.String())
	}
	var want []string
	for i := range int(*sts.Spec.Replicas) {
		want = append(want, fmt.Sprintf("nats://%s-%d.%s:%d", sts.Name, i, sts.Spec.ServiceName, opts.Cluster.Port))
	}
	if !slices.Equal(routes, want) {
		t.Errorf("NATS routes %v, want %v (every node through the headless Service)", routes, want)
	}
	if !opts.Cluster.NoAdvertise {
		t.Errorf("NATS cluster advertises pod addresses to clients")
	}
	grace := time.Duration(*sts.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
	if ld := opts.LameDuckGracePeriod + opts.LameDuckDuration; ld >= grace {
		t.Errorf("NATS lame duck takes %v, terminationGracePeriodSeconds is %v", ld, grace)
	}
	if pre := c.Lifecycle; pre == nil || pre.PreStop == nil || pre.PreStop.Exec == nil ||
		!slices.Equal(pre.PreStop.Exec.Command, []string{"nats-server", "-sl=ldm=" + "/var/run/nats/nats.pid"}) {
		t.Errorf("NATS preStop is not the lame duck signal to /var/run/nats/nats.pid")
	}
	if !strings.HasSuffix(opts.PidFile, "/var/run/nats/nats.pid") || !mountedAt(sts.Spec.Template.Spec, c, "/var/run/nats", true) {
		t.Errorf("NATS pid_file %s is not in the pid emptyDir mounted at /var/run/nats", opts.PidFile)
	}
	for _, pr := range []*corev1.Probe{c.StartupProbe, c.ReadinessProbe, c.LivenessProbe} {
		if pr == nil || pr.HTTPGet == nil || pr.HTTPGet.Path != "/healthz" || pr.HTTPGet.Port.String() != "monitor" {
			t.Errorf("NATS probes are not /healthz on the monitor port")
		}
	}
	// The NATS image runs the nats-server version the tests run.
	if want := natsServerVersion(t); !strings.HasPrefix(c.Image, "nats:"+want+"-") && c.Image != "nats:"+want {
		t.Errorf("NATS image %s; the tests run nats-server %s (shared/go.mod)", c.Image, want)
	}

	// Users: one per role and the operators', with exactly the generated
	// permissions, and the password from the Secret key named after the
	// role; the operators' sys user in the system account.
	users := map[string]*server.User{}
	for _, u := range opts.Users {
		users[u.Username] = u
	}
	if len(opts.Nkeys) > 0 || opts.Username != "" || opts.NoAuthUser != "" || len(users) != len(manifest.Users()) {
		t.Errorf("NATS authorization: %d users, nkeys %d, single user %q, no_auth_user %q; want exactly the roles",
			len(users), len(opts.Nkeys), opts.Username, opts.NoAuthUser)
	}
	if opts.SystemAccount != manifest.SystemAccount {
		t.Errorf("NATS system_account %q, want %s", opts.SystemAccount, manifest.SystemAccount)
	}
	for _, r := range manifest.Users() {
		u := users[r.Name]
		if u == nil {
			t.Errorf("NATS has no user %s", r.Name)
			continue
		}
		if acc := u.Account; (acc == nil) != (r.Account == "") || acc != nil && acc.Name != r.Account {
			t.Errorf("NATS user %s: account %v, want %q", r.Name, acc, r.Account)
		}
		want, _ := secretValue(s, "natter-nats-auth", r.Name)
		if u.Password != want || want == "" {
			t.Errorf("NATS user %s: the password is not natter-nats-auth's key %s", r.Name, r.Name)
		}
		p := u.Permissions
		if p == nil || p.Publish == nil || p.Subscribe == nil ||
			!slices.Equal(p.Publish.Allow, r.Publish) || !slices.Equal(p.Subscribe.Allow, r.Subscribe) ||
			len(p.Publish.Deny) > 0 || len(p.Subscribe.Deny) > 0 || (p.Response != nil) != r.Responds {
			t.Errorf("NATS user %s: permissions differ from manifest.Roles", r.Name)
		}
	}
}

// natsServerVersion is the nats-server version the workspace builds (the
// one shared/go.mod requires, which this test runs), without the v.
func natsServerVersion(t *testing.T) string {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", "github.com/nats-io/nats-server/v2").Output()
	if err != nil {
		t.Fatalf("go list -m nats-server: %v", err)
	}
	return strings.TrimPrefix(strings.TrimSpace(string(out)), "v")
}

// mountedAt reports whether the container mounts, at path, a volume that
// is an emptyDir (emptyDir true) or anything else.
func mountedAt(spec corev1.PodSpec, c corev1.Container, path string, emptyDir bool) bool {
	for _, m := range c.VolumeMounts {
		if m.MountPath != path {
			continue
		}
		for _, v := range spec.Volumes {
			if v.Name == m.Name {
				return (v.EmptyDir != nil) == emptyDir
			}
		}
	}
	return false
}

// stopMargin is what natter-gateway allows itself after the drain window
// (gateway/cmd/natter-gateway/main.go).
func stopMargin(t *testing.T) time.Duration {
	src, err := os.ReadFile(filepath.Join(root, "gateway/cmd/natter-gateway/main.go"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^const stopMargin = (\d+) \* time\.Second$`).FindSubmatch(src)
	if m == nil {
		t.Fatal("gateway/cmd/natter-gateway/main.go: no `const stopMargin = N * time.Second`; update this test")
	}
	n, _ := strconv.Atoi(string(m[1]))
	return time.Duration(n) * time.Second
}

// checkNatterContainers: each natter container, run with its manifest's
// arguments and environment plus --print-config, starts (no unknown flag,
// no bad value); its environment names only variables the binary lists;
// its probes, ports and scrape annotations match what --http and --listen
// say; its NATS user and password file and its DSN file come from the right
// Secrets; the gateway's grace period covers its drain.
func checkNatterContainers(t *testing.T, s *manifest.Set, bin, overlay string) {
	natsSvc := s.Find("Service", "nats").Value.(*corev1.Service)
	seen := map[string]bool{}
	for _, w := range s.Workloads() {
		spec := w.Template.Spec
		for _, c := range spec.Containers {
			if !isNatter(c) {
				if strings.Contains(c.Image, "natter") {
					t.Errorf("%s %s: container %s runs a natter image without command [/usr/local/bin/<binary>]", w.Kind, w.Name, c.Name)
				}
				continue
			}
			binary := filepath.Base(c.Command[0])
			where := fmt.Sprintf("%s %s (%s)", w.Kind, w.Name, binary)
			seen[binary] = true
			if c.Command[0] != "/usr/local/bin/"+binary {
				t.Errorf("%s: command %s; the image has /usr/local/bin/%s", where, c.Command[0], binary)
			}
			image := c.Image[strings.LastIndex(c.Image, "/")+1:]
			if name, _, _ := strings.Cut(image, ":"); name != binary {
				t.Errorf("%s: image %s is not the %s image", where, c.Image, binary)
			}
			if overlay == "prod" && strings.HasSuffix(c.Image, ":dev") {
				t.Errorf("%s: prod runs image %s", where, c.Image)
			}
			h := helpOf(t, filepath.Join(bin, binary))
			for _, a := range c.Args {
				name, _, ok := argFlag(a)
				if !ok {
					t.Errorf("%s: argument %q is not --flag=value", where, a)
				} else if !h.flags[name] {
					t.Errorf("%s: --%s is not a flag of %s", where, name, binary)
				}
			}
			env := resolveEnv(t, s, c, w.Name+"-0")
			for _, kv := range env {
				k, _, _ := strings.Cut(kv, "=")
				if strings.HasPrefix(k, "NATTER_") && !h.envs[k] {
					t.Errorf("%s: environment variable %s is not one %s --help lists", where, k, binary)
				} else if !strings.HasPrefix(k, "NATTER_") && !goRuntimeEnv[k] {
					t.Errorf("%s: environment variable %s is neither NATTER_* nor the Go runtime's", where, k)
				}
			}
			cfg, err := printConfig(t, filepath.Join(bin, binary), c.Args, env)
			if err != nil {
				t.Errorf("%s: %v", where, err)
				continue
			}

			// --http: the probes, the http port and the scrape annotations.
			httpPort := listenPort(t, where, "http", cfg["http"])
			if cp, ok := containerPort(c, intstr.FromString("http")); !ok || int(cp) != httpPort {
				t.Errorf("%s: container port http %d, --http %q", where, cp, cfg["http"])
			}
			checkProbe(t, where+" liveness", c, c.LivenessProbe, "/healthz", httpPort)
			checkProbe(t, where+" readiness", c, c.ReadinessProbe, "/readyz", httpPort)
			if c.StartupProbe != nil {
				checkProbe(t, where+" startup", c, c.StartupProbe, "/healthz", httpPort)
			}
			ann := w.Template.Annotations
			if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != strconv.Itoa(httpPort) || ann["prometheus.io/path"] != "/metrics" {
				t.Errorf("%s: prometheus.io annotations %v do not point at /metrics on --http", where, ann)
			}
			ports := map[int32]bool{int32(httpPort): true}

			// NATS: the client Service's URL, a role's user, its password
			// file from that role's key.
			u := cfg["nats"]
			if want := fmt.Sprintf("nats://%s:%d", natsSvc.Name, natsSvc.Spec.Ports[0].Port); u != want {
				t.Errorf("%s: --nats %s, want the client Service %s", where, u, want)
			}
			role := cfg["nats-user"]
			if r := roleOf(role); r == nil || r.Binary != binary {
				t.Errorf("%s: --nats-user %q is not %s's role", where, role, binary)
			}
			if sec, key := mountedSecret(s, spec, c, cfg["nats-password-file"]); sec != "natter-nats-auth" || key != role {
				t.Errorf("%s: --nats-password-file %s is Secret %q key %q, want natter-nats-auth key %s", where, cfg["nats-password-file"], sec, key, role)
			}

			if binary == "natter-gateway" {
				client := listenPort(t, where, "listen", cfg["listen"])
				ports[int32(client)] = true
				if cp, ok := containerPort(c, intstr.FromString("client")); !ok || int(cp) != client {
					t.Errorf("%s: container port client %d, --listen %q", where, cp, cfg["listen"])
				}
				if cfg["mysql-dsn"] != "" || cfg["mysql-dsn-file"] != "" {
					t.Errorf("%s: the gateway never touches the database", where)
				}
				checkDrainTiming(t, where, spec, c, cfg)
				// --ws-listen: the websocket port, which the HTTPRoute's
				// Service targets; --web serves the page there.
				ws := listenPort(t, where, "ws-listen", cfg["ws-listen"])
				ports[int32(ws)] = true
				if cp, ok := containerPort(c, intstr.FromString("websocket")); !ok || int(cp) != ws {
					t.Errorf("%s: container port websocket %d, --ws-listen %q", where, cp, cfg["ws-listen"])
				}
				if cfg["web"] != "true" {
					t.Errorf("%s: --web is %q: the HTTPRoute serves the web page from the gateways", where, cfg["web"])
				}
				web := s.Find("Service", "natter-gateway-web").Value.(*corev1.Service)
				if len(web.Spec.Ports) != 1 || web.Spec.Ports[0].TargetPort != intstr.FromString("websocket") {
					t.Errorf("Service natter-gateway-web ports %v, want one, to the container port websocket", web.Spec.Ports)
				}
				lb := s.Find("Service", "natter-gateway").Value.(*corev1.Service)
				if lb.Spec.Type != corev1.ServiceTypeLoadBalancer {
					t.Errorf("Service natter-gateway is %s, want LoadBalancer", lb.Spec.Type)
				}
			} else {
				if cfg["mysql-dsn"] != "" {
					t.Errorf("%s: the DSN is on the command line or in the environment; use --mysql-dsn-file", where)
				}
				if sec, key := mountedSecret(s, spec, c, cfg["mysql-dsn-file"]); sec != "natter-mysql" || key != "dsn" {
					t.Errorf("%s: --mysql-dsn-file %q is Secret %q key %q, want natter-mysql key dsn", where, cfg["mysql-dsn-file"], sec, key)
				}
				if *spec.TerminationGracePeriodSeconds < 30 {
					t.Errorf("%s: terminationGracePeriodSeconds %d < 30 (stop, NATS drain up to 10 s, database close)", where, *spec.TerminationGracePeriodSeconds)
				}
			}
			for _, cp := range c.Ports {
				if !ports[cp.ContainerPort] {
					t.Errorf("%s: container port %s %d is no address the binary listens on", where, cp.Name, cp.ContainerPort)
				}
			}
			// The paths the probes use are ones natter's ops handler serves.
			for _, pr := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
				if pr != nil && pr.HTTPGet != nil {
					if code := opsStatus(pr.HTTPGet.Path); code != http.StatusOK {
						t.Errorf("%s: probe path %s answers %d from natter's ops handler", where, pr.HTTPGet.Path, code)
					}
				}
			}
		}
	}
	for _, b := range natterBinaries[:5] {
		if !seen[b] {
			t.Errorf("no container runs %s", b)
		}
	}
}

// roleOf returns the role named name.
func roleOf(name string) *manifest.Role {
	for _, r := range manifest.Roles() {
		if r.Name == name {
			return &r
		}
	}
	return nil
}

// listenPort is the port of a host:port flag value that listens on every
// interface (a pod's address is not known in advance).
func listenPort(t *testing.T, where, flag, addr string) int {
	host, port, err := net.SplitHostPort(addr)
	n, perr := strconv.Atoi(port)
	if err != nil || perr != nil || (host != "" && host != "0.0.0.0") {
		t.Errorf("%s: --%s %q is not :PORT", where, flag, addr)
	}
	return n
}

func checkProbe(t *testing.T, where string, c corev1.Container, p *corev1.Probe, path string, port int) {
	if p == nil || p.HTTPGet == nil {
		t.Errorf("%s: no httpGet probe", where)
		return
	}
	got, ok := containerPort(c, p.HTTPGet.Port)
	if p.HTTPGet.Path != path || !ok || int(got) != port {
		t.Errorf("%s probe: %s on port %s (%d), want %s on the --http port %d", where, p.HTTPGet.Path, p.HTTPGet.Port.String(), got, path, port)
	}
}

// opsStatus is the status natter's ops handler (shared/ops, what --http
// serves) answers for path, with nothing failing.
func opsStatus(path string) int {
	rec := httptest.NewRecorder()
	ops.New(nil, slog.New(slog.NewTextHandler(io.Discard, nil))).Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code
}

// mountedSecret returns the Secret (its name in the kustomization) and key
// a file path of the container comes from.
func mountedSecret(s *manifest.Set, spec corev1.PodSpec, c corev1.Container, path string) (secret, key string) {
	for _, m := range c.VolumeMounts {
		rel, ok := strings.CutPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/")
		if !ok || m.SubPath != "" {
			continue
		}
		for _, v := range spec.Volumes {
			if v.Name != m.Name || v.Secret == nil {
				continue
			}
			for _, it := range v.Secret.Items {
				if it.Path == rel {
					if o := s.Find("Secret", v.Secret.SecretName); o != nil {
						return o.Origin, it.Key
					}
					return v.Secret.SecretName, it.Key
				}
			}
		}
	}
	return "", ""
}

// checkDrainTiming: the grace period covers the preStop sleep, the drain
// window and the gateway's stop margin.
func checkDrainTiming(t *testing.T, where string, spec corev1.PodSpec, c corev1.Container, cfg map[string]string) {
	drain, err := time.ParseDuration(cfg["drain-window"])
	if err != nil {
		t.Errorf("%s: --drain-window %q: %v", where, cfg["drain-window"], err)
	}
	var pre time.Duration
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
		if c.Lifecycle.PreStop.Sleep == nil {
			t.Errorf("%s: a preStop other than sleep (the image has no shell)", where)
		} else {
			pre = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
		}
	}
	grace := time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
	if need := pre + drain + stopMargin(t); grace <= need {
		t.Errorf("%s: terminationGracePeriodSeconds %v, but preStop %v + --drain-window %v + stop margin %v = %v",
			where, grace, pre, drain, stopMargin(t), need)
	}
}

// checkDevDatabase: the dev DSN names the in-cluster MariaDB Service and
// the user, password and database MariaDB initializes.
func checkDevDatabase(t *testing.T, s *manifest.Set) {
	dsn, _ := secretValue(s, "natter-mysql", "dsn")
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatalf("dev DSN: %v", err)
	}
	host, port, _ := net.SplitHostPort(cfg.Addr)
	svcObj := s.Find("Service", host)
	if cfg.Net != "tcp" || svcObj == nil {
		t.Fatalf("dev DSN address %s %s is not a Service of the manifests", cfg.Net, cfg.Addr)
	}
	svc := svcObj.Value.(*corev1.Service)
	if len(svc.Spec.Ports) != 1 || strconv.Itoa(int(svc.Spec.Ports[0].Port)) != port {
		t.Errorf("dev DSN port %s, Service %s's %v", port, svc.Name, svc.Spec.Ports)
	}
	sts := s.Find("StatefulSet", "mariadb").Value.(*appsv1.StatefulSet)
	c := sts.Spec.Template.Spec.Containers[0]
	env := map[string]string{}
	for _, kv := range resolveEnv(t, s, c, "mariadb-0") {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	if env["MARIADB_USER"] != cfg.User || env["MARIADB_PASSWORD"] != cfg.Passwd || env["MARIADB_DATABASE"] != cfg.DBName || env["MARIADB_ROOT_PASSWORD"] == "" {
		t.Errorf("dev DSN %s does not match MariaDB's MARIADB_USER/PASSWORD/DATABASE", cfg.User+"@"+cfg.Addr+"/"+cfg.DBName)
	}
	dataOnPVC := slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
		return m.MountPath == "/var/lib/mysql" && len(sts.Spec.VolumeClaimTemplates) == 1 && sts.Spec.VolumeClaimTemplates[0].Name == m.Name
	})
	if sts.Spec.ServiceName != svc.Name || !dataOnPVC {
		t.Errorf("MariaDB: serviceName %s (want %s), /var/lib/mysql on its volumeClaimTemplate %v", sts.Spec.ServiceName, svc.Name, dataOnPVC)
	}
	if c.StartupProbe == nil || c.ReadinessProbe == nil || c.LivenessProbe == nil {
		t.Errorf("MariaDB: startup, readiness and liveness probes wanted")
	}
}
