package manifest_test

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/natter-chat/natter/deployments/k8s/manifest"
	"github.com/natter-chat/natter/shared/certtest"
)

// withComponent renders overlays/prod with a component of
// deployments/k8s/components added, as an operator's overlay would.
func withComponent(t *testing.T, component string) *manifest.Set {
	t.Helper()
	abs, err := filepath.Abs(filepath.Join(root, "deployments/k8s"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rel, err := filepath.Rel(dir, abs) // kustomize takes no absolute paths
	if err != nil {
		t.Fatal(err)
	}
	k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n" +
		"resources:\n  - " + filepath.Join(rel, "overlays/prod") + "\n" +
		"components:\n  - " + filepath.Join(rel, "components", component) + "\n"
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := manifest.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// servicePort is the port of svc named name.
func servicePort(svc *corev1.Service, name string) *corev1.ServicePort {
	for i := range svc.Spec.Ports {
		if svc.Spec.Ports[i].Name == name {
			return &svc.Spec.Ports[i]
		}
	}
	return nil
}

// gatewayContainer is the natter-gateway Deployment's pod and container.
func gatewayContainer(t *testing.T, s *manifest.Set) (corev1.PodSpec, corev1.Container) {
	t.Helper()
	w := workload(s, "natter-gateway")
	for _, c := range w.Template.Spec.Containers {
		if isNatter(c) {
			return w.Template.Spec, c
		}
	}
	t.Fatal("no natter-gateway container")
	return corev1.PodSpec{}, corev1.Container{}
}

// TestGatewayTLSComponent: components/gateway-tls on overlays/prod makes
// the gateways listen with TLS (--tls-listen, --wss-listen) with the
// certificate of the Secret natter-gateway-tls, mounted as files the
// gateway loads; the LoadBalancer Service and the NetworkPolicy open the
// TLS ports, and the plain port stays for the original client.
func TestGatewayTLSComponent(t *testing.T) {
	bin := binaries(t)
	certs, err := certtest.New("chat.example.com")
	if err != nil {
		t.Fatal(err)
	}
	operatorSecrets["natter-gateway-tls"] = map[string]string{"tls.crt": string(certs.Cert), "tls.key": string(certs.Key)}
	t.Cleanup(func() { delete(operatorSecrets, "natter-gateway-tls") })

	s := withComponent(t, "gateway-tls")
	checkLabels(t, s)
	checkReferences(t, s, "prod")
	checkPodSecurity(t, s)
	checkSelectors(t, s)

	spec, c := gatewayContainer(t, s)
	where := "Deployment natter-gateway (gateway-tls)"
	cfg, err := printConfig(t, filepath.Join(bin, "natter-gateway"), c.Args, resolveEnv(t, s, c, "natter-gateway-0"))
	if err != nil {
		t.Fatal(err)
	}
	for flag, port := range map[string]string{"tls-listen": "client-tls", "wss-listen": "websocket-tls", "listen": "client"} {
		p := listenPort(t, where, flag, cfg[flag])
		if cp, ok := containerPort(c, intstr.FromString(port)); !ok || int(cp) != p {
			t.Errorf("%s: container port %s %d, --%s %q", where, port, cp, flag, cfg[flag])
		}
	}
	// The certificate files are the Secret's keys, and load as a pair.
	paths := map[string]string{}
	for flag, key := range map[string]string{"tls-cert": corev1.TLSCertKey, "tls-key": corev1.TLSPrivateKeyKey} {
		sec, k := mountedSecret(s, spec, c, cfg[flag])
		if sec != "natter-gateway-tls" || k != key {
			t.Errorf("%s: --%s %q is Secret %q key %q, want natter-gateway-tls key %s", where, flag, cfg[flag], sec, k, key)
		}
		paths[flag] = cfg[flag]
	}
	local := materialize(t, s, spec, c, t.TempDir(), nil)
	if _, err := tls.LoadX509KeyPair(local(paths["tls-cert"]), local(paths["tls-key"])); err != nil {
		t.Errorf("%s: the mounted certificate does not load: %v", where, err)
	}

	lb := s.Find("Service", "natter-gateway").Value.(*corev1.Service)
	for name, target := range map[string]string{"client": "client", "client-tls": "client-tls", "websocket-tls": "websocket-tls"} {
		p := servicePort(lb, name)
		if p == nil || p.TargetPort != intstr.FromString(target) {
			t.Errorf("Service natter-gateway: port %s %v, want one to the container port %s", name, p, target)
		}
	}
	np := s.Find("NetworkPolicy", "natter-gateway").Value.(*networkingv1.NetworkPolicy)
	var in []string
	for _, r := range np.Spec.Ingress {
		for _, p := range r.Ports {
			in = append(in, p.Port.String())
		}
	}
	for _, want := range []string{"client", "client-tls", "websocket", "websocket-tls", "http"} {
		if !slices.Contains(in, want) {
			t.Errorf("NetworkPolicy natter-gateway: ingress ports %v lack %s", in, want)
		}
	}
}

// TestLoadBalancerTLSComponent: components/loadbalancer-tls on
// overlays/prod adds a TLS port to the LoadBalancer Service, forwarded to
// the gateways' plain client port, with the load balancer's TLS
// annotations naming that port; the gateways are not changed.
func TestLoadBalancerTLSComponent(t *testing.T) {
	s := withComponent(t, "loadbalancer-tls")
	checkLabels(t, s)
	checkReferences(t, s, "prod")
	checkSelectors(t, s)
	checkNetworkPolicies(t, s)

	lb := s.Find("Service", "natter-gateway").Value.(*corev1.Service)
	p := servicePort(lb, "client-tls")
	if p == nil || p.Port != 6443 || p.TargetPort != intstr.FromString("client") {
		t.Fatalf("Service natter-gateway port client-tls %v, want 6443 to the container port client", p)
	}
	if servicePort(lb, "client") == nil {
		t.Error("Service natter-gateway lost the plain port (the original client's)")
	}
	ann := lb.Annotations
	if ann["service.beta.kubernetes.io/aws-load-balancer-ssl-ports"] != p.Name {
		t.Errorf("TLS ports annotation %q, want the port %s", ann["service.beta.kubernetes.io/aws-load-balancer-ssl-ports"], p.Name)
	}
	for _, k := range []string{"aws-load-balancer-ssl-cert", "aws-load-balancer-backend-protocol"} {
		if ann["service.beta.kubernetes.io/"+k] == "" {
			t.Errorf("Service natter-gateway: no %s annotation", k)
		}
	}
	prod := load(t, "prod")
	_, base := gatewayContainer(t, prod)
	_, c := gatewayContainer(t, s)
	if !slices.Equal(base.Args, c.Args) || strings.Contains(strings.Join(c.Args, " "), "tls") {
		t.Errorf("the gateways' arguments changed: %v", c.Args)
	}
}
