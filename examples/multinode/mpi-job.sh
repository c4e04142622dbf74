#!/bin/sh
# A 4-rank MPI job across two nodes (2 ranks each), recorded on every node, killed, and
# restored with the launchers' own mechanisms; run as the ordinary user on the first node.
#
#   mpi-job.sh openmpi-ssh|openmpi-slurm|mpich-ssh WORKDIR
#
# WORKDIR is on a file system both nodes share and holds rootless-restore, ring.c (from
# examples/mpi) and rr-ssh. The nodes are node1 and node2 (scripts/testhosts.sh makes them).
# Steps, each one the README's "Several nodes" section documents:
#   1. the uninterrupted reference run (ref.out) and a cold start with 0 iterations (timed);
#   2. the live job, which checkpoints every 5 iterations under each rank's PID;
#   3. once iteration 10 is committed: one `record --freeze --spawn-by-payload` per node, of
#      that node's launcher process (mpirun / mpiexec on node1, orted / hydra_pmi_proxy on
#      node2), into WORKDIR/job-<node>.json;
#   4. the job is killed on every node (scancel under Slurm);
#   5. the restore, one `run` per node: node1's run restores the launcher, whose daemon
#      launch on node2 (through ssh or srun) is redirected into `rootless-restore run
#      --root-args` of node2's tree with the daemon's new arguments and environment.
# Writes t-live-launch and t-restore-launch (epoch seconds) when it starts the live job and
# the restore, cold-seconds, ref.out, ck.out (the live job) and restored.out.
set -eu
mode=$1
work=$2
cd "$work"
RR=$work/rootless-restore
stamp() { date +%s.%N > "$work/t-$1"; }
say() { echo "[mpi-job $mode] $*"; }
rm -rf ref cold ck job-node1.json job-node2.json t-live-launch t-restore-launch \
       ref.out cold.out ck.out restored.out ref-seconds cold-seconds pins-node1.log hosts
mkdir ref cold ck
finalize_guard=""

case $mode in
    openmpi-*) mpicc.openmpi -O2 -o ring ring.c ;;
    mpich-ssh)
        mpicc.mpich -O2 -o ring ring.c
        # The simulated nodes share one kernel (one boot id), so UCX would take them for one
        # host and use shared memory between them: TCP only (real hosts do not need this).
        export UCX_TLS=tcp,self UCX_NET_DEVICES=eth0
        # MPICH 4.0.2 with UCX 1.13's TCP transport (Debian 12) sometimes never returns from
        # MPI_Finalize, restored or not, on one host or two: bound every run; ring prints its
        # result before MPI_Finalize, and the caller checks that.
        finalize_guard="timeout 30" ;;
    *) echo "mpi-job.sh: unknown mode $mode" >&2; exit 64 ;;
esac

# The job's launch command, for this mode: launch DIR ITERATIONS MS; output in DIR.out. It
# execs the launcher (call it in a subshell or with &), so that a background job's $! is the
# launcher itself.
launch() {
    case $mode in
        openmpi-ssh) exec mpirun.openmpi --host node1:2,node2:2 -np 4 ./ring "$@" > "$work/$1.out" 2>&1 ;;
        # A host file, not -hosts node1:2,node2:2: hydra cuts its own argv in place (strtok),
        # so /proc/PID/cmdline, and with it the recording, would show "node1 2 node2 2".
        mpich-ssh) printf 'node1:2\nnode2:2\n' > "$work/hosts"
                   exec $guard mpiexec.hydra -launcher ssh -f "$work/hosts" -n 4 ./ring "$@" > "$work/$1.out" 2>&1 ;;
        openmpi-slurm) exec sbatch --wait --quiet -N2 --ntasks-per-node=2 -o "$work/$1.out" \
                           --wrap "cd $work && exec mpirun.openmpi ./ring $*" ;;
    esac
}

guard=""
# An uninterrupted run, bounded under MPICH and tried up to 3 times if it hangs there.
uninterrupted() {
    for attempt in 1 2 3; do
        rm -rf "${1:?}" && mkdir "$1"
        start=$(date +%s.%N)
        if (guard=$finalize_guard; launch "$@"); then break; fi
        [ -z "$finalize_guard" ] || ! grep -q '^result' "$1.out" || break
        [ -n "$finalize_guard" ] && [ $attempt -lt 3 ] || { cat "$1.out"; exit 1; }
        say "$1 run $attempt hung in MPICH; again"
    done
    echo "$(date +%s.%N) - $start" | bc > "$1-seconds"
}
uninterrupted ref 40 0
uninterrupted cold 0 0
say "reference: $(grep '^result' ref.out); cold start+finish of the same job: $(cat cold-seconds) s"

stamp live-launch
if [ "$mode" = openmpi-slurm ]; then
    job=$(sbatch --parsable -N2 --ntasks-per-node=2 -o "$work/ck.out" \
              --wrap "cd $work && exec mpirun.openmpi ./ring ck 40 150")
else
    launch ck 40 150 &
    job=$!
fi
i=0
until [ -f ck/committed ] && [ "$(cat ck/committed)" -ge 10 ]; do
    i=$((i + 1)); [ $i -lt 1200 ] || { say "the live job never committed iteration 10"; cat ck.out; exit 1; }
    sleep 0.05
done

# 3. Record every node's launcher subtree; 4. kill the job.
if [ "$mode" = openmpi-slurm ]; then
    # --overlap: the job's own steps hold its CPUs; without it this step waits forever.
    srun --jobid="$job" --overlap -N2 --ntasks-per-node=1 sh -c \
        "$RR record --freeze --spawn-by-payload \$(pgrep -u \$USER -o -x 'mpirun.openmpi|mpirun|orted') -o $work/job-\$(hostname).json"
    scancel "$job"
    i=0
    while squeue -h -j "$job" 2>/dev/null | grep -q .; do
        i=$((i + 1)); [ $i -lt 300 ] || { say "job $job does not end"; exit 1; }
        sleep 0.1
    done
else
    daemon=orted
    [ "$mode" = mpich-ssh ] && daemon=hydra_pmi_proxy
    "$RR" record --freeze --spawn-by-payload "$job" -o "$work/job-node1.json"
    ssh node2 "$RR record --freeze --spawn-by-payload \$(pgrep -u \$USER -o -x $daemon) -o $work/job-node2.json"
    pids() { grep -o '"pid": [0-9]*' "$1" | grep -o '[0-9]*$' | tr '\n' ' '; }
    # Each node's processes die at once; the survivors may already have exited (mpirun and
    # hydra end a job whose peer died), hence the || true.
    kill -KILL $(pids job-node1.json) 2>/dev/null || true
    ssh node2 "kill -KILL $(pids job-node2.json) 2>/dev/null" || true
    wait "$job" || true
fi
say "recorded job-node1.json and job-node2.json at iteration $(cat ck/committed); killed the job"

# 5. Restore: one run per node.
stamp restore-launch
case $mode in
    openmpi-ssh)
        # mpirun starts orted on node2 as `ssh node2 AGENT ORTED-ARGS`: the agent restores
        # node2's tree with those arguments.
        OMPI_MCA_orte_launch_agent="$RR run --quiet --root-args --env-from-caller OMPI_ --env-from-caller PMIX_ $work/job-%h.json --" \
            "$RR" run --env-from-caller OMPI_MCA_orte_launch_agent --pin-log pins-node1.log job-node1.json > restored.out 2>&1 ;;
    mpich-ssh)
        # mpiexec starts hydra_pmi_proxy on node2 through HYDRA_LAUNCHER_EXEC: rr-ssh restores
        # node2's tree with the proxy's new arguments.
        HYDRA_LAUNCHER_EXEC=$work/rr-ssh RR_TREE=$work/job-%h.json RR_RESTORE=$RR \
            $finalize_guard "$RR" run --env-from-caller HYDRA_LAUNCHER_EXEC --env-from-caller RR_ --pin-log pins-node1.log job-node1.json > restored.out 2>&1 \
            || { status=$?; grep -q '^result' restored.out || exit $status; say "the restored job printed its result; MPI_Finalize did not return (exit $status)"; } ;;
    openmpi-slurm)
        # A new allocation of the same shape; the batch script restores node1's tree (mpirun)
        # with the NEW job's SLURM_* variables; mpirun's srun starts orted on node2 through the
        # agent, which restores node2's tree with orted's new arguments and environment.
        cat > restore.sh <<B
#!/bin/sh
cd $work
export OMPI_MCA_orte_launch_agent="$RR run --quiet --root-args --env-from-caller SLURM_ --env-from-caller OMPI_ --env-from-caller PMIX_ $work/job-%h.json --"
exec $RR run --env-from-caller SLURM_ --env-from-caller OMPI_MCA_orte_launch_agent --pin-log pins-node1.log $work/job-%h.json
B
        sbatch --wait --quiet -N2 --ntasks-per-node=2 -o "$work/restored.out" restore.sh ;;
esac
say "restored: $(grep '^result' restored.out)"
