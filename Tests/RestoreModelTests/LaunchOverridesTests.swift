import RestoreModel
import Testing

private func entry(_ index: Int, _ pid: Int32, ppid: Int32, args: [String]? = nil, env: [String]? = nil) -> ProcessEntry {
    ProcessEntry(index: index, pid: pid, ppid: ppid, pgid: pid, sid: pid,
                 process: args == nil && env == nil ? nil : ProcessSpec(args: args, env: env))
}

@Suite("launch overrides: --root-args, --env-from-caller, %h")
struct LaunchOverridesTests {
    let orted = ProcessTree(processes: [
        entry(0, 500, ppid: 77, args: ["/usr/bin/orted", "-mca", "ess_base_jobid", "111"],
              env: ["PATH=/bin", "SLURM_JOB_ID=7", "SLURM_NODEID=1", "OMPI_MCA_x=old", "HOME=/h"]),
        entry(1, 501, ppid: 500, args: ["./ring"], env: ["SLURM_JOB_ID=7", "A=1"]),
        entry(2, 502, ppid: 500),
    ])

    @Test("--root-args keeps argv[0] and replaces the rest, only in the root")
    func rootArguments() throws {
        let out = try LaunchOverrides(rootArguments: ["-mca", "ess_base_jobid", "222"])
            .apply(to: orted, callerEnvironment: [])
        #expect(out.processes[0].process?.args == ["/usr/bin/orted", "-mca", "ess_base_jobid", "222"])
        #expect(out.processes[1].process?.args == ["./ring"])
        #expect(out.processes[0].process?.env == orted.processes[0].process?.env)
        let none = try LaunchOverrides(rootArguments: []).apply(to: orted, callerEnvironment: [])
        #expect(none.processes[0].process?.args == ["/usr/bin/orted"])
    }

    @Test("--env-from-caller drops the recorded variables of a prefix and adds the caller's")
    func environment() throws {
        let caller = ["SLURM_JOB_ID=9", "SLURM_STEP_ID=0", "OMPI_MCA_y=new", "PATH=/caller", "SLURMX=no"]
        let out = try LaunchOverrides(environmentPrefixes: ["SLURM_", "OMPI_"])
            .apply(to: orted, callerEnvironment: caller)
        #expect(out.processes[0].process?.env == ["PATH=/bin", "HOME=/h", "SLURM_JOB_ID=9", "SLURM_STEP_ID=0", "OMPI_MCA_y=new"])
        #expect(out.processes[1].process?.env == ["A=1", "SLURM_JOB_ID=9", "SLURM_STEP_ID=0", "OMPI_MCA_y=new"])
        // No recorded environment: the runtime's (the caller's) is used anyway; nothing to change.
        #expect(out.processes[2].process == nil)
        // A prefix the caller lacks removes the recorded variables.
        let gone = try LaunchOverrides(environmentPrefixes: ["SLURM_"]).apply(to: orted, callerEnvironment: [])
        #expect(gone.processes[0].process?.env == ["PATH=/bin", "OMPI_MCA_x=old", "HOME=/h"])
    }

    @Test("refused: several roots, a holding root, bad prefixes; errors name the entry")
    func refusals() {
        let twoRoots = ProcessTree(processes: [entry(0, 10, ppid: 0, args: ["a"]), entry(1, 20, ppid: 3, args: ["b"])])
        #expect(throws: RestoreError.self) { try LaunchOverrides(rootArguments: ["x"]).apply(to: twoRoots, callerEnvironment: []) }
        do {
            _ = try LaunchOverrides(rootArguments: ["x"]).apply(to: twoRoots, callerEnvironment: [])
        } catch let e as RestoreError {
            #expect(e.kind == .invalidTree)
            #expect(e.description.contains("2 roots"), "\(e)")
            #expect(e.description.contains("process #0 (pid 10)") && e.description.contains("process #1 (pid 20)"), "\(e)")
        } catch { Issue.record("\(error)") }
        let holds = ProcessTree(processes: [entry(0, 10, ppid: 0), entry(1, 11, ppid: 10, args: ["a"])])
        do {
            _ = try LaunchOverrides(rootArguments: ["x"]).apply(to: holds, callerEnvironment: [])
            Issue.record("accepted a holding root")
        } catch let e as RestoreError {
            #expect(e.exitCode == 65)
            #expect(e.description.hasPrefix("process #0 (pid 10): "), "\(e)")
            #expect(e.description.contains("holds"), "\(e)")
        } catch { Issue.record("\(error)") }
        #expect(LaunchOverrides.problems(environmentPrefixes: ["SLURM_", "", "A=B"]).count == 2)
        #expect(throws: RestoreError.self) { try LaunchOverrides(environmentPrefixes: [""]).apply(to: orted, callerEnvironment: []) }
    }

    @Test("%h is the short host name, %% a percent sign; other sequences are refused")
    func treePath() throws {
        #expect(try LaunchOverrides.expandTreePath("/j/job-%h.json", hostname: "n2.cluster.example") == "/j/job-n2.json")
        #expect(try LaunchOverrides.expandTreePath("100%%-%h", hostname: "n1") == "100%-n1")
        #expect(try LaunchOverrides.expandTreePath("plain.json", hostname: "n1") == "plain.json")
        #expect(throws: RestoreError.self) { try LaunchOverrides.expandTreePath("job-%n.json", hostname: "n1") }
        #expect(throws: RestoreError.self) { try LaunchOverrides.expandTreePath("job-%", hostname: "n1") }
    }
}
