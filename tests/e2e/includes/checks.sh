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

# ---------------------------------------------------------------------------
# The runners' part (scripts/e2e.sh, scripts/e2e-cluster.sh)
# ---------------------------------------------------------------------------

# e2e_pick_suites ARGS...: sets E2E_SUITES to the suites named in ARGS (each
# must define test_NAME), or to every suite of the runner's all_suites that
# is defined. `--list` prints all_suites and named_suites (run by name only)
# and exits.
# shellcheck disable=SC2154 # all_suites and named_suites are the runner's
e2e_pick_suites() {
	local arg suite named=(${named_suites[@]+"${named_suites[@]}"})
	E2E_SUITES=()
	for arg in "$@"; do
		case $arg in
		--list)
			printf '%s\n' "${all_suites[@]}"
			[ "${#named[@]}" -eq 0 ] || printf '%s (by name only)\n' "${named[@]}"
			exit 0
			;;
		-*) echo "unknown option: $arg" >&2; exit 2 ;;
		*)
			declare -F "test_${arg//-/_}" >/dev/null || { echo "no such suite: $arg (see --list)" >&2; exit 2; }
			E2E_SUITES+=("$arg")
			;;
		esac
	done
	if [ "${#E2E_SUITES[@]}" -eq 0 ]; then
		for suite in "${all_suites[@]}"; do
			if declare -F "test_${suite//-/_}" >/dev/null; then E2E_SUITES+=("$suite"); fi
		done
	fi
}

# e2e_run_suites: runs E2E_SUITES in order, then prints a line per suite,
# every failure and the totals; fails when a check failed.
e2e_run_suites() {
	local suite before_pass before_fail t0 summary=()
	for suite in "${E2E_SUITES[@]}"; do
		E2E_SUITE=$suite
		before_pass=$E2E_PASSED before_fail=$E2E_FAILED t0=$(e2e_now_ms)
		e2e_log "suite $suite"
		"test_${suite//-/_}"
		summary+=("$(printf '%-14s %3d passed, %d failed, %5.1f s' "$suite" \
			$((E2E_PASSED - before_pass)) $((E2E_FAILED - before_fail)) \
			"$(awk -v ms=$(($(e2e_now_ms) - t0)) 'BEGIN { print ms / 1000 }')")")
	done
	printf 'suite %s\n' "${summary[@]}"
	for failure in "${E2E_FAILURES[@]}"; do printf 'failed: %s\n' "$failure"; done
	printf '%d passed, %d failed\n' "$E2E_PASSED" "$E2E_FAILED"
	[ "$E2E_FAILED" -eq 0 ]
}
