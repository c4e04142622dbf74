import Glibc
import RestoreEngine

/// The restore's progress on a terminal: shown once a restore takes more than a second,
/// redrawn at most ten times a second, cleared at the end. The engine only reports events.
final class ProgressLine: @unchecked Sendable {
    private let start = MonotonicClock.nanoseconds()
    private var lastDrawn: UInt64 = 0

    func update(_ event: RestoreProgress) {
        switch event {
        case .building(let created, let total):
            let now = MonotonicClock.nanoseconds()
            guard now - start > 1_000_000_000, now - lastDrawn > 100_000_000 else { return }
            lastDrawn = now
            writeStderr("\rrootless-restore: created \(created) of \(total) processes\u{1B}[K")
        case .finished:
            if lastDrawn != 0 { writeStderr("\r\u{1B}[K") }
            lastDrawn = 0
        }
    }
}
