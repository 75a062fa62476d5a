// Package routebench holds the benchmark of the gateway's delivery path:
// a push published on a user's NATS subject, routed by the gateway to the
// user's session and written to the client's socket. It has no code of its
// own; see route_test.go.
package routebench
