package manifest_test

import (
	"bytes"
	"debug/elf"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// TestImageBuild checks what can be checked of the container images
// without a Docker engine: build.sh (the Dockerfile's build step) builds
// every binary static, stripped and without local paths, and each runs;
// the Dockerfile builds with the workspace's Go, runs build.sh, and puts
// the binaries where the manifests' commands expect them, running as the
// user the pods run as; .dockerignore keeps everything the build needs.
func TestImageBuild(t *testing.T) {
	bin := scriptBinaries(t)
	absRoot, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range natterBinaries {
		t.Run(b, func(t *testing.T) {
			path := filepath.Join(bin, b)
			f, err := elf.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP {
					t.Errorf("%s is dynamically linked (CGO_ENABLED=0 not in effect)", b)
				}
			}
			if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
				t.Errorf("%s needs shared libraries %v", b, libs)
			}
			if f.Section(".symtab") != nil {
				t.Errorf("%s has a symbol table (-ldflags -s not in effect)", b)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(data, []byte(absRoot+"/")) {
				t.Errorf("%s contains the build directory %s (-trimpath not in effect)", b, absRoot)
			}
			out, err := exec.Command(path, "--version").CombinedOutput()
			if err != nil || !strings.Contains(string(out), "version") {
				t.Errorf("%s --version: %v: %s", b, err, out)
			}
		})
	}

	dockerfile := readFile(t, "deployments/docker/Dockerfile")
	gowork := readFile(t, "go.work")
	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+\.\d+)$`).FindStringSubmatch(gowork)
	if goVersion == nil {
		t.Fatal("go.work has no go directive with a patch version")
	}
	// The base images are build arguments whose defaults are exact: the
	// toolchain go.work names (not a floating golang:1.26 that may be
	// older), and distroless; every FROM takes one of them, so a build
	// pins digests by passing them (README, "Images").
	for _, want := range []string{
		"ARG GO_IMAGE=golang:" + goVersion[1] + "\n",
		"ARG BASE_IMAGE=gcr.io/distroless/static-debian12:nonroot\n",
		"FROM --platform=$BUILDPLATFORM ${GO_IMAGE} AS build\n",
		"ENV GOTOOLCHAIN=local\n",
		"ARG BINARY\n",
		`deployments/docker/build.sh /out "$BINARY"`,
		"FROM ${BASE_IMAGE}\n",
		"COPY --from=build /out/ /usr/local/bin/\n",
		`ENTRYPOINT ["/usr/local/bin/entrypoint"]`,
	} {
		if !strings.Contains(dockerfile, want) {
			t.Errorf("Dockerfile lacks %q", strings.TrimSpace(want))
		}
	}
	for _, m := range regexp.MustCompile(`(?m)^FROM (.*)$`).FindAllStringSubmatch(dockerfile, -1) {
		if !strings.Contains(m[1], "${GO_IMAGE}") && !strings.Contains(m[1], "${BASE_IMAGE}") {
			t.Errorf("Dockerfile: FROM %s: a base image that no build argument can pin", m[1])
		}
	}
	script := readFile(t, "deployments/docker/build.sh")
	if !strings.Contains(script, `CGO_ENABLED=0 go build -trimpath -ldflags "-s -w"`) {
		t.Errorf("build.sh does not build with CGO_ENABLED=0 go build -trimpath -ldflags \"-s -w\"")
	}
	// The image's user is the pods' (65532, distroless nonroot).
	user := regexp.MustCompile(`(?m)^USER (\d+):(\d+)$`).FindStringSubmatch(dockerfile)
	if user == nil {
		t.Fatal("Dockerfile has no USER uid:gid")
	}
	for _, overlay := range overlays {
		s := load(t, overlay)
		for _, w := range s.Workloads() {
			c := w.Template.Spec.Containers[0]
			if !isNatter(c) {
				continue
			}
			sc := w.Template.Spec.SecurityContext
			if strconv.FormatInt(*sc.RunAsUser, 10) != user[1] || sc.RunAsGroup == nil || strconv.FormatInt(*sc.RunAsGroup, 10) != user[2] {
				t.Errorf("%s %s %s: runs as %d:%v, the image as %s:%s", overlay, w.Kind, w.Name, *sc.RunAsUser, sc.RunAsGroup, user[1], user[2])
			}
		}
	}
	checkDockerignore(t, gowork)
}

// checkDockerignore: the build context keeps go.work, go.work.sum, every
// module go.work uses (go.mod, go.sum, sources) and build.sh, and leaves out
// .git.
func checkDockerignore(t *testing.T, gowork string) {
	f, err := os.Open(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	patterns, err := ignorefile.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatal(err)
	}
	excluded := func(p string) bool {
		ex, err := pm.MatchesOrParentMatches(p)
		if err != nil {
			t.Fatal(err)
		}
		return ex
	}
	need := []string{"go.work", "deployments/docker/build.sh"}
	if _, err := os.Stat(filepath.Join(root, "go.work.sum")); err == nil {
		need = append(need, "go.work.sum")
	}
	uses := regexp.MustCompile(`(?m)^\s+\./(\S+)$`).FindAllStringSubmatch(gowork, -1)
	if len(uses) < 7 {
		t.Fatalf("go.work uses %d modules?", len(uses))
	}
	for _, u := range uses {
		mod := u[1]
		err := filepath.WalkDir(filepath.Join(root, mod), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, path)
			name := d.Name()
			if d.IsDir() && (name == "testdata" || strings.HasPrefix(name, ".")) {
				return filepath.SkipDir
			}
			if name == "go.mod" || name == "go.sum" || (strings.HasSuffix(name, ".go") && !strings.HasSuffix(name, "_test.go")) {
				need = append(need, filepath.ToSlash(rel))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range need {
		if excluded(p) {
			t.Errorf(".dockerignore leaves %s out of the build context; the build needs it", p)
		}
	}
	if !excluded(".git") {
		t.Errorf(".dockerignore keeps .git in the build context")
	}
}

func readFile(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
