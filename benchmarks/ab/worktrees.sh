# Sourced by the A/B scripts: `worktrees OUT_DIR ROOT NAME=COMMIT...` checks each commit out, detached, into
# OUT_DIR/trees/NAME (once), with ROOT's data/raw and data/processed linked in, so every arm runs its own code on the
# same data.
# shellcheck shell=bash
worktrees() {
    local out=$1 root=$2 arm tree part
    shift 2
    for arm in "$@"; do
        tree="$out/trees/${arm%%=*}"
        [[ -d "$tree" ]] || git worktree add -q --detach "$tree" "${arm#*=}"
        mkdir -p "$tree/data"
        for part in raw processed; do [[ -e "$tree/data/$part" ]] || ln -s "$root/data/$part" "$tree/data/$part"; done
    done
}
