// Package clustertest holds the fault test of a whole natter cluster on
// loopback (`make test-cluster`): deployments/local/cluster.sh brings up 3
// NATS nodes, a private MariaDB, 2 instances of each service, 2 gateways and
// nginx; natter bench drives one-to-one and group traffic through nginx
// while the test kills and restarts one component after another, and each
// round's delivery check must show nothing lost, nothing doubled and every
// conversation in order. The test is behind the build tag "cluster" so that
// `make test` does not run it.
package clustertest
