/// Brute-force evaluation of the index sums (docs/spec.md §4 path 4), accumulated in double whatever the
/// dtype: per (batch, head) the operator's T × T coefficient matrix M, then num = M V.
enum ReferencePath {
    static let maxT = 16384

    static func run<Op: Operator, T: HLAFloat>(_ op: Op.Type, _ c: Config, _ seqs: Seqs, io: IO<T>) throws(HLAError) {
        let nT = seqs.maxLength
        guard nT <= maxT else { throw .invalid("T = \(nT): the brute-force reference is limited to T <= \(maxT)") }
        let items = seqs.count * c.heads, workers = workerCount(items)
        let dk = c.dk, dvp = c.dvp
        let refElems = ReferenceWork.elements(T: nT, dk: dk)
        var per = try checkedAdd(refElems, try checkedMul(nT, nT, "reference matrix"), "reference work")
        per = try checkedAdd(per, try checkedMul(2 * nT, dvp, "reference work"), "reference work")
        let buf = try RawBuffer<Double>.allocate(try checkedMul(per, workers, "reference work"))
        defer { buf.free() }
        let outRow = try RawBuffer<T>.allocate(try checkedMul(c.dv, workers, "reference work"))
        defer { outRow.free() }
        parallelFor(items, balanced: seqs.cu != nil) { i, w in
            let sq = seqs.scheduled(i / c.heads), h = i % c.heads, g = h / c.group
            let b = seqs.batch(sq), bos = seqs.bos(sq), nT = seqs.length(sq)
            let base = buf.base + w * per
            let q = base, k = q + nT * dk, gram = k + nT * dk, gp = gram + nT * nT, row = gp + 3 * nT + 1
            let m = row + nT, v = m + nT * nT, num = v + nT * dvp
            for t in 0..<nT {
                for a in 0..<dk {
                    q[t * dk + a] = c.scale * Double(io.q.load(b, bos + t, h, a)); k[t * dk + a] = Double(io.k.load(b, bos + t, g, a))
                }
                for x in 0..<c.dv { v[t * dvp + x] = Double(io.v.load(b, bos + t, g, x)) }
                if c.normalize { v[t * dvp + c.dv] = 1 }
            }
            for t in 0..<nT {
                for i2 in 0..<nT {
                    var s = 0.0
                    for a in 0..<dk { s += q[t * dk + a] * k[i2 * dk + a] }
                    gram[t * nT + i2] = s
                }
            }
            var p = 1.0
            for e in 0...(3 * nT) { gp[e] = p; p *= c.decay }
            Op.referenceCoefficients(c, ReferenceWork(T: nT, dk: dk, q: q, k: k, gram: gram, gp: gp, row: row), m: m)
            for t in 0..<nT {
                for x in 0..<dvp {
                    var s = 0.0
                    for j in 0...t { s += m[t * nT + j] * v[j * dvp + x] }
                    num[t * dvp + x] = s
                }
                guard let out = io.out else { continue }
                let o = num + t * dvp   // normalized in double, then rounded once to the output type
                if c.normalize { let inv = 1 / (o[c.dv] + c.eps); for x in 0..<c.dv { o[x] *= inv } }
                let typed = outRow.base + w * c.dv
                for x in 0..<c.dv { typed[x] = T(o[x]) }
                out.store(b, bos + t, h, typed, c.dv)
            }
        }
    }
}
