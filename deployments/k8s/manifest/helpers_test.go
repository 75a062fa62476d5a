package manifest_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/natter-chat/natter/deployments/k8s/manifest"
	"github.com/natter-chat/natter/shared/certtest"
)

// root is the repository root, from this package's directory.
const root = "../../.."

// overlays are the kustomizations operators apply.
var overlays = []string{"dev", "prod"}

// natterBinaries are the binaries the Dockerfile can build; the manifests
// run all but natter (the all-in-one and client tool).
var natterBinaries = []string{"natter-gateway", "natter-user", "natter-offline", "natter-friend", "natter-group", "natter"}

// operatorSecrets are the Secrets overlays/prod expects the operator to
// create, with their keys; the tests stand in for the operator with these
// values (the DSN is replaced by the test database's anyway).
var operatorSecrets = map[string]map[string]string{
	"natter-nats-auth": {
		"gateway": "prod-test-gateway-pw", "user": "prod-test-user-pw", "offline": "prod-test-offline-pw",
		"friend": "prod-test-friend-pw", "group": "prod-test-group-pw",
		"ops": "prod-test-ops-pw", "sys": "prod-test-sys-pw", "route": "prod-test-route-pw",
	},
	// The NATS nodes' certificate, made by TestMain: for the names in the
	// manifests and for 127.0.0.1, where the tests run the nodes.
	"natter-nats-tls": {},
	"natter-mysql":    {"dsn": "natter:prod-test-pw@tcp(mysql.example.com:3306)/natter"},
	"natter-tls":      {"tls.crt": "-----BEGIN CERTIFICATE-----", "tls.key": "-----BEGIN PRIVATE KEY-----"},
}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
	cleanup   []string
)

func TestMain(m *testing.M) {
	certs, err := certtest.New("nats", "nats-headless", "*.nats-headless", "127.0.0.1")
	if err != nil {
		fmt.Fprintln(os.Stderr, "test certificate:", err)
		os.Exit(1)
	}
	operatorSecrets["natter-nats-tls"] = map[string]string{
		"ca.crt": string(certs.CA), "tls.crt": string(certs.Cert), "tls.key": string(certs.Key),
	}
	code := m.Run()
	for _, d := range cleanup {
		os.RemoveAll(d)
	}
	os.Exit(code)
}

// binaries returns the directory holding every natter binary: $NATTER_BIN
// when set, else scriptBinaries.
func binaries(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv("NATTER_BIN"); dir != "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range natterBinaries[:5] {
			if _, err := os.Stat(filepath.Join(abs, b)); err != nil {
				t.Fatalf("NATTER_BIN=%s: %v", dir, err)
			}
		}
		return abs
	}
	return scriptBinaries(t)
}

// scriptBinaries builds every natter binary once per test run with
// deployments/docker/build.sh (the command the Dockerfile runs) and returns
// their directory.
func scriptBinaries(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "natter-k8s-bin-")
		if buildErr != nil {
			return
		}
		cleanup = append(cleanup, binDir)
		cmd := exec.Command("sh", append([]string{filepath.Join(root, "deployments/docker/build.sh"), binDir}, natterBinaries...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("deployments/docker/build.sh: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// load renders an overlay.
func load(t *testing.T, overlay string) *manifest.Set {
	t.Helper()
	s, err := manifest.Load(filepath.Join(root, "deployments/k8s/overlays", overlay))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// help is what a binary's --help lists.
type help struct {
	flags map[string]bool // long names, without --
	envs  map[string]bool // NATTER_* variables
}

var (
	helpMu    sync.Mutex
	helpCache = map[string]help{}
	flagRE    = regexp.MustCompile(`(?m)^\s+--([a-z0-9][a-z0-9-]*)`)
	envRE     = regexp.MustCompile(`\$(NATTER_[A-Z0-9_]+)`)
)

// helpOf runs `bin --help` once per binary.
func helpOf(t *testing.T, bin string) help {
	t.Helper()
	helpMu.Lock()
	defer helpMu.Unlock()
	if h, ok := helpCache[bin]; ok {
		return h
	}
	out, err := exec.Command(bin, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --help: %v\n%s", bin, err, out)
	}
	h := help{flags: map[string]bool{}, envs: map[string]bool{}}
	for _, m := range flagRE.FindAllStringSubmatch(string(out), -1) {
		h.flags[m[1]] = true
	}
	for _, m := range envRE.FindAllStringSubmatch(string(out), -1) {
		h.envs[m[1]] = true
	}
	if !h.flags["print-config"] || !h.flags["http"] {
		t.Fatalf("%s --help lists no --print-config or --http:\n%s", bin, out)
	}
	helpCache[bin] = h
	return h
}

// goRuntimeEnv are the variables other than NATTER_* a natter container
// may set: the Go runtime's.
var goRuntimeEnv = map[string]bool{"GOMEMLIMIT": true, "GOMAXPROCS": true, "GOGC": true, "GODEBUG": true}

// isNatter reports whether a container runs a natter binary.
func isNatter(c corev1.Container) bool {
	return len(c.Command) == 1 && slices.Contains(natterBinaries, filepath.Base(c.Command[0]))
}

// secretValue is the value of a Secret's key in the rendered set, or, for
// a Secret the prod overlay leaves to the operator, the test's stand-in.
func secretValue(s *manifest.Set, name, key string) (string, bool) {
	if o := s.Find("Secret", name); o != nil {
		sec := o.Value.(*corev1.Secret)
		if v, ok := sec.Data[key]; ok {
			return string(v), true
		}
		v, ok := sec.StringData[key]
		return v, ok
	}
	v, ok := operatorSecrets[name][key]
	return v, ok
}

// configMapValue is the value of a ConfigMap's key.
func configMapValue(s *manifest.Set, name, key string) (string, bool) {
	o := s.Find("ConfigMap", name)
	if o == nil {
		return "", false
	}
	v, ok := o.Value.(*corev1.ConfigMap).Data[key]
	return v, ok
}

// resolveEnv turns a container's envFrom and env into NAME=value, in the
// order Kubernetes applies them (env overrides envFrom). pod is the pod's
// name for fieldRef metadata.name.
func resolveEnv(t *testing.T, s *manifest.Set, c corev1.Container, pod string) []string {
	t.Helper()
	vals := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := vals[k]; !ok {
			order = append(order, k)
		}
		vals[k] = v
	}
	for _, ef := range c.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil:
			o := s.Find("ConfigMap", ef.ConfigMapRef.Name)
			if o == nil {
				t.Fatalf("container %s: envFrom ConfigMap %s is not in the manifests", c.Name, ef.ConfigMapRef.Name)
			}
			data := o.Value.(*corev1.ConfigMap).Data
			keys := make([]string, 0, len(data))
			for k := range data {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				set(ef.Prefix+k, data[k])
			}
		default:
			t.Fatalf("container %s: envFrom other than a ConfigMap", c.Name)
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			set(e.Name, expandEnv(e.Value, vals))
		case e.ValueFrom.SecretKeyRef != nil:
			r := e.ValueFrom.SecretKeyRef
			v, ok := secretValue(s, r.Name, r.Key)
			if !ok {
				t.Fatalf("container %s: env %s: Secret %s has no key %s", c.Name, e.Name, r.Name, r.Key)
			}
			set(e.Name, v)
		case e.ValueFrom.ConfigMapKeyRef != nil:
			r := e.ValueFrom.ConfigMapKeyRef
			v, ok := configMapValue(s, r.Name, r.Key)
			if !ok {
				t.Fatalf("container %s: env %s: ConfigMap %s has no key %s", c.Name, e.Name, r.Name, r.Key)
			}
			set(e.Name, v)
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			set(e.Name, pod)
		case e.ValueFrom.ResourceFieldRef != nil:
			r := e.ValueFrom.ResourceFieldRef
			if r.ContainerName != "" && r.ContainerName != c.Name {
				t.Fatalf("container %s: env %s: resources of another container", c.Name, e.Name)
			}
			name, ok := strings.CutPrefix(r.Resource, "limits.")
			if !ok {
				name, ok = strings.CutPrefix(r.Resource, "requests.")
			}
			q, found := c.Resources.Limits[corev1.ResourceName(name)]
			if strings.HasPrefix(r.Resource, "requests.") {
				q, found = c.Resources.Requests[corev1.ResourceName(name)]
			}
			if !ok || !found {
				t.Fatalf("container %s: env %s: %s is not set", c.Name, e.Name, r.Resource)
			}
			div := int64(1)
			if !r.Divisor.IsZero() {
				div = r.Divisor.Value()
			}
			set(e.Name, fmt.Sprint((q.Value()+div-1)/div))
		default:
			t.Fatalf("container %s: env %s: unsupported valueFrom", c.Name, e.Name)
		}
	}
	out := make([]string, 0, len(order))
	for _, k := range order {
		out = append(out, k+"="+vals[k])
	}
	return out
}

// envRef is a dependent environment variable reference, $(NAME), which
// Kubernetes expands in an env value from the variables defined before it
// ($$ escapes a $).
var envRef = regexp.MustCompile(`\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expandEnv expands v as the kubelet does: a reference to a variable
// defined before is replaced, any other is left as it is.
func expandEnv(v string, defined map[string]string) string {
	return envRef.ReplaceAllStringFunc(v, func(ref string) string {
		if ref == "$$" {
			return "$"
		}
		if val, ok := defined[ref[2:len(ref)-1]]; ok {
			return val
		}
		return ref
	})
}

// printConfig runs the container's binary with its args and exactly its
// environment plus --print-config, which fails on an unknown flag or a
// malformed value, and returns the effective configuration.
func printConfig(t *testing.T, bin string, args, env []string) (map[string]string, error) {
	t.Helper()
	cmd := exec.Command(bin, append(slices.Clone(args), "--print-config")...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		// The first lines say what is wrong; the usage that follows, not.
		msg := strings.SplitN(strings.TrimSpace(stderr.String()), "\n", 3)
		return nil, fmt.Errorf("%s %s --print-config: %v: %s", filepath.Base(bin), strings.Join(args, " "), err, strings.Join(msg[:min(2, len(msg))], " "))
	}
	cfg := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("%s --print-config: line %q", filepath.Base(bin), line)
		}
		cfg[k] = v
	}
	return cfg, nil
}

// argFlag splits an argument of the --name=value form (the only form the
// manifests use for natter binaries, so that no value can be mistaken for
// a flag).
var argRE = regexp.MustCompile(`^--([a-z0-9][a-z0-9-]*)=(.*)$`)

func argFlag(arg string) (name, value string, ok bool) {
	m := argRE.FindStringSubmatch(arg)
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

// materialize writes what the container mounts under dir, each volume at
// its mount path (Secret and ConfigMap keys as files, emptyDirs as empty
// directories), and returns the mapping of a container path to its place
// under dir (paths outside every mount stay as they are). override
// replaces the value of a Secret's key ("natter-mysql/dsn").
func materialize(t *testing.T, s *manifest.Set, spec corev1.PodSpec, c corev1.Container, dir string, override map[string]string) func(string) string {
	t.Helper()
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
	}
	write := func(path, data string) {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var mounts []string
	for _, m := range c.VolumeMounts {
		v, ok := volumes[m.Name]
		if !ok {
			t.Fatalf("container %s mounts volume %s, which the pod does not have", c.Name, m.Name)
		}
		if m.SubPath != "" {
			t.Fatalf("container %s: subPath mounts do not follow updates; not used here", c.Name)
		}
		at := filepath.Join(dir, m.MountPath)
		mounts = append(mounts, m.MountPath)
		switch {
		case v.EmptyDir != nil:
			if err := os.MkdirAll(at, 0o755); err != nil {
				t.Fatal(err)
			}
		case v.Secret != nil:
			for _, it := range v.Secret.Items {
				val, ok := secretValue(s, v.Secret.SecretName, it.Key)
				if !ok {
					t.Fatalf("volume %s: Secret %s has no key %s", v.Name, v.Secret.SecretName, it.Key)
				}
				origin := v.Secret.SecretName
				if o := s.Find("Secret", origin); o != nil {
					origin = o.Origin
				}
				if o, ok := override[origin+"/"+it.Key]; ok {
					val = o
				}
				write(filepath.Join(at, it.Path), val)
			}
		case v.ConfigMap != nil:
			o := s.Find("ConfigMap", v.ConfigMap.Name)
			if o == nil {
				t.Fatalf("volume %s: no ConfigMap %s", v.Name, v.ConfigMap.Name)
			}
			data := o.Value.(*corev1.ConfigMap).Data
			if len(v.ConfigMap.Items) == 0 {
				for k, val := range data {
					write(filepath.Join(at, k), val)
				}
			}
			for _, it := range v.ConfigMap.Items {
				write(filepath.Join(at, it.Path), data[it.Key])
			}
		default:
			t.Fatalf("volume %s: a type the tests do not materialize", v.Name)
		}
	}
	return func(p string) string {
		for _, m := range mounts {
			if p == m || strings.HasPrefix(p, strings.TrimSuffix(m, "/")+"/") {
				return filepath.Join(dir, p)
			}
		}
		return p
	}
}
