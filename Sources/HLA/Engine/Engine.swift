#if canImport(Glibc)
import Glibc
#endif
import CHLA

/// The operations behind the C entry points, after argument validation. Dispatch on (operator, compute
/// type) is an explicit switch so that every kernel is specialised for its concrete operator and type.
enum Engine {
    /// Validated q, k, v (and output) of one call, with the sequences they hold.
    struct Inputs {
        let q: TensorView, k: TensorView, v: TensorView, out: TensorView?
        let seqs: Seqs
        let cu: Indices?          // keeps seqs.cu alive
        let order: Indices?       // keeps seqs.order alive
        /// float64 for float64 inputs, float32 for float32, bfloat16 and float16.
        var compute: DType { q.dtype.stateType }
        func io<T: HLAFloat>(_: T.Type) -> IO<T> {
            IO(q: Strided(q), k: Strided(k), v: Strided(v), out: out.map { Strided($0) })
        }
    }

    /// q [B,T,H,dk], k [B,T,Hkv,dk], v [B,T,Hkv,dv], output [B,T,H,dv] (rank 4), or the same without T
    /// (rank 3, one step); optional cu_seqlens (rank 4 only, B = 1).
    static func inputs(_ c: Config, rank: Int, q qp: UnsafePointer<hla_tensor>?, k kp: UnsafePointer<hla_tensor>?,
                       v vp: UnsafePointer<hla_tensor>?, out op: UnsafePointer<hla_tensor>?, needsOut: Bool,
                       cuSeqlens: UnsafePointer<hla_tensor>? = nil) throws(HLAError) -> Inputs {
        let q = try TensorView(qp, "q", ndim: rank)
        guard q.dtype.isFloating else {
            throw HLAError(status: HLA_ERR_DTYPE, message: "q.dtype = \(q.dtype.name): expected float32, float64, bfloat16 or float16")
        }
        let B = q.shape[0], T = rank == 4 ? q.shape[1] : 1
        guard B >= 1 else { throw .invalid("q.shape[0] = \(B): the batch must hold at least one sequence") }
        guard T >= 1 else { throw .invalid("q.shape[1] = T = \(T) must be >= 1") }
        func dims(_ h: Int, _ d: Int) -> Dims { rank == 4 ? Dims(B, T, h, d) : Dims(B, h, d) }
        let layout = rank == 4 ? "[B, T, heads, features]" : "[rows, heads, features]"
        try q.expectShape(dims(c.heads, c.dk), "\(layout) with heads = cfg.heads, features = cfg.dk")
        let k = try TensorView(kp, "k", ndim: rank)
        try k.expectFloat(q.dtype)
        try k.expectShape(dims(c.kvHeads, c.dk), "\(layout) with heads = cfg.kv_heads, features = cfg.dk")
        let v = try TensorView(vp, "v", ndim: rank)
        try v.expectFloat(q.dtype)
        try v.expectShape(dims(c.kvHeads, c.dv), "\(layout) with heads = cfg.kv_heads, features = cfg.dv")
        var out: TensorView? = nil
        if needsOut {
            let o = try TensorView(op, "output", ndim: rank)
            try o.expectFloat(q.dtype)
            try o.expectShape(dims(c.heads, c.dv), "\(layout) with heads = cfg.heads, features = cfg.dv")
            try o.expectWritable()
            out = o
        }
        if let cuSeqlens {
            let cuv = try TensorView(cuSeqlens, "cu_seqlens", ndim: 1)
            guard B == 1 else { throw .invalid("cu_seqlens given with a batch of \(B): packed sequences need B = 1") }
            let cu = try Indices.cuSeqlens(cuv, tokens: T)
            let n = cu.count - 1, p = cu.pointer
            let order = try Indices((0..<n).sorted { (p[$0 + 1] - p[$0], $1) > (p[$1 + 1] - p[$1], $0) })
            var seqs = Seqs(count: n, tokens: T, cu: p)
            seqs.order = order.pointer
            return Inputs(q: q, k: k, v: v, out: out, seqs: seqs, cu: cu, order: order)
        }
        return Inputs(q: q, k: k, v: v, out: out, seqs: Seqs(count: B, tokens: T, cu: nil), cu: nil, order: nil)
    }

    /// Rows of states or summaries in caller memory: a 2-D [slots, n] tensor of the compute type whose rows
    /// are contiguous and do not overlap, and the rows the call's `count` sequences use.
    struct Block {
        let view: TensorView
        let n: Int
        let rows: Indices?
        var stride: Int { view.strides[0] }
        func typed<T: HLAFloat>(_: T.Type) -> Rows<T> {
            Rows(base: view.raw.assumingMemoryBound(to: T.self), stride: stride, index: rows?.pointer)
        }
        /// Byte address of sequence i's row.
        func row(_ i: Int) -> UnsafeMutableRawPointer {
            view.raw + ((rows.map { $0.pointer[i] } ?? i) * stride) * view.dtype.size
        }
        var rowBytes: Int { n * view.dtype.size }
        func sameMemory(_ o: Block) -> Bool {
            view.raw == o.view.raw && stride == o.stride && (rows == nil) == (o.rows == nil)
        }
    }

    static func block(_ p: UnsafePointer<hla_tensor>?, _ name: StaticString, n: Int, compute: DType, count: Int,
                      rows: UnsafePointer<hla_tensor>? = nil, rowsName: StaticString = "rows") throws(HLAError) -> Block {
        let t = try TensorView(p, name, ndim: 2)
        guard t.dtype == compute else {
            throw HLAError(status: HLA_ERR_DTYPE, message: "\(name).dtype = \(t.dtype.name): states and summaries of this call are \(compute.name)")
        }
        guard t.shape[1] == n else { throw .mismatch("\(name).shape[1] = \(t.shape[1]), this configuration has \(n) elements per row") }
        guard t.strides[1] == 1 || n <= 1 else { throw .invalid("\(name).strides[1] = \(t.strides[1]): the elements of a row must be contiguous") }
        guard t.shape[0] <= 1 || t.strides[0].magnitude >= n else {
            throw .invalid("\(name).strides[0] = \(t.strides[0]): rows of \(n) elements would overlap")
        }
        var idx: Indices? = nil
        if let rows {
            idx = try Indices.rows(try TensorView(rows, rowsName, ndim: 1), count: count, slots: t.shape[0])
        } else {
            guard t.shape[0] >= count else { throw .mismatch("\(name) has \(t.shape[0]) rows, the call has \(count) sequences") }
        }
        return Block(view: t, n: n, rows: idx)
    }

    /// Elements per row of a state (`summary` false) or a summary.
    static func elements(_ c: Config, summary: Bool) -> Int { (summary ? Layout.summary(c) : Layout.state(c)).elements }
}

/// A job generic over the operator and the compute type.
protocol Job {
    associatedtype Result
    func run<Op: Operator, T: HLAFloat>(_ op: Op.Type, _ t: T.Type) throws(HLAError) -> Result
}

func dispatch<J: Job>(_ c: Config, _ compute: DType, _ job: J) throws(HLAError) -> J.Result {
    switch (c.op, compute == .float64) {
    case (.hla2, false): return try job.run(HLA2.self, Float.self)
    case (.hla2, true): return try job.run(HLA2.self, Double.self)
    case (.ahla, false): return try job.run(AHLA.self, Float.self)
    case (.ahla, true): return try job.run(AHLA.self, Double.self)
    case (.hla3, false): return try job.run(HLA3.self, Float.self)
    case (.hla3, true): return try job.run(HLA3.self, Double.self)
    }
}

/// Forward over whole sequences (also prefill: initial and final the same rows).
struct ForwardJob: Job {
    let c: Config, path: Path, x: Engine.Inputs, initial: Engine.Block?, final: Engine.Block?
    var checkpoints: Engine.Tape? = nil   // chunked path only
    func run<Op: Operator, T: HLAFloat>(_ op: Op.Type, _: T.Type) throws(HLAError) {
        let N = x.seqs.count, n = Engine.elements(c, summary: false)
        var scratch: RawBuffer<T>? = nil
        defer { scratch?.free() }
        let carry: Rows<T>
        if let final {
            carry = final.typed(T.self)
            for i in 0..<N {
                if let initial {
                    if !initial.sameMemory(final) { memmove(final.row(i), initial.row(i), final.rowBytes) }
                } else {
                    memset(final.row(i), 0, final.rowBytes)
                }
            }
        } else {
            let s = try RawBuffer<T>.allocate(try checkedMul(N, n, "state scratch"))
            scratch = s
            if let initial { for i in 0..<N { memcpy(s.base + i * n, initial.row(i), initial.rowBytes) } }
            carry = Rows(base: s.base, stride: n, index: nil)
        }
        let io = x.io(T.self)
        switch path {
        case .chunked: try Paths.chunked(op, c, x.seqs, io: io, carry: carry, checkpoints: checkpoints?.typed(T.self))
        case .serial: try Paths.serial(op, c, x.seqs, io: io, carry: carry)
        case .scan: try Paths.scan(op, c, x.seqs, io: io, carry: carry)
        }
    }
}

struct StepJob: Job {
    let c: Config, x: Engine.Inputs, state: Engine.Block
    func run<Op: Operator, T: HLAFloat>(_ op: Op.Type, _: T.Type) throws(HLAError) {
        try Paths.serial(op, c, x.seqs, io: x.io(T.self), carry: state.typed(T.self))
    }
}

struct SummarizeJob: Job {
    let c: Config, x: Engine.Inputs, summary: Engine.Block
    func run<Op: Operator, T: HLAFloat>(_ op: Op.Type, _: T.Type) throws(HLAError) {
        for i in 0..<x.seqs.count { memset(summary.row(i), 0, summary.rowBytes) }
        try Paths.summarize(op, c, x.seqs, io: x.io(T.self), dst: summary.typed(T.self))
    }
}

/// out_i ← a_i · b_i for every row (out may be a or b).
struct CombineJob: Job {
    let c: Config, a: Engine.Block, b: Engine.Block, out: Engine.Block, nA: [Int], nB: [Int]
    func run<Op: Operator, T: HLAFloat>(_ op: Op.Type, _: T.Type) throws(HLAError) {
        let m = a.n
        let tmp = try RawBuffer<T>.allocate(2 * m)
        defer { tmp.free() }
        for i in 0..<nA.count {
            memcpy(tmp.base, a.row(i), a.rowBytes)
            memcpy(tmp.base + m, b.row(i), b.rowBytes)
            try Paths.combine(op, c, a: tmp.base, nA: nA[i], b: tmp.base + m, nB: nB[i])
            memcpy(out.row(i), tmp.base, out.rowBytes)
        }
    }
}

struct ReferenceJob: Job {
    let c: Config, x: Engine.Inputs
    func run<Op: Operator, T: HLAFloat>(_ op: Op.Type, _: T.Type) throws(HLAError) {
        try ReferencePath.run(op, c, x.seqs, io: x.io(T.self))
    }
}

extension Engine {
    /// Copy the state blocks of summary rows into state rows (the carry-in after each segment).
    static func summaryToState(_ c: Config, summary: Block, state: Block, count: Int) {
        let sl = Layout.state(c), ul = Layout.summary(c), es = state.view.dtype.size
        for i in 0..<count {
            let src = summary.row(i), dst = state.row(i)
            memmove(dst, src, sl.kvRegion * es)
            for h in 0..<c.heads {
                memmove(dst + (sl.kvRegion + h * sl.qTotal) * es, src + (ul.kvRegion + h * ul.qTotal) * es, sl.qTotal * es)
            }
        }
    }
}
