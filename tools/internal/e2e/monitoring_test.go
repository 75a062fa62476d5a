package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/natter-chat/natter/shared/eventually"
	"github.com/natter-chat/natter/shared/logtest"
)

var (
	selectorRE = regexp.MustCompile(`\b(natter_[a-z0-9_]+|up)\b(\{[^}]*\})?`)
	matcherRE  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!=|!~|=)\s*"`)
	byRE       = regexp.MustCompile(`\bby\s*\(([^)]*)\)`)
	// Prometheus's target labels and the histogram bucket label.
	targetLabels = []string{"job", "instance", "le"}
)

// monitoringExprs returns every PromQL expression natter ships: the
// alerting rules and the Grafana dashboard's queries (its variables
// replaced as Grafana would), keyed by where they come from.
func monitoringExprs(t *testing.T, root string) map[string]string {
	t.Helper()
	exprs := map[string]string{}
	data, err := os.ReadFile(filepath.Join(root, "deployments/prometheus/natter-rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct{ Alert, Expr string }
		}
	}
	if err := yaml.Unmarshal(data, &rules); err != nil {
		t.Fatal(err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			exprs["rule "+r.Alert] = r.Expr
		}
	}
	data, err = os.ReadFile(filepath.Join(root, "deployments/grafana/natter-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr, RefID string }
		}
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatal(err)
	}
	vars := strings.NewReplacer("$__rate_interval", "1m", "$job_gateway", "natter-gateway")
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			exprs[fmt.Sprintf("dashboard %q %s", p.Title, tg.RefID)] = vars.Replace(tg.Expr)
		}
	}
	if len(exprs) < 20 {
		t.Fatalf("only %d expressions found", len(exprs))
	}
	return exprs
}

// exported reads a /metrics page into family name -> label names.
func exported(t *testing.T, metricsURL string) map[string][]string {
	t.Helper()
	resp, err := http.Get(metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	out := map[string][]string{"up": nil}
	types := map[string]string{}
	for _, line := range strings.Split(string(body), "\n") {
		if f := strings.Fields(line); len(f) >= 4 && f[0] == "#" && f[1] == "TYPE" {
			types[f[2]] = f[3]
			if _, ok := out[f[2]]; !ok {
				out[f[2]] = nil // a family without labels is known too
			}
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest, _ := strings.Cut(line, "{")
		name = strings.Fields(name)[0]
		fam := name
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(name, suf); ok && types[b] == "histogram" {
				fam = b
			}
		}
		for _, m := range matcherRE.FindAllStringSubmatch(rest, -1) {
			if !slices.Contains(out[fam], m[1]) {
				out[fam] = append(out[fam], m[1])
			}
		}
		if fam != name {
			out[name] = out[fam] // a histogram's series names
		}
	}
	return out
}

// TestMonitoringQueries holds every alerting rule and every dashboard
// query against what natter really exports: a natter serve's /metrics for
// the metric and label names (a renamed metric or label fails it), and a
// real Prometheus (Debian's package) scraping it, which must accept and
// evaluate each expression.
func TestMonitoringQueries(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..", "..")
	exprs := monitoringExprs(t, root)

	srv := startProc(t, "natter", "serve", "--listen", anyPort, "--http", anyPort, "--data", t.TempDir(),
		"--ws-listen", anyPort, "--bcrypt-cost", "4")
	srv.listenAddr(logServes)
	opsAddr := srv.listenAddr(logOps)
	have := exported(t, "http://"+opsAddr+"/metrics")
	// A few counters have no series before their first event (listed in
	// TestMetricsDoc, which requires every other documented metric at
	// start): their names and labels come from docs/metrics.md.
	doc, err := os.ReadFile(filepath.Join(root, "docs/metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	docRow := regexp.MustCompile("(?m)^\\| `(natter_[a-z0-9_]+)` \\| ([a-z]+) \\|([^|]*)\\|")
	for _, m := range docRow.FindAllStringSubmatch(string(doc), -1) {
		if _, ok := have[m[1]]; ok {
			continue
		}
		var labels []string
		for _, l := range strings.Split(m[3], ",") {
			if l = strings.Trim(strings.TrimSpace(l), "`"); l != "" {
				labels = append(labels, l)
			}
		}
		have[m[1]] = labels
		if m[2] == "histogram" {
			for _, suf := range []string{"_bucket", "_sum", "_count"} {
				have[m[1]+suf] = labels
			}
		}
	}
	for where, expr := range exprs {
		var names []string
		for _, m := range selectorRE.FindAllStringSubmatch(expr, -1) {
			labels, ok := have[m[1]]
			if !ok {
				t.Errorf("%s: %s is not exported by natter (%s)", where, m[1], expr)
				continue
			}
			names = append(names, m[1])
			for _, mm := range matcherRE.FindAllStringSubmatch(m[2], -1) {
				if !slices.Contains(labels, mm[1]) && !slices.Contains(targetLabels, mm[1]) {
					t.Errorf("%s: %s has no label %s (it has %v)", where, m[1], mm[1], labels)
				}
			}
		}
		for _, m := range byRE.FindAllStringSubmatch(expr, -1) {
			for _, l := range strings.Split(m[1], ",") {
				l = strings.TrimSpace(l)
				found := slices.Contains(targetLabels, l)
				for _, n := range names {
					found = found || slices.Contains(have[n], l)
				}
				if !found {
					t.Errorf("%s: by (%s): no metric in the expression has %s", where, m[1], l)
				}
			}
		}
	}

	prom, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("prometheus is not installed (make test installs it: apt-get install prometheus)")
		}
		t.Skip("SKIPPED LOUDLY: prometheus is not installed (apt-get install prometheus); the expressions were checked against the metrics only")
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "prometheus.yml")
	cfg := fmt.Sprintf("global: {scrape_interval: 1s, evaluation_interval: 1s}\nrule_files: [%q]\n"+
		"scrape_configs:\n  - job_name: natter-gateway\n    static_configs: [{targets: [%q]}]\n",
		filepath.Join(root, "deployments/prometheus/natter-rules.yml"), opsAddr)
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(prom, "--config.file="+conf, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+anyPort)
	out := &logtest.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus output:\n%s", out.String())
		}
	})
	promAddr := loggedAddr(t, "prometheus", out, "Listening on", nil)
	query := func(expr string) (status, errText string, n int) {
		resp, err := http.Get("http://" + promAddr + "/api/v1/query?query=" + url.QueryEscape(expr))
		if err != nil {
			return "", err.Error(), 0
		}
		defer resp.Body.Close()
		var r struct {
			Status, Error string
			Data          struct{ Result []json.RawMessage }
		}
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			return "", err.Error(), 0
		}
		return r.Status, r.Error, len(r.Data.Result)
	}
	// Two scrapes at least, so that rates have samples.
	eventually.NoError(t, 60*time.Second, func() error {
		_, _, n := query(`count_over_time(natter_build_info[1m]) >= 3`)
		if n != 1 {
			return errors.New("Prometheus scraping natter serve")
		}
		return nil
	})
	for where, expr := range exprs {
		if status, errText, _ := query(expr); status != "success" {
			t.Errorf("%s: Prometheus refuses %s: %s", where, expr, errText)
		}
	}
	// And the dashboard's main figures have data from a live natter.
	for _, expr := range []string{`natter_gateway_connections`, `rate(natter_gateway_frames_in_total[1m])`, `natter_build_info`} {
		if _, _, n := query(expr); n == 0 {
			t.Errorf("%s: no series from natter serve", expr)
		}
	}
}
