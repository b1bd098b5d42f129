/// Brute-force evaluation of the index sums (SPEC.md §4 path 4), accumulated in double whatever the
/// dtype: per (batch, head) the operator's T × T coefficient matrix M, then num = M V.
enum ReferencePath {
    static let maxT = 16384

    static func run<Op: Operator, T: HLAFloat>(_ op: Op.Type, _ c: Config, nT: Int, io: IO<T>) throws(HLAError) {
        guard nT <= maxT else { throw .invalid("T = \(nT): the brute-force reference is limited to T <= \(maxT)") }
        let items = c.batch * c.heads, workers = workerCount(items)
        let dk = c.dk, dvp = c.dvp
        let refElems = ReferenceWork.elements(T: nT, dk: dk)
        var per = try checkedAdd(refElems, try checkedMul(nT, nT, "reference matrix"), "reference work")
        per = try checkedAdd(per, try checkedMul(2 * nT, dvp, "reference work"), "reference work")
        let buf = try RawBuffer<Double>.allocate(try checkedMul(per, workers, "reference work"))
        defer { buf.free() }
        parallelFor(items) { i, w in
            let b = i / c.heads, h = i % c.heads, g = h / c.group
            let base = buf.base + w * per
            let q = base, k = q + nT * dk, gram = k + nT * dk, gp = gram + nT * nT, row = gp + 3 * nT + 1
            let m = row + nT, v = m + nT * nT, num = v + nT * dvp
            for t in 0..<nT {
                let qp = io.q.at(b, t, h), kp = io.k.at(b, t, g), vp = io.v.at(b, t, g)
                for a in 0..<dk { q[t * dk + a] = c.scale * Double(qp[a * io.q.sd]); k[t * dk + a] = Double(kp[a * io.k.sd]) }
                for x in 0..<c.dv { v[t * dvp + x] = Double(vp[x * io.v.sd]) }
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
                let dst = out.at(b, t, h)
                for x in 0..<c.dv {
                    let val = c.normalize ? num[t * dvp + x] / (num[t * dvp + c.dv] + c.eps) : num[t * dvp + x]
                    dst[x * out.sd] = T(val)
                }
            }
        }
    }
}
