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

/// Run body(index, worker) for index in 0..<count on `workerCount(count, parallel:)` workers. Each index runs
/// exactly once, on one worker, so per-worker scratch needs no locking. `balanced`: workers take the next
/// index from a shared counter (units of unequal cost); else a fixed round-robin partition (cache
/// locality across calls). `body` must only touch data owned by its index (and its worker's scratch).
/// Uses the persistent pool when it is free; when another host thread holds it, runs the workers'
/// shares on freshly created threads instead (same partition, same results).
func parallelFor(_ count: Int, parallel: Bool = true, balanced: Bool = false, _ body: @escaping (Int, Int) -> Void) {
    let workers = workerCount(count, parallel: parallel)
    if workers <= 1 {
        for i in 0..<count { body(i, 0) }
        return
    }
    let job = PoolJob(body, workers: workers, count: count, balanced: balanced)
    if ThreadPool.shared.run(job) { return }
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
            box.takeRetainedValue().run()   // no thread: run that share here
        }
    }
    job.runShare(0)
    for t in threads { pthread_join(t, nil) }
}

private final class PoolJob: @unchecked Sendable {
    let body: (Int, Int) -> Void
    let workers: Int, count: Int
    init(_ body: @escaping (Int, Int) -> Void, workers: Int, count: Int, balanced: Bool) {
        self.body = body; self.workers = workers; self.count = count; self.balanced = balanced
    }
    /// Balanced: indices are handed out one at a time from a shared counter, so workers stay busy when
    /// units differ in cost (packed sequences of different lengths). Otherwise worker w runs the indices
    /// ≡ w mod workers, the same ones every call, so a unit's state stays in one core's cache across the
    /// calls of a decoding loop. Which worker runs an index never changes a result.
    private let next = Atomic<Int>(0)
    let balanced: Bool
    func runShare(_ w: Int) {
        if !balanced {
            var i = w
            while i < count { body(i, w); i += workers }
            return
        }
        while true {
            let i = next.add(1, ordering: .relaxed).oldValue
            if i >= count { return }
            body(i, w)
        }
    }
}

private final class Share: @unchecked Sendable {
    let job: PoolJob, worker: Int
    init(_ job: PoolJob, _ worker: Int) { self.job = job; self.worker = worker }
    func run() { job.runShare(worker) }
}

/// A persistent pool of hlaThreadCount − 1 threads; the caller runs share 0 of every job itself. Between
/// jobs a worker polls the job counter for 200 µs (a decoding loop posts the next step within
/// microseconds, so a hot worker picks it up at once and stays on its own core), then sleeps on a
/// condition variable; the caller likewise polls briefly for the workers to finish, then sleeps. One job
/// at a time; a caller that finds the pool busy (another host thread) falls back to its own threads.
/// Re-created lazily in a forked child (no job runs at a fork: libhla's fork gate, Sources/CHLA/fork_gate.c,
/// makes fork() wait for the entry points in flight, so `busy` is free; `lock` may still be held by a
/// parent worker that was going to sleep, hence the re-initialisation below).
private final class ThreadPool: @unchecked Sendable {
    static let shared = ThreadPool()
    /// How long a thread polls before it sleeps: longer than the gap between the steps of a decoding
    /// loop, short enough not to hold a core for long once the host stops calling. Computed, not a
    /// stored static: the workers read it outside any libhla call, and a lazy global's accessor may
    /// take a lock (swift_once does on every access under ThreadSanitizer) that a fork would then
    /// leave held in the child.
    static var spinNanoseconds: UInt64 { 200_000 }

    @inline(__always) static func now() -> UInt64 {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return UInt64(t.tv_sec) &* 1_000_000_000 &+ UInt64(t.tv_nsec)
    }

    private let generation = Atomic<Int>(0)   // bumped once per posted job
    private let pending = Atomic<Int>(0)      // pool threads that have not finished the current job
    private let sleepers = Atomic<Int>(0)     // pool threads blocked on `wake`
    private let waiting = Atomic<Int>(0)      // 1 while the caller is (about to be) blocked on `finished`
    private var job: PoolJob? = nil           // published by the release of `generation`
    private var started = 0
    private var pid: pid_t = 0
    // Heap-allocated so their addresses never change (pthread objects must not move).
    private let busy = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)  // held by the job's caller
    private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)  // pairs with both conds
    private let wake = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private let finished = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    private init() {
        pthread_mutex_init(busy, nil); pthread_mutex_init(lock, nil)
        pthread_cond_init(wake, nil); pthread_cond_init(finished, nil)
    }

    /// Run `job` on the pool (share 0 on the caller). False if the pool is busy or cannot start threads.
    func run(_ j: PoolJob) -> Bool {
        guard pthread_mutex_trylock(busy) == 0 else { return false }
        defer { pthread_mutex_unlock(busy) }
        if pid != getpid() {
            // First use, or a forked child: the parent's threads are not here, and the condition variables
            // may still count the parent's sleeping workers as waiters (a broadcast would then wait for
            // them forever). Only this thread exists in a fresh child, so re-initialise everything.
            if pid != 0 {
                pthread_mutex_init(lock, nil); pthread_cond_init(wake, nil); pthread_cond_init(finished, nil)
            }
            pid = getpid(); started = 0; job = nil
            sleepers.store(0, ordering: .sequentiallyConsistent)
            waiting.store(0, ordering: .sequentiallyConsistent)
            pending.store(0, ordering: .sequentiallyConsistent)
        }
        while started < hlaThreadCount - 1 {
            let ctx = Unmanaged.passRetained(WorkerContext(self, started + 1, generation.load(ordering: .sequentiallyConsistent)))
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
        guard started >= j.workers - 1 else { return false }
        job = j
        pending.store(started, ordering: .sequentiallyConsistent)
        generation.add(1, ordering: .sequentiallyConsistent)
        if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
            pthread_mutex_lock(lock); pthread_cond_broadcast(wake); pthread_mutex_unlock(lock)
        }
        j.runShare(0)
        let until = ThreadPool.now() &+ ThreadPool.spinNanoseconds
        var spins = 0
        while pending.load(ordering: .acquiring) > 0 {
            spins &+= 1
            if spins & 255 == 0 && ThreadPool.now() > until { break }
        }
        if pending.load(ordering: .acquiring) > 0 {
            pthread_mutex_lock(lock)
            waiting.store(1, ordering: .sequentiallyConsistent)
            while pending.load(ordering: .sequentiallyConsistent) > 0 { pthread_cond_wait(finished, lock) }
            waiting.store(0, ordering: .sequentiallyConsistent)
            pthread_mutex_unlock(lock)
        }
        job = nil
        return true
    }

    fileprivate func loop(_ index: Int, from generation0: Int) {
        var seen = generation0
        while true {
            var g = generation.load(ordering: .acquiring)
            let until = ThreadPool.now() &+ ThreadPool.spinNanoseconds
            var spins = 0
            while g == seen {
                spins &+= 1
                if spins & 255 == 0 && ThreadPool.now() > until { break }
                g = generation.load(ordering: .acquiring)
            }
            if g == seen {
                pthread_mutex_lock(lock)
                sleepers.add(1, ordering: .sequentiallyConsistent)
                while generation.load(ordering: .sequentiallyConsistent) == seen { pthread_cond_wait(wake, lock) }
                sleepers.subtract(1, ordering: .sequentiallyConsistent)
                pthread_mutex_unlock(lock)
                g = generation.load(ordering: .acquiring)
            }
            seen = g
            if let j = job, index < j.workers { j.runShare(index) }
            if pending.subtract(1, ordering: .sequentiallyConsistent).newValue == 0,
               waiting.load(ordering: .sequentiallyConsistent) == 1 {
                pthread_mutex_lock(lock); pthread_cond_signal(finished); pthread_mutex_unlock(lock)
            }
        }
    }
}

private final class WorkerContext {
    let pool: ThreadPool, index: Int, generation: Int
    init(_ pool: ThreadPool, _ index: Int, _ generation: Int) { self.pool = pool; self.index = index; self.generation = generation }
}
