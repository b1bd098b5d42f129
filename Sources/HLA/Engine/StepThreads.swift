#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Whether a single-token step (one decoding step of every sequence of a call) goes to the thread pool.
///
/// A step streams its whole state once. On two threads each core sweeps half of it, from its own L2 when
/// the halves fit, so a state of 1-3 MiB (64 heads at d = 64, 16 heads at d = 128) stepped 1.4-1.9x faster
/// on the 2-core reference VM when the two threads had a core each. The risk is a worker that another
/// process (or the host's own threads) keeps off its core. The pool never waits for a worker that has
/// not joined a step (the caller takes its units), but a worker descheduled in the middle of a unit holds
/// the step up until it runs again: a scheduler time slice, milliseconds against a step of tens of
/// microseconds. So threaded steps keep an account: each credits half its own time (about what the
/// second core saves) and debits the time the caller waited for a worker's unit. The credit is capped at
/// `maxCredit`; when a wait overdraws it, steps stay on the calling thread for `factor` times that wait,
/// so a stall costs at most 1/factor of the time run on one thread after it. The factor doubles with
/// every overdraft (up to 1024) and halves after 1024 threaded steps without one: a machine that keeps
/// stalling the worker runs its steps on one thread almost always, while the short waits a busy host
/// causes now and then (tens of microseconds) are absorbed. Only timing depends on this: which thread
/// runs a unit never changes a result.
final class StepThreads: @unchecked Sendable {
    static let shared = StepThreads()
    init() {}
    /// From here (a step of 16 heads at d = 64 is 0.2M multiply-adds, 8 µs on one core) the second core
    /// gained more than posting the step to it costs.
    static var minWork: Int { 1 << 17 }
    static var maxCredit: Int { 2_000_000 }   // ns
    private let holdUntil = Atomic<UInt64>(0)   // CLOCK_MONOTONIC ns before which steps stay on one thread
    private let credit = Atomic<Int>(StepThreads.maxCredit)
    private let factor = Atomic<Int>(32)
    private let clean = Atomic<Int>(0)          // threaded steps since the last overdraft

    private static func now() -> UInt64 {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return UInt64(t.tv_sec) &* 1_000_000_000 &+ UInt64(t.tv_nsec)
    }

    /// Whether a step of about `work` multiply-adds should use the pool now.
    func advised(_ work: Int) -> Bool {
        guard work < 0 || work >= StepThreads.minWork, hlaThreadCount > 1 else { return false }
        let until = holdUntil.load(ordering: .relaxed)
        return until == 0 || StepThreads.now() >= until
    }

    /// Forget the account (tests: make the next step's advice depend on its size only).
    func reset() {
        holdUntil.store(0, ordering: .relaxed); credit.store(StepThreads.maxCredit, ordering: .relaxed)
        factor.store(32, ordering: .relaxed); clean.store(0, ordering: .relaxed)
    }

    /// Account for a threaded step's report from `parallelFor`. Racing host threads may lose an update:
    /// the account only steers timing.
    func record(_ r: PoolReport) {
        guard r.pooled else { return }
        let waited = Int(clamping: r.waited)
        let c = min(credit.load(ordering: .relaxed) &+ Int(clamping: (r.elapsed &- r.waited) / 2),
                    StepThreads.maxCredit) &- waited
        if c < 0 {
            let f = factor.load(ordering: .relaxed)
            holdUntil.store(StepThreads.now() &+ UInt64(waited) &* UInt64(f), ordering: .relaxed)
            factor.store(min(2 * f, 1024), ordering: .relaxed)
            credit.store(0, ordering: .relaxed)
            clean.store(0, ordering: .relaxed)
            return
        }
        credit.store(c, ordering: .relaxed)
        if clean.add(1, ordering: .relaxed).newValue >= 1024 {
            clean.store(0, ordering: .relaxed)
            factor.store(max(factor.load(ordering: .relaxed) / 2, 32), ordering: .relaxed)
        }
    }
}
