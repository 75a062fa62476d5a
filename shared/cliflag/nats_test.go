package cliflag_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/urfave/cli/v2"

	"github.com/natter-chat/natter/shared/cliflag"
	"github.com/natter-chat/natter/shared/natstest"
)

// flagContext parses args with flags.
func flagContext(t *testing.T, flags []cli.Flag, args ...string) *cli.Context {
	t.Helper()
	set := flag.NewFlagSet("test", flag.ContinueOnError)
	for _, f := range flags {
		if err := f.Apply(set); err != nil {
			t.Fatal(err)
		}
	}
	if err := set.Parse(args); err != nil {
		t.Fatal(err)
	}
	return cli.NewContext(cli.NewApp(), set, nil)
}

// connect connects to url with the options of the NATS flags in args.
func connect(t *testing.T, url string, args ...string) (*nats.Conn, error) {
	t.Helper()
	opts, err := cliflag.NATSOptions(flagContext(t, cliflag.NATSFlags(), args...))
	if err != nil {
		t.Fatalf("NATSOptions: %v", err)
	}
	nc, err := nats.Connect(url, append(opts, nats.MaxReconnects(0))...)
	if err == nil {
		t.Cleanup(nc.Close)
	}
	return nc, err
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestNATSUserPassword authenticates with --nats-user and the password in
// --nats-password-file (its trailing newline ignored).
func TestNATSUserPassword(t *testing.T) {
	s := natstest.RunOptions(t, &server.Options{Username: "svc", Password: "s3cret"})
	pw := writeFile(t, "pw", []byte("s3cret\n"))
	if _, err := connect(t, s.ClientURL(), "--nats-user", "svc", "--nats-password-file", pw); err != nil {
		t.Fatalf("with the password file: %v", err)
	}
	wrong := writeFile(t, "wrong", []byte("guess\n"))
	if _, err := connect(t, s.ClientURL(), "--nats-user", "svc", "--nats-password-file", wrong); err == nil {
		t.Fatal("a wrong password connected")
	}
	if _, err := connect(t, s.ClientURL()); err == nil {
		t.Fatal("no credentials connected")
	}
}

// TestNATSNkey authenticates with a user nkey seed file.
func TestNATSNkey(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	s := natstest.RunOptions(t, &server.Options{Nkeys: []*server.NkeyUser{{Nkey: pub}}})
	if _, err := connect(t, s.ClientURL(), "--nats-nkey-file", writeFile(t, "user.nk", seed)); err != nil {
		t.Fatalf("with the nkey: %v", err)
	}
	other, _ := nkeys.CreateUser()
	otherSeed, _ := other.Seed()
	if _, err := connect(t, s.ClientURL(), "--nats-nkey-file", writeFile(t, "other.nk", otherSeed)); err == nil {
		t.Fatal("an unknown nkey connected")
	}
}

// TestNATSCreds authenticates with a .creds file (user JWT and seed) on a
// server in operator mode.
func TestNATSCreds(t *testing.T) {
	okp, _ := nkeys.CreateOperator()
	opub, _ := okp.PublicKey()
	ojwt, err := jwt.NewOperatorClaims(opub).Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	oc, err := jwt.DecodeOperatorClaims(ojwt)
	if err != nil {
		t.Fatal(err)
	}
	akp, _ := nkeys.CreateAccount()
	apub, _ := akp.PublicKey()
	ajwt, err := jwt.NewAccountClaims(apub).Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	resolver := &server.MemAccResolver{}
	if err := resolver.Store(apub, ajwt); err != nil {
		t.Fatal(err)
	}
	ukp, _ := nkeys.CreateUser()
	upub, _ := ukp.PublicKey()
	useed, _ := ukp.Seed()
	ujwt, err := jwt.NewUserClaims(upub).Encode(akp)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := jwt.FormatUserConfig(ujwt, useed)
	if err != nil {
		t.Fatal(err)
	}
	s := natstest.RunOptions(t, &server.Options{TrustedOperators: []*jwt.OperatorClaims{oc}, AccountResolver: resolver})
	if _, err := connect(t, s.ClientURL(), "--nats-creds", writeFile(t, "user.creds", creds)); err != nil {
		t.Fatalf("with the creds: %v", err)
	}
	if _, err := connect(t, s.ClientURL()); err == nil {
		t.Fatal("no credentials connected")
	}
}

// TestNATSTLS verifies the server with --nats-tls-ca and presents a client
// certificate to a server that requires one.
func TestNATSTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := newCert(t, dir, "ca", nil, nil)
	newCert(t, dir, "server", ca, caKey)
	newCert(t, dir, "client", ca, caKey)
	file := func(name string) string { return filepath.Join(dir, name) }
	tlsConfig, err := server.GenTLSConfig(&server.TLSConfigOpts{
		CertFile: file("server.pem"), KeyFile: file("server-key.pem"), CaFile: file("ca.pem"), Verify: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	s := natstest.RunOptions(t, &server.Options{TLS: true, TLSVerify: true, TLSConfig: tlsConfig, TLSTimeout: 5})
	url := "tls://" + s.Addr().String()
	if _, err := connect(t, url, "--nats-tls-ca", file("ca.pem"),
		"--nats-tls-cert", file("client.pem"), "--nats-tls-key", file("client-key.pem")); err != nil {
		t.Fatalf("with the client certificate: %v", err)
	}
	if _, err := connect(t, url, "--nats-tls-ca", file("ca.pem")); err == nil {
		t.Fatal("connected without a client certificate")
	}
}

// newCert writes name.pem and name-key.pem to dir: a CA if parent is nil,
// else a certificate for 127.0.0.1 signed by parent.
func newCert(t *testing.T, dir, name string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "natter test " + name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
		parent, parentKey = tmpl, key
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for file, block := range map[string]*pem.Block{
		name + ".pem":     {Type: "CERTIFICATE", Bytes: der},
		name + "-key.pem": {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(filepath.Join(dir, file), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// TestNATSOptionsErrors names the flag of a missing file or a missing
// partner flag, and refuses two ways to authenticate.
func TestNATSOptionsErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	pw := writeFile(t, "pw", []byte("x"))
	empty := writeFile(t, "empty", []byte("\n"))
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--nats-user", "u", "--nats-password-file", missing}, "--nats-password-file"},
		{[]string{"--nats-user", "u", "--nats-password-file", empty}, "is empty"},
		{[]string{"--nats-user", "u"}, "--nats-user needs --nats-password-file"},
		{[]string{"--nats-password-file", pw}, "--nats-password-file needs --nats-user"},
		{[]string{"--nats-creds", missing}, "--nats-creds"},
		{[]string{"--nats-nkey-file", missing}, "--nats-nkey-file"},
		{[]string{"--nats-nkey-file", pw}, "--nats-nkey-file"}, // not a seed
		{[]string{"--nats-tls-ca", missing}, "--nats-tls-ca"},
		{[]string{"--nats-tls-cert", pw}, "go together"},
		{[]string{"--nats-tls-cert", missing, "--nats-tls-key", pw}, "--nats-tls-cert"},
		{[]string{"--nats-user", "u", "--nats-password-file", pw, "--nats-creds", pw}, "only one"},
	} {
		_, err := cliflag.NATSOptions(flagContext(t, cliflag.NATSFlags(), c.args...))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, want an error with %q", c.args, err, c.want)
		}
	}
	if opts, err := cliflag.NATSOptions(flagContext(t, cliflag.NATSFlags())); err != nil || len(opts) != 0 {
		t.Errorf("no flags: %d options, %v", len(opts), err)
	}
}
