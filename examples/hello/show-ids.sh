#!/bin/sh
# What every process of examples/hello/tree.json runs (tree.json carries the same script
# inline, as `/bin/sh -c '...'`, so the example works wherever the repository is cloned).
#
# Prints the process's own PID and its parent PID, process group and session as the kernel
# sees them, read from /proc/$$/stat: after the ")" that closes the command name come
# state, ppid, pgrp and session. Then it waits until it has no children left, so that every
# process prints while its parent is still alive (pgrep never reports itself).
read -r stat < /proc/$$/stat
set -- ${stat##*) }
echo "pid=$$ ppid=$2 pgid=$3 sid=$4"
while pgrep -P $$ >/dev/null; do sleep 0.05; done
