import CHLA

/// A failure the C ABI reports as a status plus a message.
struct HLAError: Error {
    let status: hla_status
    let message: String

    static func null(_ name: String) -> HLAError {
        HLAError(status: HLA_ERR_NULL_POINTER, message: "\(name) must not be NULL")
    }
    static func invalid(_ message: String) -> HLAError {
        HLAError(status: HLA_ERR_INVALID_ARGUMENT, message: message)
    }
    static func overflow(_ message: String) -> HLAError {
        HLAError(status: HLA_ERR_OVERFLOW, message: message)
    }
    static func mismatch(_ message: String) -> HLAError {
        HLAError(status: HLA_ERR_MISMATCH, message: message)
    }
    static func corrupt(_ message: String) -> HLAError {
        HLAError(status: HLA_ERR_CORRUPT, message: message)
    }
    static func noMemory(_ bytes: Int) -> HLAError {
        HLAError(status: HLA_ERR_OUT_OF_MEMORY, message: "could not allocate \(bytes) bytes")
    }
}

/// Checked arithmetic for sizes: every product of caller-given sizes goes through these.
@inline(__always)
func checkedMul(_ a: Int, _ b: Int, _ what: @autoclosure () -> String) throws(HLAError) -> Int {
    let (r, o) = a.multipliedReportingOverflow(by: b)
    if o { throw .overflow("\(what()) overflows a 64-bit size") }
    return r
}

@inline(__always)
func checkedAdd(_ a: Int, _ b: Int, _ what: @autoclosure () -> String) throws(HLAError) -> Int {
    let (r, o) = a.addingReportingOverflow(b)
    if o { throw .overflow("\(what()) overflows a 64-bit size") }
    return r
}
