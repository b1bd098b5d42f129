import CHLA
import Synchronization

/// Sharing a band sweep's chunks between its threads (`Paths.chunked`, `Paths.scan`, `Paths.summarize`).
///
/// A sweep hands each thread whole bands (a sequence's kv heads `g0..<g1`, chunk by chunk across the band's heads),
/// and a band's chunks follow one another (each needs the carry the one before it left). With one band per
/// thread (B = 1) the call ends when the slower thread ends: on a shared 2-core VM one core often runs 1.2-1.5x
/// slower than the other for seconds at a time, and the other then waits a sixth to a third of the call. So a
/// thread that has finished its bands, when every band has been started, takes the upper half of the heads of
/// the band with the most work left (at least two heads and one chunk after the one its thread is in), from that
/// band's next chunk on: its thread keeps the lower half. The heads' carries are independent, each head's chunks
/// still run in order (the taker waits until the band's thread has finished the chunk it was in), and a chunk's
/// products depend only on its arguments, so the results are the same bits whichever thread runs a head.
///
/// Per thread two 64-byte lines: [0] spin lock (its first 4 bytes), [1] active, [2] band (the caller's tag for the
/// sequence), [3] g0, [4] g1 (the end the band's thread reads at each chunk; a taker lowers it), [5] start of the
/// chunk the thread is in, [6] end of the band's tokens, [7] tokens done (release: the carry of every head of the
/// band up to there is written), [8] sweeps begun on the slot (a taker waits for [7] only while it is unchanged),
/// [9] takers still reading the thread's own buffers (`holding` takes, `scan`: the carries of the heads taken live in
/// the band's thread's buffer until the taker has copied them; the thread begins no other sweep until then).
/// Line 0: the count of bands begun.
struct BandShare {
    private let buffer: RawBuffer<Int>
    let workers: Int, bands: Int

    /// Tests only (Tests/HLATests/BandShareTests.swift): called with the thread's index before each chunk of a
    /// sweep (a test holds one thread up so that the others take parts of its bands); and the takes so far.
    nonisolated(unsafe) static var chunkHook: ((Int) -> Void)? = nil
    static let takes = Atomic<Int>(0)

    init(workers: Int, bands: Int) throws(HLAError) {
        buffer = try RawBuffer<Int>.allocate(8 + 16 * max(workers, 1))
        self.workers = workers
        self.bands = bands
    }

    func free() { buffer.free() }

    @inline(__always) private func slot(_ w: Int) -> UnsafeMutablePointer<Int> { buffer.base + 8 + 16 * w }
    @inline(__always) private func lock(_ s: UnsafeMutablePointer<Int>) {
        hla_private_lock(UnsafeMutableRawPointer(s).assumingMemoryBound(to: Int32.self))
    }
    @inline(__always) private func unlock(_ s: UnsafeMutablePointer<Int>) {
        hla_private_unlock(UnsafeMutableRawPointer(s).assumingMemoryBound(to: Int32.self))
    }

    /// A thread begins one of the call's bands (`run` calls this once per band index).
    @inline(__always) func began() { _ = hla_private_fetch_add(buffer.base, 1) }

    /// Whether every band of the call has been begun (a thread that finds one not yet begun leaves it to the pool).
    @inline(__always) var allBegun: Bool { hla_private_load_acquire(buffer.base) >= bands }

    /// Thread w sweeps heads g0..<g1 of band `band` over tokens from..<end in chunks of n0: `chunk(g0, g1, t0, n)`
    /// runs one chunk of the heads it is given (g1 as it stands when the chunk begins: a taker may have lowered it).
    @inline(__always)
    func sweep(_ w: Int, band: Int, g0: Int, g1: Int, from: Int, to end: Int, n0: Int,
               begin: () -> Void = {}, _ chunk: (_ g0: Int, _ g1: Int, _ t0: Int, _ n: Int) -> Void) {
        let s = slot(w)
        while hla_private_load_acquire(s + 9) != 0 { hla_private_pause() }   // takers of the last band done copying
        begin()
        lock(s)
        s[1] = 1; s[2] = band; s[3] = g0; s[4] = g1; s[5] = from; s[6] = end
        hla_private_store_release(s + 8, s[8] + 1)
        hla_private_store_release(s + 7, from)
        unlock(s)
        var t0 = from
        while t0 < end {
            lock(s)
            let hi = s[4]
            s[5] = t0
            unlock(s)
            let n = min(n0, end - t0)
            if let hook = BandShare.chunkHook { hook(w) }
            chunk(g0, hi, t0, n)
            t0 += n
            hla_private_store_release(s + 7, t0)
        }
        lock(s)
        s[1] = 0
        unlock(s)
    }

    /// The body of a band sweep's `parallelFor` for band index i on thread w: the band (`sweep(sq, g0, g1, from,
    /// end, nil)`: heads g0..<g1 of scheduled sequence sq over tokens from..<end), then, once every band has been
    /// begun, parts of the others' as `take` hands them out (the last argument: the thread and the g0 of the sweep
    /// they were taken from, whose buffers hold them; with `holding`, `sweep` must `release` that thread).
    @inline(__always)
    func run(_ i: Int, _ w: Int, _ bands: Paths.Bands, _ c: Config, _ seqs: Seqs, n0: Int, holding: Bool = false,
             _ sweep: (_ sq: Int, _ g0: Int, _ g1: Int, _ from: Int, _ end: Int, _ taken: (thread: Int, g0: Int)?) -> Void) {
        began()
        let (g0, g1) = bands.heads(i, c)
        let sq = seqs.scheduled(bands.sequence(i)), bos = seqs.bos(sq)
        sweep(sq, g0, g1, bos, bos + seqs.length(sq), nil)
        // Every band begun: share the others' (a band not yet begun is the pool's to hand out).
        while allBegun, let t = take(w, n0: n0, holding: holding) {
            sweep(t.band, t.g0, t.g1, t.from, t.end, (t.thread, t.threadG0))
        }
    }

    /// Upper half of the heads of another thread's band with the most head-tokens left after its current chunk,
    /// from its next chunk on, once that thread has finished the chunk it is in; nil when no band has two heads
    /// and a chunk left. `thread`, `threadG0`: the thread the heads were taken from and the g0 of its sweep (where
    /// its buffers hold them). `holding`: that thread begins no other sweep until the taker calls `release(thread)`.
    /// A thread's slot becomes active only after its own holding takes have released (in `sweep`'s `begin`), so no
    /// two threads can wait on each other's buffers.
    func take(_ w: Int, n0: Int, holding: Bool = false)
        -> (band: Int, g0: Int, g1: Int, from: Int, end: Int, thread: Int, threadG0: Int)? {
        while true {
            var best = -1, most = 0
            for v in 0..<workers where v != w {
                let s = slot(v)
                lock(s)
                let heads = s[4] - s[3], left = s[6] - (s[5] + n0)
                if s[1] != 0 && heads >= 2 && left > 0 && heads * left > most { best = v; most = heads * left }
                unlock(s)
            }
            if best < 0 { return nil }
            let s = slot(best)
            lock(s)
            let g0 = s[3], g1 = s[4], from = s[5] + n0, end = s[6], band = s[2], sweep = s[8]
            guard s[1] != 0 && g1 - g0 >= 2 && from < end else { unlock(s); continue }
            let mid = g0 + (g1 - g0) / 2          // the band's thread keeps g0..<mid (the smaller half)
            s[4] = mid
            if holding { s[9] += 1 }
            unlock(s)
            BandShare.takes.wrappingAdd(1, ordering: .relaxed)
            // (a new sweep on the slot means this band is done, its chunk with it)
            while hla_private_load_acquire(s + 7) < from && hla_private_load_acquire(s + 8) == sweep { hla_private_pause() }
            return (band, mid, g1, from, end, best, g0)
        }
    }

    /// A `holding` taker has copied what it needed from thread v's buffers.
    func release(_ v: Int) {
        let s = slot(v)
        lock(s)
        hla_private_store_release(s + 9, s[9] - 1)
        unlock(s)
    }
}
