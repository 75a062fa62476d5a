package manifest_test

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	"github.com/natter-chat/natter/deployments/k8s/manifest"
)

// checkGatewayAPI: browsers come in through the Gateway API (no Ingress,
// no ingress-nginx annotations anywhere): an HTTPRoute attached to the
// Gateway natter-web sends / to a Service that reaches the gateways'
// websocket port, without a request timeout (WebSockets last hours), with
// retries on 503 (a draining gateway), without session persistence
// (neither has any Service); in prod the Gateway's listener is HTTPS for a
// host, with the TLS Secret.
func checkGatewayAPI(t *testing.T, s *manifest.Set, overlay string) {
	for _, o := range s.Objects {
		if o.Kind == "Ingress" {
			t.Errorf("Ingress %s: browsers come in through the Gateway API (ingress-nginx is retired)", o.Name)
		}
		if strings.Contains(string(o.YAML), "nginx.ingress.kubernetes.io") {
			t.Errorf("%s %s: ingress-nginx annotations", o.Kind, o.Name)
		}
	}
	for _, svc := range manifest.All[corev1.Service](s) {
		if svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
			t.Errorf("Service %s has ClientIP session affinity: a gateway holds nothing a reconnect needs", svc.Name)
		}
	}
	gws := manifest.All[gatewayv1.Gateway](s)
	if len(gws) != 1 {
		t.Fatalf("%d Gateways, want natter-web", len(gws))
	}
	gw := gws[0]
	if gw.Spec.GatewayClassName == "" || len(gw.Spec.Listeners) == 0 {
		t.Errorf("Gateway %s: no class or no listener", gw.Name)
	}
	for _, l := range gw.Spec.Listeners {
		switch overlay {
		case "prod":
			if l.Protocol != gatewayv1.HTTPSProtocolType || l.Hostname == nil || *l.Hostname == "" || l.TLS == nil || len(l.TLS.CertificateRefs) == 0 {
				t.Errorf("Gateway %s listener %s: prod wants HTTPS for a host name with a certificate", gw.Name, l.Name)
			}
		default:
			if l.Protocol != gatewayv1.HTTPProtocolType && l.Protocol != gatewayv1.HTTPSProtocolType {
				t.Errorf("Gateway %s listener %s: protocol %s", gw.Name, l.Name, l.Protocol)
			}
		}
	}
	routes := manifest.All[gatewayv1.HTTPRoute](s)
	if len(routes) != 1 {
		t.Fatalf("%d HTTPRoutes, want the gateways' one", len(routes))
	}
	r := routes[0]
	if len(r.Spec.ParentRefs) != 1 || string(r.Spec.ParentRefs[0].Name) != gw.Name {
		t.Errorf("HTTPRoute %s: parentRefs %v, want the Gateway %s", r.Name, r.Spec.ParentRefs, gw.Name)
	}
	if len(r.Spec.Rules) == 0 {
		t.Fatalf("HTTPRoute %s has no rules", r.Name)
	}
	for _, rule := range r.Spec.Rules {
		if len(rule.Matches) != 1 || rule.Matches[0].Path == nil || *rule.Matches[0].Path.Value != "/" ||
			*rule.Matches[0].Path.Type != gatewayv1.PathMatchPathPrefix {
			t.Errorf("HTTPRoute %s: matches %v, want the path prefix / (the page and /ws)", r.Name, rule.Matches)
		}
		if rule.Timeouts == nil || rule.Timeouts.Request == nil || *rule.Timeouts.Request != "0s" {
			t.Errorf("HTTPRoute %s: timeouts.request must be 0s (none): a WebSocket lasts for hours", r.Name)
		}
		if rule.Retry == nil || !slices.Contains(rule.Retry.Codes, 503) || rule.Retry.Attempts == nil || *rule.Retry.Attempts < 2 {
			t.Errorf("HTTPRoute %s: retry %v: a draining gateway's 503 should send the browser to another", r.Name, rule.Retry)
		}
		if rule.SessionPersistence != nil {
			t.Errorf("HTTPRoute %s: session persistence: no sticky sessions", r.Name)
		}
		if len(rule.BackendRefs) != 1 {
			t.Errorf("HTTPRoute %s: %d backends, want the Service natter-gateway-web", r.Name, len(rule.BackendRefs))
			continue
		}
		b := rule.BackendRefs[0]
		o := s.Find("Service", string(b.Name))
		if o == nil || b.Port == nil {
			t.Errorf("HTTPRoute %s: backend Service %s (port %v) is not in the manifests", r.Name, b.Name, b.Port)
			continue
		}
		var target *intstr.IntOrString
		for _, sp := range o.Value.(*corev1.Service).Spec.Ports {
			if sp.Port == *b.Port {
				target = &sp.TargetPort
			}
		}
		if target == nil || *target != intstr.FromString("websocket") {
			t.Errorf("HTTPRoute %s: backend %s port %d does not reach the gateways' websocket port", r.Name, b.Name, *b.Port)
		}
	}
}

// checkNetworkPolicies: every Deployment has a NetworkPolicy that limits
// both ways: the gateways take clients from anywhere on client and
// websocket only; the services take nothing but http (probes, metrics);
// both talk only to NATS (4222), DNS and, for the services, the database
// (3306). NATS and MariaDB have their own (NATS only from natter pods,
// MariaDB only from services).
func checkNetworkPolicies(t *testing.T, s *manifest.Set) {
	nps := manifest.All[networkingv1.NetworkPolicy](s)
	for _, w := range s.Workloads() {
		var np *networkingv1.NetworkPolicy
		for _, p := range nps {
			if labels.SelectorFromSet(p.Spec.PodSelector.MatchLabels).Matches(labels.Set(w.Template.Labels)) {
				np = p
			}
		}
		if np == nil {
			t.Errorf("%s %s: no NetworkPolicy selects its pods", w.Kind, w.Name)
			continue
		}
		if w.Kind != "Deployment" {
			continue
		}
		if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
			t.Errorf("NetworkPolicy %s: policyTypes %v, want Ingress and Egress", np.Name, np.Spec.PolicyTypes)
		}
		var in []string
		for _, r := range np.Spec.Ingress {
			for _, p := range r.Ports {
				in = append(in, p.Port.String())
			}
			if len(r.Ports) == 0 {
				t.Errorf("NetworkPolicy %s: an ingress rule for every port", np.Name)
			}
		}
		slices.Sort(in)
		want := []string{"http"}
		if w.Name == "natter-gateway" {
			want = []string{"client", "http", "websocket"}
		}
		if !slices.Equal(in, want) {
			t.Errorf("NetworkPolicy %s: ingress ports %v, want %v", np.Name, in, want)
		}
		var out []string
		natsPod := false
		for _, r := range np.Spec.Egress {
			if len(r.Ports) == 0 {
				t.Errorf("NetworkPolicy %s: an egress rule for every port", np.Name)
			}
			for _, p := range r.Ports {
				out = append(out, p.Port.String())
				if p.Port.IntValue() == 4222 {
					for _, peer := range r.To {
						natsPod = natsPod || (peer.PodSelector != nil && peer.PodSelector.MatchLabels["app.kubernetes.io/name"] == "nats")
					}
				}
			}
		}
		slices.Sort(out)
		out = slices.Compact(out)
		want = []string{"3306", "4222", "53"}
		if w.Name == "natter-gateway" {
			want = []string{"4222", "53"} // never the database
		}
		if !slices.Equal(out, want) {
			t.Errorf("NetworkPolicy %s: egress ports %v, want %v", np.Name, out, want)
		}
		if !natsPod {
			t.Errorf("NetworkPolicy %s: NATS (4222) must be reached only on the NATS pods", np.Name)
		}
	}
}

// checkMemoryLimits: each natter container's GOMEMLIMIT leaves headroom
// under its memory limit (70-90% of it): the Go runtime's soft limit must
// bite before the kernel's hard one.
func checkMemoryLimits(t *testing.T, s *manifest.Set) {
	for _, w := range s.Workloads() {
		for _, c := range w.Template.Spec.Containers {
			if !isNatter(c) {
				continue
			}
			limit := c.Resources.Limits.Memory()
			var v string
			for _, e := range c.Env {
				if e.Name == "GOMEMLIMIT" {
					if e.ValueFrom != nil {
						t.Errorf("%s %s: GOMEMLIMIT from %v: equal to the limit, no headroom", w.Kind, w.Name, e.ValueFrom)
					}
					v = e.Value
				}
			}
			if v == "" || limit.IsZero() {
				t.Errorf("%s %s: GOMEMLIMIT %q, memory limit %v: want both", w.Kind, w.Name, v, limit)
				continue
			}
			// GOMEMLIMIT's units are Go's (MiB, GiB); resource quantities
			// spell them Mi, Gi.
			q, err := resource.ParseQuantity(strings.TrimSuffix(strings.NewReplacer("KiB", "Ki", "MiB", "Mi", "GiB", "Gi").Replace(v), "B"))
			if err != nil {
				t.Errorf("%s %s: GOMEMLIMIT %q: %v", w.Kind, w.Name, v, err)
				continue
			}
			if r := float64(q.Value()) / float64(limit.Value()); r < 0.7 || r > 0.9 {
				t.Errorf("%s %s: GOMEMLIMIT %s is %.0f%% of the memory limit %v, want 70-90%%", w.Kind, w.Name, v, 100*r, limit)
			}
		}
	}
}

// checkMonitoring: every natter pod carries the scrape annotations on its
// http port; prod ships the Prometheus Operator's PodMonitor (job = the
// pod's name label, as the rules expect) and the PrometheusRule.
func checkMonitoring(t *testing.T, s *manifest.Set, overlay string) {
	for _, w := range s.Workloads() {
		if w.Kind != "Deployment" {
			continue
		}
		a := w.Template.Annotations
		port, _ := containerPort(w.Template.Spec.Containers[0], intstr.FromString("http"))
		if a["prometheus.io/scrape"] != "true" || a["prometheus.io/path"] != "/metrics" || a["prometheus.io/port"] != strconv.Itoa(int(port)) {
			t.Errorf("Deployment %s: scrape annotations %v, want /metrics on the http port %d", w.Name, a, port)
		}
	}
	pms := manifest.All[monitoringv1.PodMonitor](s)
	rules := manifest.All[monitoringv1.PrometheusRule](s)
	if overlay != "prod" {
		return
	}
	if len(pms) != 1 || len(rules) != 1 {
		t.Fatalf("prod: %d PodMonitors and %d PrometheusRules, want one each", len(pms), len(rules))
	}
	pm := pms[0]
	if pm.Spec.JobLabel != "app.kubernetes.io/name" {
		t.Errorf("PodMonitor %s: jobLabel %q, want app.kubernetes.io/name (the rules' job names)", pm.Name, pm.Spec.JobLabel)
	}
	sel, err := metaSelector(&pm.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range s.Workloads() {
		natter := w.Kind == "Deployment"
		if sel.Matches(labels.Set(w.Template.Labels)) != natter {
			t.Errorf("PodMonitor %s: selects %s %s: %v", pm.Name, w.Kind, w.Name, !natter)
		}
	}
	if len(pm.Spec.PodMetricsEndpoints) != 1 || pm.Spec.PodMetricsEndpoints[0].Port == nil || *pm.Spec.PodMetricsEndpoints[0].Port != "http" {
		t.Errorf("PodMonitor %s: endpoints %v, want the http port", pm.Name, pm.Spec.PodMetricsEndpoints)
	}
}

// TestPrometheusRule: the PrometheusRule the overlays ship carries exactly
// the rules of deployments/prometheus/natter-rules.yml (those promtool
// tests and the local cluster loads). -update regenerates it.
func TestPrometheusRule(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(root, "deployments/prometheus/natter-rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var want monitoringv1.PrometheusRuleSpec
	if err := yaml.UnmarshalStrict(src, &want); err != nil {
		t.Fatalf("natter-rules.yml: %v", err)
	}
	path := filepath.Join(root, "deployments/k8s/components/monitoring/prometheusrule.yaml")
	if *update {
		text := string(src)
		body := text[strings.Index(text, "groups:"):]
		var b strings.Builder
		for _, l := range strings.Split(strings.TrimRight(body, "\n"), "\n") {
			if l != "" {
				b.WriteString("  ")
			}
			b.WriteString(l + "\n")
		}
		out := "# GENERATED from deployments/prometheus/natter-rules.yml (the rules the\n" +
			"# local cluster's Prometheus loads and promtool tests): natter's alerting\n" +
			"# rules for the Prometheus Operator. Do not edit here: edit that file, then\n" +
			"# go test ./deployments/k8s/manifest -run TestPrometheusRule -update\n" +
			"apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata:\n  name: natter\n  labels:\n" +
			"    app.kubernetes.io/name: natter\n    app.kubernetes.io/component: monitoring\nspec:\n" + b.String()
		if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	o, err := manifest.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	got := o.Value.(*monitoringv1.PrometheusRule).Spec
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s differs from deployments/prometheus/natter-rules.yml: go test ./deployments/k8s/manifest -run TestPrometheusRule -update", path)
	}
	if n := len(want.Groups); n == 0 || len(want.Groups[0].Rules) < 10 {
		t.Errorf("natter-rules.yml: %d groups; want natter's alerting rules", n)
	}
}
