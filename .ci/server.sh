# Sourced by the .ci scripts that drive a real `dialtone serve`: start it on a private data dir, wait for
# its API address, stop it with SIGTERM and check that its private PostgreSQL is gone; and, for EXIT
# traps, stop whatever is left; and builds the binary and a Python venv for the tools. The caller defines
# `say`, `fail`, and the variables bin, work, data, log, START_DEADLINE, STOP_DEADLINE and PG_GONE_DEADLINE.
# Sets server_pid, url, venv and py.

server_pid=""
url=""

strip_ansi() { sed 's/\x1b\[[0-9;]*m//g'; }

show_log() {
    if [[ -s $log ]]; then
        echo "---- server log (last 100 lines) ----" >&2
        tail -n 100 "$log" | strip_ansi >&2
        echo "---- end of server log ----" >&2
    fi
}

# Processes of the data dir: the private PostgreSQL and its helpers, found by a command line that names
# the data dir (the postmaster, its stop watchdog) or a working directory inside it (the postmaster's
# children, whose command lines read `postgres: checkpointer` and the like).
procs_of_data_dir() {
    local p cmd cwd
    for p in /proc/[0-9]*; do
        [[ ${p#/proc/} == "$$" || ${p#/proc/} == "$BASHPID" ]] && continue
        cmd=$({ tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null) || continue
        cwd=$(readlink "$p/cwd" 2>/dev/null) || cwd=""
        if [[ $cmd == *"$data/"* || $cwd == "$data/"* ]]; then
            echo "${p#/proc/} $cmd"
        fi
    done
    return 0
}

# Starts the server with every listener on a free loopback port and waits for its API address.
start_server() {
    mkdir -m 755 "$data"
    say "starting $bin serve on $data"
    env -u DIALTONE_DATABASE_URL \
        DIALTONE_DATA_DIR="$data" \
        DIALTONE_API_LISTEN=127.0.0.1:0 \
        DIALTONE_TFTP_LISTEN=127.0.0.1:0 \
        DIALTONE_HTTP_LISTEN=127.0.0.1:0 \
        "$bin" serve >"$log" 2>&1 </dev/null &
    server_pid=$!
    for _ in $(seq 1 "$((START_DEADLINE * 10))"); do
        url=$(strip_ansi <"$log" | grep -o 'API listening on http://[0-9.]*:[0-9]*' | head -n 1 | sed 's/^API listening on //' || true)
        [[ -n $url ]] && break
        if ! kill -0 "$server_pid" 2>/dev/null; then
            show_log
            fail "the server exited before listening"
        fi
        sleep 0.1
    done
    if [[ -z $url ]]; then
        show_log
        fail "the server did not log 'API listening on' within ${START_DEADLINE}s"
    fi
    say "server listening on $url"
}

# SIGTERM; the server must exit 0 within STOP_DEADLINE and leave no PostgreSQL within PG_GONE_DEADLINE.
stop_server() {
    local stopped="" server_rc=0 left=""
    kill -TERM "$server_pid"
    for _ in $(seq 1 "$((STOP_DEADLINE * 10))"); do
        if ! kill -0 "$server_pid" 2>/dev/null; then
            stopped=yes
            break
        fi
        sleep 0.1
    done
    if [[ -z $stopped ]]; then
        show_log
        fail "the server did not exit within ${STOP_DEADLINE}s of SIGTERM"
    fi
    wait "$server_pid" || server_rc=$?
    server_pid=""
    for _ in $(seq 1 "$((PG_GONE_DEADLINE * 10))"); do
        left=$(procs_of_data_dir)
        [[ -z $left ]] && break
        sleep 0.1
    done
    if [[ $server_rc -ne 0 ]]; then
        show_log
        fail "the server exited $server_rc after SIGTERM, not 0"
    fi
    if [[ -n $left ]]; then
        echo "$left" >&2
        fail "processes of the private PostgreSQL under $data remain ${PG_GONE_DEADLINE}s after the server exited"
    fi
    say "server stopped cleanly; no PostgreSQL left under the data dir"
}

# For EXIT traps: stop the server however it is, then whatever of its PostgreSQL is left.
kill_server() {
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null
        for _ in $(seq 1 "$((STOP_DEADLINE * 10))"); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$server_pid" 2>/dev/null
        wait "$server_pid" 2>/dev/null
    fi
    local left
    left=$(procs_of_data_dir | cut -d' ' -f1)
    if [[ -n $left ]]; then
        # shellcheck disable=SC2086
        kill -TERM $left 2>/dev/null
        sleep 1
    fi
}

# Builds $bin when it is missing.
ensure_bin() {
    if [[ ! -x $bin ]]; then
        say "building $bin"
        cargo build --quiet || fail "cargo build failed"
    fi
}

# A venv under $work for the Python tools; sets venv and py. Debian ships venv (ensurepip) separately: installed
# when missing and running as root.
make_venv() {
    venv="$work/venv"
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
        if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
            say "installing python3-venv"
            rm -rf "$venv"
            apt-get update -qq >/dev/null
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
            python3 -m venv "$venv" || fail "python3 -m venv failed even with python3-venv installed"
        else
            fail "python3 -m venv does not work here (on Debian: apt-get install python3-venv)"
        fi
    fi
    py="$venv/bin/python"
}
