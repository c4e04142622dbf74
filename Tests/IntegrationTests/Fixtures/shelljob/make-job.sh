#!/bin/bash
# Builds a real shell job, the source of Fixtures/topologies/shelljob/tree.json.
#
# Run it as an ordinary user in a fresh user + PID namespace, so that the PIDs are small and
# the namespace's PID 1 is a plain process that never reaps:
#
#   unshare -Urpf --mount-proc /bin/sh -c 'setsid bash make-job.sh & exec sleep 100000'
#
# (setsid makes this script the leader of its own session; `exec sleep` leaves PID 1 a process
# that adopts orphans and never waits for them.) Then record every process from the host's
# /proc: NSpid, NSpgid, NSsid and PPid of /proc/PID/status, the state, and for the zombie the
# exit code (field 52 of /proc/PID/stat, in wait(2) form). tree.json is that record, by hand.
#
# What it builds, with job control on (`set -m`: every job gets its own process group):
set -m

# 1. A pipeline in the background: three processes, children of this shell, in one process
#    group led by the first of them.
sleep 1001 | sleep 1002 | sleep 1003 &

# 2. A background job: one process in a group of its own.
sleep 1004 &

# 3. A daemon: setsid(1) runs as a group leader (its own job), so it forks; the child calls
#    setsid() and becomes the leader of a new session, and is adopted by PID 1 when its
#    parent exits at once.
setsid sleep 1005 &

# 4. An orphan in this session: the subshell is a job (own group) that starts a process and
#    exits; the process is adopted by PID 1 but stays in this session and in the subshell's
#    group, whose leader is now dead.
(sleep 1006 &) &

# 5. A zombie: the child exits with status 3 and its parent execs a program that never waits.
sh -c '(exit 3) & exec sleep 1007' &

echo "make-job.sh: shell $$ built its jobs" >&2
wait
