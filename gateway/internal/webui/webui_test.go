package webui

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHandler(t *testing.T) {
	h := Handler()
	tests := []struct {
		method, path string
		status       int
		ctype        string
		body         string // a part of the body
	}{
		{"GET", "/", 200, "text/html; charset=utf-8", "<title>natter</title>"},
		{"GET", "/index.html", 200, "text/html; charset=utf-8", "app.js"},
		{"GET", "/app.js", 200, "text/javascript; charset=utf-8", "use strict"},
		{"GET", "/style.css", 200, "text/css; charset=utf-8", "body"},
		{"GET", "/favicon.svg", 200, "image/svg+xml", "<svg"},
		{"HEAD", "/", 200, "text/html; charset=utf-8", ""},
		{"GET", "/nope", 404, "", "not found"},
		{"GET", "/static/app.js", 404, "", "not found"},
		{"GET", "/../webui.go", 404, "", "not found"},
		{"POST", "/", 405, "", "not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, "http://chat.example:8080"+tt.path, nil)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			res := rec.Result()
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", res.StatusCode, tt.status)
			}
			if tt.ctype != "" && res.Header.Get("Content-Type") != tt.ctype {
				t.Errorf("Content-Type %q, want %q", res.Header.Get("Content-Type"), tt.ctype)
			}
			if !strings.Contains(string(body), tt.body) {
				t.Errorf("body does not contain %q:\n%.300s", tt.body, body)
			}
			if tt.method == "HEAD" && len(body) != 0 {
				t.Errorf("HEAD with a body of %d bytes", len(body))
			}
			if got := res.Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options %q", got)
			}
			csp := res.Header.Get("Content-Security-Policy")
			for _, want := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self' ws://chat.example:* wss://chat.example:*", "frame-ancestors 'none'"} {
				if !strings.Contains(csp, want) {
					t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
				}
			}
			if tt.status == 200 {
				if got := res.Header.Get("Cache-Control"); got != "no-cache" {
					t.Errorf("Cache-Control %q", got)
				}
				if res.Header.Get("ETag") == "" {
					t.Error("no ETag")
				}
			}
		})
	}
}

func TestHandlerRevalidate(t *testing.T) {
	h := Handler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/app.js", nil))
	etag := rec.Result().Header.Get("ETag")
	req := httptest.NewRequest("GET", "/app.js", nil)
	req.Header.Set("If-None-Match", etag)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotModified {
		t.Fatalf("If-None-Match %s: status %d, want 304", etag, rec.Code)
	}
}

func TestCSPHost(t *testing.T) {
	tests := []struct{ host, connect string }{
		{"chat.example", "connect-src 'self' ws://chat.example:* wss://chat.example:*;"},
		{"127.0.0.1:8080", "connect-src 'self' ws://127.0.0.1:* wss://127.0.0.1:*;"},
		{"[::1]:8080", "connect-src 'self' ws://[::1]:* wss://[::1]:*;"},
		{"", "connect-src 'self';"},
		{"evil.example; script-src *", "connect-src 'self';"},
		{"a b", "connect-src 'self';"},
		{"::1", "connect-src 'self';"},
	}
	for _, tt := range tests {
		if got := csp(tt.host); !strings.Contains(got, tt.connect) {
			t.Errorf("csp(%q) = %q, want %q", tt.host, got, tt.connect)
		}
	}
}
