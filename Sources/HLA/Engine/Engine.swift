/// The operations behind the C entry points, after argument validation: dtype and operator dispatch.
enum Engine {
    /// The caller's tensors of one call (raw pointers and optional element strides).
    struct Tensors {
        var q: UnsafeRawPointer?, qs: UnsafePointer<Int64>?
        var k: UnsafeRawPointer?, ks: UnsafePointer<Int64>?
        var v: UnsafeRawPointer?, vs: UnsafePointer<Int64>?
        var out: UnsafeMutableRawPointer?, os: UnsafePointer<Int64>?
        var needsOut: Bool
    }

    /// Validate and wrap the tensors for T tokens (rank 4) or one step (rank 3).
    static func io<T: HLAFloat>(_: T.Type, _ c: Config, nT: Int, rank: Int, _ t: Tensors) throws(HLAError) -> IO<T> {
        let tt = rank == 4 ? nT : 1
        let q = try Strided<T>.make(t.q, name: "q", dims: (c.batch, tt, c.heads, c.dk), strides: readStrides(t.qs, rank: rank))
        let k = try Strided<T>.make(t.k, name: "k", dims: (c.batch, tt, c.kvHeads, c.dk), strides: readStrides(t.ks, rank: rank))
        let v = try Strided<T>.make(t.v, name: "v", dims: (c.batch, tt, c.kvHeads, c.dv), strides: readStrides(t.vs, rank: rank))
        var out: Strided<T>? = nil
        if t.needsOut {
            out = try Strided<T>.make(t.out.map { UnsafeRawPointer($0) }, name: "out", dims: (c.batch, tt, c.heads, c.dv),
                                      strides: readStrides(t.os, rank: rank))
        }
        return IO(q: q, k: k, v: v, out: out)
    }

    static func forward(_ c: Config, nT: Int, path: Int32, _ t: Tensors, initial: Stats?, final: Stats?) throws(HLAError) {
        switch c.dtype {
        case 0: try forwardT(operatorType(c.op), Float.self, c, nT: nT, path: path, t, initial: initial, final: final)
        default: try forwardT(operatorType(c.op), Double.self, c, nT: nT, path: path, t, initial: initial, final: final)
        }
    }

    private static func forwardT<Op: Operator, T: HLAFloat>(_ op: Op.Type, _: T.Type, _ c: Config, nT: Int, path: Int32,
                                                           _ t: Tensors, initial: Stats?, final: Stats?) throws(HLAError) {
        let io = try io(T.self, c, nT: nT, rank: 4, t)
        // Work in the final state's memory when there is one; else in a scratch state.
        let carry: Stats
        if let final { carry = final } else { carry = try Stats(.state, c) }
        if let initial, initial !== carry {
            carry.copyStateBlocks(from: initial)
            carry.tokens = initial.tokens
        } else if initial == nil {
            carry.reset()
        }
        switch path {
        case 0: try Paths.chunked(op, c, nT: nT, io: io, carry: carry.typed(T.self))
        case 1: try Paths.serial(op, c, nT: nT, io: io, carry: carry.typed(T.self))
        default: try Paths.scan(op, c, nT: nT, io: io, carry: carry.typed(T.self))
        }
        carry.tokens += nT
    }

    static func step(_ s: Stats, _ t: Tensors) throws(HLAError) {
        switch s.cfg.dtype {
        case 0: try stepT(operatorType(s.cfg.op), Float.self, s, t)
        default: try stepT(operatorType(s.cfg.op), Double.self, s, t)
        }
    }

    private static func stepT<Op: Operator, T: HLAFloat>(_ op: Op.Type, _: T.Type, _ s: Stats, _ t: Tensors) throws(HLAError) {
        let io = try io(T.self, s.cfg, nT: 1, rank: 3, t)
        try Paths.serial(op, s.cfg, nT: 1, io: io, carry: s.typed(T.self))
        s.tokens += 1
    }

    static func summarize(_ c: Config, nT: Int, _ t: Tensors) throws(HLAError) -> Stats {
        switch c.dtype {
        case 0: return try summarizeT(operatorType(c.op), Float.self, c, nT: nT, t)
        default: return try summarizeT(operatorType(c.op), Double.self, c, nT: nT, t)
        }
    }

    private static func summarizeT<Op: Operator, T: HLAFloat>(_ op: Op.Type, _: T.Type, _ c: Config, nT: Int,
                                                             _ t: Tensors) throws(HLAError) -> Stats {
        let io = try io(T.self, c, nT: nT, rank: 4, t)
        let seg = try Stats(.segment, c)
        try Paths.summarize(op, c, nT: nT, io: io, dst: seg.typed(T.self))
        seg.tokens = nT
        return seg
    }

    static func combine(_ a: Stats, _ b: Stats) throws(HLAError) -> Stats {
        let r = try a.copy()
        let nA = a.tokens
        switch a.cfg.dtype {
        case 0: try Paths.combine(operatorType(a.cfg.op), a.cfg, a: r.typed(Float.self), nA: nA, b: b.typed(Float.self), nB: b.tokens)
        default: try Paths.combine(operatorType(a.cfg.op), a.cfg, a: r.typed(Double.self), nA: nA, b: b.typed(Double.self), nB: b.tokens)
        }
        r.tokens = a.tokens + b.tokens
        return r
    }

    static func reference(_ c: Config, nT: Int, _ t: Tensors) throws(HLAError) {
        switch c.dtype {
        case 0: try ReferencePath.run(operatorType(c.op), c, nT: nT, io: io(Float.self, c, nT: nT, rank: 4, t))
        default: try ReferencePath.run(operatorType(c.op), c, nT: nT, io: io(Double.self, c, nT: nT, rank: 4, t))
        }
    }
}
