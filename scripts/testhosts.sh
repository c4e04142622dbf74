#!/usr/bin/env bash
# Simulated cluster for the multi-node tests: two nodes and a controller on this machine.
# Root creates the infrastructure only; everything a user does (ssh, sbatch, srun, mpirun,
# record, run) runs as the ordinary test user inside it.
#
#   scripts/testhosts.sh up --user USER       set up (tears down USER's previous set-up first)
#   scripts/testhosts.sh down --user USER     tear down (idempotent; also after a failed up)
#   scripts/testhosts.sh status --user USER   say whether the hosts are up (exit 0) or not (1)
#   scripts/testhosts.sh ssh --user USER NODE COMMAND...   log in to NODE as USER, run COMMAND
#
# Every user's cluster is separate (state directory, namespace names), so test runs of several
# users on one machine do not collide; the addresses are the same, inside each user's namespaces.
#
# Each node is a network namespace (veth to a bridge in the controller's namespace; addresses
# 10.77.0.0/24 exist only inside these namespaces) plus its own mount, UTS and PID namespaces:
# hostname node1/node2, /etc/hosts, /etc/ssh/ssh_config and /etc/slurm bind-mounted from the
# state directory, tini as PID 1, one sshd (port 22, key login of USER) and one slurmd. The
# controller namespace (hostname ctl, 10.77.0.1) runs munged and slurmctld (Slurm 22.05 without
# systemd or cgroups). State, logs and keys: /run/rr-testhosts-USER; namespaces rr-USER-ctl,
# rr-USER-node1, rr-USER-node2.
#
# From the host, enter the cluster as the user through the controller's network namespace:
#   nsenter --net=/run/netns/rr-USER-ctl setpriv --reuid=USER ... ssh 10.77.0.11 COMMAND
# (`testhosts.sh ssh --user USER NODE COMMAND...` does exactly that, as root).
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"

cmd=${1:-}
shift || true
user=""
if [[ "${1:-}" == --user ]]; then
    user=${2:?--user needs a name}
    shift 2
fi
[[ -n "$user" ]] || { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2; echo "[testhosts] error: --user USER is needed" >&2; exit 64; }
state="/run/rr-testhosts-$user"
prefix="rr-$user"
ctl_ns="$prefix-ctl"
nodes=(node1 node2)
declare -A addr=([ctl]=10.77.0.1 [node1]=10.77.0.11 [node2]=10.77.0.12)

say() { printf '[testhosts] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

ns_of() { echo "$prefix-$1"; }

# Waits up to $1 seconds for the command after it to succeed.
wait_for() {
    local seconds=$1; shift
    local i
    for ((i = 0; i < seconds * 10; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    return 1
}

# The host PID of a node's PID-namespace init (tini), from the pid file up wrote.
node_init() { cat "$state/$1.init" 2>/dev/null; }

# Runs a command as root inside a node's namespaces (net, mount, UTS, PID).
in_node() {
    local node=$1; shift
    local init; init=$(node_init "$node") || return 1
    nsenter -t "$init" --net --mount --uts --pid -- "$@"
}

down() {
    local node pid
    for node in "${nodes[@]}"; do
        # Killing a PID namespace's init kills everything in that namespace: sshd, slurmd,
        # and every job and session of the user on that node.
        if pid=$(node_init "$node") && [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    for name in slurmctld munged; do
        if [[ -f "$state/$name.pid" ]]; then
            pid=$(cat "$state/$name.pid")
            if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
                kill -TERM "$pid" 2>/dev/null || true
                wait_for 5 bash -c "! kill -0 $pid" || kill -KILL "$pid" 2>/dev/null || true
            fi
        fi
    done
    for node in "${nodes[@]}"; do
        if pid=$(node_init "$node") && [[ -n "$pid" ]]; then
            wait_for 10 bash -c "! kill -0 $pid" || say "node $node's init $pid did not end"
        fi
    done
    for ns in "$ctl_ns" $(for n in "${nodes[@]}"; do ns_of "$n"; done); do
        if ip netns list 2>/dev/null | grep -qw "$ns"; then
            ip netns delete "$ns" || say "could not delete network namespace $ns"
        fi
    done
    rm -rf "$state"
}

write_configs() {
    local user=$1
    mkdir -p "$state"/{etc-slurm,ssh,keys,auth,munge,log,ctld,spool-node1,spool-node2}
    chmod 755 "$state" "$state/keys" "$state/auth" "$state/etc-slurm"
    chmod 700 "$state/munge"
    {
        echo "127.0.0.1 localhost"
        echo "${addr[ctl]} ctl"
        for n in "${nodes[@]}"; do echo "${addr[$n]} $n"; done
    } > "$state/hosts"
    chmod 644 "$state/hosts"

    dd if=/dev/urandom of="$state/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$state/munge/munge.key"

    # Client side of ssh on every node: the user's key, no host-key prompts (the host keys are
    # made fresh on every set-up).
    cat > "$state/ssh_config" <<EOF
Host node1 node2 ctl 10.77.0.*
    IdentityFile $state/keys/%u
    StrictHostKeyChecking no
    UserKnownHostsFile /dev/null
    LogLevel ERROR
    BatchMode yes
EOF
    chmod 644 "$state/ssh_config"
    ssh-keygen -q -t ed25519 -N '' -f "$state/ssh/host_ed25519_key" -C "rr-testhosts host"
    ssh-keygen -q -t ed25519 -N '' -f "$state/keys/$user" -C "rr-testhosts $user"
    chown "$user:" "$state/keys/$user" "$state/keys/$user.pub"
    chmod 600 "$state/keys/$user"
    cp "$state/keys/$user.pub" "$state/auth/$user"
    chmod 644 "$state/auth/$user"
    cat > "$state/ssh/sshd_config" <<EOF
Port 22
ListenAddress 0.0.0.0
HostKey $state/ssh/host_ed25519_key
AuthorizedKeysFile $state/auth/%u
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM yes
PermitRootLogin no
AllowUsers $user
PidFile none
AcceptEnv LANG
Subsystem sftp internal-sftp
EOF

    local node_lines="" n
    for n in "${nodes[@]}"; do
        node_lines+="NodeName=$n NodeAddr=${addr[$n]} CPUs=4 Sockets=1 CoresPerSocket=4 ThreadsPerCore=1 RealMemory=1000 State=UNKNOWN"$'\n'
    done
    cat > "$state/etc-slurm/slurm.conf" <<EOF
ClusterName=rrtest
SlurmctldHost=ctl(${addr[ctl]})
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$state/munge/munge.socket
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/spool-%n
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd-%n.pid
SlurmctldLogFile=$state/log/slurmctld.log
SlurmdLogFile=$state/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
SwitchType=switch/none
KillWait=5
InactiveLimit=0
MinJobAge=30
${node_lines}PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    chmod 644 "$state/etc-slurm/slurm.conf"
    echo "$user" > "$state/user"
}

make_network() {
    ip netns add "$ctl_ns"
    ip -n "$ctl_ns" link set lo up
    ip -n "$ctl_ns" link add br0 type bridge
    ip -n "$ctl_ns" addr add "${addr[ctl]}/24" dev br0
    ip -n "$ctl_ns" link set br0 up
    local n ns i=0
    for n in "${nodes[@]}"; do
        i=$((i + 1))
        ns=$(ns_of "$n")
        ip netns add "$ns"
        ip -n "$ns" link set lo up
        # Both ends are created inside the controller's namespace, then one end moves to the
        # node: nothing ever appears in the host's own namespace.
        ip -n "$ctl_ns" link add "veth$i" type veth peer name eth0
        ip -n "$ctl_ns" link set eth0 netns "$ns"
        ip -n "$ctl_ns" link set "veth$i" master br0 up
        ip -n "$ns" addr add "${addr[$n]}/24" dev eth0
        ip -n "$ns" link set eth0 up
    done
}

# The commands a node's init runs (in the node's mount namespace, after the bind mounts).
node_script() {
    local node=$1
    cat <<EOF
set -e
mount --make-rprivate /
mount --bind $state/hosts /etc/hosts
mount --bind $state/ssh_config /etc/ssh/ssh_config
mount --bind $state/etc-slurm /etc/slurm
hostname $node
/usr/sbin/sshd -D -e -f $state/ssh/sshd_config >> $state/log/sshd-$node.log 2>&1 &
/usr/sbin/slurmd -D -N $node -f $state/etc-slurm/slurm.conf >> $state/log/slurmd-$node.out 2>&1 &
wait
EOF
}

start_node() {
    local node=$1 ns; ns=$(ns_of "$node")
    node_script "$node" > "$state/$node.sh"
    # Not `ip netns exec`: it remounts /sys, and slurmd then finds no /sys/fs/cgroup. tini is the
    # node's PID 1 (reaps orphans, like a host's init); --kill-child ties it to unshare.
    setsid nsenter --net="/run/netns/$ns" \
        unshare --mount --uts --pid --fork --mount-proc --kill-child --propagation private \
        tini -s -g -- /bin/sh "$state/$node.sh" \
        > "$state/log/$node.init.log" 2>&1 < /dev/null &
    local launcher=$!
    local init=""
    wait_for 10 pgrep -P "$launcher" tini || die "node $node: its init did not start (see $state/log/$node.init.log)"
    init=$(pgrep -P "$launcher" tini)
    echo "$init" > "$state/$node.init"
}

up() {
    local user=$1
    id "$user" >/dev/null 2>&1 || die "no user $user"
    for tool in ip nsenter unshare tini munged slurmctld slurmd sshd ssh-keygen sinfo; do
        command -v "$tool" >/dev/null || die "$tool is missing (scripts/setup.sh installs it)"
    done
    down
    # Any failure from here on (set -e, die) tears down whatever was made.
    trap 'status=$?; if ((status != 0)); then say "set-up failed: tearing down"; down; fi' EXIT
    write_configs "$user"
    make_network

    # munged and slurmctld in the controller's network namespace, with its hostname.
    setsid nsenter --net="/run/netns/$ctl_ns" unshare --uts --mount --propagation private \
        sh -c "mount --bind $state/hosts /etc/hosts && hostname ctl && exec munged -F --force \
            --socket=$state/munge/munge.socket --key-file=$state/munge/munge.key \
            --pid-file=$state/munged.pid --log-file=$state/log/munged.log \
            --seed-file=$state/munge/munged.seed" > "$state/log/munged.out" 2>&1 < /dev/null &
    wait_for 10 test -S "$state/munge/munge.socket" || die "munged did not start: $(cat "$state/log/munged.out" "$state/log/munged.log" 2>/dev/null)"
    chmod 755 "$state/munge"
    setsid nsenter --net="/run/netns/$ctl_ns" unshare --uts --mount --propagation private \
        sh -c "mount --bind $state/hosts /etc/hosts && mount --bind $state/etc-slurm /etc/slurm && hostname ctl && exec slurmctld -D -i -f $state/etc-slurm/slurm.conf" \
        > "$state/log/slurmctld.out" 2>&1 < /dev/null &
    echo $! > "$state/slurmctld.launcher"
    # sshd's privilege separation directory (what Debian's sshd unit creates).
    mkdir -p /run/sshd && chmod 755 /run/sshd
    local n
    for n in "${nodes[@]}"; do start_node "$n"; done

    # Ready: both sshds listen and Slurm sees both nodes idle.
    for n in "${nodes[@]}"; do
        wait_for 20 sh -c "nsenter --net=/run/netns/$(ns_of "$n") ss -Hltn 'sport = :22' | grep -q ." \
            || die "node $n: sshd does not listen: $(cat "$state/log/sshd-$n.log" 2>/dev/null)"
    done
    wait_for 60 sh -c "nsenter -t $(node_init node1) --net --mount --uts --pid -- sinfo -h -N -o '%N %t' | grep -c ' idle' | grep -qx ${#nodes[@]}" \
        || die "slurm nodes are not idle: $(in_node node1 sinfo -N 2>&1; tail -5 "$state/log/slurmctld.log" "$state/log"/slurmd-*.log 2>/dev/null)"
    trap - EXIT
    say "up: ${nodes[*]} (ssh and slurmd each) and ctl (slurmctld, munged); user $user; state in $state"
}

status() {
    [[ -f "$state/user" ]] || { say "down (no $state/user)"; return 1; }
    local n
    for n in "${nodes[@]}"; do
        local init; init=$(node_init "$n") || { say "down: node $n has no init"; return 1; }
        kill -0 "$init" 2>/dev/null || { say "down: node $n's init $init is gone"; return 1; }
    done
    in_node node1 sinfo -h -N -o '%N %t' | grep -q idle || { say "up, but no slurm node is idle"; return 1; }
    say "up (user $(cat "$state/user"))"
}

[[ $(id -u) -eq 0 ]] || die "run me as root: creating network namespaces and starting sshd, slurmd, slurmctld and munged needs it"
case "$cmd" in
    up) (($# == 0)) || die "unknown argument $1"; up "$user" ;;
    down) down; say "down ($user)" ;;
    status) status ;;
    ssh)
        node=${1:?ssh needs a node name}; shift
        [[ -n "${addr[$node]:-}" ]] || die "no node $node"
        exec nsenter --net="/run/netns/$ctl_ns" setpriv --reuid="$user" --regid="$(id -g "$user")" --init-groups \
            ssh -F "$state/ssh_config" -o "IdentityFile=$state/keys/$user" "${addr[$node]}" "$@" ;;
    *) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 64 ;;
esac
