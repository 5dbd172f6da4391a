# shellcheck shell=bash
# shellcheck disable=SC2317 # helpers defined inside a test are called through check
# p1: create-to-SSH-ready against bare Incus with the same image, user-data
# and config, in the same run (one sample here; scripts/bench.sh takes more).

test_p1() {
	e2e_client e2e-perf "$E2E_WORK"
	e2e_p1 "${E2E_P1_ROUNDS:-5}" "$E2E_WORK" e2e-perf || fail "P1 measurement"
}
