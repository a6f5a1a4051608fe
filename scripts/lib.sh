# shellcheck shell=bash
# Sourced by scripts/serve, scripts/test and scripts/build-wheels: the packages of this
# repository and the one .venv they are installed into.
#
# pip is the slow part of every command (20-40 s even when nothing changed, as it rebuilds
# each editable wheel), so a profile is installed only when its stamp is stale. The stamp
# (.venv/.angos-<profile>.stamp) holds a hash of the profile's pip arguments, the venv's
# Python version and every pyproject.toml: dependencies, extras, entry points and versions all
# live there, and a new plugin directory adds a file. Code changes need no reinstall (the
# installs are editable). Delete .venv/.angos-*.stamp to force one.

ANGOS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ANGOS_ROOT/.venv"

# Every package: core (the repository root), then each directory under plugins/ and
# examples/ with a pyproject.toml, relative to ANGOS_ROOT. New plugins are picked up as added.
angos_package_dirs() {
    local dir
    echo .
    for dir in "$ANGOS_ROOT"/plugins/*/ "$ANGOS_ROOT"/examples/*/; do
        dir="${dir%/}"
        [ -f "$dir/pyproject.toml" ] && echo "${dir#"$ANGOS_ROOT"/}"
    done
    return 0
}

# The pip arguments of a profile, one per line.
#   serve: what `angos serve` needs on the embedded default (core, angos-fs, angos-memory),
#          and angos-auth-basic for [auth.identity] users and `angos hash-password`;
#   build: core with the dev extra (build, twine, setuptools) for scripts/build-wheels;
#   test:  everything, editable, with the test and dev extras; a superset of the others.
angos_profile_args() {
    local dir
    case "$1" in
        serve) printf '%s\n' -e . -e plugins/angos-fs -e plugins/angos-memory -e plugins/angos-auth-basic ;;
        build) printf '%s\n' -e ".[dev]" ;;
        test)
            printf '%s\n' -e ".[test,dev]"
            while read -r dir; do
                [ "$dir" = . ] && continue
                if grep -Eq '^test[[:space:]]*=' "$ANGOS_ROOT/$dir/pyproject.toml"; then
                    printf '%s\n' -e "$dir[test]"
                else
                    printf '%s\n' -e "$dir"
                fi
            done < <(angos_package_dirs)
            ;;
        *) echo "angos_profile_args: unknown profile $1" >&2; return 2 ;;
    esac
}

_angos_stamp_hash() {  # PROFILE PYTHON_VERSION
    local dir
    {
        echo "$1"
        echo "$2"
        angos_profile_args "$1"
        while read -r dir; do
            sha256sum "$ANGOS_ROOT/$dir/pyproject.toml"
        done < <(angos_package_dirs)
    } | sha256sum | cut -d' ' -f1
}

# Create .venv if missing and pip-install PROFILE into it unless already installed and
# unchanged (its own stamp or the test profile's, which covers every profile, is current).
angos_venv_ensure() {
    local profile="$1" pyver want covered
    if [ ! -x "$VENV/bin/python" ]; then
        echo "${0##*/}: creating $VENV" >&2
        "${PYTHON:-python3}" -m venv "$VENV"
    fi
    pyver="$("$VENV/bin/python" -VV)"
    want="$(_angos_stamp_hash "$profile" "$pyver")"
    for covered in "$profile" test; do
        if [ "$(cat "$VENV/.angos-$covered.stamp" 2>/dev/null)" = \
             "$(_angos_stamp_hash "$covered" "$pyver")" ]; then
            return 0
        fi
    done
    local -a args
    mapfile -t args < <(angos_profile_args "$profile")
    echo "${0##*/}: installing into $VENV (again only when a pyproject.toml changes):" \
        "${args[*]}" >&2
    rm -f "$VENV/.angos-$profile.stamp"
    (cd "$ANGOS_ROOT" &&
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${args[@]}")
    echo "$want" >"$VENV/.angos-$profile.stamp"
}

# --- system packages (scripts/test) -------------------------------------------------------

_angos_sudo() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

_angos_installed_packages() {
    dpkg-query -W -f '${db:Status-Status} ${binary:Package}\n' |
        awk '$1 == "installed" { print $2 }' | sort
}

_ANGOS_POLICY="${ANGOS_POLICY_RC_D:-/usr/sbin/policy-rc.d}"  # tests point it elsewhere
_ANGOS_POLICY_OURS=""   # set while our policy-rc.d is in place
_ANGOS_POLICY_SAVED=""  # the one it replaced, if any

_angos_restore_policy() {
    [ -n "$_ANGOS_POLICY_OURS" ] || return 0
    if [ -n "$_ANGOS_POLICY_SAVED" ]; then
        _angos_sudo mv "$_ANGOS_POLICY_SAVED" "$_ANGOS_POLICY"
    else
        _angos_sudo rm -f "$_ANGOS_POLICY"
    fi
    _ANGOS_POLICY_OURS=""
}

# Stop (when systemd runs) and disable at boot every service, socket and timer PKG ships.
_angos_disable_services() {
    local pkg="$1" path name booted=""
    [ -d /run/systemd/system ] && booted=1
    while read -r path; do
        name="${path##*/}"
        case "${path%/*}" in
            /lib/systemd/system | /usr/lib/systemd/system)
                case "$name" in
                    *@.*) continue ;;  # a template: only its instances are ever enabled
                    *.service | *.socket | *.timer) ;;
                    *) continue ;;
                esac
                echo "scripts/test: disabling $name ($pkg) at boot" >&2
                if command -v systemctl >/dev/null 2>&1; then
                    # Works without a running systemd too: it edits the .wants links.
                    _angos_sudo systemctl disable --quiet ${booted:+--now} "$name" || true
                elif command -v deb-systemd-helper >/dev/null 2>&1; then
                    _angos_sudo deb-systemd-helper disable "$name" || true
                else
                    _angos_sudo find /etc/systemd/system -name "$name" -type l -delete
                fi
                ;;
            /etc/init.d)
                echo "scripts/test: disabling /etc/init.d/$name ($pkg) at boot" >&2
                if command -v update-rc.d >/dev/null 2>&1; then
                    # S links become K links, which a package upgrade leaves alone.
                    _angos_sudo update-rc.d "$name" disable >/dev/null 2>&1 ||
                        echo "scripts/test: update-rc.d $name disable failed" >&2
                else
                    _angos_sudo find /etc/rc0.d /etc/rc1.d /etc/rc2.d /etc/rc3.d /etc/rc4.d \
                        /etc/rc5.d /etc/rc6.d /etc/rcS.d -name "S[0-9][0-9]$name" -type l \
                        -delete 2>/dev/null || true
                fi
                ;;
        esac
    done < <(dpkg -L "$pkg" 2>/dev/null)
}

# apt-get install PKG... and start nothing, now or at boot. docker.io, containerd,
# redis-server, docker-registry and podman enable their daemons in postinst and start them;
# the tests start each daemon they need themselves, on loopback, and stop it. A policy-rc.d
# answering 101 ("action forbidden") stops invoke-rc.d and deb-systemd-invoke, through which
# every postinst starts its service, for the time of the install (an existing one is put
# back after); then every unit and init script of each newly installed package,
# dependencies included, is disabled.
angos_apt_install() {
    local before pkg rc=0
    before="$(_angos_installed_packages)"
    if [ -e "$_ANGOS_POLICY" ]; then
        _ANGOS_POLICY_SAVED="$(mktemp)"
        _angos_sudo cp -p "$_ANGOS_POLICY" "$_ANGOS_POLICY_SAVED"
    fi
    trap _angos_restore_policy EXIT
    _ANGOS_POLICY_OURS=1
    printf '#!/bin/sh\n# scripts/test: start nothing while it installs packages\nexit 101\n' |
        _angos_sudo tee "$_ANGOS_POLICY" >/dev/null
    _angos_sudo chmod 755 "$_ANGOS_POLICY"
    {
        _angos_sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
            _angos_sudo env DEBIAN_FRONTEND=noninteractive \
                apt-get install -y -q --no-install-recommends "$@"
    } || rc=$?
    _angos_restore_policy
    trap - EXIT
    [ "$rc" -eq 0 ] || return "$rc"
    while read -r pkg; do
        _angos_disable_services "$pkg"
    done < <(comm -13 <(echo "$before") <(_angos_installed_packages))
}
