#!/usr/bin/env bash
# Builds a local rootless-Podman image holding the static rootless-restore binary, without a
# registry: a root filesystem of busybox-static and the binary, imported with `podman import`.
# setup.sh's binary is static-pie and needs no library; the shared libraries ldd lists for any
# other build are copied in.
#
#   scripts/podman-image.sh BINARY [IMAGE]     as the user who will run the containers
#   . scripts/podman-image.sh --env            only export the per-user Podman settings
#
# Per-user Podman settings, nothing written to the user's home: CONTAINERS_STORAGE_CONF (vfs
# storage under $RR_PODMAN_DIR), CONTAINERS_CONF (cgroupfs, file events, runc: crun 1.8 refuses
# hybrid cgroup hosts), XDG_RUNTIME_DIR, HOME. RR_PODMAN_DIR defaults to /tmp/rr-podman-$USER.
# Prints the image name (default localhost/rootless-restore:static).
set -euo pipefail

rr_podman_env() {
    local user; user=$(id -un)
    export RR_PODMAN_DIR="${RR_PODMAN_DIR:-/tmp/rr-podman-$user}"
    mkdir -p "$RR_PODMAN_DIR/storage" "$RR_PODMAN_DIR/run" "$RR_PODMAN_DIR/xdg" "$RR_PODMAN_DIR/home"
    chmod 700 "$RR_PODMAN_DIR" "$RR_PODMAN_DIR/xdg" "$RR_PODMAN_DIR/home"
    cat > "$RR_PODMAN_DIR/storage.conf" <<EOF
[storage]
driver = "vfs"
graphroot = "$RR_PODMAN_DIR/storage"
runroot = "$RR_PODMAN_DIR/run"
EOF
    cat > "$RR_PODMAN_DIR/containers.conf" <<EOF
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
[containers]
log_driver = "k8s-file"
EOF
    export CONTAINERS_STORAGE_CONF="$RR_PODMAN_DIR/storage.conf"
    export CONTAINERS_CONF="$RR_PODMAN_DIR/containers.conf"
    export XDG_RUNTIME_DIR="$RR_PODMAN_DIR/xdg"
    # Podman also keeps files under $HOME/.local/share; a HOME of our own keeps it off a shared
    # HOME (the tests' clean environment has HOME=/tmp, which another user may already own).
    export HOME="$RR_PODMAN_DIR/home"
}

if [[ "${1:-}" == --env ]]; then
    rr_podman_env
    return 0 2>/dev/null || exit 0
fi

binary=${1:?usage: podman-image.sh BINARY [IMAGE]}
image=${2:-localhost/rootless-restore:static}
[[ $(id -u) -ne 0 ]] || { echo "podman-image.sh: run me as the ordinary user who runs the containers (rootless Podman)" >&2; exit 64; }
command -v podman >/dev/null || { echo "podman-image.sh: podman is missing (scripts/setup.sh installs it)" >&2; exit 1; }
busybox=$(command -v busybox || echo /bin/busybox)
rr_podman_env

root=$(mktemp -d "$RR_PODMAN_DIR/rootfs.XXXXXX")
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,etc,tmp,proc,sys,dev,root,work,lib/x86_64-linux-gnu,lib64,usr/bin,usr/local/bin}
chmod 1777 "$root/tmp"
cp "$busybox" "$root/bin/busybox"
for tool in sh ash cat echo ls ps grep sed sleep kill mkdir rm cp chmod id env true false printf \
            wc head tail seq tr test expr date stat readlink pgrep pkill timeout mount umount setsid; do
    ln -s busybox "$root/bin/$tool"
done
cp "$binary" "$root/usr/local/bin/rootless-restore"
chmod 755 "$root/usr/local/bin/rootless-restore"
# The shared libraries of the binary, if it has any: no libswift*, only the system's own.
{ ldd "$binary" 2>/dev/null || true; } | awk '/=> \//{print $3} /^\t\/lib64/{print $1}' | while read -r lib; do
    case "$lib" in
        */libswift*|*/libFoundation*|*/libdispatch*) echo "podman-image.sh: $binary links $lib: build it with scripts/setup.sh (static-pie)" >&2; exit 1 ;;
        /lib64/*) cp -L "$lib" "$root/lib64/" ;;
        *) cp -L "$lib" "$root/lib/x86_64-linux-gnu/" ;;
    esac
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
printf '127.0.0.1 localhost\n' > "$root/etc/hosts"
tar -C "$root" -cf "$RR_PODMAN_DIR/rootfs.tar" .
podman import --quiet --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' --change 'CMD ["/bin/sh"]' \
    "$RR_PODMAN_DIR/rootfs.tar" "$image" >/dev/null
rm -f "$RR_PODMAN_DIR/rootfs.tar"
echo "$image"
