#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Per-thread copies of the kv blocks of multi-query decoding steps (`Paths.stepByHead`).
///
/// In a step with one kv head and many query heads the threads split the query heads, and every thread
/// needs the whole of the kv blocks (S, P) after the token's update to form its heads' products. Read from
/// the state, the blocks cross between the cores' caches twice per step: the thread that writes a row
/// first takes it back from the other core, which then reads it back (about 150 ns a line, some 16
/// lines in flight, on the reference VM: 2.5-3 µs per 16 KiB, against about 0.3 µs from a core's own
/// cache). Here each thread keeps its own copy of the kv blocks and advances it with the token itself,
/// so in a decoding loop the state's kv blocks are only ever touched by the one thread that writes them.
///
/// A copy stands for a given content: `version` names it. In each step the unit's first thread advances the
/// state's kv blocks in place from their own rows, keeps its copy equal to them, and compares each row it
/// reads with its copy's, byte for byte (a host may have written the state, or stepped it on another path,
/// since); if they differ, no copy held the state's content. Another thread whose copy held the same
/// version advances its copy with the token; any other takes the blocks the first thread advanced
/// (`Paths.stepByHead`). Every copy is bitwise what the state holds, so every result is the one a single
/// thread gives. Slots are per (worker, unit) and their buffers are kept for the
/// process's life at the largest size a step has needed (per thread the kv blocks of the step's units: 32 KiB
/// at hla3, d = 64). One step uses them at a time (`tryLock`); a step that finds them in use runs on its
/// calling thread. The lock also guards the steps' scratch (`scratch`; `Paths.serial` takes it for steps
/// that do not split heads), kept likewise: two allocations and frees per step took about 0.6 µs of a 34 µs
/// step (hla3, H = 64, Hkv = 1, d = 64).
final class KVReplicas: @unchecked Sendable {
    static let shared = KVReplicas()

    struct Slot {
        var base: UnsafeMutableRawPointer? = nil
        var capacity = 0          // bytes allocated at base
        var key = Key()
        var version: UInt64 = 0   // 0: holds nothing
    }
    /// What a copy is a copy of: the state's kv blocks at `address`, `bytes` long.
    struct Key: Equatable {
        var address = 0
        var bytes = 0
    }

    private let busy = Atomic<Bool>(false)
    private var slots: UnsafeMutablePointer<Slot>? = nil
    private var slotWorkers = 0, slotUnits = 0
    private var counter: UInt64 = 0
    private var scratchBuffer: RawBuffer<UInt8>? = nil

    /// Take the copies for one step; false if another step holds them.
    func tryLock() -> Bool {
        busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged
    }
    func unlock() { busy.store(false, ordering: .releasing) }

    /// A version no copy has held (lock held).
    func nextVersion() -> UInt64 { counter &+= 1; return counter }

    /// Slots for `workers` × `units` copies with room for `bytes` each (lock held): the slot table grows to the
    /// largest shape seen, and a slot's buffer to the largest size (a buffer that grows forgets its content).
    func prepare(workers: Int, units: Int, bytes: Int) throws(HLAError) {
        if workers > slotWorkers || units > slotUnits {
            let w = max(workers, slotWorkers), u = max(units, slotUnits)
            let n = try checkedMul(w, u, "kv copies")
            let bytes = try checkedMul(n, MemoryLayout<Slot>.stride, "kv copies")
            guard let raw = malloc(bytes) else { throw .noMemory(bytes) }   // (Slot is plain data)
            let fresh = raw.bindMemory(to: Slot.self, capacity: n)
            fresh.initialize(repeating: Slot(), count: n)
            if let old = slots {
                for a in 0..<slotWorkers { for b in 0..<slotUnits { fresh[a * u + b] = old[a * slotUnits + b] } }
                free(old)
            }
            slots = fresh; slotWorkers = w; slotUnits = u
        }
        for a in 0..<workers {
            for b in 0..<units {
                let s = slot(a, b)
                if s.pointee.capacity >= bytes && s.pointee.base != nil { continue }
                free(s.pointee.base)
                s.pointee = Slot()
                var p: UnsafeMutableRawPointer? = nil
                guard posix_memalign(&p, 64, max(bytes, 64)) == 0, let q = p else { throw .noMemory(bytes) }
                s.pointee.base = q; s.pointee.capacity = bytes
            }
        }
    }

    /// At least `bytes` of 64-byte aligned memory for one step's buffers (lock held), valid until the next call;
    /// kept for the process's life at the largest size a step has needed (a few KiB per worker). Not initialized
    /// (debug builds fill the bytes with NaN on every call, as RawBuffer's unzeroed kind: a read before a write
    /// shows in the results).
    func scratch(_ bytes: Int) throws(HLAError) -> UnsafeMutableRawPointer {
        if let b = scratchBuffer, b.count < bytes { b.free(); scratchBuffer = nil }
        if scratchBuffer == nil { scratchBuffer = try RawBuffer<UInt8>.allocate(bytes, zeroed: false) }
        let p = UnsafeMutableRawPointer(scratchBuffer.unsafelyUnwrapped.base)
        #if DEBUG
        memset(p, 0xFF, bytes)
        #endif
        return p
    }

    /// The slot of worker w for unit `unit` (after `prepare`).
    @inline(__always) func slot(_ w: Int, _ unit: Int) -> UnsafeMutablePointer<Slot> {
        slots.unsafelyUnwrapped + (w * slotUnits + unit)
    }
}
