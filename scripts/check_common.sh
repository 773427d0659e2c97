# Shared by the end-to-end check scripts (sourced, not run).

# Stop the embedded server whose data directory is $pgdata: it outlives a run by design, and
# must be stopped before its directory is removed.
stop_embedded_server() {
    local pid
    pid=$(head -n 1 "$pgdata/postmaster.pid" 2>/dev/null) || return 0
    kill -INT "$pid" 2>/dev/null || return 0
    for _ in $(seq 150); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
}

# Stop the server, then remove $work.
cleanup() {
    stop_embedded_server
    rm -rf "$work"
}

# Copy what a clone holds (tracked and new, unignored files) into $1, so that uncommitted work
# is what gets checked.
copy_repository() {
    mkdir -p "$1"
    while IFS= read -r -d '' file; do
        if [ -e "$file" ]; then printf '%s\0' "$file"; fi
    done < <(git ls-files -z --cached --others --exclude-standard) |
        tar --null --files-from=- -cf - | tar -xf - -C "$1"
}
