# shellcheck shell=bash
# checks.sh: how a suite states what it proves. Every check prints one
# "PASS name" or "FAIL name" line (with the tail of its output on failure);
# the runner counts them per suite. Sourced by scripts/e2e.sh.

E2E_PASSED=0
E2E_FAILED=0
E2E_FAILURES=()
E2E_SUITE=

pass() {
	E2E_PASSED=$((E2E_PASSED + 1))
	printf 'PASS %s\n' "$1"
}
fail() {
	E2E_FAILED=$((E2E_FAILED + 1))
	E2E_FAILURES+=("${E2E_SUITE:-?}: $1")
	printf 'FAIL %s\n' "$1"
}
skip() { printf 'SKIP %s\n' "$1"; }
# not CMD...: succeeds when CMD fails (for check lines that prove a refusal).
not() { ! "$@"; }

# check NAME CMD...: runs CMD, PASS when it succeeds.
check() {
	local name=$1
	shift
	if "$@" >"$E2E_STATE_DIR/check.out" 2>&1; then
		pass "$name"
	else
		fail "$name"
		sed 's/^/    | /' "$E2E_STATE_DIR/check.out" | tail -n 20
	fi
}

# refused NAME PATTERN CMD...: CMD must fail and print PATTERN (grep -e).
refused() {
	local name=$1 pattern=$2
	shift 2
	if "$@" >"$E2E_STATE_DIR/check.out" 2>&1; then
		fail "$name (it succeeded)"
		sed 's/^/    | /' "$E2E_STATE_DIR/check.out" | tail -n 5
	elif grep -q -- "$pattern" "$E2E_STATE_DIR/check.out"; then
		pass "$name"
	else
		fail "$name (no \"$pattern\")"
		sed 's/^/    | /' "$E2E_STATE_DIR/check.out" | tail -n 20
	fi
}

# one_line_error NAME PATTERN CMD...: like refused, and the error is one
# line ("error: ...", holding PATTERN) with nothing after it: a refusal says
# one thing (progress and warnings before it are their own lines).
one_line_error() {
	local name=$1 pattern=$2
	shift 2
	refused "$name" "$pattern" "$@"
	grep -q -- "$pattern" <(tail -n 1 "$E2E_STATE_DIR/check.out" | grep '^error: ') ||
		fail "$name: the last line is not the one-line error"
	[ "$(grep -c '^error' "$E2E_STATE_DIR/check.out")" -eq 1 ] ||
		fail "$name: more than one error line"
}
