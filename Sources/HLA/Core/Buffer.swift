#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A zero-initialised, 64-byte aligned heap buffer of `count` elements; allocation failure is reported,
/// not trapped. Owned by whoever made it: call `free()` exactly once.
struct RawBuffer<T> {
    let base: UnsafeMutablePointer<T>
    let count: Int

    /// `count` elements, 64-byte aligned; zeroed unless `zeroed` is false (the decoding step's scratch, where
    /// every element is written before it is read and a memset of it was a few percent of a step).
    static func allocate(_ count: Int, zeroed: Bool = true) throws(HLAError) -> RawBuffer<T> {
        let n = max(count, 1)
        let (bytes, o) = n.multipliedReportingOverflow(by: MemoryLayout<T>.stride)
        if o { throw .overflow("buffer of \(count) elements") }
        var p: UnsafeMutableRawPointer? = nil
        if posix_memalign(&p, 64, bytes) != 0 || p == nil { throw .noMemory(bytes) }
        if zeroed { memset(p!, 0, bytes) }
        #if DEBUG
        // Debug builds (swift test) fill the unzeroed kind with NaN bytes, so a read before a write shows in
        // the results instead of passing on whatever malloc returned.
        if !zeroed { memset(p!, 0xFF, bytes) }
        #endif
        return RawBuffer(base: p!.bindMemory(to: T.self, capacity: n), count: count)
    }

    func zero() { memset(base, 0, max(count, 1) * MemoryLayout<T>.stride) }
    func free() { Glibc.free(base) }
}

/// A bump allocator over a slice of a buffer: per-worker scratch for the kernels.
struct Scratch<T: HLAFloat> {
    let base: UnsafeMutablePointer<T>
    let capacity: Int
    var used = 0

    init(_ base: UnsafeMutablePointer<T>, _ capacity: Int) { self.base = base; self.capacity = capacity }

    /// Next `n` elements, 16-element aligned. The caller sized the slice with `Scratch.need`.
    mutating func take(_ n: Int) -> UnsafeMutablePointer<T> {
        let p = base + used
        used += (n + 15) & ~15
        assert(used <= capacity, "scratch sized too small")
        return p
    }

    static func need(_ sizes: [Int]) -> Int { sizes.reduce(0) { $0 + (($1 + 15) & ~15) } }
}
