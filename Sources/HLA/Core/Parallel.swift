#if canImport(Glibc)
import Glibc
#endif
import CBLAS

/// Worker threads available to the engine: HLA_NUM_THREADS if set (>= 1), else the online cores.
let hlaThreadCount: Int = {
    if let s = getenv("HLA_NUM_THREADS"), let n = Int(String(cString: s)), n >= 1 { return min(n, 256) }
    let n = sysconf(Int32(_SC_NPROCESSORS_ONLN))
    return n >= 1 ? min(Int(n), 256) : 1
}()

/// OpenBLAS runs single-threaded inside libhla: the engine parallelises over batch × heads itself and
/// its products are small, so BLAS threads would only oversubscribe the cores.
let blasSingleThreaded: Void = { openblas_set_num_threads(1) }()

private final class TaskBox: @unchecked Sendable {
    let body: (Int, Int) -> Void
    let worker: Int, workers: Int, count: Int
    init(_ body: @escaping (Int, Int) -> Void, _ worker: Int, _ workers: Int, _ count: Int) {
        self.body = body; self.worker = worker; self.workers = workers; self.count = count
    }
    func run() { var i = worker; while i < count { body(i, worker); i += workers } }
}

/// Number of workers `parallelFor(count, ...)` uses (so callers can size per-worker scratch).
func workerCount(_ count: Int, parallel: Bool = true) -> Int {
    parallel ? max(1, min(hlaThreadCount, count)) : 1
}

/// Run body(index, worker) for index in 0..<count on `workerCount(count, parallel:)` threads (the
/// caller's thread is worker 0). Static round-robin partition: worker w runs the indices ≡ w mod workers,
/// so per-worker scratch needs no locking. `body` must only touch data owned by its index.
func parallelFor(_ count: Int, parallel: Bool = true, _ body: @escaping (Int, Int) -> Void) {
    _ = blasSingleThreaded
    let workers = workerCount(count, parallel: parallel)
    if workers <= 1 {
        for i in 0..<count { body(i, 0) }
        return
    }
    var threads: [pthread_t] = []
    for w in 1..<workers {
        let box = Unmanaged.passRetained(TaskBox(body, w, workers, count))
        var tid = pthread_t()
        let rc = pthread_create(&tid, nil, { arg in
            let b = Unmanaged<TaskBox>.fromOpaque(arg!).takeRetainedValue()
            b.run()
            return nil
        }, box.toOpaque())
        if rc == 0 { threads.append(tid) } else {
            // No thread: run that worker's share here.
            box.takeRetainedValue().run()
        }
    }
    TaskBox(body, 0, workers, count).run()
    for t in threads { pthread_join(t, nil) }
}
