# Sourced by the rpcd plugin and the hotplug script: the PID of the running mape-py daemon,
# read from its pid file and checked against the process's command line, so that a stale
# pid file never makes us signal (or report as running) an unrelated process that got the
# same PID. Prints the PID and returns 0, or returns 1.
mape_daemon_pid() {
	_mape_pid=$(cat "$1" 2>/dev/null)
	case "$_mape_pid" in ''|*[!0-9]*) return 1 ;; esac
	[ -r "/proc/$_mape_pid/cmdline" ] || return 1
	_mape_args=$(tr '\000' '\n' < "/proc/$_mape_pid/cmdline" 2>/dev/null)
	# `python3 /usr/bin/mape-py daemon ...` on the router, `python3 -m mape daemon ...` elsewhere
	printf '%s\n' "$_mape_args" | grep -qx 'daemon' || return 1
	printf '%s\n' "$_mape_args" | grep -qE '(^|/)mape-py$|^mape$' || return 1
	echo "$_mape_pid"
}
