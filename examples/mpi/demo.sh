#!/usr/bin/env bash
# MPI ranks restored without root, with their PIDs.
#
#   1. build ring.c with mpicc and compute the uninterrupted result;
#   2. start `mpirun -np 4 ring` (application-level checkpoints named by each rank's PID);
#   3. `rootless-restore record --freeze --spawn-by-payload` the running job, then kill it;
#   4. `rootless-restore run` the recording: mpirun comes back at its PID and forks its ranks
#      again; the fork supervisor gives each rank its recorded PID, so each finds its own
#      checkpoint and resumes; the result must equal the uninterrupted one.
# Run as root, it drops to the throwaway user rrtest (RR_TEST_USER) first.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
say() { printf '[mpi-demo] %s\n' "$*"; }

bash scripts/setup.sh >/dev/null
command -v swift >/dev/null 2>&1 || export PATH="/opt/swift/usr/bin:$PATH"
binary="$(swift build -c release --show-bin-path)/rootless-restore"
command -v mpicc >/dev/null || { say "mpicc missing: apt-get install openmpi-bin libopenmpi-dev (scripts/setup.sh does)"; exit 1; }

work=$(mktemp -d /tmp/rootless-restore-mpi.XXXXXX)
cp "$binary" "$work/rootless-restore"
mpicc -O2 -o "$work/ring" examples/mpi/ring.c
mkdir -p "$work/ref" "$work/ck"
chmod 755 "$work" "$work/rootless-restore" "$work/ring"

as=()
if [[ $(id -u) -eq 0 ]]; then
    user="${RR_TEST_USER:-rrtest}"
    id "$user" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$user"
    chown -R "$user:" "$work"
    as=(setpriv "--reuid=$(id -u "$user")" "--regid=$(id -g "$user")" --clear-groups --inh-caps=-all --
        env -i PATH=/usr/bin:/bin HOME=/tmp)
    say "running as $user, not root"
fi
cd "$work"
mpirun=(mpirun --oversubscribe -np 4 ./ring)

say "uninterrupted run:"
"${as[@]}" "${mpirun[@]}" ref 40 0 2>/dev/null | grep '^result' | tee ref.out

"${as[@]}" bash -c '
  set -e
  "$@" ck 40 150 > live.out 2>&1 &
  job=$!
  until [ -f ck/committed ] && [ "$(cat ck/committed)" -ge 10 ]; do sleep 0.05; done
  echo "[mpi-demo] live job: mpirun $job and its ranks:"
  ps -o pid,ppid,pgid,sid,cmd --pid "$job" --ppid "$job"
  ./rootless-restore record --freeze --spawn-by-payload "$job" -o job.json
  echo "[mpi-demo] recorded job.json; killing the job"
  kill -KILL $(grep -o "\"pid\": [0-9]*" job.json | grep -o "[0-9]*$")
  wait "$job" || true
  echo "[mpi-demo] \$ rootless-restore run job.json"
  ./rootless-restore run --pin-log pins.log job.json
' demo "${mpirun[@]}" | tee restored.out

say "PIDs the fork supervisor handed out (pins.log):"
cat pins.log
if [[ "$(grep '^result' ref.out)" == "$(grep '^result' restored.out | sed 's/ resumed-from [0-9]*//; s/$/ resumed-from 0/')" ]]; then
    say "the restored job's result equals the uninterrupted run's"
else
    say "results differ"; exit 1
fi
