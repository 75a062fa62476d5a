// Package tlsreload serves a TLS certificate read from a pair of PEM files
// and reloaded when they change: on Reload (the gateway calls it on SIGHUP)
// and when Watch sees the files' content change. A pair that does not load
// (a key that does not match, a file half written) is logged and the
// certificate in use is kept, so a renewal done in two steps (the
// certificate, then the key) takes effect once both are written.
package tlsreload

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Reloader holds the certificate of a cert/key pair of files.
type Reloader struct {
	certFile, keyFile string
	log               *slog.Logger

	cert atomic.Pointer[tls.Certificate]

	mu       sync.Mutex // one load at a time
	certPEM  []byte     // the content last tried, loaded or not
	keyPEM   []byte
	lastFail error
}

// New loads the pair; an error here is a startup error.
func New(certFile, keyFile string, log *slog.Logger) (*Reloader, error) {
	r := &Reloader{certFile: certFile, keyFile: keyFile, log: log}
	certPEM, keyPEM, err := r.read()
	if err != nil {
		return nil, err
	}
	if err := r.load(certPEM, keyPEM); err != nil {
		return nil, err
	}
	return r, nil
}

// ServerConfig is a server configuration serving the current certificate:
// TLS 1.2 at least, protocols as given (e.g. "http/1.1"; none for the
// stream listener).
func (r *Reloader) ServerConfig(protos ...string) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: r.GetCertificate,
		NextProtos:     protos,
	}
}

// GetCertificate returns the current certificate (tls.Config.GetCertificate).
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cert.Load(), nil
}

// Certificate is the current certificate, parsed.
func (r *Reloader) Certificate() *x509.Certificate { return r.cert.Load().Leaf }

// Reload reads the pair again and serves it from the next handshake on. On
// an error the certificate in use is kept (and the error logged and
// returned).
func (r *Reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	certPEM, keyPEM, err := r.read()
	if err == nil {
		err = r.load(certPEM, keyPEM)
	}
	if err != nil {
		r.log.Error("tls certificate reload failed; keeping the certificate in use", "err", err,
			"serial", r.Certificate().SerialNumber.Text(16))
	}
	return err
}

// Watch reads the files every interval until stop is closed and reloads
// the pair when either file's content changed. A changed pair that does not
// load is logged once, and tried again when the files change again.
func (r *Reloader) Watch(stop <-chan struct{}, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		r.mu.Lock()
		certPEM, keyPEM, err := r.read()
		switch {
		case err != nil:
			// A file being replaced may be missing for a moment: say so
			// once per kind of failure, keep serving, look again.
			if r.lastFail == nil || r.lastFail.Error() != err.Error() {
				r.log.Warn("tls certificate files unreadable; keeping the certificate in use", "err", err)
			}
			r.lastFail = err
		case !bytes.Equal(certPEM, r.certPEM) || !bytes.Equal(keyPEM, r.keyPEM):
			if err := r.load(certPEM, keyPEM); err != nil {
				r.log.Error("tls certificate files changed but do not load; keeping the certificate in use", "err", err,
					"serial", r.Certificate().SerialNumber.Text(16))
			}
		}
		r.mu.Unlock()
	}
}

func (r *Reloader) read() (certPEM, keyPEM []byte, err error) {
	if certPEM, err = os.ReadFile(r.certFile); err != nil {
		return nil, nil, fmt.Errorf("read TLS certificate: %w", err)
	}
	if keyPEM, err = os.ReadFile(r.keyFile); err != nil {
		return nil, nil, fmt.Errorf("read TLS key: %w", err)
	}
	return certPEM, keyPEM, nil
}

// load parses the pair and, if it is good, serves it. The content is
// remembered either way (Watch does not try a bad pair twice).
func (r *Reloader) load(certPEM, keyPEM []byte) error {
	r.certPEM, r.keyPEM, r.lastFail = certPEM, keyPEM, nil
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("TLS certificate %s and key %s: %w", r.certFile, r.keyFile, err)
	}
	if cert.Leaf == nil {
		return errors.New("TLS certificate: no certificate in the chain")
	}
	if now := time.Now(); now.After(cert.Leaf.NotAfter) {
		r.log.Warn("tls certificate has expired", "not_after", cert.Leaf.NotAfter)
	}
	r.cert.Store(&cert)
	r.log.Info("tls certificate loaded", "file", r.certFile, "subject", cert.Leaf.Subject.String(),
		"dns_names", cert.Leaf.DNSNames, "serial", cert.Leaf.SerialNumber.Text(16), "not_after", cert.Leaf.NotAfter)
	return nil
}
