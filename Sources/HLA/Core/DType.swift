import CHLA

/// Element types of the ABI (`hla_dtype`): the four floating types of q, k, v and outputs, and the two
/// integer types of index tensors.
enum DType: Int32, Sendable {
    case float32 = 0, float64 = 1, bfloat16 = 2, float16 = 3, int64 = 4, int32 = 5

    var size: Int {
        switch self {
        case .float64, .int64: return 8
        case .float32, .int32: return 4
        case .bfloat16, .float16: return 2
        }
    }
    var name: String { ["float32", "float64", "bfloat16", "float16", "int64", "int32"][Int(rawValue)] }
    var isFloating: Bool { rawValue <= 3 }
    /// Element type of the state and of the accumulation for inputs of this type.
    var stateType: DType { self == .float64 ? .float64 : .float32 }

    static func code(_ raw: Int32, _ name: @autoclosure () -> String) throws(HLAError) -> DType {
        guard let d = DType(rawValue: raw) else {
            throw HLAError(status: HLA_ERR_DTYPE, message: "\(name()).dtype = \(raw) is not an hla_dtype")
        }
        return d
    }
}

/// bfloat16 and float16 storage: widened exactly to Float on load, rounded to nearest even on store.
enum Half {
    @inline(__always) static func bf16ToFloat(_ b: UInt16) -> Float { Float(bitPattern: UInt32(b) << 16) }
    @inline(__always) static func floatToBF16(_ x: Float) -> UInt16 {
        let b = x.bitPattern
        if x.isNaN { return UInt16(truncatingIfNeeded: b >> 16) | 0x0040 }   // quiet NaN, sign kept
        return UInt16(truncatingIfNeeded: (b &+ 0x7FFF &+ ((b >> 16) & 1)) >> 16)
    }
    @inline(__always) static func f16ToFloat(_ h: UInt16) -> Float { Float(Float16(bitPattern: h)) }
    @inline(__always) static func floatToF16(_ x: Float) -> UInt16 { Float16(x).bitPattern }
}

/// Execution path of hla_forward (`hla_path`).
enum Path: Int32, Sendable {
    case chunked = 0, serial = 1, scan = 2
}
