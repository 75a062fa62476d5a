package allinone

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"golang.org/x/crypto/bcrypt"

	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/certtest"
	"github.com/natter-chat/natter/shared/cliflag"
	"github.com/natter-chat/natter/shared/subject"
)

func TestNATSConfigValidate(t *testing.T) {
	pw := cliflag.NATSAuth{User: "natter", Password: "pw"}
	for _, tc := range []struct {
		name string
		cfg  NATSConfig
		want string // "" for valid
	}{
		{"in-process only", NATSConfig{}, ""},
		{"loopback without auth", NATSConfig{Listen: "127.0.0.1:4222"}, ""},
		{"IPv6 loopback without auth", NATSConfig{Listen: "[::1]:4222"}, ""},
		{"localhost without auth", NATSConfig{Listen: "localhost:4222"}, ""},
		{"every interface without auth", NATSConfig{Listen: ":4222"}, "needs authentication"},
		{"0.0.0.0 without auth", NATSConfig{Listen: "0.0.0.0:4222"}, "needs authentication"},
		{"a LAN address without auth", NATSConfig{Listen: "10.1.2.3:4222"}, "needs authentication"},
		{"a host name without auth", NATSConfig{Listen: "nats.example.com:4222"}, "needs authentication"},
		{"every interface with a password", NATSConfig{Listen: "0.0.0.0:4222", Auth: pw}, ""},
		{"every interface with an nkey", NATSConfig{Listen: ":4222", Auth: cliflag.NATSAuth{NkeyFile: "seed"}}, ""},
		{"creds", NATSConfig{Listen: ":4222", Auth: cliflag.NATSAuth{CredsFile: "x.creds"}}, "operator"},
		{"a certificate without its key", NATSConfig{Listen: ":4222", Auth: pw, TLSCert: "c.pem"}, "go together"},
		{"a certificate without a listener", NATSConfig{TLSCert: "c.pem", TLSKey: "k.pem"}, "without --nats-listen"},
		{"a bad port", NATSConfig{Listen: "127.0.0.1:nats"}, "bad port"},
	} {
		err := tc.cfg.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestEmbeddedNATSAuth: with credentials, every connection to the embedded
// NATS needs them - the system's own (it starts and answers) and another
// process's (refused without them, or with wrong ones); with a
// certificate, the listener speaks TLS only.
func TestEmbeddedNATSAuth(t *testing.T) {
	dir := t.TempDir()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	seedFile := filepath.Join(dir, "natter.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	other, _ := nkeys.CreateUser()
	otherSeed, _ := other.Seed()
	otherFile := filepath.Join(dir, "other.nk")
	if err := os.WriteFile(otherFile, otherSeed, 0o600); err != nil {
		t.Fatal(err)
	}
	certs := certtest.Write(t, "127.0.0.1")

	for _, tc := range []struct {
		name        string
		auth, wrong cliflag.NATSAuth
		tls         bool
	}{
		{"password", cliflag.NATSAuth{User: "natter", Password: "right-pw"}, cliflag.NATSAuth{User: "natter", Password: "wrong-pw"}, false},
		{"nkey", cliflag.NATSAuth{NkeyFile: seedFile}, cliflag.NATSAuth{NkeyFile: otherFile}, false},
		{"password over TLS", cliflag.NATSAuth{User: "natter", Password: "right-pw"}, cliflag.NATSAuth{User: "natter", Password: "wrong-pw"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig(t.TempDir())
			cfg.Gateway.Listen = "127.0.0.1:0"
			cfg.Gateway.WSListen = ""
			cfg.User.BcryptCost = bcrypt.MinCost
			cfg.NATS = NATSConfig{Listen: "127.0.0.1:0", Auth: tc.auth}
			var tlsOpts []nats.Option
			if tc.tls {
				cfg.NATS.TLSCert, cfg.NATS.TLSKey = certs.Cert, certs.Key
				tlsOpts = []nats.Option{nats.RootCAs(certs.CA)}
			}
			sys := startSystem(t, cfg)
			defer sys.Stop(context.Background())
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			url := sys.ns.ClientURL()

			connect := func(a cliflag.NATSAuth, extra ...nats.Option) (*nats.Conn, error) {
				opts, err := a.Options()
				if err != nil {
					t.Fatal(err)
				}
				nc, err := nats.Connect(url, append(append(opts, extra...), nats.MaxReconnects(0))...)
				if err == nil {
					t.Cleanup(nc.Close)
				}
				return nc, err
			}
			if _, err := connect(cliflag.NATSAuth{}, tlsOpts...); err == nil || !strings.Contains(err.Error(), "Authorization Violation") {
				t.Errorf("without credentials: %v, want an authorization violation", err)
			}
			if _, err := connect(tc.wrong, tlsOpts...); err == nil || !strings.Contains(err.Error(), "Authorization Violation") {
				t.Errorf("with wrong credentials: %v, want an authorization violation", err)
			}
			if tc.tls {
				if _, err := connect(tc.auth); err == nil {
					t.Errorf("connected to the TLS listener without TLS")
				}
			}
			nc, err := connect(tc.auth, tlsOpts...)
			if err != nil {
				t.Fatalf("with the credentials: %v", err)
			}
			var reg api.RegisterResponse
			if err := api.Call(ctx, nc, subject.UserRegister, api.RegisterRequest{Name: "alice", Password: "pw"}, &reg); err != nil || reg.ID == 0 {
				t.Errorf("register through the embedded NATS: %v", err)
			}
		})
	}
}
