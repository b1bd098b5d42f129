// Multi-query decoding steps on the thread pool read the kv blocks from per-thread copies (KVReplicas,
// Paths.stepByHead). A copy must never stand for content the state no longer holds: a host that writes a
// state between steps, and steps that alternate between states (the layers of a model), must give what the
// serial path gives from the same states, bit for bit.
import CHLA
import Dispatch
import Synchronization
import XCTest
@testable import HLA

final class StepKVCopiesTests: XCTestCase {
    /// Add `delta` to element `i` of row 0 of a state (a host writing its own memory between calls).
    static func poke(_ st: RowBuf, _ i: Int, _ delta: Double) { st[i] = st[i] + delta }

    /// Run `body` while another host thread holds the thread pool (a step then runs every range on the
    /// calling thread, and the workers' copies fall behind).
    static func withPoolHeld(_ body: () -> Void) {
        let held = Atomic<Int>(0), release = Atomic<Bool>(false), done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            parallelFor(2, spawn: false) { _, _ in
                held.add(1, ordering: .sequentiallyConsistent)
                while !release.load(ordering: .sequentiallyConsistent) { usleep(50) }
            }
            done.signal()
        }
        while held.load(ordering: .sequentiallyConsistent) == 0 { usleep(50) }
        body()
        release.store(true, ordering: .sequentiallyConsistent)
        done.wait()
    }

    /// States A and B, each stepped token by token on the pool (every step pooled, but the one marked *, run
    /// while another host thread holds the pool), in the order A A A [host write to A's kv blocks] A A* A B B
    /// A B A B A B A, against the serial path over the same segments with the same write between them: outputs
    /// and final states bit for bit.
    func run<E: Elem>(_: E.Type, _ o: Options, _ s: Shape, seed: UInt64) {
        let cfg = makeConfig(s, o)
        let a = Typed<E>(Problem(s, seed: seed)), b = Typed<E>(Problem(s, seed: seed + 1))
        let kvFirst = 0, kvLater = 5 * s.dk + 3          // three elements inside the kv blocks of kv head 0
        let kvLast = Layout.state(try! Config(cfg)).kvTotal - 1  // (the last in the last block: hla3's P)
        let name = "\(E.self) \(o) \(s)"

        // The pooled steps.
        let sa = a.newState(cfg), sb = b.newState(cfg)
        let oa = a.outBuf(), ob = b.outBuf()
        StepThreads.shared.always.store(true, ordering: .relaxed)
        a.steps(cfg, sa, 0, 3, into: oa)
        Self.poke(sa, kvFirst, 0.5); Self.poke(sa, kvLater, -0.25); Self.poke(sa, kvLast, 0.125)
        a.steps(cfg, sa, 3, 4, into: oa)
        Self.withPoolHeld { a.steps(cfg, sa, 4, 5, into: oa) }
        var ta = 5, tb = 0
        for who in [0, 1, 1, 0, 1, 0, 1, 0, 1, 0] {
            if who == 0 { a.steps(cfg, sa, ta, ta + 1, into: oa); ta += 1 } else { b.steps(cfg, sb, tb, tb + 1, into: ob); tb += 1 }
        }
        StepThreads.shared.always.store(false, ordering: .relaxed)
        XCTAssertEqual(ta, s.T); XCTAssertEqual(tb, 5)

        // The serial path over the same segments.
        let serial = HLA_PATH_SERIAL.rawValue.asInt32
        let ra = a.newState(cfg), rb = b.newState(cfg)
        let pa = a.outBuf(), pb = b.outBuf()
        check(a.forward(cfg, path: serial, 0, 3, into: pa, initial: ra, final: ra), "serial A 0..<3 \(name)")
        Self.poke(ra, kvFirst, 0.5); Self.poke(ra, kvLater, -0.25); Self.poke(ra, kvLast, 0.125)
        check(a.forward(cfg, path: serial, 3, s.T, into: pa, initial: ra, final: ra), "serial A 3..<T \(name)")
        check(b.forward(cfg, path: serial, 0, 5, into: pb, initial: rb, final: rb), "serial B 0..<5 \(name)")

        XCTAssertTrue(sa.bytes == ra.bytes, "final state A \(name)")
        XCTAssertTrue(sb.bytes == rb.bytes, "final state B \(name)")
        let outA = oa.doubles, refA = pa.doubles
        XCTAssertEqual(outA.count, refA.count)
        XCTAssertTrue(zip(outA, refA).allSatisfy { $0.bitPattern == $1.bitPattern }, "outputs A \(name)")
        let per = s.H * s.dv   // B ran 5 tokens: compare those
        XCTAssertTrue(zip(ob.doubles.prefix(5 * per), pb.doubles.prefix(5 * per)).allSatisfy { $0.bitPattern == $1.bitPattern },
                      "outputs B \(name)")
        // Not vacuous: the write changed what followed (A's later outputs differ from an unwritten run's).
        let plain = a.newState(cfg), po = a.outBuf()
        check(a.forward(cfg, path: serial, 0, s.T, into: po, initial: plain, final: plain), "serial A unwritten \(name)")
        XCTAssertNotEqual(Array(po.doubles.suffix(per)), Array(refA.suffix(per)), "the host write changed nothing \(name)")
    }

    func testHostWritesAndAlternatingStates() {
        var seed: UInt64 = 77_000
        for op in [opHLA2, opAHLA, opHLA3] {
            for (masked, normalize) in [(true, false), (false, true)] {
                let o = Options(op: op, masked: masked, normalize: normalize, decay: masked ? 1.0 : 0.9, ridge: 0)
                var shapes = [(Float.self as any Elem.Type, Shape(B: 1, T: 10, H: 48, Hkv: 1, dk: 65, dv: 33)),
                              (Double.self as any Elem.Type, Shape(B: 1, T: 10, H: 36, Hkv: 1, dk: 33, dv: 97))]
                // On the AVX-512 step kernel (masked float32, d = 64), where the first thread's kv sweeps read the
                // state's rows and compare them with its copy's (hla_private_kv_from).
                if masked { shapes.append((Float.self, Shape(B: 1, T: 10, H: 64, Hkv: 1, dk: 64, dv: 64))) }
                for (e, s) in shapes {
                    let work = s.H * (s.dk * s.dk + 2 * s.dk * (s.dv + (normalize ? 1 : 0)))
                    XCTAssertGreaterThanOrEqual(work, StepThreads.minWork, "\(s) is too small to be threaded")
                    seed += 2
                    if e == Float.self { run(Float.self, o, s, seed: seed) } else { run(Double.self, o, s, seed: seed) }
                }
            }
        }
    }
}
