#if canImport(Glibc)
import Glibc
#endif

/// The memory behind an `hla_state` (prefix statistics in state layout) or an `hla_segment` (a summary
/// in summary layout): one zero-initialised aligned allocation, typed by the configuration's dtype.
final class Stats {
    enum Kind { case state, segment }
    let kind: Kind
    let cfg: Config
    let layout: Layout
    let raw: UnsafeMutableRawPointer
    /// Tokens consumed (state) or summarized (segment).
    var tokens: Int = 0

    var elementSize: Int { cfg.dtype == 0 ? 4 : 8 }
    var elements: Int { layout.elements }
    var nbytes: Int { elements * elementSize }

    init(_ kind: Kind, _ cfg: Config) throws(HLAError) {
        self.kind = kind
        self.cfg = cfg
        layout = kind == .state ? Layout.state(cfg) : Layout.summary(cfg)
        let bytes = try checkedMul(max(layout.elements, 1), cfg.dtype == 0 ? 4 : 8, "statistics size")
        var p: UnsafeMutableRawPointer? = nil
        if posix_memalign(&p, 64, bytes) != 0 || p == nil { throw .noMemory(bytes) }
        memset(p!, 0, bytes)
        raw = p!
    }

    deinit { free(raw) }

    func typed<T: HLAFloat>(_: T.Type = T.self) -> UnsafeMutablePointer<T> {
        raw.bindMemory(to: T.self, capacity: max(elements, 1))
    }

    func reset() { memset(raw, 0, nbytes); tokens = 0 }

    func copy() throws(HLAError) -> Stats {
        let s = try Stats(kind, cfg)
        memcpy(s.raw, raw, nbytes)
        s.tokens = tokens
        return s
    }

    /// Copy the state blocks of every unit from `src` (state or summary layout) into `self` (any layout).
    func copyStateBlocks(from src: Stats) {
        let stateLayout = Layout.state(cfg)
        let es = elementSize
        let dst8 = raw.assumingMemoryBound(to: UInt8.self), src8 = src.raw.assumingMemoryBound(to: UInt8.self)
        // kv blocks are identical in every layout
        memcpy(dst8, src8, stateLayout.kvRegion * es)
        let nq = cfg.batch * cfg.heads, qs = stateLayout.qTotal * es
        for i in 0..<nq {
            memcpy(dst8 + (layout.kvRegion + i * layout.qTotal) * es,
                   src8 + (src.layout.kvRegion + i * src.layout.qTotal) * es, qs)
        }
    }
}
