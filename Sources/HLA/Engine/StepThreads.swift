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
/// stalling the worker runs its steps on one thread almost always, while the waits a busy host causes now
/// and then (up to a few scheduler slices) are absorbed. Only timing depends on this: which thread
/// runs a unit never changes a result.
final class StepThreads: @unchecked Sendable {
    static let shared = StepThreads()
    init() {}
    /// From here (a step of 16 heads at d = 64 is 0.2M multiply-adds, 8 µs on one core) the second core
    /// gained more than posting the step to it costs.
    static var minWork: Int { 1 << 17 }
    /// 50 ms: on the 2-core AMD EPYC VM a worker lost its core for milliseconds every few hundred ms of steps, and
    /// with a 2 ms cap each such wait overdrew the account and held steps on one thread for 32-1024 times the wait
    /// (a `make bench` ran three of hla2's four step shapes on one thread, 39-43% of the limit; H=64 Hkv=1 ran at
    /// 75% threaded). With 50 ms the gains of the threaded steps before such a wait absorb it (hla2 H=64 Hkv=1: 1 of
    /// 50 batches of 2,000 steps with CPU/wall below 1.8, against 8 of 50 with 2 ms), while a host that keeps
    /// stalling the worker still drains the credit and is held off.
    static var maxCredit: Int { 50_000_000 }   // ns
    /// How long pool workers poll for the next job after a step (ns): well above the gap between the steps
    /// of a decoding loop (a few µs from Python), well below the 200 µs after other jobs, so a host's own
    /// threaded work between steps (a model's matrix products) does not share a core with a polling worker.
    static var linger: UInt64 { 30_000 }
    private let holdUntil = Atomic<UInt64>(0)   // CLOCK_MONOTONIC ns before which steps stay on one thread
    private let credit = Atomic<Int>(StepThreads.maxCredit)
    private let factor = Atomic<Int>(32)
    private let clean = Atomic<Int>(0)          // threaded steps since the last overdraft
    private let lastEnd = Atomic<UInt64>(0)     // CLOCK_MONOTONIC ns at the end of the last step of minWork or more
    /// Tests: advise the pool for every step of minWork or more, whatever the timing and the account.
    let always = Atomic<Bool>(false)

    /// Whether a step of about `work` multiply-adds should use the pool now: large enough, no hold, and
    /// the previous step (of any size that could be threaded) ended less than `linger` ago, so the pool's
    /// workers are still polling. A decoding loop that calls back to back keeps them hot and runs on both
    /// cores; a host that does other work between steps (a model's layers: milliseconds) steps on its own
    /// thread without waking them: a woken worker joins tens of microseconds late, and polling workers
    /// would share cores with the host's own threads after every token.
    func advised(_ work: Int) -> Bool {
        guard work < 0 || work >= StepThreads.minWork, hlaThreadCount > 1 else { return false }
        if always.load(ordering: .relaxed) { return true }
        let now = monotonicNanoseconds(), until = holdUntil.load(ordering: .relaxed)
        return now &- lastEnd.load(ordering: .relaxed) < StepThreads.linger && (until == 0 || now >= until)
    }

    /// A step of `work` multiply-adds ended: its report from `parallelFor` when it ran there (else nil).
    func ended(_ work: Int, _ report: PoolReport?) {
        guard work < 0 || work >= StepThreads.minWork else { return }
        if let r = report { record(r) }
        lastEnd.store(monotonicNanoseconds(), ordering: .relaxed)
    }

    /// Account for a threaded step's report from `parallelFor`. Racing host threads may lose an update:
    /// the account only steers timing.
    private func record(_ r: PoolReport) {
        guard r.pooled else { return }
        let waited = Int(clamping: r.waited)
        let c = min(credit.load(ordering: .relaxed) &+ Int(clamping: (r.elapsed &- r.waited) / 2),
                    StepThreads.maxCredit) &- waited
        if c < 0 {
            let f = factor.load(ordering: .relaxed)
            holdUntil.store(monotonicNanoseconds() &+ UInt64(waited) &* UInt64(f), ordering: .relaxed)
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
