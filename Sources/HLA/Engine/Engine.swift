/// The operations behind the C entry points, after argument validation. Dispatch on (operator, dtype)
/// is an explicit switch so that every kernel is specialised for its concrete operator and element type.
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
            out = try Strided<T>.make(t.out.map { UnsafeRawPointer($0) }, name: "output", dims: (c.batch, tt, c.heads, c.dv),
                                      strides: readStrides(t.os, rank: rank))
        }
        return IO(q: q, k: k, v: v, out: out)
    }

    static func forward(_ c: Config, nT: Int, path: Int32, _ t: Tensors, initial: Stats?, final: Stats?) throws(HLAError) {
        try dispatch(c, ForwardJob(c: c, nT: nT, path: path, t: t, initial: initial, final: final))
    }

    static func step(_ s: Stats, _ t: Tensors) throws(HLAError) {
        try dispatch(s.cfg, StepJob(s: s, t: t))
    }

    static func summarize(_ c: Config, nT: Int, _ t: Tensors) throws(HLAError) -> Stats {
        try dispatch(c, SummarizeJob(c: c, nT: nT, t: t))
    }

    static func combine(_ a: Stats, _ b: Stats) throws(HLAError) -> Stats {
        try dispatch(a.cfg, CombineJob(a: a, b: b))
    }

    static func reference(_ c: Config, nT: Int, _ t: Tensors) throws(HLAError) {
        try dispatch(c, ReferenceJob(c: c, nT: nT, t: t))
    }
}

/// A job generic over the operator and the element type.
protocol Job {
    associatedtype Result
    func run<Op: Operator, T: HLAFloat>(_ op: Op.Type, _ t: T.Type) throws(HLAError) -> Result
}

func dispatch<J: Job>(_ c: Config, _ job: J) throws(HLAError) -> J.Result {
    switch (c.op, c.dtype) {
    case (.hla2, 0): return try job.run(HLA2.self, Float.self)
    case (.hla2, _): return try job.run(HLA2.self, Double.self)
    case (.ahla, 0): return try job.run(AHLA.self, Float.self)
    case (.ahla, _): return try job.run(AHLA.self, Double.self)
    case (.hla3, 0): return try job.run(HLA3.self, Float.self)
    case (.hla3, _): return try job.run(HLA3.self, Double.self)
    }
}

struct ForwardJob: Job {
    let c: Config, nT: Int, path: Int32, t: Engine.Tensors, initial: Stats?, final: Stats?
    func run<Op: Operator, T: HLAFloat>(_ op: Op.Type, _: T.Type) throws(HLAError) {
        let io = try Engine.io(T.self, c, nT: nT, rank: 4, t)
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
}

struct StepJob: Job {
    let s: Stats, t: Engine.Tensors
    func run<Op: Operator, T: HLAFloat>(_ op: Op.Type, _: T.Type) throws(HLAError) {
        let io = try Engine.io(T.self, s.cfg, nT: 1, rank: 3, t)
        try Paths.serial(op, s.cfg, nT: 1, io: io, carry: s.typed(T.self))
        s.tokens += 1
    }
}

struct SummarizeJob: Job {
    let c: Config, nT: Int, t: Engine.Tensors
    func run<Op: Operator, T: HLAFloat>(_ op: Op.Type, _: T.Type) throws(HLAError) -> Stats {
        let io = try Engine.io(T.self, c, nT: nT, rank: 4, t)
        let seg = try Stats(.segment, c)
        try Paths.summarize(op, c, nT: nT, io: io, dst: seg.typed(T.self))
        seg.tokens = nT
        return seg
    }
}

struct CombineJob: Job {
    let a: Stats, b: Stats
    func run<Op: Operator, T: HLAFloat>(_ op: Op.Type, _: T.Type) throws(HLAError) -> Stats {
        let r = try a.copy()
        try Paths.combine(op, a.cfg, a: r.typed(T.self), nA: a.tokens, b: b.typed(T.self), nB: b.tokens)
        r.tokens = a.tokens + b.tokens
        return r
    }
}

struct ReferenceJob: Job {
    let c: Config, nT: Int, t: Engine.Tensors
    func run<Op: Operator, T: HLAFloat>(_ op: Op.Type, _: T.Type) throws(HLAError) {
        try ReferencePath.run(op, c, nT: nT, io: Engine.io(T.self, c, nT: nT, rank: 4, t))
    }
}
