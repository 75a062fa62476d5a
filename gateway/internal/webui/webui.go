// Package webui serves natter's web chat page: one HTML file, a style sheet
// and a script, embedded in the gateway binary. The page talks to the
// gateway's WebSocket endpoint (/ws) of the host it was loaded from, with
// the full dialect of docs/protocol.md; docs/web.md describes it.
//
// Handler serves only the embedded files, each with a strict
// Content-Security-Policy: scripts, styles and images from the page's own
// origin, and connections only to the same host (http(s) and ws(s), any
// port, so that a page can be told to try several gateways of one host).
package webui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// file is one embedded file, ready to serve.
type file struct {
	name  string
	body  []byte
	ctype string
	etag  string
}

// contentTypes are the types of the files the page is made of; others fall
// back to the mime package.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
}

// Handler returns an http.Handler serving the page: index.html at "/" and
// the other embedded files by name. Only GET and HEAD are allowed; anything
// else under the handler is 404. Responses carry an ETag and
// "Cache-Control: no-cache", so a browser revalidates and a new gateway
// version is picked up at the next load.
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := map[string]*file{}
	err = fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(sub, p)
		if err != nil {
			return err
		}
		ext := path.Ext(p)
		ctype, ok := contentTypes[ext]
		if !ok {
			ctype = mime.TypeByExtension(ext)
		}
		if ctype == "" {
			ctype = "application/octet-stream"
		}
		sum := sha256.Sum256(body)
		files["/"+p] = &file{
			name:  p,
			body:  body,
			ctype: ctype,
			etag:  `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`,
		}
		return nil
	})
	if err != nil {
		panic(err)
	}
	files["/"] = files["/index.html"]
	return &handler{files: files}
}

type handler struct {
	files map[string]*file
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Content-Security-Policy", csp(r.Host))
	f, ok := h.files[r.URL.Path]
	if !ok {
		http.Error(w, "404 page not found", http.StatusNotFound)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hd.Set("Allow", "GET, HEAD")
		http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
		return
	}
	hd.Set("Content-Type", f.ctype)
	hd.Set("Cache-Control", "no-cache")
	hd.Set("ETag", f.etag)
	http.ServeContent(w, r, f.name, time.Time{}, bytes.NewReader(f.body))
}

// csp is the Content-Security-Policy for a request to host: nothing but the
// page's own files, and connections to the same host name on any port (the
// page's ?ws= list may name another gateway of the host). A host that is
// not a plain name or address gets 'self' only.
func csp(host string) string {
	connect := "'self'"
	if name := hostName(host); name != "" {
		connect += " ws://" + name + ":* wss://" + name + ":*"
	}
	return "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
		"connect-src " + connect + "; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}

// hostName returns the host part of a Host header ("[::1]:80" -> "[::1]"),
// or "" if it holds anything but the characters of a name or an address.
func hostName(host string) string {
	name := host
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.HasSuffix(host, "]") {
		name = host[:i]
	}
	if name == "" || strings.Count(name, ":") > 0 && !strings.HasPrefix(name, "[") {
		return ""
	}
	for _, c := range name {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '-' || c == '[' || c == ']' || c == ':'
		if !ok {
			return ""
		}
	}
	return name
}
