package manifest_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats-server/v2/server"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/natter-chat/natter/deployments/k8s/manifest"
	"github.com/natter-chat/natter/gateway/wsconn"
	"github.com/natter-chat/natter/shared/dbtest"
	"github.com/natter-chat/natter/shared/eventually"
)

// TestManifestProcesses runs each overlay's pods as local processes, with
// exactly the command, arguments and environment their manifests give,
// rewritten to loopback: NATS is the StatefulSet's nodes, in process, each
// loaded from the rendered nats.conf and auth.conf (the same users,
// passwords and permissions) and routed to the others, each natter pod on
// another node; the mounted Secrets are files under a temporary directory
// at the same paths, listen addresses are random loopback ports, and the
// DSN is a fresh database on the local MySQL/MariaDB. Every pod must become
// ready on its readiness probe; then two clients register, log in, chat,
// befriend, create and use a group, a browser's WebSocket (through what the
// HTTPRoute routes to) chats with one of them, they see presence and a kick,
// one gateway is drained (SIGTERM) within its grace period and its client
// resumes on the other with its token. A NATS permission violation anywhere fails the
// test: the generated permissions are what the binaries need.
func TestManifestProcesses(t *testing.T) {
	bin := binaries(t)
	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) { runOverlay(t, bin, overlay) })
	}
}

func runOverlay(t *testing.T, bin, overlay string) {
	s := load(t, overlay)
	dsn := dbtest.MySQLDSN(t)
	dir := t.TempDir()

	// Each pod gets another node, as the Service nats spreads them.
	natsURLs := startNATS(t, s, dir)
	natsSvc := s.Find("Service", "nats").Value.(*corev1.Service)

	// Every natter pod, HPA minReplicas of each Deployment: services first
	// (the gateways' readiness and logins need them), then the gateways.
	minReplicas := map[string]int{}
	for _, h := range manifest.All[autoscalingv2.HorizontalPodAutoscaler](s) {
		minReplicas[h.Spec.ScaleTargetRef.Name] = int(*h.Spec.MinReplicas)
	}
	deployments := manifest.All[appsv1.Deployment](s)
	slices.SortStableFunc(deployments, func(a, b *appsv1.Deployment) int {
		return boolInt(a.Name == "natter-gateway") - boolInt(b.Name == "natter-gateway")
	})
	var (
		pods     []*pod
		podCount int
	)
	gateways := map[string][]*pod{}
	for _, d := range deployments {
		var started []*pod
		for i := range minReplicas[d.Name] {
			name := fmt.Sprintf("%s-%d", d.Name, i)
			natsURL := natsURLs[podCount%len(natsURLs)]
			podCount++
			p := startPod(t, s, bin, d, name, filepath.Join(dir, name), natsURL, natsSvc, dsn)
			started = append(started, p)
		}
		for _, p := range started {
			p.waitReady(t)
		}
		pods = append(pods, started...)
		gateways[d.Name] = started
	}
	gws := gateways["natter-gateway"]
	if len(gws) < 2 {
		t.Fatalf("%d gateways; the scenario needs two", len(gws))
	}
	clientAddr := func(p *pod) string {
		lb := s.Find("Service", "natter-gateway").Value.(*corev1.Service)
		return p.addr(t, lb.Spec.Ports[0].TargetPort)
	}

	// Two users, one on each gateway (so every push crosses NATS).
	alice := dialChat(t, "alice", clientAddr(gws[0]))
	bob := dialChat(t, "bob", clientAddr(gws[1]))
	a := alice.register("alice-pw")
	b := bob.register("bob-pw")
	aliceToken := alice.login(a, "alice-pw")
	bob.login(b, "bob-pw")

	alice.request(map[string]any{"msgid": 7, "friendid": b}) // friend: add
	alice.request(map[string]any{"msgid": 6, "toid": b, "msg": "hi bob", "cid": "c1"})
	m := bob.await("alice's message", func(f frame) bool { return f.num("msgid") == 6 && f["msg"] == "hi bob" })
	bob.send(map[string]any{"msgid": 13, "seq": m.num("seq")})

	g := alice.request(map[string]any{"msgid": 8, "groupname": "hikers", "groupdesc": "weekend trips"}).num("groupid")
	bob.request(map[string]any{"msgid": 9, "groupid": g})
	alice.request(map[string]any{"msgid": 10, "groupid": g, "msg": "hello hikers"})
	m = bob.await("the group message", func(f frame) bool { return f.num("msgid") == 10 && f["msg"] == "hello hikers" })
	bob.send(map[string]any{"msgid": 13, "seq": m.num("seq")})

	members := alice.request(map[string]any{"msgid": 21, "groupid": g}) // group -> user.profiles
	if grp, _ := members["group"].(map[string]any); grp == nil || len(asList(grp["users"])) != 2 {
		t.Errorf("members of group %d: %v", g, members)
	}
	friends := bob.request(map[string]any{"msgid": 18}) // friend -> user.profiles
	if fs := asList(friends["friends"]); len(fs) != 1 || frame(fs[0].(map[string]any)).num("id") != a || fs[0].(map[string]any)["state"] != "online" {
		t.Errorf("bob's friends: %v", friends)
	}

	// A browser: the web page and its WebSocket through what the HTTPRoute
	// routes to (Service natter-gateway-web -> the gateways' websocket
	// port), from the page's own origin; carol chats with alice on the
	// other gateway.
	webAddr := func(p *pod) string {
		web := s.Find("Service", "natter-gateway-web").Value.(*corev1.Service)
		return p.addr(t, web.Spec.Ports[0].TargetPort)
	}
	checkWebPage(t, "http://"+webAddr(gws[1])+"/")
	carol := dialBrowser(t, "carol", webAddr(gws[1]))
	c := carol.register("carol-pw")
	carol.login(c, "carol-pw")
	carol.request(map[string]any{"msgid": 6, "toid": a, "msg": "hi alice, from a browser", "cid": "w1"})
	m = alice.await("carol's message", func(f frame) bool { return f.num("msgid") == 6 && f["msg"] == "hi alice, from a browser" })
	alice.send(map[string]any{"msgid": 13, "seq": m.num("seq")})
	alice.request(map[string]any{"msgid": 6, "toid": c, "msg": "hi carol", "cid": "c2"})
	m = carol.await("alice's answer", func(f frame) bool { return f.num("msgid") == 6 && f["msg"] == "hi carol" })
	carol.send(map[string]any{"msgid": 13, "seq": m.num("seq")})

	// Presence: bob logs out, alice is told (user -> natter.presence ->
	// friend -> natter.u.<alice>).
	bob.send(map[string]any{"msgid": 3})
	alice.await("bob's presence (offline)", func(f frame) bool {
		return f.num("msgid") == 16 && f.num("id") == b && f["state"] == "offline"
	})
	// A kick: bob logs in again, then once more on another connection
	// (user -> natter.u.<bob> kind=kick).
	bob.login(b, "bob-pw")
	bob2 := dialChat(t, "bob2", clientAddr(gws[1]))
	bob2.login(b, "bob-pw")
	bob.await("KICKED", func(f frame) bool { return f.num("msgid") == 15 })

	// Drain: SIGTERM to alice's gateway, as the kubelet sends it after the
	// preStop hook. alice is told to reconnect, the gateway ends within
	// its grace period, and alice resumes on the other gateway with her
	// token (what the load balancer gives her).
	gws[0].terminate(t)
	alice.await("RECONNECT", func(f frame) bool { return f.num("msgid") == 22 && f.num("errno") == 113 })
	gws[0].waitExit(t)
	alice2 := dialChat(t, "alice (resumed)", clientAddr(gws[1]))
	alice2.send(map[string]any{"msgid": 1, "id": a, "token": aliceToken})
	ack := alice2.await("LOGIN_ACK", func(f frame) bool { return f.num("msgid") == 2 })
	if ack.num("errno") != 0 {
		t.Errorf("resume with the token on the other gateway: %v", ack)
	}

	// Everything else stops in its grace period, with status 0.
	for _, c := range []*chatClient{alice, alice2, bob, bob2, carol} {
		c.conn.Close()
	}
	for _, p := range pods {
		if p != gws[0] {
			p.terminate(t)
		}
	}
	for _, p := range pods {
		p.waitExit(t)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// startNATS runs the NATS StatefulSet in this process: one nats-server
// per replica, each loaded from the rendered configuration (nats.conf with
// auth.conf, the pod's environment), on random loopback ports, with the
// routes through the headless Service rewritten to the other nodes'
// loopback route ports. It returns the nodes' client URLs once every node
// has a route to every other. Permission violations any node logs fail the
// test when it ends.
func startNATS(t *testing.T, s *manifest.Set, dir string) []string {
	t.Helper()
	sts := s.Find("StatefulSet", "nats").Value.(*appsv1.StatefulSet)
	n := int(*sts.Spec.Replicas)
	routeAddrs := make([]string, n) // each node's cluster address once started
	routeRE := regexp.MustCompile(`^nats://(?:[^@/]+@)?` + regexp.QuoteMeta(sts.Name) + `-(\d+)\.` + regexp.QuoteMeta(sts.Spec.ServiceName) + `:\d+$`)
	var (
		nodes []*server.Server
		urls  []string
	)
	for i := range n {
		pod := fmt.Sprintf("%s-%d", sts.Name, i)
		opts, c, paths := natsConf(t, s, filepath.Join(dir, pod), pod)
		opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
		opts.HTTPHost, opts.HTTPPort = "127.0.0.1", server.RANDOM_PORT
		// Every node takes a random cluster port; a node's routes go to
		// the nodes started before it, and the later ones route to it:
		// a full mesh without choosing a port another test could take.
		opts.Cluster.Host, opts.Cluster.Port = "127.0.0.1", server.RANDOM_PORT
		routes := opts.Routes[:0]
		for _, r := range opts.Routes {
			m := routeRE.FindStringSubmatch(r.String())
			if m == nil {
				t.Fatalf("NATS route %s is no node of the StatefulSet", r.Redacted())
			}
			idx, _ := strconv.Atoi(m[1])
			if idx >= n {
				t.Fatalf("NATS route %s is no node of the StatefulSet", r.Redacted())
			}
			if idx < i {
				r.Host = routeAddrs[idx]
				routes = append(routes, r)
			}
		}
		opts.Routes = routes
		opts.PidFile = paths(opts.PidFile)
		opts.NoSigs = true
		ns, err := server.NewServer(opts)
		if err != nil {
			t.Fatalf("nats-server %s: %v", pod, err)
		}
		log := &natsLog{}
		ns.SetLoggerV2(log, false, false, false)
		go ns.Start()
		t.Cleanup(func() {
			ns.Shutdown()
			ns.WaitForShutdown()
			if v := log.violations(); len(v) > 0 {
				t.Errorf("%s: NATS permission violations (manifest.Roles misses what a binary does):\n%s", pod, strings.Join(v, "\n"))
			}
			if t.Failed() {
				t.Logf("%s log:\n%s", pod, tail(strings.Join(log.all(), "\n"), 60))
			}
		})
		if !ns.ReadyForConnections(10 * time.Second) {
			t.Fatalf("nats-server %s did not start", pod)
		}
		// The probes' path answers on the monitoring port.
		for _, pr := range []*corev1.Probe{c.StartupProbe, c.ReadinessProbe, c.LivenessProbe} {
			url := fmt.Sprintf("http://%s%s", ns.MonitorAddr(), pr.HTTPGet.Path)
			if code := httpStatus(url); code != http.StatusOK {
				t.Errorf("%s probe %s: %d", pod, url, code)
			}
		}
		if _, err := os.Stat(opts.PidFile); err != nil {
			t.Errorf("%s pid file (for the preStop lame duck signal): %v", pod, err)
		}
		routeAddrs[i] = ns.ClusterAddr().String()
		nodes, urls = append(nodes, ns), append(urls, ns.ClientURL())
	}
	eventually.NoError(t, 20*time.Second, func() error {
		for _, ns := range nodes {
			if ns.NumRoutes() < n-1 {
				return errors.New("still waiting for a full mesh of NATS routes")
			}
		}
		return nil
	})
	return urls
}

// natsLog keeps what the in-process nats-server logs.
type natsLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *natsLog) add(level, format string, v ...any) {
	l.mu.Lock()
	l.lines = append(l.lines, level+" "+fmt.Sprintf(format, v...))
	l.mu.Unlock()
}
func (l *natsLog) Noticef(format string, v ...any) { l.add("[INF]", format, v...) }
func (l *natsLog) Warnf(format string, v ...any)   { l.add("[WRN]", format, v...) }
func (l *natsLog) Fatalf(format string, v ...any)  { l.add("[FTL]", format, v...) }
func (l *natsLog) Errorf(format string, v ...any)  { l.add("[ERR]", format, v...) }
func (l *natsLog) Debugf(format string, v ...any)  { l.add("[DBG]", format, v...) }
func (l *natsLog) Tracef(format string, v ...any)  { l.add("[TRC]", format, v...) }

func (l *natsLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lines)
}

func (l *natsLog) violations() []string {
	var out []string
	for _, line := range l.all() {
		if strings.Contains(line, "Violation") || strings.Contains(line, "Authorization Error") {
			out = append(out, line)
		}
	}
	return out
}

// pod is one natter process started from a Deployment's container.
type pod struct {
	name      string
	c         corev1.Container
	grace     time.Duration    // terminationGracePeriodSeconds
	preStop   time.Duration    // a preStop sleep, which the kubelet runs before SIGTERM
	listens   map[int32]string // container port -> the flag that listens on it (on 127.0.0.1:0)
	ports     map[int32]string // container port -> the loopback address its process reported
	cmd       *exec.Cmd
	log       string
	exited    chan struct{}
	exitErr   error
	termSent  time.Time
	termOnce  sync.Once
	waitOnce  sync.Once
	waitError error
}

var (
	listenRE = regexp.MustCompile(`^(0\.0\.0\.0)?:(\d+)$`)
	// listenLog is the message with which a natter process reports the
	// address a listen flag got ("addr"): the pods listen on port 0, so
	// no other test can take a port between its choice and its bind.
	listenLog = map[string]string{
		"listen":    "gateway listening",
		"ws-listen": "gateway listening for websocket clients",
		"http":      "serving /healthz, /readyz and /metrics",
		"pprof":     "serving Go profiles",
	}
)

// startPod starts the Deployment's natter container as a process: its
// command (the binary of that name), its arguments and exactly its
// environment, with listen addresses moved to loopback port 0 (p.addr reads
// the address each got from the process's log), the
// NATS URL pointed at natsURL, mounted paths under dir, and the DSN file
// holding dsn.
func startPod(t *testing.T, s *manifest.Set, bin string, d *appsv1.Deployment, name, dir, natsURL string, natsSvc *corev1.Service, dsn string) *pod {
	t.Helper()
	spec := d.Spec.Template.Spec
	c := spec.Containers[0]
	if !isNatter(c) || len(spec.Containers) != 1 {
		t.Fatalf("Deployment %s: want one natter container", d.Name)
	}
	paths := materialize(t, s, spec, c, dir, map[string]string{"natter-mysql/dsn": dsn})
	p := &pod{name: name, c: c, listens: map[int32]string{}, ports: map[int32]string{}, exited: make(chan struct{}), log: dir + ".log"}
	p.grace = time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
		p.preStop = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	}
	rewrite := func(flag, v string) string {
		if m := listenRE.FindStringSubmatch(v); m != nil {
			port, _ := strconv.Atoi(m[2])
			if !slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return int(cp.ContainerPort) == port }) {
				t.Errorf("%s: listens on %s, which is no container port", name, v)
			}
			if listenLog[flag] == "" {
				t.Fatalf("%s: --%s=%s: which log line reports its address?", name, flag, v)
			}
			p.listens[int32(port)] = flag
			return "127.0.0.1:0"
		}
		if strings.HasPrefix(v, "nats://") {
			if v != fmt.Sprintf("nats://%s:%d", natsSvc.Name, natsSvc.Spec.Ports[0].Port) {
				t.Errorf("%s: NATS URL %s is not the nats Service", name, v)
			}
			return natsURL
		}
		return paths(v)
	}
	var args []string
	for _, a := range c.Args {
		flag, v, ok := argFlag(a)
		if !ok {
			t.Fatalf("%s: argument %q is not --flag=value", name, a)
		}
		args = append(args, "--"+flag+"="+rewrite(flag, v))
	}
	var env []string
	for _, kv := range resolveEnv(t, s, c, name) {
		k, v, _ := strings.Cut(kv, "=")
		env = append(env, k+"="+rewrite(strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(k, "NATTER_")), "_", "-"), v))
	}
	logf, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(filepath.Join(bin, filepath.Base(c.Command[0])), args...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	go func() {
		p.exitErr = p.cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			out, _ := os.ReadFile(p.log)
			t.Logf("%s (%s %s):\n%s", name, filepath.Base(c.Command[0]), strings.Join(args, " "), tail(string(out), 40))
		}
	})
	return p
}

// addr is the loopback address of one of the pod's container ports, as
// the process reported it once listening (waiting for that line).
func (p *pod) addr(t *testing.T, port intstr.IntOrString) string {
	t.Helper()
	cp, ok := containerPort(p.c, port)
	if !ok || p.listens[cp] == "" {
		t.Fatalf("%s: no listener for port %s", p.name, port.String())
	}
	if a := p.ports[cp]; a != "" {
		return a
	}
	msg := listenLog[p.listens[cp]]
	eventually.NoError(t, 90*time.Second, func() error {
		a, err := p.reported(msg)
		if err != nil {
			select {
			case <-p.exited:
				t.Fatalf("%s exited: %v", p.name, p.exitErr)
			default:
			}
			return err
		}
		p.ports[cp] = a
		return nil
	})
	return p.ports[cp]
}

// reported is the "addr" of the process's JSON log line with message msg.
func (p *pod) reported(msg string) (string, error) {
	out, err := os.ReadFile(p.log)
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(string(out)) {
		var l struct{ Msg, Addr string }
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == msg && l.Addr != "" {
			return l.Addr, nil
		}
	}
	return "", fmt.Errorf("%s has not logged %q yet", p.name, msg)
}

// probeURL is where the kubelet would send a probe.
func (p *pod) probeURL(t *testing.T, pr *corev1.Probe) string {
	t.Helper()
	if pr == nil || pr.HTTPGet == nil {
		t.Fatalf("%s: no httpGet probe", p.name)
	}
	return "http://" + p.addr(t, pr.HTTPGet.Port) + pr.HTTPGet.Path
}

// waitReady waits until the readiness probe passes; the liveness probe
// must pass too.
func (p *pod) waitReady(t *testing.T) {
	t.Helper()
	ready, live := p.probeURL(t, p.c.ReadinessProbe), p.probeURL(t, p.c.LivenessProbe)
	eventually.NoError(t, 90*time.Second, func() error {
		select {
		case <-p.exited:
			t.Fatalf("%s exited: %v", p.name, p.exitErr)
		default:
		}
		if httpStatus(ready) != http.StatusOK {
			return errors.New(p.name + " ready (" + ready + ")")
		}
		return nil
	})
	if code := httpStatus(live); code != http.StatusOK {
		t.Errorf("%s: liveness %s: %d", p.name, live, code)
	}
}

// terminate sends SIGTERM, as the kubelet does after the preStop hook.
func (p *pod) terminate(t *testing.T) {
	p.termOnce.Do(func() {
		p.termSent = time.Now()
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Errorf("%s: SIGTERM: %v", p.name, err)
		}
	})
}

// waitExit waits for the process to end after terminate: with status 0,
// before the kubelet would SIGKILL it (the grace period counts the preStop
// hook too).
func (p *pod) waitExit(t *testing.T) {
	t.Helper()
	p.waitOnce.Do(func() {
		limit := p.grace - p.preStop
		select {
		case <-p.exited:
			took := time.Since(p.termSent)
			switch {
			case p.exitErr != nil:
				p.waitError = fmt.Errorf("%s exited after SIGTERM with %v", p.name, p.exitErr)
			default:
				t.Logf("%s stopped %v after SIGTERM (allowed: %v)", p.name, took.Round(time.Millisecond), limit)
			}
		case <-time.After(limit):
			p.waitError = fmt.Errorf("%s still runs %v after SIGTERM: the kubelet would kill it", p.name, limit)
		}
	})
	if p.waitError != nil {
		t.Error(p.waitError)
	}
}

func httpStatus(url string) int {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

// frame is one JSON frame from a gateway.
type frame map[string]any

// num is a numeric field (0 when absent).
func (f frame) num(key string) int64 {
	n, _ := f[key].(float64)
	return int64(n)
}

// chatClient speaks the full dialect (newline-terminated frames) to a
// gateway; frames that arrive while it waits for another are kept for
// later awaits.
type chatClient struct {
	t       *testing.T
	name    string
	conn    net.Conn
	r       *bufio.Reader
	pending []frame
	reqid   int
}

func dialChat(t *testing.T, name, addr string) *chatClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("%s: dial %s: %v", name, addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return &chatClient{t: t, name: name, conn: conn, r: bufio.NewReader(conn)}
}

// dialBrowser connects to a gateway's WebSocket endpoint at addr as the web
// page does (Origin: the page's own), one frame per text message.
func dialBrowser(t *testing.T, name, addr string) *chatClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := wsconn.Dial(ctx, "ws://"+addr+wsconn.Path,
		&websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"http://" + addr}}})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	t.Cleanup(func() {
		conn.Close()
		<-conn.Done()
	})
	return &chatClient{t: t, name: name, conn: conn, r: bufio.NewReader(conn)}
}

// checkWebPage fetches the web page at url.
func checkWebPage(t *testing.T, url string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(string(body), "<html") {
		t.Errorf("GET %s: %s %s", url, resp.Status, resp.Header.Get("Content-Type"))
	}
}

func (c *chatClient) send(f map[string]any) {
	c.t.Helper()
	b, err := json.Marshal(f)
	if err != nil {
		c.t.Fatal(err)
	}
	c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.conn.Write(append(b, '\n')); err != nil {
		c.t.Fatalf("%s: send %s: %v", c.name, b, err)
	}
}

// await returns the first frame (kept or new) that matches, within 15 s.
func (c *chatClient) await(what string, match func(frame) bool) frame {
	c.t.Helper()
	for i, f := range c.pending {
		if match(f) {
			c.pending = slices.Delete(c.pending, i, i+1)
			return f
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		c.conn.SetReadDeadline(deadline)
		line, err := c.r.ReadBytes('\n')
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				c.t.Fatalf("%s: no %s within 15 s; other frames: %v", c.name, what, c.pending)
			}
			c.t.Fatalf("%s: waiting for %s: %v (frames: %v)", c.name, what, err, c.pending)
		}
		var f frame
		if err := json.Unmarshal(line, &f); err != nil {
			c.t.Fatalf("%s: frame %q: %v", c.name, line, err)
		}
		if match(f) {
			return f
		}
		c.pending = append(c.pending, f)
	}
}

// request sends f with a reqid and returns its successful REPLY.
func (c *chatClient) request(f map[string]any) frame {
	c.t.Helper()
	c.reqid++
	id := fmt.Sprintf("%s-%d", c.name, c.reqid)
	f["reqid"] = id
	c.send(f)
	r := c.await(fmt.Sprintf("the reply to msgid %v", f["msgid"]), func(r frame) bool { return r["reqid"] == id })
	if r.num("errno") != 0 {
		c.t.Fatalf("%s: msgid %v: %v", c.name, f["msgid"], r)
	}
	return r
}

// register creates the account named after the client and returns its id.
func (c *chatClient) register(password string) int64 {
	c.t.Helper()
	r := c.request(map[string]any{"msgid": 4, "name": c.name, "password": password})
	if r.num("msgid") != 5 || r.num("id") == 0 {
		c.t.Fatalf("%s: REG_ACK %v", c.name, r)
	}
	return r.num("id")
}

// login logs in and returns the resume token.
func (c *chatClient) login(id int64, password string) string {
	c.t.Helper()
	r := c.request(map[string]any{"msgid": 1, "id": id, "password": password})
	tok, _ := r["token"].(string)
	if r.num("msgid") != 2 || tok == "" {
		c.t.Fatalf("%s: LOGIN_ACK %v", c.name, r)
	}
	return tok
}
