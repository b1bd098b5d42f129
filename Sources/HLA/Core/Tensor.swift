import CHLA

/// Up to four sizes or strides, held inline (no heap allocation on the per-call path). Four scalars, not a
/// SIMD4: setting one lane of a vector kept in memory stores 8 bytes into it and reloads all 32, a
/// store-forwarding stall (about 20 cycles) that was two thirds of `TensorView.init`'s time.
struct Dims: Equatable, CustomStringConvertible {
    private var a = 0, b = 0, c = 0, d = 0
    var count = 0
    init() {}
    init(_ a: Int) { self.a = a; count = 1 }
    init(_ a: Int, _ b: Int) { self.a = a; self.b = b; count = 2 }
    init(_ a: Int, _ b: Int, _ c: Int) { self.a = a; self.b = b; self.c = c; count = 3 }
    init(_ a: Int, _ b: Int, _ c: Int, _ d: Int) { self.a = a; self.b = b; self.c = c; self.d = d; count = 4 }
    @inline(__always) subscript(_ i: Int) -> Int {
        get { i == 0 ? a : i == 1 ? b : i == 2 ? c : d }
        set {
            switch i {
            case 0: a = newValue
            case 1: b = newValue
            case 2: c = newValue
            default: d = newValue
            }
        }
    }
    var total: Int { (0..<count).reduce(0) { $0 + self[$1] } }
    var description: String { "[" + (0..<count).map { String(self[$0]) }.joined(separator: ", ") + "]" }
}

/// A caller's `hla_tensor` after validation: rank, element type, sizes ≥ 0, and an address extent that
/// fits in 64 bits in either direction. Built only through `init`, so every offset the engine forms from
/// in-range indices is representable.
struct TensorView {
    let raw: UnsafeMutableRawPointer
    let dtype: DType
    let shape: Dims
    let strides: Dims
    let name: StaticString   // (a static string keeps TensorView plain data: copies are moves of bytes)

    /// The address of an empty tensor given without memory.
    nonisolated(unsafe) static let nowhere = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 64)

    init(_ p: UnsafePointer<hla_tensor>?, _ name: StaticString, ndim: Int) throws(HLAError) {
        guard let p else { throw .null("\(name)") }
        let t = p.pointee
        self.name = name
        guard t.ndim == Int32(ndim) else { throw .invalid("\(name).ndim = \(t.ndim), expected \(ndim)") }
        dtype = try DType.code(t.dtype, "\(name)")
        let sh = SIMD4<Int64>(t.shape.0, t.shape.1, t.shape.2, t.shape.3)
        // a tensor without elements may have no memory (what hosts give for zero-size arrays); nothing of it is read
        let empty = (0..<ndim).contains { sh[$0] == 0 }
        guard let data = t.data ?? (empty ? TensorView.nowhere : nil) else { throw .null("\(name).data") }
        raw = data
        let st = SIMD4<Int64>(t.strides.0, t.strides.1, t.strides.2, t.strides.3)
        var shape = Dims(), strides = Dims()
        shape.count = ndim; strides.count = ndim
        var extent: UInt = 0
        for i in 0..<ndim {
            guard sh[i] >= 0 else { throw .invalid("\(name).shape[\(i)] = \(sh[i]) must be >= 0") }
            guard sh[i] <= Int64(Int.max / 16), st[i] >= -Int64(Int.max / 16), st[i] <= Int64(Int.max / 16) else {
                throw .overflow("\(name): shape[\(i)] = \(sh[i]) or strides[\(i)] = \(st[i]) out of range")
            }
            let (m, o) = UInt(st[i].magnitude).multipliedReportingOverflow(by: UInt(max(sh[i] - 1, 0)))
            let (e, o2) = extent.addingReportingOverflow(m)
            guard !o, !o2, e <= UInt(Int.max / 16) else { throw .overflow("\(name): stride extent overflows") }
            extent = e
            shape[i] = Int(sh[i]); strides[i] = Int(st[i])
        }
        _ = try checkedMul(Int(extent) + 1, dtype.size, "\(name) byte extent")
        self.shape = shape; self.strides = strides
    }

    var count: Int { (0..<shape.count).reduce(1) { $0 * shape[$1] } }

    func expectShape(_ want: Dims, _ what: @autoclosure () -> String) throws(HLAError) {
        guard shape == want else { throw .mismatch("\(name).shape = \(shape), expected \(want) (\(what()))") }
    }
    func expectFloat(_ t: DType) throws(HLAError) {
        guard dtype == t else {
            throw HLAError(status: HLA_ERR_DTYPE, message: "\(name).dtype = \(dtype.name), expected \(t.name)")
        }
    }

    /// Whether no two in-range indices address the same element (sufficient test: dimensions sorted by
    /// |stride| each step past the extent of the smaller ones). Required of every tensor the library writes.
    var isNonOverlapping: Bool {
        if count <= 1 { return true }
        var order = Dims(), m = 0          // dimensions of size > 1, insertion-sorted by |stride|
        for d in 0..<shape.count where shape[d] > 1 {
            var j = m
            while j > 0 && strides[order[j - 1]].magnitude > strides[d].magnitude { order[j] = order[j - 1]; j -= 1 }
            order[j] = d
            m += 1
        }
        var reach = 0
        for i in 0..<m {
            let d = order[i], s = Int(strides[d].magnitude)
            if s <= reach { return false }
            reach += s * (shape[d] - 1)
        }
        return true
    }
    func expectWritable() throws(HLAError) {
        guard isNonOverlapping else { throw .invalid("\(name): strides \(strides) make elements overlap (it is written)") }
    }

    /// Integer entries of a 1-D int64/int32 tensor.
    func integers() throws(HLAError) -> [Int] {
        guard shape.count == 1 else { throw .invalid("\(name) must be 1-D") }
        var out = [Int](repeating: 0, count: shape[0])
        switch dtype {
        case .int64:
            let p = raw.assumingMemoryBound(to: Int64.self)
            for i in 0..<shape[0] { out[i] = Int(p[i * strides[0]]) }
        case .int32:
            let p = raw.assumingMemoryBound(to: Int32.self)
            for i in 0..<shape[0] { out[i] = Int(p[i * strides[0]]) }
        default:
            throw HLAError(status: HLA_ERR_DTYPE, message: "\(name).dtype = \(dtype.name), expected int64 or int32")
        }
        return out
    }
}

/// A validated q, k, v or output tensor of rank 4 ([B, T, H, D]) or 3 ([B, H, D], stored with t-stride 0),
/// read as (widened to) and written from (rounded from) the compute type T.
struct Strided<T: HLAFloat> {
    let raw: UnsafeMutableRawPointer
    let elem: DType
    let sb: Int, st: Int, sh: Int, sd: Int

    init(_ v: TensorView) {
        raw = v.raw; elem = v.dtype
        if v.shape.count == 4 { sb = v.strides[0]; st = v.strides[1]; sh = v.strides[2]; sd = v.strides[3] }
        else { sb = v.strides[0]; st = 0; sh = v.strides[1]; sd = v.strides[2] }
    }

    @inline(__always) func offset(_ b: Int, _ t: Int, _ h: Int) -> Int { b * sb + t * st + h * sh }

    /// Whether rows are stored as T itself with contiguous elements (`row` may then be read and written in place).
    var dense: Bool {
        sd == 1 && ((elem == .float32 && T.self == Float.self) || (elem == .float64 && T.self == Double.self))
    }

    /// Whether rows are contiguous bfloat16 or float16 read as float32 on the AVX2/F16C conversions
    /// (Sources/CHLA/half.c: the bits of the element-by-element loops of `gather` and `store`).
    var vectorHalf: Bool { elem.size == 2 && sd == 1 && T.self == Float.self && Gemm.avx2 }

    /// Row (b, t, h) in place; only where `dense`.
    @inline(__always) func row(_ b: Int, _ t: Int, _ h: Int) -> UnsafeMutablePointer<T> {
        raw.assumingMemoryBound(to: T.self) + offset(b, t, h)
    }

    /// Copy rows t0..<t0+n of (b, h) into a dense n × ld block (first `d` columns), times `mul`. Returns whether
    /// every element written is finite: the sum of each written x · 0 (0 for finite x, NaN otherwise), formed while
    /// the rows pass through registers, so the chunked paths need no separate pass over the packed block.
    @inline(__always) @discardableResult
    func gather(_ b: Int, _ h: Int, _ t0: Int, _ n: Int, _ d: Int, into dst: UnsafeMutablePointer<T>, ld: Int,
                mul: T = 1) -> Bool {
        var acc = SIMD16<T>(repeating: 0), tail: T = 0
        if vectorHalf {
            let p = raw.assumingMemoryBound(to: UInt16.self), m = unsafeBitCast(mul, to: Float.self)
            var finite: Int32 = 1
            for r in 0..<n {
                let src = p + offset(b, t0 + r, h), row = Gemm.float(dst + r * ld)
                finite &= elem == .bfloat16 ? hla_private_widen_bf16(src, row, d, m) : hla_private_widen_f16(src, row, d, m)
            }
            return finite != 0
        }
        switch elem {
        case .bfloat16:
            let p = raw.assumingMemoryBound(to: UInt16.self)
            for r in 0..<n {
                let src = p + offset(b, t0 + r, h), row = dst + r * ld
                for j in 0..<d { let x = T(Half.bf16ToFloat(src[j * sd])) * mul; row[j] = x; tail += x * 0 }
            }
        case .float16:
            let p = raw.assumingMemoryBound(to: UInt16.self)
            for r in 0..<n {
                let src = p + offset(b, t0 + r, h), row = dst + r * ld
                for j in 0..<d { let x = T(Half.f16ToFloat(src[j * sd])) * mul; row[j] = x; tail += x * 0 }
            }
        default:
            let p = raw.assumingMemoryBound(to: T.self)
            let d16 = sd == 1 ? d & ~15 : 0
            for r in 0..<n {
                let src = p + offset(b, t0 + r, h), row = dst + r * ld
                var j = 0
                if mul == 1 {
                    while j < d16 { let x = Vec.load(src + j); Vec.store(x, row + j); acc += x * 0; j += 16 }
                } else {
                    let m = SIMD16<T>(repeating: mul)
                    while j < d16 { let x = Vec.load(src + j) * m; Vec.store(x, row + j); acc += x * 0; j += 16 }
                }
                while j < d { let x = src[j * sd] * mul; row[j] = x; tail += x * 0; j += 1 }
            }
        }
        return acc.sum() + tail == 0
    }

    /// Add rows t0..<t0+n of (b, h), first `d` elements, to the calling thread's prefetch plan (contiguous rows
    /// only; nothing otherwise). Hints: rows past the tensor's end are never read.
    @inline(__always)
    func plan(_ b: Int, _ h: Int, _ t0: Int, _ n: Int, _ d: Int) {
        if sd != 1 { return }
        hla_private_plan_rows(UnsafeRawPointer(raw) + offset(b, t0, h) * elem.size, st * elem.size, n, d * elem.size)
    }

    /// Prefetch row (b, t, h), first `d` elements, into L2 (the first element only when not contiguous). A hint:
    /// the callers never ask for rows past the tensor's end.
    @inline(__always)
    func prefetch(_ b: Int, _ t: Int, _ h: Int, _ d: Int) {
        hla_private_prefetch(UnsafeRawPointer(raw) + offset(b, t, h) * elem.size, (sd == 1 ? d : 1) * elem.size)
    }

    /// Read element j of row (b, t, h), widened.
    @inline(__always) func load(_ b: Int, _ t: Int, _ h: Int, _ j: Int) -> T {
        let o = offset(b, t, h) + j * sd
        switch elem {
        case .bfloat16: return T(Half.bf16ToFloat(raw.assumingMemoryBound(to: UInt16.self)[o]))
        case .float16: return T(Half.f16ToFloat(raw.assumingMemoryBound(to: UInt16.self)[o]))
        default: return raw.assumingMemoryBound(to: T.self)[o]
        }
    }

    /// Write `d` values src[x] · mul to row (b, t, h), rounded once to the storage type.
    @inline(__always)
    func store(_ b: Int, _ t: Int, _ h: Int, _ src: UnsafePointer<T>, _ d: Int, mul: T = 1) {
        let o = offset(b, t, h)
        if vectorHalf {
            let p = raw.assumingMemoryBound(to: UInt16.self) + o, s = Gemm.float(src), m = unsafeBitCast(mul, to: Float.self)
            if elem == .bfloat16 { hla_private_narrow_bf16(s, p, d, m) } else { hla_private_narrow_f16(s, p, d, m) }
            return
        }
        switch elem {
        case .bfloat16:
            let p = raw.assumingMemoryBound(to: UInt16.self) + o
            for x in 0..<d { p[x * sd] = Half.floatToBF16(Float(src[x] * mul)) }
        case .float16:
            let p = raw.assumingMemoryBound(to: UInt16.self) + o
            for x in 0..<d { p[x * sd] = Half.floatToF16(Float(src[x] * mul)) }
        default:
            let p = raw.assumingMemoryBound(to: T.self) + o
            if mul == 1 { for x in 0..<d { p[x * sd] = src[x] } } else { for x in 0..<d { p[x * sd] = src[x] * mul } }
        }
    }
}
