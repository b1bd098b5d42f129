// The band sweeps' work sharing (Sources/HLA/Engine/BandShare.swift): with one thread held up, the others take
// parts of its bands; every chunk of every head still runs exactly once, in token order, and the chunked and scan
// paths (outputs, final states, checkpoints) and hla_summarize give the bits of a run where no thread was held up.
import CHLA
import Synchronization
import XCTest
@testable import HLA

final class BandShareTests: XCTestCase {
    override func tearDown() { BandShare.chunkHook = nil }

    /// Bands of 5 heads over 37, 16 and 29 tokens in chunks of 4; the thread that begins band 0 sleeps before each
    /// of its chunks, so the others, done with theirs, take heads of band 0 (and then of each other's parts).
    func testEveryChunkOnceInOrder() throws {
        try XCTSkipIf(hlaThreadCount < 2, "one thread: nothing to take")
        let heads = 5, n0 = 4, ends = [37, 16, 29], bands = ends.count
        let next = Mutex<[Int]>(Array(repeating: 0, count: bands * heads))
        let ranOn = Mutex<[Set<Int>]>(Array(repeating: [], count: bands * heads))
        let errors = Mutex<[String]>([])
        let slow = Atomic<Int>(-1)
        let share = try BandShare(workers: workerCount(bands), bands: bands)
        defer { share.free() }
        let takes0 = BandShare.takes.load(ordering: .relaxed)
        BandShare.chunkHook = { w in if slow.load(ordering: .relaxed) == w { usleep(3_000) } }
        parallelFor(bands) { i, w in
            share.began()
            if i == 0 { slow.store(w, ordering: .relaxed) }
            func sweep(_ band: Int, _ g0: Int, _ g1: Int, from: Int, to end: Int) {
                share.sweep(w, band: band, g0: g0, g1: g1, from: from, to: end, n0: n0) { g0, g1, t0, n in
                    XCTAssertEqual(n, min(n0, end - t0))
                    for g in g0..<g1 {
                        let x = band * heads + g
                        next.withLock { nx in
                            if nx[x] != t0 { errors.withLock { $0.append("band \(band) head \(g): chunk at \(t0), expected \(nx[x])") } }
                            nx[x] = t0 + n
                        }
                        _ = ranOn.withLock { $0[x].insert(w) }
                    }
                }
            }
            sweep(i, 0, heads, from: 0, to: ends[i])
            while share.allBegun, let t = share.take(w, n0: n0) { sweep(t.band, t.g0, t.g1, from: t.from, to: t.end) }
        }
        XCTAssertEqual(errors.withLock { $0 }, [])
        let done = next.withLock { $0 }
        for b in 0..<bands { for g in 0..<heads { XCTAssertEqual(done[b * heads + g], ends[b], "band \(b) head \(g)") } }
        XCTAssertGreaterThan(BandShare.takes.load(ordering: .relaxed) - takes0, 0, "no part of a band was taken")
        let moved = (0..<heads).contains { g in ranOn.withLock { $0[g] }.count > 1 }
        XCTAssertTrue(moved, "band 0 ran on its own thread only: \(ranOn.withLock { $0 })")
    }

    /// The chunked path (with checkpoints), the scan path and hla_summarize on B = 1, 4 kv heads (2 query heads each),
    /// 2 threads' bands, with worker 0 held up before each chunk: the same bits as without, and the serial path's
    /// values.
    func testPathsGiveTheSameBitsWhenPartsAreTaken() throws {
        try XCTSkipIf(hlaThreadCount < 2, "one thread: nothing to take")
        // large enough for the pool (Paths.worthThreads): 512 tokens x 8 heads x (16 + 16) x (16 + 16)
        let s = Shape(B: 1, T: 517, H: 8, Hkv: 4, dk: 16, dv: 16)
        let p = Problem(s, seed: 4242)
        let t = Typed<Double>(p)
        for op in allOps {
            let o = Options(op: op, masked: true, normalize: false, decay: 0.99, chunk: 16)
            var c = makeConfig(s, o)
            var n: Int64 = 0
            XCTAssertEqual(hla_state_elements(&c, &n), HLA_OK)
            c.checkpoint_every = 3
            var rows: Int64 = 0, stride: Int64 = 0
            XCTAssertEqual(hla_checkpoint_rows(&c, 1, Int64(s.T), 0, &rows, &stride), HLA_OK)
            func run(held: Bool) -> [[UInt64]] {
                let takes0 = BandShare.takes.load(ordering: .relaxed)
                BandShare.chunkHook = held ? { w in if w == 0 { usleep(300) } } : nil
                defer { BandShare.chunkHook = nil }
                var res: [[UInt64]] = []
                for path in [HLA_PATH_CHUNKED, HLA_PATH_SCAN] {
                    let fin = RowBuf(dtype: F64, rows: 1, n: Int(n), fill: .nan)
                    let out = t.forward(c, path: path.rawValue.asInt32, final: fin)
                    res.append(out.map { $0.bitPattern })
                    res.append(fin.values.map { $0.bitPattern })
                }
                let out = t.outBuf(), ck = RowBuf(dtype: F64, rows: Int(rows), n: Int(n), fill: .nan)
                let ckT = ck.tensor, oT = t.oT(out), qT = t.qT(), kT = t.kT(), vT = t.vT()
                XCTAssertEqual(hla_forward_checkpoints(&c, qT.p, kT.p, vT.p, oT.p, nil, nil, nil, nil, ckT.p),
                               HLA_OK, lastError())
                res.append(ck.values.map { $0.bitPattern })
                keepAlive(out, ck, ckT, oT, qT, kT, vT)
                res.append(t.summarize(c, 0, s.T).values.map { $0.bitPattern })
                if held {
                    XCTAssertGreaterThan(BandShare.takes.load(ordering: .relaxed) - takes0, 0,
                                         "\(o): no part of a band was taken")
                }
                return res
            }
            let plain = run(held: false), held = run(held: true)
            for (i, name) in ["chunked output", "chunked final", "scan output", "scan final", "checkpoints", "summary"].enumerated() {
                XCTAssertTrue(plain[i] == held[i], "\(o): \(name) differs when parts of bands are taken")
            }
            let serial = t.forward(c, path: HLA_PATH_SERIAL.rawValue.asInt32)
            XCTAssertLessThanOrEqual(relErr(held[0].map { Double(bitPattern: $0) }, serial), 1e-10, "\(o) chunked")
            XCTAssertLessThanOrEqual(relErr(held[2].map { Double(bitPattern: $0) }, serial), 1e-10, "\(o) scan")
        }
    }
}
