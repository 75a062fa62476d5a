package gateway

import (
	"strings"
	"testing"
	"time"
)

// TestConfigValidate: each bad value is refused with its flag named, and
// all of them at once are reported at once.
func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Config)
		want   string // what the error names; "": valid
	}{
		{"default", func(*Config) {}, ""},
		{"no listener", func(c *Config) { c.Listen = "" }, "no client listener: give --listen"},
		{"tls without cert", func(c *Config) { c.TLSListen = "127.0.0.1:0" }, "--tls-listen and --wss-listen need a certificate"},
		{"cert without key", func(c *Config) { c.TLSCert = "c.pem" }, "--tls-cert and --tls-key go together"},
		{"cert without tls listener", func(c *Config) { c.TLSCert, c.TLSKey = "c.pem", "k.pem" }, "give --tls-listen or --wss-listen"},
		{"negative reload", func(c *Config) { c.TLSReloadInterval = -time.Second }, "--tls-reload-interval -1s"},
		{"small frame", func(c *Config) { c.MaxFrame = 1023 }, "--max-frame 1023"},
		{"short presence ttl", func(c *Config) { c.PresenceTTL = time.Second }, "--presence-ttl 1s"},
		{"small write limit", func(c *Config) { c.WriteLimit = c.MaxFrame }, "--write-limit"},
		{"no write timeout", func(c *Config) { c.WriteTimeout = 0 }, "--write-timeout 0s"},
		{"no request timeout", func(c *Config) { c.RequestTimeout = 0 }, "--request-timeout 0s"},
		{"no ack interval", func(c *Config) { c.AckInterval = -time.Second }, "--ack-interval -1s"},
		{"no flood rate", func(c *Config) { c.FloodRate = 0 }, "--flood-rate 0"},
		{"no flood burst", func(c *Config) { c.FloodBurst = 0 }, "--flood-burst 0"},
		{"negative idle timeout", func(c *Config) { c.IdleTimeout = -time.Second }, "--idle-timeout -1s"},
		{"negative max conns", func(c *Config) { c.MaxConns = -1 }, "--max-conns -1"},
		{"long legacy gap", func(c *Config) { c.LegacyGap = 2 * time.Second }, "--legacy-gap 2s"},
		{"negative drain window", func(c *Config) { c.DrainWindow = -time.Second }, "--drain-window -1s"},
		{"web without websocket", func(c *Config) { c.Web = true }, "--web needs --ws-listen"},
		{"one address twice", func(c *Config) { c.WSListen = c.Listen }, "--listen and --ws-listen are both"},
		{"bad origin", func(c *Config) { c.WSListen, c.WSOrigins = "127.0.0.1:0", []string{"[x"} }, `--ws-origins pattern "[x"`},
		{"web on websocket", func(c *Config) { c.Web, c.WSListen = true, "127.0.0.1:0" }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.modify(&cfg)
			err := cfg.Validate()
			if (err == nil) != (tt.want == "") || err != nil && !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %v, want an error naming %q", err, tt.want)
			}
		})
	}
	err := Config{Listen: "127.0.0.1:6000", WSListen: "127.0.0.1:6000", TLSCert: "c.pem", WSOrigins: []string{""},
		TLSReloadInterval: -1, WriteLimit: -1, IdleTimeout: -1, MaxConns: -1, LegacyGap: -1, DrainWindow: -1}.Validate()
	for _, flag := range []string{"--tls-cert and --tls-key go together", "give --tls-listen or --wss-listen",
		"--tls-reload-interval", "--max-frame", "--presence-ttl", "--write-limit", "--write-timeout", "--request-timeout",
		"--ack-interval", "--flood-rate", "--flood-burst", "--idle-timeout", "--max-conns", "--legacy-gap",
		"--drain-window", "are both", "--ws-origins"} {
		if err == nil || !strings.Contains(err.Error(), flag) {
			t.Errorf("all bad: Validate() = %v, want it to name %q", err, flag)
		}
	}
}
