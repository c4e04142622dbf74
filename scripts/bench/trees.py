#!/usr/bin/env python3
"""Valid trees of about N processes, for validate's cost at scale (scripts/bench/planning.sh).

    trees.py SHAPE N FILE

flat, chain: the plain shapes. The others are the shapes that once made planning quadratic
(issue 14 item 9), each a real system's pattern repeated N/k times:
  dead-sessions        orphans under the runtime's init in sessions whose leaders exited
                       (a session helper each, which takes the dead leader's PID)
  subreaper-sessions   the same orphans under one child subreaper (tini -s, systemd --user)
  daemons              double-forked daemons that are child subreapers, each with a child
                       forked before its setsid(), in the login session
  setsid-chain         a chain with setsid() at each level, each level with a child forked
                       before that setsid() (still in the level above's session)
  group-moves          group leaders that moved into another group, their own group kept by a child
  group-cycles         pairs of leaders, each in the other's group (a hopper holds one open)
  cross-groups         each subtree's second process in the previous subtree's group
  seccomp              every process with a seccomp profile of its own
  threads              every process with four threads
"""
import json
import sys

shape, n, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
out = open(path, "w")
out.write('{"version": 1, "processes": [\n')
first = True


def p(pid, ppid, pgid, sid, **extra):
    global first
    entry = {"pid": pid, "ppid": ppid, "pgid": pgid, "sid": sid}
    entry.update(extra)
    out.write(("" if first else ",\n") + "  " + json.dumps(entry, separators=(",", ":")))
    first = False


L = 100  # the login session's leader, where a shape needs one
if shape == "flat":
    for i in range(n):
        p(100 + i, 0 if i == 0 else 100, 100, 100)
elif shape == "chain":
    for i in range(n):
        p(100 + i, 0 if i == 0 else 99 + i, 100, 100)
elif shape in ("dead-sessions", "subreaper-sessions"):
    reaper = 0
    if shape == "subreaper-sessions":
        p(L, 0, L, L, childSubreaper=True)
        reaper = L
    for k in range(max(1, (n - 1) // 2)):
        s = 101 + 3 * k  # dead leader: not in the tree
        p(s + 1, reaper, s, s)
        p(s + 2, reaper, s + 2, s)
elif shape == "daemons":
    p(L, 0, L, L)
    for k in range(max(1, (n - 1) // 2)):
        d = 101 + 2 * k
        p(d, 0, d, d, childSubreaper=True)
        p(d + 1, d, L, L)
elif shape == "setsid-chain":
    p(L, 0, L, L)
    prev = L
    for k in range(max(1, (n - 1) // 2)):
        c = 101 + 2 * k
        p(c, prev, c, c)
        p(c + 1, c, prev, prev)
        prev = c
elif shape == "group-moves":
    p(L, 0, L, L)
    for k in range(max(1, (n - 1) // 3)):
        a = 101 + 3 * k
        p(a, L, a + 1, L)
        p(a + 1, L, a + 1, L)
        p(a + 2, a, a, L)
elif shape == "group-cycles":
    p(L, 0, L, L)
    for k in range(max(1, (n - 1) // 3)):
        a = 101 + 3 * k
        p(a, L, a + 1, L)
        p(a + 1, L, a, L)
        p(a + 2, L, a + 2, L)
elif shape == "cross-groups":
    p(L, 0, L, L)
    prev = L
    for k in range(max(1, (n - 1) // 2)):
        t = 101 + 2 * k
        p(t, L, t, L)
        p(t + 1, t, prev, L)
        prev = t
elif shape == "seccomp":
    p(L, 0, L, L)
    for k in range(n - 1):
        rule = {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                "args": [{"index": 0, "value": k, "op": "SCMP_CMP_EQ"}]}
        p(101 + k, L, L, L, process={"seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule]}})
elif shape == "threads":
    p(L, 0, L, L)
    for k in range(max(1, n - 1)):
        t = 104 + 4 * k
        p(t, L, L, L, threads=[t, t + 1, t + 2, t + 3])
else:
    sys.exit("trees.py: unknown shape " + shape)
out.write("\n]}\n")
out.close()
