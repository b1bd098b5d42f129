// parallelFor runs every index exactly once, on a worker below workerCount, in all its modes (shared
// counter, fixed shares with stealing, the pool, fresh threads, the calling thread alone), also while
// another host thread holds the pool; a worker held up inside a unit leaves the rest of its share to the
// others; single-token steps advised onto threads give hla_step's bits of a one-thread run.
import Dispatch
import Synchronization
import XCTest
@testable import HLA

final class ParallelForTests: XCTestCase {
    /// Per-index run counts and the worker of the last run.
    final class Ledger: @unchecked Sendable {
        let runs: UnsafeMutablePointer<Int>, worker: UnsafeMutablePointer<Int>, n: Int
        private let lock = Mutex<Void>(())
        init(_ n: Int) {
            self.n = n
            runs = .allocate(capacity: max(n, 1)); runs.initialize(repeating: 0, count: max(n, 1))
            worker = .allocate(capacity: max(n, 1)); worker.initialize(repeating: -1, count: max(n, 1))
        }
        func note(_ i: Int, _ w: Int) { lock.withLock { _ in runs[i] += 1; worker[i] = w } }
        deinit { runs.deallocate(); worker.deallocate() }
    }

    private static func check(_ count: Int, balanced: Bool, spawn: Bool, _ msg: String) {
        let ledger = Ledger(count)
        let workers = workerCount(count)
        parallelFor(count, balanced: balanced, spawn: spawn) { i, w in ledger.note(i, w) }
        for i in 0..<count {
            XCTAssertEqual(ledger.runs[i], 1, "\(msg): index \(i) of \(count) ran \(ledger.runs[i]) times")
            XCTAssert(ledger.worker[i] >= 0 && ledger.worker[i] < workers, "\(msg): index \(i) on worker \(ledger.worker[i])")
        }
    }

    func testEveryIndexOnce() {
        for count in [0, 1, 2, 3, 5, 8, 17, 64, 1000] {
            for balanced in [false, true] {
                for spawn in [true, false] {
                    for _ in 0..<20 { Self.check(count, balanced: balanced, spawn: spawn, "balanced \(balanced) spawn \(spawn)") }
                }
            }
        }
    }

    /// Two host threads at once: one gets the pool, the other runs on fresh threads (spawn) or alone.
    func testConcurrentCallers() {
        DispatchQueue.concurrentPerform(iterations: 4) { k in
            for r in 0..<200 {
                Self.check(1 + (r * 7 + k) % 50, balanced: r % 2 == 0, spawn: k % 2 == 0, "caller \(k) round \(r)")
            }
        }
    }

    /// With fixed shares, a worker that stops inside its first unit leaves the rest of its share to the
    /// others (taken from its back), so the call takes about that one unit's time, not the whole share's.
    func testStuckWorkerSharesAreTaken() throws {
        try XCTSkipIf(hlaThreadCount < 2, "one thread: nothing to take from")
        let count = 8, workers = workerCount(count)
        let ledger = Ledger(count)
        parallelFor(count, balanced: false) { i, w in
            if i == 0 { usleep(300_000) }   // index 0 is the front of worker 0's share
            ledger.note(i, w)
        }
        for i in 0..<count { XCTAssertEqual(ledger.runs[i], 1, "index \(i)") }
        let share0 = 1..<(count / workers)
        XCTAssert(share0.contains { ledger.worker[$0] != 0 },
                  "worker 0's share \(share0) all ran on worker 0: \((0..<count).map { ledger.worker[$0] })")
    }

    /// The step advice: small steps stay on the calling thread; large ones use the pool only right after
    /// another step (the workers still polling); a report of a long wait for a worker holds threaded steps
    /// off for a while, short waits within the credit do not.
    func testStepAdvice() {
        let m = StepThreads.minWork, two = hlaThreadCount > 1
        // Right after a step (a few tries: this thread may lose its core for longer than `linger`).
        func adviceAfterStep(_ s: StepThreads, _ w: Int) -> Bool {
            (0..<5).contains { _ in s.ended(m, nil); return s.advised(w) }
        }
        let s = StepThreads()
        XCTAssertFalse(s.advised(m), "no step has ended yet: the workers are not polling")
        XCTAssertFalse(adviceAfterStep(s, m - 1))
        XCTAssertEqual(adviceAfterStep(s, m), two)
        usleep(UInt32(2 * StepThreads.linger / 1000))
        XCTAssertFalse(s.advised(m), "a step after a pause longer than the workers poll")
        // A wait of 5 ms is within the credit (50 ms); one of 60 ms against 20 µs steps overdraws it: steps go to
        // one thread for ~2 s.
        for _ in 0..<10 { s.ended(m, PoolReport(pooled: true, elapsed: 20_000, waited: 0)) }
        XCTAssertEqual(adviceAfterStep(s, m), two)
        s.ended(m, PoolReport(pooled: true, elapsed: 5_020_000, waited: 5_000_000))
        XCTAssertEqual(adviceAfterStep(s, m), two)
        s.ended(m, PoolReport(pooled: true, elapsed: 60_020_000, waited: 60_000_000))
        XCTAssertFalse(adviceAfterStep(s, m))
        let t = StepThreads()
        for _ in 0..<1000 { t.ended(m, PoolReport(pooled: true, elapsed: 20_000, waited: 3_000)) }
        XCTAssertEqual(adviceAfterStep(t, m), two)
        t.always.store(true, ordering: .relaxed)
        usleep(UInt32(2 * StepThreads.linger / 1000))
        XCTAssertEqual(t.advised(m), two, "always: whatever the timing")
    }
}
