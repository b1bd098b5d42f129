import CHLA
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Worker threads available to the engine: HLA_NUM_THREADS if set (>= 1), else the online cores.
let hlaThreadCount: Int = {
    if let s = getenv("HLA_NUM_THREADS"), let n = Int(String(cString: s)), n >= 1 { return min(n, 256) }
    let n = sysconf(Int32(_SC_NPROCESSORS_ONLN))
    return n >= 1 ? min(Int(n), 256) : 1
}()


/// Number of workers `parallelFor(count, ...)` uses (so callers can size per-worker scratch).
func workerCount(_ count: Int, parallel: Bool = true) -> Int {
    parallel ? max(1, min(hlaThreadCount, count)) : 1
}

/// CLOCK_MONOTONIC in nanoseconds (the pool's polling deadlines and waits, the step advice's timing).
@inline(__always) func monotonicNanoseconds() -> UInt64 {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return UInt64(t.tv_sec) &* 1_000_000_000 &+ UInt64(t.tv_nsec)
}

/// Run body(index, worker) for index in 0..<count on `workerCount(count, parallel:)` workers. Each index runs
/// exactly once, on one worker, so per-worker scratch needs no locking. `balanced`: workers take the next
/// index from a shared counter (units of unequal cost); else each worker starts on a fixed contiguous
/// share (cache locality across calls) and, once it is done, takes the indices the others have not
/// started yet from the ends of their shares. Either way a worker that is late, asleep or descheduled
/// leaves its work to the others instead of holding up the call. `body` must only touch data owned by its
/// index (and its worker's scratch). Uses the persistent pool when it is free; when another host thread
/// holds it, runs the workers' shares on freshly created threads instead (same results), or with
/// `spawn: false` (calls too short to pay for creating threads) all of them on the calling thread.
/// `linger`: how long pool workers poll for the next job after this one (nil: the pool's default).
/// Returns the pool's report: whether the call ran on the pool and how long the caller then waited for
/// units a worker had started (a worker descheduled in the middle of a unit).
@discardableResult
func parallelFor(_ count: Int, parallel: Bool = true, balanced: Bool = false, spawn: Bool = true,
                 linger: UInt64? = nil, _ body: @escaping (Int, Int) -> Void) -> PoolReport {
    let workers = workerCount(count, parallel: parallel)
    if workers <= 1 {
        for i in 0..<count { body(i, 0) }
        return .unpooled
    }
    let linger = linger ?? ThreadPool.spinNanoseconds
    if let report = ThreadPool.shared.run(body, workers: workers, count: count, balanced: balanced, linger: linger) {
        return report
    }
    let job = PoolJob(capacity: workers)
    job.set(body, workers: workers, count: count, balanced: balanced, linger: linger)
    if !spawn {
        job.runShare(0)   // takes every index: its own share, then the others' (nobody else runs this job)
        return .unpooled
    }
    var threads: [pthread_t] = []
    for w in 1..<workers {
        let box = Unmanaged.passRetained(Share(job, w))
        var tid = pthread_t()
        if pthread_create(&tid, nil, { arg in
            Unmanaged<Share>.fromOpaque(arg!).takeRetainedValue().run()
            return nil
        }, box.toOpaque()) == 0 {
            threads.append(tid)
        } else {
            box.release()   // no thread: the shares that run take its indices
        }
    }
    job.runShare(0)
    for t in threads { pthread_join(t, nil) }
    return .unpooled
}

/// What one `parallelFor` call saw of the pool.
struct PoolReport {
    let pooled: Bool       // ran on the persistent pool
    let elapsed: UInt64    // ns from posting the job to its end (pooled calls only)
    let waited: UInt64     // ns of those the caller waited, after taking every index left, for units workers had started
    static var unpooled: PoolReport { PoolReport(pooled: false, elapsed: 0, waited: 0) }
}

private final class PoolJob: @unchecked Sendable {
    private(set) var body: (Int, Int) -> Void = PoolJob.idle
    private(set) var workers = 0, count = 0
    private(set) var balanced = false
    private(set) var linger: UInt64 = 0   // ns a worker polls for the next job after this one, before it sleeps
    /// Balanced: indices are handed out one at a time from `next`, so workers stay busy when units differ
    /// in cost (packed sequences of different lengths). Otherwise worker w owns the contiguous share
    /// [w·count/workers, (w+1)·count/workers) of `shares[w]`, takes it from the front, the same indices
    /// every call so a unit's state stays in one core's cache across the calls of a decoding loop, then
    /// takes what is left of the other shares from their backs. Contiguous shares, not every workers-th
    /// index: with interleaved units each core's hardware prefetcher ran into the neighbouring units the
    /// other core was writing (two threads were then slower than one on a 2 MiB state). Which worker runs
    /// an index never changes a result.
    /// The pool's job is one object, set for each call (a decoding step's hand-off then allocates and frees
    /// nothing, and the fields a loop of alike calls leaves unchanged stay in both cores' caches).
    private let next = Atomic<Int>(0)
    private let shares: [ShareRange]
    static var idle: (Int, Int) -> Void { { _, _ in } }   // captures nothing: no allocation
    /// A job for up to `capacity` workers (set it before running it).
    init(capacity: Int) { shares = (0..<max(capacity, 1)).map { _ in ShareRange() } }
    /// Make this the job of one call (no thread inside it). `workers` ≤ capacity.
    func set(_ body: @escaping (Int, Int) -> Void, workers: Int, count: Int, balanced: Bool, linger: UInt64) {
        self.body = body
        if self.workers != workers { self.workers = workers }
        if self.count != count { self.count = count }
        let balanced = balanced || count > ShareRange.maxIndex   // shares pack two indices in 32 bits each
        if self.balanced != balanced { self.balanced = balanced }
        if self.linger != linger { self.linger = linger }
        if balanced { next.store(0, ordering: .relaxed) }
        else { for w in 0..<workers { shares[w].set(from: w * count / workers, to: (w + 1) * count / workers) } }
    }
    /// Release the last call's body (and what it captured).
    func clear() { body = PoolJob.idle }
    func runShare(_ w: Int) {
        // One copy of the body per thread and job: `body` is a var, so calling it in the loops would reload and
        // retain it for every index, an atomic add on the closure's header line from both cores (a 64-unit step
        // took 5% longer).
        let body = self.body, count = self.count, workers = self.workers
        if balanced {
            while true {
                let i = next.add(1, ordering: .relaxed).oldValue
                if i >= count { return }
                body(i, w)
            }
        }
        while let i = shares[w].takeFront() { body(i, w) }
        for o in 1..<workers {
            let other = shares[(w + o) % workers]
            while let i = other.takeBack() { body(i, w) }
        }
    }
}

/// The indices [lo, hi) of one worker's share not yet taken, packed into one atomic word (lo in the high
/// half): the owner takes lo, other workers take hi − 1, and a compare-and-swap makes each index go to one
/// of them. Padded to a cache line of its own, so owners taking from their shares do not contend.
private final class ShareRange: @unchecked Sendable {
    static let maxIndex = Int(UInt32.max >> 1)
    private let bounds = Atomic<Int>(0)
    private let pad: (Int, Int, Int, Int, Int, Int, Int) = (0, 0, 0, 0, 0, 0, 0)
    /// Hand out [lo, hi) (no thread taking from it).
    func set(from lo: Int, to hi: Int) { bounds.store(lo << 32 | hi, ordering: .relaxed) }
    func takeFront() -> Int? {
        var b = bounds.load(ordering: .relaxed)
        while true {
            let lo = b >> 32, hi = b & 0xFFFF_FFFF
            if lo >= hi { return nil }
            let (ok, seen) = bounds.compareExchange(expected: b, desired: (lo + 1) << 32 | hi, ordering: .relaxed)
            if ok { return lo }
            b = seen
        }
    }
    func takeBack() -> Int? {
        var b = bounds.load(ordering: .relaxed)
        while true {
            let lo = b >> 32, hi = b & 0xFFFF_FFFF
            if lo >= hi { return nil }
            let (ok, seen) = bounds.compareExchange(expected: b, desired: lo << 32 | (hi - 1), ordering: .relaxed)
            if ok { return hi - 1 }
            b = seen
        }
    }
}

private final class Share: @unchecked Sendable {
    let job: PoolJob, worker: Int
    init(_ job: PoolJob, _ worker: Int) { self.job = job; self.worker = worker }
    func run() { job.runShare(worker) }
}

/// A persistent pool of hlaThreadCount − 1 threads; the caller runs share 0 of every job itself, then takes
/// whatever the workers have not started. After a job a worker polls for the next one for the job's
/// `linger` (200 µs by default; a decoding loop posts the next call within microseconds, so a hot worker
/// picks it up at once and stays on its own core), then sleeps on a condition variable. Decoding steps
/// linger less (`StepThreads.linger`): a host that runs its own threaded work between steps would
/// otherwise share a core with a polling worker after every token. A worker joins a job only while it
/// is open; once the caller has taken every index left it closes the job and waits only for the workers
/// inside it (to finish the units they have started), never for a worker that is asleep or descheduled
/// and has not joined. One job at a time; a caller that finds the pool busy (another host thread) falls
/// back to its own threads. Re-created lazily in a forked child (no job runs at a fork: libhla's fork gate,
/// Sources/CHLA/fork_gate.c, makes fork() wait for the entry points in flight, so `busy` is free; `lock`
/// may still be held by a parent worker that was going to sleep, hence the re-initialisation below).
///
/// A job's hand-off crosses between the cores' caches, about 0.15-0.3 µs a cache line on the reference VM,
/// which a decoding step of 10-40 µs pays on every token. So the word workers poll (`slot`, with `sleepers`
/// and `waiting`, which the same exchanges read) has a cache line of its own; the pool runs one job object,
/// set for each call (no allocation; fields that did not change are not written); and a worker runs it
/// through an unretained reference (a retain would write the job's header line from the worker's core,
/// which the caller would then take back).
private final class ThreadPool: @unchecked Sendable {
    static let shared = ThreadPool()
    /// How long a thread polls before it sleeps, unless the job says otherwise: longer than the gap between the steps of a decoding
    /// loop, short enough not to hold a core for long once the host stops calling. Computed, not a
    /// stored static: the workers read it outside any libhla call, and a lazy global's accessor may
    /// take a lock (swift_once does on every access under ThreadSanitizer) that a fork would then
    /// leave held in the child.
    static var spinNanoseconds: UInt64 { 200_000 }

    /// The current job's word: generation (bumped once per posted job) << genShift | closed | workers inside.
    private static var closedBit: Int { 1 << 16 }
    private static var insideMask: Int { (1 << 16) - 1 }
    private static var genShift: Int { 17 }
    // Stored properties are laid out in this order: 64 bytes before and after the three polled words keep
    // them on a cache line of their own.
    private let padBefore: (Int, Int, Int, Int, Int, Int, Int, Int) = (0, 0, 0, 0, 0, 0, 0, 0)
    private let slot = Atomic<Int>(0)
    private let sleepers = Atomic<Int>(0)     // pool threads blocked on `wake`
    private let waiting = Atomic<Int>(0)      // 1 while the caller is (about to be) blocked on `finished`
    private let padAfter: (Int, Int, Int, Int, Int, Int, Int, Int) = (0, 0, 0, 0, 0, 0, 0, 0)
    private var job: PoolJob? = nil           // the pool's one job (set while no worker is inside it), made on first use
    private var jobRef: Unmanaged<PoolJob>? = nil   // the same, as workers read it (without a retain)
    private var started = 0
    private var running = false               // threads started in this process (after a fork: in the parent)
    private var forks: UInt = 0               // hla_private_fork_generation() when they were
    // Heap-allocated so their addresses never change (pthread objects must not move).
    private let busy = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)  // held by the job's caller
    private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)  // pairs with both conds
    private let wake = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private let finished = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    private init() {
        pthread_mutex_init(busy, nil); pthread_mutex_init(lock, nil)
        pthread_cond_init(wake, nil); pthread_cond_init(finished, nil)
    }

    /// Run body over `count` indices on `workers` threads of the pool (share 0 on the caller), as `PoolJob`
    /// describes. nil if the pool is busy or has no threads.
    func run(_ body: @escaping (Int, Int) -> Void, workers: Int, count: Int, balanced: Bool, linger: UInt64) -> PoolReport? {
        guard pthread_mutex_trylock(busy) == 0 else { return nil }
        defer { pthread_mutex_unlock(busy) }
        let forks = hla_private_fork_generation()
        if !running || self.forks != forks {
            // First use, or a forked child: the parent's threads are not here, and the condition variables
            // may still count the parent's sleeping workers as waiters (a broadcast would then wait for
            // them forever). Only this thread exists in a fresh child, so re-initialise everything.
            if running {
                pthread_mutex_init(lock, nil); pthread_cond_init(wake, nil); pthread_cond_init(finished, nil)
            }
            running = true; self.forks = forks; started = 0; jobRef = nil; job = nil
            slot.store(0, ordering: .sequentiallyConsistent)
            sleepers.store(0, ordering: .sequentiallyConsistent)
            waiting.store(0, ordering: .sequentiallyConsistent)
        }
        while started < hlaThreadCount - 1 {
            let ctx = Unmanaged.passRetained(WorkerContext(self, started + 1,
                                                           slot.load(ordering: .sequentiallyConsistent) >> ThreadPool.genShift))
            var tid = pthread_t()
            if pthread_create(&tid, nil, { arg in
                let c = Unmanaged<WorkerContext>.fromOpaque(arg!).takeRetainedValue()
                c.pool.loop(c.index, from: c.generation)
                return nil
            }, ctx.toOpaque()) != 0 {
                ctx.release()
                break
            }
            pthread_detach(tid)
            started += 1
        }
        guard started >= 1 else { return nil }
        if job == nil {
            let made = PoolJob(capacity: hlaThreadCount)
            job = made; jobRef = Unmanaged.passUnretained(made)
        }
        let j = job.unsafelyUnwrapped
        j.set(body, workers: workers, count: count, balanced: balanced, linger: linger)
        defer { j.clear() }
        let posted = monotonicNanoseconds()
        // Post: a new generation, open, nobody inside (the previous job was closed and drained).
        let generation = (slot.load(ordering: .relaxed) >> ThreadPool.genShift) &+ 1
        slot.store(generation << ThreadPool.genShift, ordering: .sequentiallyConsistent)
        if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
            pthread_mutex_lock(lock); pthread_cond_broadcast(wake); pthread_mutex_unlock(lock)
        }
        j.runShare(0)
        // Every index is taken: close the job to late workers, then wait for the units in progress.
        let before = slot.bitwiseOr(ThreadPool.closedBit, ordering: .sequentiallyConsistent).oldValue
        var waited: UInt64 = 0
        let closed = monotonicNanoseconds()
        if before & ThreadPool.insideMask != 0 {
            let until = closed &+ ThreadPool.spinNanoseconds
            var spins = 0
            while slot.load(ordering: .acquiring) & ThreadPool.insideMask != 0 {
                spins &+= 1
                if spins & 255 == 0 && monotonicNanoseconds() > until { break }
            }
            if slot.load(ordering: .acquiring) & ThreadPool.insideMask != 0 {
                pthread_mutex_lock(lock)
                waiting.store(1, ordering: .sequentiallyConsistent)
                while slot.load(ordering: .sequentiallyConsistent) & ThreadPool.insideMask != 0 {
                    pthread_cond_wait(finished, lock)
                }
                waiting.store(0, ordering: .sequentiallyConsistent)
                pthread_mutex_unlock(lock)
            }
            waited = monotonicNanoseconds() &- closed
        }
        return PoolReport(pooled: true, elapsed: closed &- posted &+ waited, waited: waited)
    }

    fileprivate func loop(_ index: Int, from generation0: Int) {
        var seen = generation0
        var linger = ThreadPool.spinNanoseconds
        while true {
            var s = slot.load(ordering: .acquiring)
            let until = monotonicNanoseconds() &+ linger
            var spins = 0
            while s >> ThreadPool.genShift == seen {
                spins &+= 1
                if spins & 255 == 0 && monotonicNanoseconds() > until { break }
                s = slot.load(ordering: .acquiring)
            }
            if s >> ThreadPool.genShift == seen {
                pthread_mutex_lock(lock)
                sleepers.add(1, ordering: .sequentiallyConsistent)
                while slot.load(ordering: .sequentiallyConsistent) >> ThreadPool.genShift == seen {
                    pthread_cond_wait(wake, lock)
                }
                sleepers.subtract(1, ordering: .sequentiallyConsistent)
                pthread_mutex_unlock(lock)
                s = slot.load(ordering: .acquiring)
            }
            // Join the newest job if it is still open; a closed one is finished without us.
            var inside = false
            while s & ThreadPool.closedBit == 0 {
                let (ok, now) = slot.compareExchange(expected: s, desired: s + 1, ordering: .sequentiallyConsistent)
                if ok { inside = true; break }
                s = now
            }
            seen = s >> ThreadPool.genShift
            guard inside else { continue }
            // Inside, the caller neither returns nor sets the job again, so `job` is this call's (and alive:
            // the pool keeps it).
            if let j = jobRef {
                j._withUnsafeGuaranteedRef { j in
                    linger = j.linger
                    if index < j.workers { j.runShare(index) }
                }
            }
            let after = slot.subtract(1, ordering: .sequentiallyConsistent).newValue
            if after & ThreadPool.insideMask == 0 && waiting.load(ordering: .sequentiallyConsistent) == 1 {
                pthread_mutex_lock(lock); pthread_cond_signal(finished); pthread_mutex_unlock(lock)
            }
        }
    }
}

private final class WorkerContext {
    let pool: ThreadPool, index: Int, generation: Int
    init(_ pool: ThreadPool, _ index: Int, _ generation: Int) { self.pool = pool; self.index = index; self.generation = generation }
}
