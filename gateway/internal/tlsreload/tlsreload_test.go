package tlsreload

import (
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/natter-chat/natter/shared/certtest"
)

func serial(r *Reloader) string { return r.Certificate().SerialNumber.Text(16) }

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestReload covers Reload and Watch: a new pair is taken, a pair written
// in two steps is taken once both are written, a bad pair and missing
// files keep the certificate in use.
func TestReload(t *testing.T) {
	f := certtest.Write(t, "localhost")
	r, err := New(f.Cert, f.Key, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := r.GetCertificate(nil); c == nil || c.Leaf == nil {
		t.Fatal("no certificate served")
	}
	first := serial(r)

	p2, err := certtest.New("localhost")
	if err != nil {
		t.Fatal(err)
	}
	write(t, f.Cert, p2.Cert) // the key is still the first one's
	if err := r.Reload(); err == nil {
		t.Fatal("Reload took a certificate with another key")
	}
	if serial(r) != first {
		t.Fatal("a bad pair replaced the certificate in use")
	}
	write(t, f.Key, p2.Key)
	if err := r.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	second := serial(r)
	if second == first {
		t.Fatal("Reload kept the old certificate")
	}

	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); r.Watch(stop, 10*time.Millisecond) }()
	defer func() { close(stop); <-done }()
	os.Remove(f.Key) // being replaced: missing for a while
	p3, err := certtest.New("localhost")
	if err != nil {
		t.Fatal(err)
	}
	write(t, f.Cert, p3.Cert)
	time.Sleep(50 * time.Millisecond) // several polls with the key missing: nothing changes
	if serial(r) != second {
		t.Fatal("a missing key replaced the certificate in use")
	}
	write(t, f.Key, p3.Key)
	deadline := time.Now().Add(5 * time.Second)
	for serial(r) == second {
		if time.Now().After(deadline) {
			t.Fatal("Watch did not take the renewed pair")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := New(f.Cert, f.Key+".missing", slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("New with a missing key file succeeded")
	}
}
