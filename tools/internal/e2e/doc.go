// Package e2e holds natter's end-to-end tests: a real nats-server on a random
// port, two instances of every service on a real database (SQLite and
// MySQL/MariaDB), two gateways, and clients on real TCP sockets speaking both
// dialects. Golden wire transcripts live in testdata/.
package e2e
