import Glibc

/// Owner of everything prepared for the children before the first clone: heap blocks, C
/// strings, mappings, capability sets, descriptors. The coordinator frees it all when the
/// arena goes away, on the error paths too; each child keeps its own copy until it execs.
final class Arena {
    private var blocks: [UnsafeMutableRawPointer] = []
    private var mallocs: [UnsafeMutableRawPointer] = []
    private var mappings: [(UnsafeMutableRawPointer, Int)] = []
    private var fds: [Int32] = []
    private var initialized: [() -> Void] = []

    init() {}

    func allocate<T>(_ type: T.Type, count: Int) -> UnsafeMutablePointer<T> {
        let p = UnsafeMutablePointer<T>.allocate(capacity: max(count, 1))
        blocks.append(UnsafeMutableRawPointer(p))
        return p
    }

    func rawBytes(_ count: Int, alignment: Int) -> UnsafeMutableRawPointer {
        let p = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1), alignment: alignment)
        blocks.append(p)
        return p
    }

    /// A NUL-terminated copy of `s`.
    func cString(_ s: String) -> UnsafeMutablePointer<CChar> {
        let p = strdup(s)!
        mallocs.append(UnsafeMutableRawPointer(p))
        return p
    }

    /// A NULL-terminated argv/envp array.
    func cStringArray(_ items: [String]) -> UnsafeMutablePointer<UnsafeMutablePointer<CChar>?> {
        let array = allocate(UnsafeMutablePointer<CChar>?.self, count: items.count + 1)
        for (i, item) in items.enumerated() { array[i] = cString(item) }
        array[items.count] = nil
        return array
    }

    /// An anonymous mapping (MAP_SHARED when `shared`); nil with errno set.
    /// `lazy`: MAP_NORESERVE, for large regions of which only a little is ever touched.
    func map(_ bytes: Int, shared: Bool = false, stack: Bool = false, lazy: Bool = false) -> UnsafeMutableRawPointer? {
        let flags = (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS | (stack ? MAP_STACK : 0) | (lazy ? MAP_NORESERVE : 0)
        let p = mmap(nil, bytes, PROT_READ | PROT_WRITE, flags, -1, 0)
        guard let p, p != MAP_FAILED else { return nil }
        mappings.append((p, bytes))
        return p
    }

    /// Takes ownership of a descriptor; it is closed with the arena unless `close` is called.
    @discardableResult
    func adopt(fd: Int32) -> Int32 {
        if fd >= 0 { fds.append(fd) }
        return fd
    }

    /// Closes an owned descriptor now.
    func close(fd: Int32) {
        guard let i = fds.firstIndex(of: fd) else { return }
        fds.remove(at: i)
        _ = Glibc.close(fd)
    }

    /// A block initialized in place (holding references): deinitialized before it is freed.
    func deinitializeOnFree<T>(_ p: UnsafeMutablePointer<T>) {
        initialized.append { p.deinitialize(count: 1) }
    }

    deinit {
        for d in initialized { d() }
        for fd in fds { _ = Glibc.close(fd) }
        for (p, n) in mappings { munmap(p, n) }
        for p in mallocs { free(p) }
        for p in blocks { p.deallocate() }
    }
}
