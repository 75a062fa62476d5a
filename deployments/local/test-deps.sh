#!/usr/bin/env bash
# deployments/local/test-deps.sh: install and start what `make test` needs
# on a Debian machine, then print the shell line that points the tests at
# MySQL/MariaDB (make test evaluates it):
#
#     export NATTER_TEST_MYSQL_DSN='root@tcp(127.0.0.1:3306)/'
#
# What it sees to (apt-get update once, then apt-get install, as root or
# through sudo):
#   - MySQL/MariaDB answering on 127.0.0.1:3306 (a DSN already set in
#     NATTER_TEST_MYSQL_DSN is used as it is); if none answers, MariaDB is
#     installed, started, and a user natter_ci is created when root needs a
#     password;
#   - nginx with its stream module, MariaDB's server binaries and curl for
#     the cluster fault test (it runs its own nginx and MariaDB);
#   - shellcheck (make vet), prometheus and promtool (the alerting rules);
#   - Debian's chromium, Node.js >= 20 and `npm ci` in tools/webtest for the
#     browser tests.
# Packages' own services are kept from starting (the tests run their own).
# What cannot be had stops it with the reason and the command that would
# fix it. Everything it says goes to standard error.
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { printf '== %s\n' "$*" >&2; }
fail() {
	printf 'make test cannot run: %s\n' "$1" >&2
	[ $# -lt 2 ] || printf '  fix: %s\n' "$2" >&2
	exit 1
}

sudo=""
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
		sudo="sudo"
	else
		sudo="need-root"
	fi
fi

apt_updated=""
apt_install() {
	if [ "$sudo" = need-root ]; then
		fail "missing: $*; installing needs root" "sudo apt-get update && sudo apt-get install --no-install-recommends $*"
	fi
	command -v apt-get >/dev/null || fail "missing: $*; this is not a Debian machine (no apt-get)" "install $* with your package manager"
	if [ -z "$apt_updated" ]; then
		say "apt-get update"
		$sudo apt-get update -qq >&2 || fail "apt-get update failed" "sudo apt-get update"
		apt_updated=1
	fi
	say "installing $*"
	# Keep the packages' own services (nginx, mariadb, prometheus) from
	# starting: the tests start their own.
	local had_policy=""
	[ -e /usr/sbin/policy-rc.d ] && had_policy=1
	[ -n "$had_policy" ] || printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
	$sudo chmod +x /usr/sbin/policy-rc.d
	local rc=0
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >&2 || rc=$?
	[ -n "$had_policy" ] || $sudo rm -f /usr/sbin/policy-rc.d
	[ "$rc" -eq 0 ] || fail "apt-get install $* failed" "sudo apt-get install --no-install-recommends $*"
}

need=()
command -v make >/dev/null || need+=(make)
command -v gcc >/dev/null || need+=(gcc) # -race needs cgo
command -v nginx >/dev/null || need+=(nginx)
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || need+=(libnginx-mod-stream)
[ -x /usr/sbin/mariadbd ] || need+=(mariadb-server)
command -v mariadb >/dev/null || need+=(mariadb-client)
command -v curl >/dev/null || need+=(curl)
command -v shellcheck >/dev/null || need+=(shellcheck)
command -v promtool >/dev/null || need+=(prometheus)
command -v chromium >/dev/null || need+=(chromium)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
[ ${#need[@]} -eq 0 ] || apt_install "${need[@]}"

command -v go >/dev/null || fail "no Go toolchain (Go 1.26 is required)" "install Go 1.26 in /usr/local/go and add /usr/local/go/bin to PATH"
node -e 'process.exit(+process.versions.node.split(".")[0] < 20 ? 1 : 0)' ||
	fail "Node.js >= 20 is required for the browser tests (playwright-core); found $(node --version)" \
		"install Node.js 20 or newer (Debian 13: apt-get install nodejs)"

# The browser tests' driver (playwright-core, no browser download).
if [ ! -d tools/webtest/node_modules/playwright-core ] ||
	[ tools/webtest/package-lock.json -nt tools/webtest/node_modules/.package-lock.json ]; then
	say "npm ci in tools/webtest (the browser tests' driver)"
	(cd tools/webtest && npm ci --no-audit --no-fund >&2) || fail "npm ci in tools/webtest failed" "cd tools/webtest && npm ci"
fi

# MySQL/MariaDB for the Go tests.
mysql_ok() { mariadb --protocol=tcp -h127.0.0.1 -P3306 "$@" -e 'SELECT 1' >/dev/null 2>&1; }
dsn="${NATTER_TEST_MYSQL_DSN:-}"
if [ -z "$dsn" ]; then
	if ! mysql_ok -uroot && ! mysql_ok -unatter_ci -pnatter_ci; then
		if [ "$sudo" = need-root ]; then
			fail "no MySQL/MariaDB answers on 127.0.0.1:3306 and starting one needs root" \
				"sudo mariadbd --user=mysql --bind-address=127.0.0.1 --port=3306 & (or set NATTER_TEST_MYSQL_DSN)"
		fi
		say "starting MariaDB on 127.0.0.1:3306"
		$sudo mkdir -p /run/mysqld
		$sudo chown mysql:mysql /run/mysqld 2>/dev/null || true
		$sudo start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- \
			--user=mysql --bind-address=127.0.0.1 --port=3306
		for _ in $(seq 1 60); do
			mysql_ok -uroot && break
			# root over the socket, when root over TCP needs a password
			$sudo mariadb -uroot -e 'SELECT 1' >/dev/null 2>&1 && break
			sleep 1
		done
	fi
	if mysql_ok -uroot; then
		dsn='root@tcp(127.0.0.1:3306)/'
	else
		if ! mysql_ok -unatter_ci -pnatter_ci; then
			$sudo mariadb -uroot -e "CREATE USER IF NOT EXISTS 'natter_ci'@'127.0.0.1' IDENTIFIED BY 'natter_ci';
				GRANT ALL PRIVILEGES ON *.* TO 'natter_ci'@'127.0.0.1'; FLUSH PRIVILEGES;" >&2 ||
				fail "MariaDB runs but neither root nor natter_ci can log in over TCP" \
					"export NATTER_TEST_MYSQL_DSN='user:password@tcp(127.0.0.1:3306)/' (a user that may create databases)"
		fi
		dsn='natter_ci:natter_ci@tcp(127.0.0.1:3306)/'
	fi
fi
say "MySQL for the tests: ${dsn%%@*}@..."
printf "export NATTER_TEST_MYSQL_DSN='%s'\n" "$dsn"
