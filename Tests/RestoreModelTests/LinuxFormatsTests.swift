import RestoreModel
import Testing

// The Linux formats shared by the restore path and `check`: no kernel involved.

@Suite("Linux formats")
struct LinuxFormatsTests {
    @Test("subuid lines: names, numeric owners, comments, blanks and malformed lines")
    func subuidParsing() {
        let text = """
            # comment line
            alice:100000:65536

            bob:165536:65536
            1001:231072:1000
              carol : 300000 : 10
            broken:line
            dave:1:0
            eve:x:10
            frank:5:6:7
            alice:400000:5
            """
        let all = LinuxFormats.parseSubIDFile(text)
        #expect(all.map(\.owner) == ["alice", "bob", "1001", "carol ", "alice"])
        #expect(all[3].start == 300000 && all[3].count == 10)
        let alice = LinuxFormats.subIDRanges(in: text, user: "alice", uid: 1000)
        #expect(alice == [SubIDRange(owner: "alice", start: 100000, count: 65536),
                          SubIDRange(owner: "alice", start: 400000, count: 5)])
        let byUID = LinuxFormats.subIDRanges(in: text, user: "rrtest", uid: 1001)
        #expect(byUID == [SubIDRange(owner: "1001", start: 231072, count: 1000)])
        #expect(LinuxFormats.subIDRanges(in: "", user: "x", uid: 1).isEmpty)
    }

    @Test("sysctl values")
    func sysctls() {
        #expect(LinuxFormats.parseSysctlInteger("1\n") == 1)
        #expect(LinuxFormats.parseSysctlInteger("  96365 \n") == 96365)
        #expect(LinuxFormats.parseSysctlInteger("") == nil)
        #expect(LinuxFormats.parseSysctlInteger("max\n") == nil)
        #expect(LinuxFormats.parseSysctlInteger("-1") == -1)
    }

    @Test("status fields: NSpid, CapEff, Seccomp")
    func statusFields() {
        let status = "Name:\tbash\nUid:\t1001\t1001\t1001\t1001\nNSpid:\t7577\t12\t1\nCapEff:\t000001ffffffffff\nSeccomp:\t2\n"
        #expect(LinuxFormats.parseNSpid(status) == [7577, 12, 1])
        #expect(LinuxFormats.parseCapabilityMask(status) == 0x1ff_ffff_ffff)
        #expect(LinuxFormats.statusField(status, "Seccomp") == ["2"])
        #expect(LinuxFormats.statusField(status, "Uid")?.first == "1001")
        #expect(LinuxFormats.statusField(status, "Nope") == nil)
        #expect(LinuxFormats.parseNSpid("Name:\tx\n").isEmpty)
    }

    @Test("kernel releases")
    func kernels() {
        #expect(LinuxFormats.parseKernelRelease("6.18.44-fc-v669")! == (6, 18, 44))
        #expect(LinuxFormats.parseKernelRelease("5.4.0-150-generic")! == (5, 4, 0))
        #expect(LinuxFormats.parseKernelRelease("4.18.0-553.el8_10.x86_64")! == (4, 18, 0))
        #expect(LinuxFormats.parseKernelRelease("6.1")! == (6, 1, 0))
        #expect(LinuxFormats.parseKernelRelease("weird") == nil)
        #expect(LinuxFormats.kernelAtLeast("5.5.0", 5, 5) == true)
        #expect(LinuxFormats.kernelAtLeast("5.4.99", 5, 5) == false)
        #expect(LinuxFormats.kernelAtLeast("6.0.0", 5, 5) == true)
        #expect(LinuxFormats.kernelAtLeast("6.13.2", 6, 14) == false)
        #expect(KernelRelease("5.15.0-91-generic")?.atLeast(5, 5) == true)
        #expect(KernelRelease("4.19.0")?.atLeast(5, 5) == false)
        #expect(KernelRelease("") == nil)
    }

    @Test("initial user namespace map")
    func initialMap() {
        #expect(LinuxFormats.isInitialUserNamespaceMap("         0          0 4294967295\n"))
        #expect(!LinuxFormats.isInitialUserNamespaceMap("         0       1001          1\n"))
        #expect(!LinuxFormats.isInitialUserNamespaceMap(""))
    }

    @Test("security.capability: revisions 2 and 3, effective flag, malformed blobs")
    func fileCapabilities() {
        // Revision 2, effective, permitted = CAP_SETUID (bit 7).
        let v2: [UInt8] = [0x01, 0, 0, 0x02, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        let c2 = LinuxFormats.parseFileCapability(v2)!
        #expect(c2.revision == 2 && c2.effective && c2.has(7) && !c2.has(6) && c2.rootID == nil)
        // Revision 3, not effective, permitted = CAP_SETGID (bit 6), high word bit 0 (cap 32), rootid 100000.
        let v3: [UInt8] = [0, 0, 0, 0x03, 0x40, 0, 0, 0, 0, 0, 0, 0, 0x01, 0, 0, 0, 0, 0, 0, 0, 0xa0, 0x86, 0x01, 0]
        let c3 = LinuxFormats.parseFileCapability(v3)!
        #expect(c3.revision == 3 && !c3.effective && c3.has(6) && c3.has(32) && c3.rootID == 100000)
        #expect(LinuxFormats.parseFileCapability([0, 0, 0, 0x02]) == nil)
        #expect(LinuxFormats.parseFileCapability([0, 0, 0, 0x09] + [UInt8](repeating: 0, count: 16)) == nil)
        #expect(LinuxFormats.parseFileCapability([]) == nil)
    }
}
