#!/bin/bash
# The job that examples/record/walkthrough.sh records (and RecordRoundTripTests with it).
# Restored, bash runs it again from the top: the marker file `recorded` says its children
# exist already, so it only waits.
dir=$1
[ -p "$dir/hold" ] || mkfifo "$dir/hold"
if [ ! -e "$dir/recorded" ]; then
    set -m                                  # job control: every job gets its own group
    sleep 1001 | sleep 1002 | sleep 1003 &  # pipeline: a group led by its first process
    sleep 1004 &                            # background job
    set +m
    setsid sleep 1005 &                     # no group leader, so setsid() in place: new session
    sh -c '(exit 200) & exec sleep 1006' &  # sleep never reaps: a zombie, exit code 200
    set -m
    sleep 1007 &                            # stopped job, stopped once it runs sleep
    until read -r comm < /proc/$!/comm && [ "$comm" = sleep ]; do :; done
    kill -STOP $!
    set +m
    echo ready > "$dir/ready"
fi
read -r _ <> "$dir/hold"                    # wait forever without a child: nobody writes
