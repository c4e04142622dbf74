#!/usr/bin/env bash
# Sets up (scripts/setup.sh: packages + release build), then restores examples/hello/tree.json
# as an ordinary user: six processes that print the PID, parent, process group and session
# the kernel gave them. Run as root, it creates the throwaway user rrtest (RR_TEST_USER
# overrides the name) and drops to it first: the point is that no privilege is needed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# useradd and usermod live in /usr/sbin, which a non-login root shell may not have on PATH.
export PATH="$PATH:/usr/sbin:/sbin"

say() { printf '[demo] %s\n' "$*"; }

bash scripts/setup.sh
command -v swift >/dev/null 2>&1 || export PATH="/opt/swift/usr/bin:$PATH"
binary="$(swift build -c release --show-bin-path)/rootless-restore"
tree=examples/hello/tree.json

# The repository may live where the unprivileged user cannot read (/root is mode 700):
# copy the binary and the example into a fresh directory of their own.
work=$(mktemp -d /tmp/rootless-restore-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp "$binary" "$work/rootless-restore"
cp "$tree" "$work/tree.json"
chmod 755 "$work" "$work/rootless-restore"
chmod 644 "$work/tree.json"

run_as=()
if [[ $(id -u) -eq 0 ]]; then
    user="${RR_TEST_USER:-rrtest}"
    if ! id "$user" >/dev/null 2>&1; then
        say "creating throwaway user $user to run the demo without root"
        useradd --create-home --shell /bin/bash "$user"
    fi
    grep -q "^$user:" /etc/subuid 2>/dev/null || usermod --add-subuids 200000-265535 "$user"
    grep -q "^$user:" /etc/subgid 2>/dev/null || usermod --add-subgids 200000-265535 "$user"
    chown "$user:" "$work"
    run_as=(setpriv "--reuid=$(id -u "$user")" "--regid=$(id -g "$user")" --clear-groups
            --inh-caps=-all -- env -i PATH=/usr/bin:/bin HOME=/tmp)
    say "running as $user ($(id -u "$user")), not root"
else
    say "running as $(id -un) ($(id -u))"
fi

echo
say "\$ rootless-restore run --report report.json tree.json    # payload output:"
cd "$work"
status=0
"${run_as[@]}" ./rootless-restore run --report "$work/report.json" tree.json || status=$?
echo
say "exit status: $status"
if [[ -f "$work/report.json" ]]; then
    say "the report (--report FILE; --report - writes it to standard output):"
    cat "$work/report.json"
fi
exit "$status"
