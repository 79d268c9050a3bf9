#!/usr/bin/env bash
# Remove what packaging/install.sh installed: the service, the virtual environment, the
# /usr/local/bin link and (unless --keep-config) the settings. The .deb is removed with
# `apt purge tegrastats-api` instead.
set -euo pipefail

NAME=tegrastats-api

usage() {
    cat <<EOF2
usage: $0 [--root DIR] [--prefix DIR] [--keep-config] [--host H] [--port P]

Stops and disables the $NAME service and removes what install.sh installed.

  --root DIR      remove from below DIR instead of / (a scratch root): systemctl is
                  not run, nothing outside DIR is touched
  --prefix DIR    the virtual environment (default: /opt/$NAME)
  --keep-config   keep /etc/default/$NAME and /etc/$NAME/
  --host H, --port P
                  accepted like install.sh's so the same command line works; the
                  settings go away with the configuration
  -h, --help      this help
EOF2
}

die() { echo "uninstall.sh: error: $*" >&2; exit 2; }
say() { echo "== $*"; }

prefix="/opt/$NAME" root="" keep_config=0
while [ $# -gt 0 ]; do
    case "$1" in
        --host|--port) [ $# -ge 2 ] || die "$1 needs a value"; shift 2 ;;
        --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; prefix="$2"; shift 2 ;;
        --root) [ $# -ge 2 ] || die "--root needs a directory"; root="$2"; shift 2 ;;
        --keep-config) keep_config=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done

case "$prefix" in
    /?*) ;;
    *) die "--prefix: $prefix must be an absolute path other than /" ;;
esac
prefix="${prefix%/}"
if [ -n "$root" ]; then
    [ -d "$root" ] || die "--root: no such directory: $root"
    root="$(cd "$root" && pwd)"
    [ "$root" != "/" ] || root=""
fi
if [ -z "$root" ] && [ "$(id -u)" -ne 0 ]; then
    die "run as root (sudo $0 ...), or give --root DIR"
fi

venv="$root$prefix"
unit="$root/etc/systemd/system/$NAME.service"
if [ -z "$root" ] && dpkg-query -W -f='${Status}' "$NAME" 2>/dev/null | grep -q "ok installed"; then
    # /etc/default and /etc/tegrastats-api are the .deb's conffiles then.
    say "the $NAME .deb is installed: its settings are kept (apt purge $NAME removes them)"
    keep_config=1
fi

# --- systemd ------------------------------------------------------------------------
if [ -z "$root" ] && [ -d /run/systemd/system ]; then
    say "systemctl disable --now $NAME"
    systemctl disable --now "$NAME" 2>/dev/null || true
else
    why="systemd is not running"
    [ -z "$root" ] || why="--root $root"
    say "$why: systemctl not run; on the target system, run before and after:"
    printf '    %s\n' "systemctl disable --now $NAME" "systemctl daemon-reload"
fi

removed() { say "removed $1"; }
for path in "$unit" "$root/etc/systemd/system/multi-user.target.wants/$NAME.service"; do
    if [ -e "$path" ] || [ -L "$path" ]; then rm -f "$path"; removed "$path"; fi
done

link="$root/usr/local/bin/$NAME"
if [ -L "$link" ] && [ "$(readlink "$link")" = "$prefix/bin/$NAME" ]; then
    rm -f "$link"
    removed "$link"
fi

if [ -d "$venv" ]; then
    # Only a virtual environment is removed wholesale, never an arbitrary folder.
    [ -f "$venv/pyvenv.cfg" ] || die "$venv is not a virtual environment; not removing it"
    rm -rf "$venv"
    removed "$venv"
fi

if [ "$keep_config" -eq 0 ]; then
    for path in "$root/etc/default/$NAME" "$root/etc/$NAME" "$root/etc/systemd/system/$NAME.service.d"; do
        if [ -e "$path" ]; then rm -rf "$path"; removed "$path"; fi
    done
fi

if [ -z "$root" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl reset-failed "$NAME" 2>/dev/null || true
fi
say "uninstalled $NAME"
