# Sourced by the scripts here: `make_importable NAME` makes `import instrumentd` work from the
# checkout REPO (set by the caller) when it is not installed, through a symlink named instrumentd in
# a temporary folder put on PYTHONPATH (removed on exit; the checkout itself is untouched).
make_importable() {
    "$PYTHON" -c "import instrumentd" 2>/dev/null && return 0
    SHIM=$(mktemp -d)
    trap 'rm -rf "$SHIM"' EXIT  # removes the link, not what it points to
    ln -s "$REPO" "$SHIM/instrumentd"
    export PYTHONPATH="$SHIM${PYTHONPATH:+:$PYTHONPATH}"
    "$PYTHON" -c "import instrumentd" || { echo "$1: cannot import instrumentd from $REPO" >&2; exit 1; }
    echo "$1: instrumentd imported through $SHIM/instrumentd -> $REPO" >&2
}
